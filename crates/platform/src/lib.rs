//! Everything every service needs, so no service repeats it: typed configuration, telemetry,
//! Kafka plumbing, the ops HTTP server and the shutdown sequence.

mod allocator;
pub mod config;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod shutdown;
pub mod state;
pub mod telemetry;

use config::{ConfigError, Env};
use http::{Readiness, Server};
use kafka::{ClientDefaults, KafkaConfig};
use metrics::Metrics;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Settings every service has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    pub kafka: KafkaConfig,
    /// `OPS_ADDR`: where `/healthz`, `/readyz` and `/metrics` are served.
    pub ops_addr: SocketAddr,
    /// `KAFKA_CONSUMER_GROUP`: replaces a consuming service's default group name.
    pub consumer_group: Option<String>,
    /// `SHUTDOWN_TIMEOUT_MS`: the longest a graceful stop may take before the process exits
    /// anyway. The Helm chart sets it 5 s below `terminationGracePeriodSeconds`.
    pub shutdown_timeout: Duration,
}

impl ServiceConfig {
    pub fn from_env(env: &Env, service: &str) -> Result<Self, ConfigError> {
        Self::from_env_with(env, service, ClientDefaults::default())
    }

    /// As [`ServiceConfig::from_env`], for a service whose client defaults differ.
    pub fn from_env_with(
        env: &Env,
        service: &str,
        defaults: ClientDefaults,
    ) -> Result<Self, ConfigError> {
        let kafka = KafkaConfig::from_env_with(env, service, defaults)?;
        let shutdown_timeout = env.millis("SHUTDOWN_TIMEOUT_MS", Duration::from_secs(25))?;
        // Drain the lanes, commit, flush the producer (bounded by the delivery timeout).
        let needed = kafka.drain_timeout + kafka::COMMIT_BUDGET + kafka.delivery_timeout;
        if shutdown_timeout < needed {
            return Err(ConfigError::Invalid {
                var: "SHUTDOWN_TIMEOUT_MS".into(),
                value: shutdown_timeout.as_millis().to_string(),
                expected: format!(
                    "at least {} ms: KAFKA_DRAIN_TIMEOUT_MS + {} ms for the final commit + \
                     KAFKA_DELIVERY_TIMEOUT_MS",
                    needed.as_millis(),
                    kafka::COMMIT_BUDGET.as_millis()
                ),
            });
        }
        Ok(Self {
            kafka,
            ops_addr: env.addr("OPS_ADDR", "0.0.0.0:9090")?,
            consumer_group: env.raw("KAFKA_CONSUMER_GROUP").map(str::to_owned),
            shutdown_timeout,
        })
    }
}

/// Why a service could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot bind {what}: {source}")]
    Bind {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Publish(#[from] kafka::PublishError),
}

/// The parts of a running service that outlive its workers: metrics, readiness, the producer with
/// its broker probe, and the ops server, which keeps answering (503 on `/readyz`) while the
/// workers drain.
pub struct Runtime {
    pub metrics: Metrics,
    pub readiness: Readiness,
    kafka: KafkaConfig,
    publisher: kafka::Publisher,
    probe: tokio::task::JoinHandle<()>,
    ops: Server,
}

impl Runtime {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops.local_addr
    }

    /// Starts the ops server, creates the producer, and probes the broker for `topics` behind the
    /// `broker` readiness gate.
    pub async fn start(
        config: &ServiceConfig,
        topics: Vec<String>,
        shutdown: CancellationToken,
    ) -> Result<Self, Error> {
        Self::start_with(config, topics, true, shutdown).await
    }

    /// [`start`](Self::start), where `broker_gates_readiness: false` shows the broker's state in
    /// `/readyz` without failing it (for a service that keeps working while the broker is away).
    pub async fn start_with(
        config: &ServiceConfig,
        topics: Vec<String>,
        broker_gates_readiness: bool,
        shutdown: CancellationToken,
    ) -> Result<Self, Error> {
        let metrics = Metrics::new();
        let readiness = Readiness::new(shutdown.clone());
        let router = http::ops_router(readiness.clone(), metrics.clone());
        let ops = Server::start("ops", config.ops_addr, router, CancellationToken::new())
            .await
            .map_err(|source| Error::Bind {
                what: "OPS_ADDR",
                source,
            })?;
        tracing::info!(
            bootstrap_servers = %config.kafka.bootstrap_servers,
            security = %config.kafka.security.describe(),
            "kafka clients configured"
        );
        let publisher = kafka::Publisher::new(&config.kafka, metrics.clone())?;
        let gate = if broker_gates_readiness {
            readiness.gate("broker", "not probed yet")
        } else {
            readiness.informational("broker", "not probed yet")
        };
        let probe = kafka::BrokerProbe::spawn(&publisher, topics, gate, shutdown);
        Ok(Self {
            metrics,
            readiness,
            kafka: config.kafka.clone(),
            publisher,
            probe,
            ops,
        })
    }

    pub fn publisher(&self) -> kafka::Publisher {
        self.publisher.clone()
    }

    /// A state store named `name` over the compacted topic `changelog` ([`state`]).
    pub fn store<V>(&self, name: &str, changelog: &str) -> state::Store<V>
    where
        V: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        state::Store::new(
            name,
            changelog,
            &self.kafka,
            self.publisher(),
            &self.metrics,
            &self.readiness,
        )
    }

    /// Serves a service's API on `addr` (`HTTP_ADDR`) until `shutdown`.
    pub async fn serve_api(
        &self,
        addr: SocketAddr,
        router: axum::Router,
        shutdown: CancellationToken,
    ) -> Result<Server, Error> {
        Server::start("http", addr, router, shutdown)
            .await
            .map_err(|source| Error::Bind {
                what: "HTTP_ADDR",
                source,
            })
    }

    /// The end of a stop, once the workers and APIs are done: flush the producer, stop probing,
    /// stop the ops server. Telemetry is flushed after this, when its guard drops.
    pub async fn stop(self) {
        self.publisher.flush().await;
        self.probe.abort();
        self.ops.stop().await;
        tracing::info!("shutdown complete");
    }
}

