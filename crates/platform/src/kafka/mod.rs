//! Kafka plumbing shared by every service: client configuration, trace-context propagation through
//! record headers, an acknowledged publisher, the at-least-once consume loop with dead-lettering,
//! and the broker probe behind readiness.

mod client_errors;
mod consumer;
mod probe;
mod producer;
pub mod propagation;
pub mod reader;
mod security;

pub use client_errors::ClientErrors;
pub(crate) use client_errors::Warnings;
pub use consumer::{
    COMMIT_BUDGET, ConsumeLoop, GroupContext, HandleError, Handler, RecordMeta, Rejection,
    headers as dlq_headers,
};
pub use probe::BrokerProbe;
pub use producer::{PublishError, Published, Publisher};
pub use security::{Protocol, Sasl, Secret, Security, Tls};

use crate::config::{ConfigError, Env};
use rdkafka::ClientConfig;
use std::time::Duration;

/// The dead-letter topic of `topic`: where its consumers copy the records they cannot handle.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// Connection settings shared by every client of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `KAFKA_BOOTSTRAP_SERVERS`: the one setting that points a service at a broker.
    pub bootstrap_servers: String,
    /// `KAFKA_CLIENT_ID`: defaults to the pod's hostname, else the service name.
    pub client_id: String,
    /// The group its readers name ([`events::topology::reader_group`]): librdkafka assigns
    /// partitions only to a consumer with a group, though a reader never joins or commits.
    pub reader_group: String,
    /// `KAFKA_SESSION_TIMEOUT_MS`: how long a silent group member keeps its partitions.
    pub session_timeout: Duration,
    /// `KAFKA_DELIVERY_TIMEOUT_MS`: how long a produce may take, retries included.
    pub delivery_timeout: Duration,
    /// `KAFKA_STATISTICS_INTERVAL_MS`: how often librdkafka reports statistics (lag metrics).
    pub statistics_interval: Duration,
    /// `KAFKA_FETCH_WAIT_MAX_MS`: the longest a fetch waits at the broker for new records.
    pub fetch_wait_max: Duration,
    /// `KAFKA_LINGER_MS`: how long the producer waits to fill a batch; 10 ms unless the service's
    /// [`ClientDefaults`] say otherwise.
    pub linger: Duration,
    /// `KAFKA_MAX_IN_FLIGHT`: records a consumer member holds at once, taken and not finished.
    pub max_in_flight: usize,
    /// `KAFKA_DRAIN_TIMEOUT_MS`: how long revoked or stopping lanes may take to finish what they
    /// hold before it is abandoned, unstored, to the next owner.
    pub drain_timeout: Duration,
    /// `KAFKA_RETRY_BACKOFF_MAX_MS`: the longest pause between retries of a failing record.
    pub retry_backoff_max: Duration,
    /// `KAFKA_SUMMARY_INTERVAL_MS`: how often a consumer logs its summary line at INFO.
    pub summary_interval: Duration,
    /// `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`: see [`Security`].
    pub security: Security,
    /// `KAFKA_EXTRA_CONFIG`: `key=value` pairs, comma-separated, passed to librdkafka as they are
    /// (tuning such as `socket.keepalive.enable=true`). Secrets are refused here: they would sit
    /// in plain sight in the pod spec; `KAFKA_SASL_PASSWORD_FILE` and the `*_LOCATION` files
    /// carry them.
    pub extra: Vec<(String, String)>,
}

/// librdkafka properties that hold a secret, refused in `KAFKA_EXTRA_CONFIG`.
const SECRET_PROPERTIES: [&str; 6] = [
    "sasl.password",
    "sasl.jaas.config",
    "sasl.oauthbearer.client.secret",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.password",
];

/// The client settings a service may default differently; the environment still overrides
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientDefaults {
    /// `KAFKA_LINGER_MS` when it is not set.
    pub linger: Duration,
    /// `KAFKA_MAX_IN_FLIGHT` when it is not set. A record is held until its outputs are
    /// acknowledged, so the bound divided by that wait caps a member's rate: 4,096 by default
    /// (1,024 held notification to about 25,000 records/s on the local broker). A consumer whose
    /// records finish without waiting on the broker gains nothing from more and pays a few KiB of
    /// memory for each.
    pub max_in_flight: usize,
}

