//! `/readyz` tells the truth: 503 with a reason until the consumer holds partitions, 200 after;
//! `/healthz` answers throughout; a bad configuration stops the service with one line.

use events::topics;
use std::time::Duration;
use system_tests::{Broker, Service, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_is_503_until_partitions_are_assigned_then_200() {
    let broker = Broker::start(&[(topics::ORDERS, 6), (topics::PAYMENTS, 6)]);
    let payment = Service::start("readiness", "payment", &broker, &[]);
    // Joining a group takes seconds; the first answer comes long before an assignment can.
    let (status, body) = payment.readyz().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("assignment")),
        "{body}"
    );
    let health = system_tests::http()
        .get(payment.url("ops", "/healthz").await)
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(health.status().as_u16(), 200);

    payment.wait_ready().await;
    let (_, body) = payment.readyz().await;
    assert_eq!(body["checks"]["assignment"], "ok");
    assert_eq!(body["checks"]["broker"], "ok");
    assert!(
        payment
            .metrics()
            .await
            .contains("kafka_consumer_assigned_partitions 6")
    );
    assert!(!payment.logged("partitions assigned").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_names_a_missing_topic() {
    let broker = Broker::start_empty();
    let order = Service::start("readiness_topic", "order", &broker, &[]);
    let reason = eventually(
        "a not-ready reason naming the topic",
        Duration::from_secs(30),
        || async {
            let (status, body) = order.readyz().await;
            let reason = body["reason"].as_str().unwrap_or_default().to_owned();
            (status == 503 && reason.contains("orders")).then_some(reason)
        },
    )
    .await;
    assert!(reason.contains("does not exist"), "{reason}");
    broker.create_topics(&[(topics::ORDERS, 6)]);
    order.wait_ready().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_or_malformed_variable_stops_the_service_with_one_line() {
    for (env, var) in [
        (
            vec![("KAFKA_BOOTSTRAP_SERVERS", "")],
            "KAFKA_BOOTSTRAP_SERVERS",
        ),
        (
            vec![("PAYMENT_FAILURE_RATE", "often")],
            "PAYMENT_FAILURE_RATE",
        ),
        (vec![("OPS_ADDR", "everywhere")], "OPS_ADDR"),
    ] {
        let mut payment = Service::start_with("config", "payment", "127.0.0.1:9", &env);
        let status = payment.wait_exit(Duration::from_secs(30)).await;
        assert_eq!(status.code(), Some(78), "exit code for {var}");
        let logs = payment.logs();
        assert_eq!(logs.len(), 1, "one line: {logs:?}");
        let line = logs[0]["stderr"].as_str().expect("the line is on stderr");
        assert!(line.starts_with(&format!("config error: {var}")), "{line}");
    }
}
