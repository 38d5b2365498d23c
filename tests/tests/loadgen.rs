//! The load generator counts what it sent, what completed and what was lost, from the
//! notifications topic, and fails when orders are lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use system_tests::{Broker, Stack};

/// Runs the load generator against `order_url`: whether it succeeded, its JSON report, its table.
async fn loadgen(
    order_url: &str,
    bootstrap: &str,
    args: &[&str],
) -> (bool, serde_json::Value, String) {
    let json = std::env::temp_dir().join(format!("loadgen-{}.json", uuid::Uuid::new_v4()));
    // Built with the services if this run has not built them yet.
    let out = tokio::process::Command::new(system_tests::service::binary("loadgen"))
        .args([
            "--order-url",
            order_url,
            "--bootstrap-servers",
            bootstrap,
            "--json",
        ])
        .arg(&json)
        .args(args)
        .output()
        .await
        .expect("run loadgen");
    let report = std::fs::read(&json)
        .map(|b| serde_json::from_slice(&b).expect("report json"))
        .unwrap_or_default();
    let _ = std::fs::remove_file(&json);
    (
        out.status.success(),
        report,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loadgen_sees_every_order_completed_and_reports_latency() {
    let broker = Broker::start_system();
    let stack = Stack::start("loadgen", &broker, &[("PAYMENT_GATEWAY_LATENCY_MS", "1")]).await;
    let base = stack.order.url("http", "").await;
    let (ok, report, table) =
        loadgen(&base, &broker.bootstrap, &["--count", "300", "--rate", "0"]).await;
    assert!(ok, "{table}");
    assert_eq!(
        (
            report["sent"].as_u64(),
            report["completed"].as_u64(),
            report["lost"].as_u64()
        ),
        (Some(300), Some(300), Some(0))
    );
    let l = &report["latency"];
    let (p50, p95, p99, max) = (
        l["p50_ms"].as_f64(),
        l["p95_ms"].as_f64(),
        l["p99_ms"].as_f64(),
        l["max_ms"].as_f64(),
    );
    assert!(
        p50 > Some(0.0) && p50 <= p95 && p95 <= p99 && p99 <= max,
        "{l}"
    );
    assert!(report["throughput"].as_f64() > Some(0.0));
    for row in [
        "sent",
        "completed (notified)",
        "lost",
        "throughput",
        "latency p99",
    ] {
        assert!(table.contains(row), "the table shows {row}:\n{table}");
    }

    // At a rate for a duration: never more than the rate allows (a tick every 10 ms, the first
    // at once), and not far fewer unless the machine stalls; every one of them completes.
    let (ok, report, table) = loadgen(
        &base,
        &broker.bootstrap,
        &["--rate", "100", "--duration-s", "1.5", "--concurrency", "4"],
    )
    .await;
    assert!(ok, "{table}");
    let sent = report["sent"].as_u64().unwrap_or_default();
    assert!((75..=151).contains(&sent), "{report}");
    assert_eq!(
        (report["completed"].as_u64(), report["lost"].as_u64()),
        (Some(sent), Some(0)),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loadgen_reports_orders_that_never_complete_as_lost_and_fails() {
    let broker = Broker::start_system();
    let mut stack = Stack::start("loadgen_lost", &broker, &[]).await;
    stack.payment.signal("TERM");
    stack
        .payment
        .wait_exit(std::time::Duration::from_secs(30))
        .await;
    let base = stack.order.url("http", "").await;
    let (ok, report, table) = loadgen(
        &base,
        &broker.bootstrap,
        &["--count", "20", "--rate", "0", "--drain-timeout-s", "2"],
    )
    .await;
    assert!(!ok, "lost orders fail the run:\n{table}");
    assert_eq!(
        (
            report["accepted"].as_u64(),
            report["completed"].as_u64(),
            report["lost"].as_u64()
        ),
        (Some(20), Some(0), Some(20))
    );
}

/// How a fake order API ends a connection after each answer.
#[derive(Clone, Copy)]
enum Close {
    /// Says `Connection: close` and closes.
    Announced,
    /// Closes it this long after answering, without a word, as an idle timeout does.
    Idle(Duration),
    /// Keeps it open for the next request.
    Never,
}

/// A fake order API answering every `POST` with `status` and a body from `body`. Returns its
/// base URL and the number of connections it has accepted.
async fn fake_api(
    status: &'static str,
    body: fn() -> String,
    close: Close,
) -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    // One request: its head, then as many body bytes as it announces.
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        match stream.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().expect("content-length");
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut request_body = vec![0; length];
                    if stream.read_exact(&mut request_body).await.is_err() {
                        return;
                    }
                    let body = body();
                    let connection = match close {
                        Close::Announced => "connection: close\r\n",
                        Close::Idle(_) | Close::Never => "",
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{connection}\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                    match close {
                        Close::Announced => return,
                        Close::Idle(after) => {
                            tokio::time::sleep(after).await;
                            return;
                        }
                        Close::Never => {}
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), connections)
}

fn unavailable() -> String {
    r#"{"error":"unavailable","reason":"the broker is away"}"#.to_owned()
}

fn accepted() -> String {
    format!(r#"{{"order_id":"{}"}}"#, uuid::Uuid::new_v4())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loadgen_keeps_a_connection_per_sender_reopens_closed_ones_and_stops_at_its_deadline() {
    let broker = Broker::start_system();
    // The API never sees a notification through, so every accepted order ends lost (after a
    // short drain): what is checked here is how the orders were sent.

    let (url, connections) = fake_api("202 Accepted", accepted, Close::Never).await;
    let (_, report, _) = loadgen(
        &url,
        &broker.bootstrap,
        &[
            "--count",
            "20",
            "--concurrency",
            "2",
            "--rate",
            "0",
            "--drain-timeout-s",
            "0.2",
        ],
    )
    .await;
    assert_eq!(
        (report["accepted"].as_u64(), report["rejected"].as_u64()),
        (Some(20), Some(0)),
        "{report}"
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "two requests in flight, two kept-alive connections"
    );

    // The API closes each connection 20 ms after answering, without saying so; the next order,
    // 100 ms later, goes out on a new connection and is answered.
    let (url, connections) = fake_api(
        "202 Accepted",
        accepted,
        Close::Idle(Duration::from_millis(20)),
    )
    .await;
    let (_, report, _) = loadgen(
        &url,
        &broker.bootstrap,
        &[
            "--count",
            "5",
            "--concurrency",
            "1",
            "--rate",
            "10",
            "--drain-timeout-s",
            "0.2",
        ],
    )
    .await;
    assert_eq!(
        (report["accepted"].as_u64(), report["rejected"].as_u64()),
        (Some(5), Some(0)),
        "{report}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 5);

    // A low rate with many senders queued for it: sending ends at the deadline, not a tick per
    // queued sender later (32 senders at 2/s would be 16 s).
    let (url, _) = fake_api("202 Accepted", accepted, Close::Never).await;
    let (_, report, _) = loadgen(
        &url,
        &broker.bootstrap,
        &[
            "--rate",
            "2",
            "--duration-s",
            "1",
            "--concurrency",
            "32",
            "--drain-timeout-s",
            "0.2",
        ],
    )
    .await;
    let (sent, elapsed) = (report["sent"].as_u64(), report["elapsed_s"].as_f64());
    assert!(
        sent <= Some(3) && elapsed < Some(8.0),
        "sent {sent:?} in {elapsed:?} s: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loadgen_reports_refused_and_unreachable_orders_with_their_reason_and_fails() {
    let broker = Broker::start_system();
    // Every answer closes its connection: each sender finds that before its next request and
    // opens a new one, so every order gets the API's own answer.
    let (api, _) = fake_api("503 Service Unavailable", unavailable, Close::Announced).await;
    let (ok, report, table) = loadgen(
        &api,
        &broker.bootstrap,
        &["--count", "12", "--rate", "0", "--concurrency", "3"],
    )
    .await;
    assert!(!ok, "refused orders fail the run:\n{table}");
    assert_eq!(
        (
            report["sent"].as_u64(),
            report["accepted"].as_u64(),
            report["rejected"].as_u64()
        ),
        (Some(12), Some(0), Some(12)),
        "{report}"
    );
    let errors = report["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 10, "the first ten are kept: {report}");
    for e in errors {
        let e = e.as_str().unwrap_or_default();
        assert!(
            e.starts_with("503 Service Unavailable: ") && e.contains("the broker is away"),
            "{e}"
        );
    }

    // Nothing listening: every order fails with the address it could not reach.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let (ok, report, table) = loadgen(
        &format!("http://127.0.0.1:{port}"),
        &broker.bootstrap,
        &["--count", "4", "--rate", "0"],
    )
    .await;
    assert!(!ok, "unreachable orders fail the run:\n{table}");
    assert_eq!(
        (report["sent"].as_u64(), report["rejected"].as_u64()),
        (Some(4), Some(4)),
        "{report}"
    );
    let first = report["errors"][0].as_str().unwrap_or_default();
    assert!(
        first.contains(&format!("connect to 127.0.0.1:{port}")),
        "{first}"
    );
}