impl ClientDefaults {
    /// The producers' linger unless a service says otherwise (see `producer_config`).
    pub const DEFAULT_LINGER: Duration = Duration::from_millis(10);
    /// The in-flight bound unless a service says otherwise.
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;

    /// For a consumer whose records finish without waiting on the broker (the dashboard frames a
    /// reading, alerting rarely has an output): 1,024 in flight, since more would only cost memory
    /// (draining 200,000 readings the dashboard peaked at 61.7 MiB with 1,024 and 70.4 MiB with
    /// 4,096, at the same rate, and alerting ran as fast).
    pub const RECORDS_FINISH_AT_ONCE: Self = Self {
        linger: Self::DEFAULT_LINGER,
        max_in_flight: 1024,
    };
}

impl Default for ClientDefaults {
    fn default() -> Self {
        Self {
            linger: Self::DEFAULT_LINGER,
            max_in_flight: Self::DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

impl KafkaConfig {
    pub fn from_env(env: &Env, service: &str) -> Result<Self, ConfigError> {
        Self::from_env_with(env, service, ClientDefaults::default())
    }

    /// As [`KafkaConfig::from_env`], for a service whose client defaults differ.
    pub fn from_env_with(
        env: &Env,
        service: &str,
        defaults: ClientDefaults,
    ) -> Result<Self, ConfigError> {
        let bootstrap_servers: String = env.required(
            "KAFKA_BOOTSTRAP_SERVERS",
            "a comma-separated list of host:port",
        )?;
        let valid = bootstrap_servers.split(',').all(|s| {
            s.trim()
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        });
        if !valid {
            return Err(ConfigError::Invalid {
                var: "KAFKA_BOOTSTRAP_SERVERS".into(),
                value: bootstrap_servers,
                expected: "a comma-separated list of host:port".into(),
            });
        }
        let client_id = env
            .raw("KAFKA_CLIENT_ID")
            .or_else(|| env.raw("HOSTNAME"))
            .unwrap_or(service)
            .to_owned();
        let session_timeout = env.millis("KAFKA_SESSION_TIMEOUT_MS", Duration::from_secs(10))?;
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&session_timeout) {
            return Err(ConfigError::Invalid {
                var: "KAFKA_SESSION_TIMEOUT_MS".into(),
                value: session_timeout.as_millis().to_string(),
                expected: "milliseconds from 1000 to 300000".into(),
            });
        }
        let extra_raw = env.raw("KAFKA_EXTRA_CONFIG").unwrap_or_default();
        let mut extra = Vec::new();
        for pair in extra_raw
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            // The value is never echoed: a malformed list may hold a secret.
            let (k, v) = pair.split_once('=').ok_or_else(|| ConfigError::Invalid {
                var: "KAFKA_EXTRA_CONFIG".into(),
                value: "(not shown)".into(),
                expected: "comma-separated key=value librdkafka properties".into(),
            })?;
            let key = k.trim().to_ascii_lowercase();
            if SECRET_PROPERTIES.contains(&key.as_str()) {
                return Err(ConfigError::Invalid {
                    var: "KAFKA_EXTRA_CONFIG".into(),
                    value: format!("{key}=(not shown)"),
                    expected: "no secrets: give the password through KAFKA_SASL_PASSWORD_FILE \
                               (or KAFKA_SASL_PASSWORD from a Secret) and keys as files"
                        .into(),
                });
            }
            extra.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        let config = Self {
            bootstrap_servers,
            client_id,
            reader_group: events::topology::reader_group(service),
            session_timeout,
            delivery_timeout: env.millis("KAFKA_DELIVERY_TIMEOUT_MS", Duration::from_secs(8))?,
            statistics_interval: env
                .millis("KAFKA_STATISTICS_INTERVAL_MS", Duration::from_secs(5))?,
            fetch_wait_max: env.millis("KAFKA_FETCH_WAIT_MAX_MS", Duration::from_millis(500))?,
            linger: env.millis("KAFKA_LINGER_MS", defaults.linger)?,
            max_in_flight: env.checked(
                "KAFKA_MAX_IN_FLIGHT",
                defaults.max_in_flight,
                "a whole number from 1 to 100000",
                |n: &usize| (1..=100_000).contains(n),
            )?,
            drain_timeout: env.millis("KAFKA_DRAIN_TIMEOUT_MS", Duration::from_secs(8))?,
            retry_backoff_max: env.millis("KAFKA_RETRY_BACKOFF_MAX_MS", Duration::from_secs(5))?,
            summary_interval: env.millis("KAFKA_SUMMARY_INTERVAL_MS", Duration::from_secs(30))?,
            security: Security::from_env(env)?,
            extra,
        };
        config.check_budgets()?;
        Ok(config)
    }

    /// The budgets that must agree for a revocation to drain in time (see the consume loop).
    fn check_budgets(&self) -> Result<(), ConfigError> {
        let invalid = |var: &str, value: Duration, expected: String| {
            Err(ConfigError::Invalid {
                var: var.into(),
                value: value.as_millis().to_string(),
                expected,
            })
        };
        if self.delivery_timeout > self.drain_timeout {
            return invalid(
                "KAFKA_DELIVERY_TIMEOUT_MS",
                self.delivery_timeout,
                format!(
                    "at most KAFKA_DRAIN_TIMEOUT_MS ({} ms), so that every output in flight at a \
                     revocation is settled within the drain",
                    self.drain_timeout.as_millis()
                ),
            );
        }
        if self.drain_timeout >= self.session_timeout {
            return invalid(
                "KAFKA_DRAIN_TIMEOUT_MS",
                self.drain_timeout,
                format!(
                    "less than KAFKA_SESSION_TIMEOUT_MS ({} ms), so that a revocation never holds \
                     the group longer than a member may stay silent",
                    self.session_timeout.as_millis()
                ),
            );
        }
        if self.retry_backoff_max < Duration::from_millis(100) {
            return invalid(
                "KAFKA_RETRY_BACKOFF_MAX_MS",
                self.retry_backoff_max,
                "at least 100 milliseconds".into(),
            );
        }
        if self.summary_interval.is_zero() {
            return invalid(
                "KAFKA_SUMMARY_INTERVAL_MS",
                self.summary_interval,
                "a positive number of milliseconds".into(),
            );
        }
        Ok(())
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            // Re-resolve broker addresses promptly when a broker appears late or moves.
            .set("reconnect.backoff.max.ms", "2000")
            // Records are small and latency matters: Nagle's algorithm held small requests back
            // (`make bench`, 1,000 orders/s: created → notified p50 59 → 44 ms, p99 126 → 114 ms).
            .set("socket.nagle.disable", "true")
            .set("topic.metadata.refresh.interval.ms", "10000");
        self.security.apply(&mut c);
        c
    }

    /// `KAFKA_EXTRA_CONFIG`, applied last so that it overrides any setting above (it is tuning:
    /// applied before the per-role settings, a prefetch or fetch size there was silently reset).
    fn with_extra(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }

    /// A consumer outside any group that reads assigned partitions to their end (state restore,
    /// the console tool). Its group is only named (librdkafka assigns partitions only to a consumer
    /// with one); it never joins or commits, so every replica can share it.
    pub fn reader_config(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", &self.reader_group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", ms(self.fetch_wait_max))
            // A reader reads one partition start to end (a changelog on restore), and a member
            // restores several at once: librdkafka's defaults (64 MiB prefetch per partition,
            // 50 MiB fetches) would hold much of each in memory at once.
            .set("queued.max.messages.kbytes", "4096")
            .set("fetch.max.bytes", "4194304")
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
        self.with_extra(c)
    }

    /// Idempotent, fully acknowledged producer settings.
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("acks", "all")
            .set("enable.idempotence", "true")
            // Many records' outputs are in flight at once; a short linger lets them share batches.
            // Measured on the local broker (README, "Producer batching"): 5 ms used ~10 % less CPU
            // per record than 1 ms at full speed; 10 ms did about as well as 5 at full speed, and
            // at 1,000 orders/s, where a batch holds a record or two, it cut the p99 by a fifth
            // to more than half and the broker's CPU by about 30 %.
            .set("linger.ms", ms(self.linger))
            .set("compression.type", "lz4")
            .set("message.timeout.ms", ms(self.delivery_timeout));
        self.with_extra(c)
    }

