//! The load generator: sends orders to the order API at a given rate (or as fast as the API
//! accepts them) for a count or a duration, watches the `notifications` topic for each order's
//! notification, and reports what was sent, completed and lost, with end-to-end latency
//! percentiles measured on its own clock (request sent → notification seen).
//!
//! It usually shares the machine with what it loads (a laptop, the benchmark), so what it costs
//! is CPU the system under test does not get. Each request in flight is a task of its own with
//! one keep-alive HTTP/1.1 connection, which that task drives itself: no connection pool, no
//! task per request or per connection, and the URL is parsed once. Measured against a pooled
//! client (reqwest), see `docs/benchmarks.md`.

mod http;

use hyper::body::Bytes;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long one request may take, connecting included, before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Options {
    /// Base URL of the order API (`…/orders` is appended).
    pub order_url: String,
    pub bootstrap_servers: String,
    /// Orders per second; 0 sends as fast as `concurrency` allows.
    pub rate: f64,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    /// Requests in flight at most: as many connections to the order API.
    pub concurrency: usize,
    /// How long to wait for the last notifications after sending stops.
    pub drain_timeout: Duration,
    /// Draw a progress bar (else a plain line every 5 s).
    pub progress_bar: bool,
    /// The longest the `notifications` reader's fetch waits at the broker. Its wait counts in
    /// every latency the report gives, so keep it short (10 ms) when those matter. A caller that
    /// reads latency elsewhere (the flow benchmark takes it from the notification events' own
    /// timestamps) can wait longer, so that the observer's idle fetches do not load the broker
    /// under test: on the local broker every fetch costs a scan of each partition's log.
    pub fetch_wait: Duration,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn from_samples(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            // Nearest-rank percentile.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1].as_secs_f64() * 1000.0
        };
        Self {
            p50_ms: at(0.50),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub completed: u64,
    pub lost: u64,
    pub elapsed_s: f64,
    /// Orders accepted per second while sending.
    pub send_rate: f64,
    /// Orders completed per second, from the first request to the last notification.
    pub throughput: f64,
    pub latency: Latency,
    /// The first few request failures, for the reader.
    pub errors: Vec<String>,
}

impl Report {
    /// The final table.
    pub fn table(&self) -> String {
        let rows = [
            ("sent", self.sent.to_string()),
            ("accepted (202)", self.accepted.to_string()),
            ("rejected / failed", self.rejected.to_string()),
            ("completed (notified)", self.completed.to_string()),
            ("lost", self.lost.to_string()),
            ("elapsed", format!("{:.1} s", self.elapsed_s)),
            ("send rate", format!("{:.0} orders/s", self.send_rate)),
            ("throughput", format!("{:.0} orders/s", self.throughput)),
            ("latency p50", format!("{:.1} ms", self.latency.p50_ms)),
            ("latency p95", format!("{:.1} ms", self.latency.p95_ms)),
            ("latency p99", format!("{:.1} ms", self.latency.p99_ms)),
            ("latency max", format!("{:.1} ms", self.latency.max_ms)),
        ];
        let mut out = String::from("┌──────────────────────┬──────────────────┐\n");
        for (k, v) in rows {
            out.push_str(&format!("│ {k:<20} │ {v:>16} │\n"));
        }
        out.push_str("└──────────────────────┴──────────────────┘");
        out
    }
}

/// Where an order stands. Its notification can be read before the 202 that names it has been
/// handled, so either side may come first.
enum Track {
    /// The order was accepted; the request was sent at this instant.
    Sent(Instant),
    /// Its notification was seen at this instant, before the order's 202 was handled.
    Notified(Instant),
}

#[derive(Default)]
struct Shared {
    tracks: Mutex<HashMap<Uuid, Track>>,
    latencies: Mutex<Vec<Duration>>,
    sent: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    completed: AtomicU64,
    errors: Mutex<Vec<String>>,
    last_completion: Mutex<Option<Instant>>,
}

impl Shared {
    fn complete(&self, latency: Duration, at: Instant) {
        self.latencies.lock().expect("latencies lock").push(latency);
        self.completed.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last_completion.lock().expect("last lock");
        *last = Some(last.map_or(at, |l| l.max(at)));
    }

    /// The order's 202 was handled.
    fn accepted(&self, id: Uuid, sent_at: Instant) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let early = {
            let mut tracks = self.tracks.lock().expect("tracks lock");
            match tracks.remove(&id) {
                Some(Track::Notified(at)) => Some(at),
                _ => {
                    tracks.insert(id, Track::Sent(sent_at));
                    None
                }
            }
        };
        if let Some(at) = early {
            self.complete(at.saturating_duration_since(sent_at), at);
        }
    }

    /// A notification for `id` was read.
    fn notified(&self, id: Uuid) {
        let now = Instant::now();
        let sent_at = {
            let mut tracks = self.tracks.lock().expect("tracks lock");
            match tracks.remove(&id) {
                Some(Track::Sent(at)) => Some(at),
                // A repeat before the 202: keep the first sighting.
                Some(early @ Track::Notified(_)) => {
                    tracks.insert(id, early);
                    None
                }
                // Not (yet) one of ours: another client's order, or a 202 still on its way.
                None => {
                    tracks.insert(id, Track::Notified(now));
                    None
                }
            }
        };
        if let Some(at) = sent_at {
            self.complete(now - at, now);
        }
    }

    fn fail(&self, error: String) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock().expect("errors lock");
        if errors.len() < 10 {
            errors.push(error);
        }
    }
}

