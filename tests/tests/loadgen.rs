//! The load generator counts what it sent, what completed and what was lost, from the
//! notifications topic, and fails when orders are lost.

use std::process::Command;
use system_tests::{Broker, Stack};

fn loadgen(
    stack_order_url: &str,
    bootstrap: &str,
    args: &[&str],
) -> (bool, serde_json::Value, String) {
    let json = std::env::temp_dir().join(format!("loadgen-{}.json", uuid::Uuid::new_v4()));
    let exe = std::env::current_exe().expect("exe");
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("loadgen");
    let out = Command::new(bin)
        .args([
            "--order-url",
            stack_order_url,
            "--bootstrap-servers",
            bootstrap,
            "--json",
        ])
        .arg(&json)
        .args(args)
        .output()
        .expect("run loadgen (built with the services)");
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
    let bootstrap = broker.bootstrap.clone();
    let (ok, report, table) = tokio::task::spawn_blocking(move || {
        loadgen(&base, &bootstrap, &["--count", "300", "--rate", "0"])
    })
    .await
    .expect("loadgen task");
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
    let base = stack.order.url("http", "").await;
    let bootstrap = broker.bootstrap.clone();
    let (ok, report, table) = tokio::task::spawn_blocking(move || {
        loadgen(
            &base,
            &bootstrap,
            &["--rate", "100", "--duration-s", "1.5", "--concurrency", "4"],
        )
    })
    .await
    .expect("loadgen task");
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
    let (ok, report, table) = tokio::task::spawn_blocking(move || {
        loadgen(
            &base,
            &broker.bootstrap,
            &["--count", "20", "--rate", "0", "--drain-timeout-s", "2"],
        )
    })
    .await
    .expect("loadgen task");
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

/// An order API that answers every request with a 503 and closes the connection after it.
async fn unavailable_api() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                // The request's head and body (the load generator's orders are small).
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !String::from_utf8_lossy(&request).contains("\r\n\r\n{") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"error":"unavailable","reason":"the broker is away"}"#;
                let response = format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loadgen_reports_refused_and_unreachable_orders_with_their_reason_and_fails() {
    let broker = Broker::start_system();
    // Every answer closes its connection: each sender finds that before its next request and
    // opens a new one, so every order gets the API's own answer.
    let api = unavailable_api().await;
    let bootstrap = broker.bootstrap.clone();
    let (ok, report, table) = tokio::task::spawn_blocking(move || {
        loadgen(
            &api,
            &bootstrap,
            &["--count", "12", "--rate", "0", "--concurrency", "3"],
        )
    })
    .await
    .expect("loadgen task");
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
    let (ok, report, table) = tokio::task::spawn_blocking(move || {
        loadgen(
            &format!("http://127.0.0.1:{port}"),
            &broker.bootstrap,
            &["--count", "4", "--rate", "0"],
        )
    })
    .await
    .expect("loadgen task");
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