    /// At-least-once consumer settings: offsets are stored by the consume loop only after a record's
    /// work is acknowledged, and the stored offsets are committed in the background and on shutdown.
    pub fn consumer_config(&self, group_id: &str) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", group_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // Offsets are stored by the consume loop once a record and all before it are finished;
            // librdkafka's own store would mark a record done as soon as it is taken.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", ms(self.session_timeout))
            .set("heartbeat.interval.ms", ms(self.session_timeout / 3))
            .set("statistics.interval.ms", ms(self.statistics_interval))
            // librdkafka's default of 500 ms suits a real Kafka, which answers a waiting fetch as soon
            // as data arrives; the local broker may sit out the whole wait, so `make run` and the
            // benchmarks use a short-wait profile (README, "Benchmarks").
            .set("fetch.wait.max.ms", ms(self.fetch_wait_max))
            .set("enable.partition.eof", "false")
            // Prefetch per partition. Lanes take records as fast as the in-flight bound allows;
            // a MiB keeps every lane fed. Every record pins the whole decompressed batch it came
            // in, so the memory held is several times this: alerting draining 200,000 readings
            // peaked at 72 MiB with 2 MiB and 45 MiB with 1 MiB, still at 47,000 readings/s; the
            // order flow's throughput and memory did not move.
            .set("queued.max.messages.kbytes", "1024")
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
        self.with_extra(c)
    }
}