/// Retries a broker request a few times with jittered backoff. librdkafka 2.12 can drop a request
/// queued on the bootstrap connection when it replaces that connection with the broker's own; with
/// SASL over TLS, whose first connection takes longer, the first metadata request of a fresh client
/// timed out that way against a broker that was up (`tests/tests/security.rs`).
fn with_retries<T>(
    what: &str,
    mut request: impl FnMut() -> rdkafka::error::KafkaResult<T>,
) -> anyhow::Result<T> {
    use backon::BackoffBuilder;
    let mut pauses = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(4)
        .with_jitter()
        .build();
    loop {
        match request() {
            Ok(v) => return Ok(v),
            Err(e) => match pauses.next() {
                Some(pause) => std::thread::sleep(pause),
                None => return Err(anyhow::Error::new(e).context(format!("{what} request"))),
            },
        }
    }
}

/// A consumer of `notifications` positioned at the current end of every partition, so only
/// notifications of this run's orders (and later ones) are read. It logs in as the services do
/// (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`).
fn notifications_consumer(bootstrap: &str, fetch_wait: Duration) -> anyhow::Result<StreamConsumer> {
    let security = platform::kafka::Security::from_env(&platform::config::Env::from_process())?;
    let mut config = ClientConfig::new();
    security.apply(&mut config);
    let consumer: StreamConsumer = config
        .set("bootstrap.servers", bootstrap)
        // Only named, never joined: librdkafka assigns partitions only to a consumer with a group.
        .set("group.id", events::topology::reader_group("loadgen"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", fetch_wait.as_millis().to_string())
        .create()?;
    let topic = events::topics::NOTIFICATIONS;
    let md = with_retries("metadata", || {
        consumer.fetch_metadata(Some(topic), Duration::from_secs(5))
    })?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    anyhow::ensure!(
        !partitions.is_empty(),
        "topic `{topic}` not found at {bootstrap}"
    );
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        // An explicit offset, resolved now: `Offset::End` would be resolved at the first fetch,
        // after which early notifications could already be behind it.
        let (_, high) = with_retries("watermarks", || {
            consumer.fetch_watermarks(topic, p, Duration::from_secs(5))
        })?;
        tpl.add_partition_offset(topic, p, Offset::Offset(high))?;
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}

/// Runs the load and returns the report.
pub async fn run(opts: Options) -> anyhow::Result<Report> {
    anyhow::ensure!(
        opts.count.is_some() || opts.duration.is_some(),
        "give a count or a duration"
    );
    anyhow::ensure!(opts.concurrency > 0, "concurrency must be positive");
    anyhow::ensure!(
        opts.rate.is_finite() && opts.rate >= 0.0,
        "the rate must be a number of orders per second, 0 for as fast as possible"
    );
    let target = Arc::new(http::Target::parse(&opts.order_url)?);
    let shared = Arc::new(Shared::default());
    let consumer = notifications_consumer(&opts.bootstrap_servers, opts.fetch_wait)?;
    let receiver = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                let msg = match consumer.recv().await {
                    Ok(msg) => msg,
                    Err(e) => {
                        // Usually a passing broker hiccup; never spin on one.
                        eprintln!("notifications consumer: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                let Some(payload) = msg.payload() else {
                    continue;
                };
                let Ok(n) = serde_json::from_slice::<OrderId>(payload) else {
                    continue;
                };
                shared.notified(n.order_id);
            }
        })
    };

    let bar = progress(&opts);
    let reporter = {
        let (shared, bar) = (shared.clone(), bar.clone());
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0);
            let mut plain_at = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let accepted = shared.accepted.load(Ordering::Relaxed);
                let completed = shared.completed.load(Ordering::Relaxed);
                let rate = (accepted - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), accepted);
                let line = format!(
                    "{rate:>6.0} orders/s  completed {completed}  in flight {}",
                    // Read one after the other, so a completion may land in between.
                    accepted.saturating_sub(completed)
                );
                match &bar {
                    Some(bar) => {
                        bar.set_position(shared.sent.load(Ordering::Relaxed));
                        bar.set_message(line);
                    }
                    None if plain_at.elapsed() >= Duration::from_secs(5) => {
                        plain_at = Instant::now();
                        eprintln!("sent {}  {line}", shared.sent.load(Ordering::Relaxed));
                    }
                    None => {}
                }
            }
        })
    };

    let started = Instant::now();
    let tickets = Arc::new(Tickets {
        issued: AtomicU64::new(0),
        count: opts.count,
        deadline: opts.duration.map(|d| started + d),
        ticker: (opts.rate > 0.0).then(|| {
            let period = Duration::from_secs_f64(1.0 / opts.rate).max(Duration::from_nanos(1));
            tokio::sync::Mutex::new(tokio::time::interval(period))
        }),
    });
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..opts.concurrency {
        senders.spawn(sender(target.clone(), tickets.clone(), shared.clone()));
    }
    while senders.join_next().await.is_some() {}
    let sent = shared.sent.load(Ordering::Relaxed);
    let sending = started.elapsed();

    let accepted = shared.accepted.load(Ordering::Relaxed);
    let drain_until = Instant::now() + opts.drain_timeout;
    while shared.completed.load(Ordering::Relaxed) < accepted && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reporter.abort();
    receiver.abort();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }

    let completed = shared.completed.load(Ordering::Relaxed);
    let finished = shared
        .last_completion
        .lock()
        .expect("last lock")
        .unwrap_or(started + sending);
    let span = (finished - started).as_secs_f64().max(f64::EPSILON);
    let latencies = std::mem::take(&mut *shared.latencies.lock().expect("latencies lock"));
    #[allow(clippy::cast_precision_loss)]
    Ok(Report {
        sent,
        accepted,
        rejected: shared.rejected.load(Ordering::Relaxed),
        completed,
        lost: accepted - completed,
        elapsed_s: started.elapsed().as_secs_f64(),
        send_rate: accepted as f64 / sending.as_secs_f64().max(f64::EPSILON),
        throughput: completed as f64 / span,
        latency: Latency::from_samples(latencies),
        errors: std::mem::take(&mut *shared.errors.lock().expect("errors lock")),
    })
}

