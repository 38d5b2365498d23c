//! `/readyz` tells the truth: 503 with a reason until the consumer has joined its group, 200 after,
//! with or without partitions (a standby beyond the partition count is ready, so a rolling update
//! never hangs); the assignment is shown beside the checks. `/healthz` answers throughout; a bad
//! configuration stops the service with one line.

use events::topics;
use std::collections::HashSet;
use std::time::Duration;
use system_tests::topics::{Writer, read_all};
use system_tests::{Broker, Service, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_is_503_until_the_member_joins_its_group_then_200_with_its_assignment() {
    let broker = Broker::start(&[(topics::ORDERS, 6), (topics::PAYMENTS, 6)]);
    let payment = Service::start("readiness", "payment", &broker, &[]);
    // Joining a group takes seconds; the first answer comes long before the join can.
    let (status, body) = payment.readyz().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("group: not yet a member of group `payment`")),
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
    assert_eq!(body["checks"]["group"], "ok");
    assert_eq!(body["checks"]["broker"], "ok");
    assert_eq!(body["assignment"]["count"], 6, "{body}");
    assert!(
        payment
            .metrics()
            .await
            .contains("kafka_consumer_assigned_partitions 6")
    );
    assert!(!payment.logged("partitions assigned").is_empty());
}

/// A rolling update with `maxSurge: 1, maxUnavailable: 0` when replicas equal partitions: the surge
/// pod must become ready without a partition, or `kubectl rollout status` hangs; then the old pod's
/// SIGTERM hands its partition over, and no order is left unprocessed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_surge_member_beyond_the_partitions_is_a_ready_standby_and_takes_over_on_sigterm() {
    let broker = Broker::start(&[(topics::ORDERS, 2), (topics::PAYMENTS, 2)]);
    let test = "readiness_rollout";
    let env = [("PAYMENT_GATEWAY_LATENCY_MS", "0")];
    let mut old = Service::start(test, "payment", &broker, &env);
    let kept = Service::start(test, "payment", &broker, &env);
    holds(&old, 1.0).await;
    holds(&kept, 1.0).await;

    let writer = Writer::new(&broker.bootstrap);
    let mut written = HashSet::new();
    for i in 0..100 {
        written.insert(writer.write_order(1 + i % 50, 1_000).await);
    }

    let surge = Service::start(test, "payment", &broker, &env);
    surge.wait_ready().await;
    let (status, body) = surge.readyz().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["assignment"]["count"], 0, "{body}");
    assert!(
        body["assignment"]["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("standby")),
        "{body}"
    );

    old.signal("TERM");
    assert!(old.wait_exit(Duration::from_secs(30)).await.success());
    holds(&surge, 1.0).await;
    for i in 0..100 {
        written.insert(writer.write_order(1 + i % 50, 1_000).await);
    }
    let outcomes = eventually(
        "a payment outcome for every order",
        Duration::from_secs(60),
        || async {
            let seen: HashSet<String> = read_all(&broker.bootstrap, topics::PAYMENTS)
                .await
                .iter()
                .filter_map(|r| r.key.clone())
                .collect();
            written.is_subset(&seen).then_some(seen)
        },
    )
    .await;
    assert_eq!(
        outcomes.len(),
        written.len(),
        "no outcome for an unknown order"
    );
    assert!(
        surge.metric("kafka_records_consumed_total").await >= 1.0,
        "the standby took over and processed records"
    );
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

async fn holds(s: &Service, n: f64) {
    let what = format!(
        "{} holding {n} partition(s) ({})",
        s.name,
        s.log_path().display()
    );
    eventually(&what, Duration::from_secs(60), || async {
        (s.metric("kafka_consumer_assigned_partitions").await == n).then_some(())
    })
    .await;
}
