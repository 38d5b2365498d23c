//! The system-test harness: a real Kafka-protocol broker and the built service binaries, started
//! as processes, plus the probes the tests look through (HTTP, topic readers, an OTLP receiver).
//!
//! Everything a test needs it starts itself: the broker binary is installed by the project's own
//! script if missing, and the service binaries are built on first use.

pub mod audit;
pub mod broker;
pub mod browser;
pub mod deploy;
pub mod otlp;
pub mod postgres;
pub mod procfs;
pub mod proxy;
pub mod secure;
pub mod service;
pub mod sse;
pub mod topics;

pub use broker::Broker;
pub use otlp::Collector;
pub use postgres::Postgres;
pub use service::{Feeder, Service, Stack};

use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Every topic of the system, dead-letter topics included, as `events::topics` defines them and
/// the chart and `make run` create them.
pub fn system_topics() -> Vec<(String, i32, events::topics::Cleanup)> {
    events::topics::with_dead_letters(platform::kafka::dead_letter_topic)
}

/// The settings every service gets in the tests (besides its bootstrap servers): ports 0, a 6 s
/// session timeout (the local broker's first assignment takes about half of it), budgets that
/// agree with it, and the short-wait fetch profile (the local broker may hold a waiting fetch for
/// its whole wait).
pub const TEST_SERVICE_ENV: &[(&str, &str)] = &[
    ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
    // The drain must end inside the session timeout, and outputs settle inside the drain.
    ("KAFKA_DRAIN_TIMEOUT_MS", "5000"),
    ("KAFKA_DELIVERY_TIMEOUT_MS", "5000"),
    ("KAFKA_FETCH_WAIT_MAX_MS", "10"),
    ("OPS_ADDR", "127.0.0.1:0"),
    ("HTTP_ADDR", "127.0.0.1:0"),
];

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// Runs `cmd` and returns its output; panics with `what` and the command's stderr unless it
/// succeeded.
pub(crate) fn succeed(mut cmd: std::process::Command, what: &str) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `scripts/install-tools.sh <what>` (pinned, idempotent) and returns `.tools/bin`.
pub fn install_tools(what: &str) -> PathBuf {
    let status = std::process::Command::new("bash")
        .arg(root().join("scripts/install-tools.sh"))
        .arg(what)
        .status()
        .expect("run scripts/install-tools.sh");
    assert!(status.success(), "scripts/install-tools.sh {what} failed");
    root().join(".tools/bin")
}

/// Where a test's service logs go: `target/system-tests/<test>/`, emptied on its first use in a run.
pub fn log_dir(test: &str) -> PathBuf {
    static CLEARED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let dir = root().join("target").join("system-tests").join(test);
    let mut cleared = CLEARED.lock().expect("log dir lock");
    if !cleared.iter().any(|t| t == test) {
        let _ = std::fs::remove_dir_all(&dir);
        cleared.push(test.to_owned());
    }
    std::fs::create_dir_all(&dir).expect("log dir");
    dir
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`. Waiting for a
/// condition, not for a time: the interval only bounds how often the condition is asked.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_every(what, timeout, Duration::from_millis(100), check).await
}

/// [`eventually`], asking every `interval`: for when the moment the condition turns true is
/// itself measured.
pub async fn eventually_every<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(interval).await;
    }
}

/// A plain HTTP client for the services' APIs.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// Places one order with `POST` to `url` (the order service's `/orders`), inside a caller's trace
/// when `traceparent` is given; asserts that it was accepted (202) and returns its `order_id`.
pub async fn place_order(url: &str, body: &serde_json::Value, traceparent: Option<&str>) -> String {
    let mut request = http().post(url).json(body);
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let res = request.send().await.expect("POST /orders");
    assert_eq!(res.status().as_u16(), 202, "order refused");
    let body: serde_json::Value = res.json().await.expect("json body");
    body["order_id"].as_str().expect("order_id").to_owned()
}

/// A valid order body.
pub fn order_body(user_id: u64, cents: i64) -> serde_json::Value {
    serde_json::json!({
        "user_id": user_id,
        "amount": cents as f64 / 100.0,
        "items": [{"sku": "SKU-KEYBOARD", "quantity": 1}, {"sku": "SKU-MOUSE", "quantity": 2}],
    })
}