/// The permission to send one order: until the count is reached or the duration is up, at the
/// rate if one is set. A tick nobody was free to take waits for the next free sender (tokio's
/// default burst), as requests would queue for a free connection.
struct Tickets {
    issued: AtomicU64,
    count: Option<u64>,
    deadline: Option<Instant>,
    ticker: Option<tokio::sync::Mutex<tokio::time::Interval>>,
}

impl Tickets {
    async fn take(&self) -> bool {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        if self.count.is_some_and(|c| n >= c) || self.past_deadline() {
            return false;
        }
        let Some(ticker) = &self.ticker else {
            return true;
        };
        let tick = async { ticker.lock().await.tick().await };
        match self.deadline {
            // Senders queue for the ticker; none waits for a tick past the deadline.
            Some(deadline) => tokio::time::timeout_at(deadline.into(), tick)
                .await
                .is_ok_and(|_| !self.past_deadline()),
            None => {
                tick.await;
                true
            }
        }
    }

    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// The part of a 202 or a notification the load generator reads.
#[derive(Deserialize)]
struct OrderId {
    order_id: Uuid,
}

/// One request in flight at a time, on a connection of its own, opened when first needed and
/// again after a failure.
async fn sender(target: Arc<http::Target>, tickets: Arc<Tickets>, shared: Arc<Shared>) {
    let mut rng = fastrand::Rng::new();
    let mut connection: Option<http::Connection> = None;
    while tickets.take().await {
        let body: Bytes = serde_json::to_vec(&order::random_order(&mut rng))
            .expect("orders serialise")
            .into();
        shared.sent.fetch_add(1, Ordering::Relaxed);
        let begun = Instant::now();
        let exchange = async {
            if let Some(conn) = &mut connection
                && !conn.ready().await
            {
                connection = None;
            }
            let reused = connection.is_some();
            let conn = match &mut connection {
                Some(conn) => conn,
                None => connection.insert(http::Connection::open(&target).await?),
            };
            match conn.post(&target, body.clone()).await {
                // A kept-alive connection the API closed just as this request went out: it was
                // never written, so it goes once more on a new connection.
                Err(failure) if reused && !failure.written => {
                    let conn = connection.insert(http::Connection::open(&target).await?);
                    conn.post(&target, body).await.map_err(|f| f.error)
                }
                result => result.map_err(|f| f.error),
            }
        };
        let (status, body) = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                connection = None;
                shared.fail(format!("request failed: {e:#}"));
                continue;
            }
            Err(_) => {
                connection = None;
                shared.fail(format!(
                    "request failed: no response in {REQUEST_TIMEOUT:?}"
                ));
                continue;
            }
        };
        if status.as_u16() != 202 {
            shared.fail(format!("{status}: {}", String::from_utf8_lossy(&body)));
            continue;
        }
        match serde_json::from_slice::<OrderId>(&body) {
            Ok(accepted) => shared.accepted(accepted.order_id, begun),
            Err(e) => shared.fail(format!(
                "202 without an order_id ({e}): {}",
                String::from_utf8_lossy(&body)
            )),
        }
    }
}