/// An optional HTTP API beside the consumer.
pub struct Api {
    pub addr: SocketAddr,
    pub router: axum::Router,
}

/// A consuming service, built: its ops and API ports are bound (and reported by
/// [`ops_addr`](Self::ops_addr) / [`http_addr`](Self::http_addr)), its producer made, its consumer
/// subscribed. [`run_until_stopped`](Self::run_until_stopped) consumes until shutdown, then drains
/// in the order [`shutdown`] documents.
pub struct ConsumerService<H: kafka::Handler> {
    rt: Runtime,
    http: Option<Server>,
    consumer: kafka::ConsumeLoop<H>,
}

impl<H: kafka::Handler> ConsumerService<H> {
    /// Consumes as the service's row in the topology table says (`events::topology::of`): its
    /// group (`KAFKA_CONSUMER_GROUP` replaces it) reads the row's topics; readiness waits until
    /// they, the dead-letter topic of each, and the topics the row writes (outputs, changelogs)
    /// exist. `build` makes the handler and the optional API from the runtime (publisher,
    /// metrics).
    pub async fn build<F>(
        config: &ServiceConfig,
        access: &events::topology::Access,
        shutdown: &CancellationToken,
        build: F,
    ) -> Result<Self, Error>
    where
        F: FnOnce(&Runtime) -> (H, Option<Api>),
    {
        let (group, topics, writes) = access.consumer();
        let mut needed: Vec<String> = topics
            .iter()
            .flat_map(|t| [(*t).to_owned(), kafka::dead_letter_topic(t)])
            .collect();
        needed.extend(writes.iter().map(|t| (*t).to_owned()));
        let rt = Runtime::start(config, needed, shutdown.clone()).await?;
        let (handler, api) = build(&rt);
        let consumer = kafka::ConsumeLoop::new(
            &config.kafka,
            config.consumer_group.as_deref().unwrap_or(group),
            topics,
            handler,
            rt.publisher(),
            rt.metrics.clone(),
            &rt.readiness,
        )?;
        let http = match api {
            Some(api) => Some(rt.serve_api(api.addr, api.router, shutdown.clone()).await?),
            None => None,
        };
        Ok(Self { rt, http, consumer })
    }

    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub fn ops_addr(&self) -> SocketAddr {
        self.rt.ops_addr()
    }

    /// Where the service's API is served, if it has one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|s| s.local_addr)
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) {
        self.consumer.run(shutdown).await;
        if let Some(http) = self.http {
            http.stop().await;
        }
        self.rt.stop().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shutdown_budget_too_short_for_drain_commit_and_flush_is_refused() {
        let base = ("KAFKA_BOOTSTRAP_SERVERS", "k:9092");
        let ok = ServiceConfig::from_env(&Env::from_pairs([base]), "payment").expect("defaults");
        assert_eq!(ok.shutdown_timeout, Duration::from_secs(25));
        // 8 s drain + 5 s commit + 8 s delivery = 21 s.
        let err = ServiceConfig::from_env(
            &Env::from_pairs([base, ("SHUTDOWN_TIMEOUT_MS", "20000")]),
            "payment",
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "SHUTDOWN_TIMEOUT_MS=\"20000\" is invalid; expected at least 21000 ms"
            ),
            "{err}"
        );
    }
}