/// How long librdkafka waits before fetching a partition again once its prefetch queue is full
/// (`queued.max.messages.kbytes`); its default is a second. The queues here are small and
/// drained in tens of milliseconds, so with the default a backlogged partition sat idle for most
/// of each second: payment draining 100,000 orders stalled for 250-750 ms at a time and averaged
/// 27,000 orders/s, and with 10 ms it ran without a pause at about 65,000/s
/// (docs/benchmarks.md, "Runs by hand after `3c1c738`"). The cost is a timer per full partition.
const FETCH_QUEUE_BACKOFF_MS: &str = "10";

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn bootstrap_servers_are_required_and_checked() {
        let err = KafkaConfig::from_env(&env(&[]), "order").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("KAFKA_BOOTSTRAP_SERVERS is not set"),
            "{err}"
        );
        let err = KafkaConfig::from_env(&env(&[("KAFKA_BOOTSTRAP_SERVERS", "localhost")]), "order")
            .unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
        let ok = KafkaConfig::from_env(
            &env(&[("KAFKA_BOOTSTRAP_SERVERS", "a:9092, b:9093")]),
            "order",
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn extra_config_passes_through() {
        let cfg = KafkaConfig::from_env(
            &env(&[
                ("KAFKA_BOOTSTRAP_SERVERS", "k:9092"),
                (
                    "KAFKA_EXTRA_CONFIG",
                    "socket.keepalive.enable=true, message.max.bytes=2000000, queued.max.messages.kbytes=512, linger.ms=1",
                ),
            ]),
            "payment",
        )
        .expect("valid");
        let c = cfg.consumer_config("payment");
        assert_eq!(c.get("socket.keepalive.enable"), Some("true"));
        assert_eq!(c.get("message.max.bytes"), Some("2000000"));
        // Extra settings override the per-role ones.
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("512"));
        assert_eq!(
            cfg.reader_config().get("queued.max.messages.kbytes"),
            Some("512")
        );
        assert_eq!(cfg.producer_config().get("linger.ms"), Some("1"));
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("client.id"), Some("payment"));

        let err = KafkaConfig::from_env(
            &env(&[
                ("KAFKA_BOOTSTRAP_SERVERS", "k:9092"),
                ("KAFKA_EXTRA_CONFIG", "oops"),
            ]),
            "payment",
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("KAFKA_EXTRA_CONFIG="), "{err}");

        let err = KafkaConfig::from_env(
            &env(&[
                ("KAFKA_BOOTSTRAP_SERVERS", "k:9092"),
                ("KAFKA_EXTRA_CONFIG", "linger.ms=1,sasl.password=hunter2"),
            ]),
            "payment",
        )
        .unwrap_err();
        assert!(err.to_string().contains("sasl.password"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = KafkaConfig::from_env(
            &env(&[
                ("KAFKA_BOOTSTRAP_SERVERS", "k:9092"),
                ("KAFKA_EXTRA_CONFIG", "sasl.password:hunter2"),
            ]),
            "payment",
        )
        .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn budgets_that_cannot_drain_in_time_are_refused() {
        let base = ("KAFKA_BOOTSTRAP_SERVERS", "k:9092");
        assert!(KafkaConfig::from_env(&env(&[base]), "payment").is_ok());
        for (pairs, var) in [
            (
                vec![("KAFKA_DELIVERY_TIMEOUT_MS", "9000")],
                "KAFKA_DELIVERY_TIMEOUT_MS",
            ),
            (
                vec![("KAFKA_SESSION_TIMEOUT_MS", "6000")],
                "KAFKA_DRAIN_TIMEOUT_MS",
            ),
            (
                vec![("KAFKA_RETRY_BACKOFF_MAX_MS", "10")],
                "KAFKA_RETRY_BACKOFF_MAX_MS",
            ),
        ] {
            let mut all = vec![base];
            all.extend(pairs);
            let err = KafkaConfig::from_env(&env(&all), "payment").unwrap_err();
            assert!(err.to_string().starts_with(&format!("{var}=")), "{err}");
        }
        let ok = KafkaConfig::from_env(
            &env(&[
                base,
                ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
                ("KAFKA_DRAIN_TIMEOUT_MS", "5000"),
                ("KAFKA_DELIVERY_TIMEOUT_MS", "5000"),
            ]),
            "payment",
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn a_services_client_defaults_apply_unless_the_environment_overrides_them() {
        let defaults = ClientDefaults {
            linger: Duration::from_millis(20),
            max_in_flight: 64,
        };
        let bootstrap = ("KAFKA_BOOTSTRAP_SERVERS", "k:9092");
        let c = KafkaConfig::from_env_with(&env(&[bootstrap]), "svc", defaults).expect("valid");
        assert_eq!((c.linger, c.max_in_flight), (Duration::from_millis(20), 64));
        let c = KafkaConfig::from_env_with(
            &env(&[
                bootstrap,
                ("KAFKA_LINGER_MS", "3"),
                ("KAFKA_MAX_IN_FLIGHT", "9"),
            ]),
            "svc",
            defaults,
        )
        .expect("valid");
        assert_eq!((c.linger, c.max_in_flight), (Duration::from_millis(3), 9));
        let c = KafkaConfig::from_env(&env(&[bootstrap]), "svc").expect("valid");
        assert_eq!(
            (c.linger, c.max_in_flight),
            (
                ClientDefaults::DEFAULT_LINGER,
                ClientDefaults::DEFAULT_MAX_IN_FLIGHT
            )
        );
    }

    #[test]
    fn session_timeout_is_bounded() {
        let err = KafkaConfig::from_env(
            &env(&[
                ("KAFKA_BOOTSTRAP_SERVERS", "k:9092"),
                ("KAFKA_SESSION_TIMEOUT_MS", "10"),
            ]),
            "payment",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("KAFKA_SESSION_TIMEOUT_MS"),
            "{err}"
        );
    }
}