fn progress(opts: &Options) -> Option<indicatif::ProgressBar> {
    if !opts.progress_bar {
        return None;
    }
    let bar = match opts.count {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let template = if opts.count.is_some() {
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}"
    } else {
        "{spinner} [{elapsed_precise}] sent {pos} {msg}"
    };
    bar.set_style(indicatif::ProgressStyle::with_template(template).expect("valid template"));
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_counts_whether_it_comes_before_or_after_the_202() {
        let shared = Shared::default();
        let (usual, early) = (Uuid::new_v4(), Uuid::new_v4());
        let sent = Instant::now();
        shared.accepted(usual, sent);
        shared.notified(usual);
        shared.notified(early);
        shared.notified(early);
        shared.accepted(early, sent);
        assert_eq!(shared.accepted.load(Ordering::Relaxed), 2);
        assert_eq!(shared.completed.load(Ordering::Relaxed), 2);
        assert_eq!(shared.latencies.lock().expect("lock").len(), 2);
        assert!(
            shared.tracks.lock().expect("lock").is_empty(),
            "nothing left pending"
        );
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::from_samples(samples);
        assert_eq!(
            (l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms),
            (50.0, 95.0, 99.0, 100.0)
        );
        assert_eq!(Latency::from_samples(vec![]), Latency::default());
        let one = Latency::from_samples(vec![Duration::from_millis(7)]);
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
    }
}
