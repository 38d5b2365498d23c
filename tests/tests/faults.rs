//! Delivery guarantees under faults, against the real broker and binaries: scaling the payment
//! group, killing replicas, a broker that comes late, and poison records of every kind. Each test
//! ends with the delivery audit: exactly one distinct outcome and one notification per order.

use events::topics;
use std::collections::HashSet;
use std::time::Duration;
use system_tests::audit::{audit, audit_ignoring};
use system_tests::service::partitions_shared_by;
use system_tests::topics::{Writer, read_all};
use system_tests::{Broker, Feeder, Service, Stack, eventually, order_body};

const PAYMENT_ENV: &[(&str, &str)] = &[
    ("PAYMENT_GATEWAY_LATENCY_MS", "2"),
    ("PAYMENT_FAILURE_RATE", "0.1"),
];

async fn wait_notified(notification: &Service, count: usize) {
    eventually(
        &format!("{count} notifications sent"),
        Duration::from_secs(240),
        || async {
            (notification.metric("notifications_sent_total").await >= count as f64).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payment_scales_1_to_3_to_2_during_5000_orders_with_one_outcome_each() {
    const ORDERS: usize = 5_000;
    let broker = Broker::start_system();
    let stack = Stack::start("faults_scale", &broker, PAYMENT_ENV).await;
    let feeder = Feeder::start(&stack.order, ORDERS, 8, 200.0).await;

    feeder.reached(ORDERS / 5).await;
    let second = Service::start("faults_scale", "payment", &broker, PAYMENT_ENV);
    let third = Service::start("faults_scale", "payment", &broker, PAYMENT_ENV);
    partitions_shared_by(&[&stack.payment, &second, &third]).await;
    let placed_at_scale_up = feeder.placed();

    feeder.reached(ORDERS * 3 / 5).await;
    let mut stack = stack;
    stack.payment.signal("TERM");
    assert!(
        stack
            .payment
            .wait_exit(Duration::from_secs(30))
            .await
            .success()
    );
    partitions_shared_by(&[&second, &third]).await;
    let placed_at_scale_down = feeder.placed();

    let accepted = feeder.finish().await;
    assert_eq!(accepted.len(), ORDERS);
    assert!(
        placed_at_scale_up < ORDERS && placed_at_scale_down < ORDERS,
        "both changes came mid-stream"
    );
    wait_notified(&stack.notification, ORDERS).await;
    audit(&broker.bootstrap, &accepted)
        .await
        .assert_exactly_once();
    assert_eq!(
        stack.notification.metric("notifications_sent_total").await,
        ORDERS as f64,
        "no customer told twice"
    );
    for replica in [&second, &third] {
        assert!(!replica.logged("partitions assigned").is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_one_payment_and_sigterm_another_mid_stream_loses_nothing() {
    const ORDERS: usize = 3_000;
    let broker = Broker::start_system();
    let stack = Stack::start("faults_kill", &broker, PAYMENT_ENV).await;
    let mut killed = Service::start("faults_kill", "payment", &broker, PAYMENT_ENV);
    let mut stopped = Service::start("faults_kill", "payment", &broker, PAYMENT_ENV);
    partitions_shared_by(&[&stack.payment, &killed, &stopped]).await;

    let feeder = Feeder::start(&stack.order, ORDERS, 8, 200.0).await;
    feeder.reached(ORDERS / 3).await;
    killed.signal("KILL");
    killed.wait_exit(Duration::from_secs(10)).await;
    feeder.reached(ORDERS * 2 / 3).await;
    stopped.signal("TERM");
    assert!(
        stopped.wait_exit(Duration::from_secs(30)).await.success(),
        "SIGTERM drains cleanly"
    );

    let accepted = feeder.finish().await;
    partitions_shared_by(&[&stack.payment]).await;
    wait_notified(&stack.notification, ORDERS).await;
    let report = audit(&broker.bootstrap, &accepted).await;
    report.assert_exactly_once();
    assert_eq!(
        stack.notification.metric("notifications_sent_total").await,
        ORDERS as f64,
        "no customer told twice"
    );
    // What a SIGKILL costs: the records processed since the last commit were processed again.
    let skipped = stack
        .notification
        .metric("notifications_duplicates_total")
        .await;
    println!("redelivered payment events recognised by notification: {skipped}");
    assert_eq!(
        skipped as usize, report.duplicate_payment_records,
        "every duplicate outcome was recognised"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_started_before_the_broker_become_ready_when_it_appears() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let bootstrap = format!("127.0.0.1:{port}");
    let test = "faults_late_broker";
    let services: Vec<Service> = ["order", "payment", "notification", "inventory"]
        .iter()
        .map(|name| Service::start_with(test, name, &bootstrap, PAYMENT_ENV))
        .collect();
    for s in &services {
        let reason = eventually(
            &format!("{} to report the broker", s.name),
            Duration::from_secs(30),
            || async {
                let (status, body) = s.readyz().await;
                let reason = body["reason"].as_str().unwrap_or_default().to_owned();
                (status == 503 && reason.contains("broker unreachable")).then_some(reason)
            },
        )
        .await;
        assert!(reason.starts_with("broker: "), "{}: {reason}", s.name);
        let health = system_tests::http()
            .get(s.url("ops", "/healthz").await)
            .send()
            .await
            .expect("healthz");
        assert_eq!(
            health.status().as_u16(),
            200,
            "{} is alive while it waits",
            s.name
        );
    }

    let broker = Broker::start_on(port);
    broker.create_system_topics();
    for s in &services {
        s.wait_ready().await;
    }
    let order_url = services[0].url("http", "/orders").await;
    let id = system_tests::place_order(&order_url, &order_body(7, 4_200), None).await;
    wait_notified(&services[2], 1).await;
    audit(&broker.bootstrap, &HashSet::from([id]))
        .await
        .assert_exactly_once();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_records_of_every_kind_are_dead_lettered_between_valid_orders() {
    let broker = Broker::start_system();
    let stack = Stack::start("faults_poison", &broker, PAYMENT_ENV).await;
    let writer = Writer::new(&broker.bootstrap);

    let order_json = serde_json::to_value(events::OrderCreated::new(
        serde_json::from_value(order_body(1, 1_000)).expect("order"),
        chrono::Utc::now(),
    ))
    .expect("json");
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = order_json.clone();
        f(&mut v);
        Some(serde_json::to_vec(&v).expect("json"))
    };
    let huge = format!(
        "{{\"event_type\": \"order_created\", \"padding\": \"{}\"}}",
        "x".repeat(512 * 1024)
    );
    // (key, payload, expected dlq.error.kind)
    let poison: Vec<(&str, Option<Vec<u8>>, &str)> = vec![
        (
            "invalid-utf8",
            Some(vec![0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
            "syntax",
        ),
        (
            "truncated-json",
            Some(br#"{"event_type": "order_created", "order_id": "0b8f"#.to_vec()),
            "syntax",
        ),
        (
            "not-an-object",
            Some(b"[1, 2, 3]".to_vec()),
            "missing_event_type",
        ),
        ("json-null", Some(b"null".to_vec()), "missing_event_type"),
        ("empty", Some(Vec::new()), "empty"),
        ("tombstone", None, "empty"),
        (
            "unknown-event-type",
            with(&|v| v["event_type"] = "order_shipped".into()),
            "unknown_event_type",
        ),
        (
            "event-type-not-a-string",
            with(&|v| v["event_type"] = 42.into()),
            "missing_event_type",
        ),
        (
            "wrong-types",
            with(&|v| v["amount"] = "a lot".into()),
            "shape",
        ),
        (
            "missing-field",
            with(&|v| drop(v.as_object_mut().map(|o| o.remove("order_id")))),
            "shape",
        ),
        (
            "bad-uuid",
            with(&|v| v["order_id"] = "not-a-uuid".into()),
            "shape",
        ),
        ("huge", Some(huge.into_bytes()), "shape"),
        (
            "negative-amount",
            with(&|v| v["amount"] = (-12.5).into()),
            "invalid",
        ),
        (
            "no-items",
            with(&|v| v["items"] = serde_json::json!([])),
            "invalid",
        ),
        (
            "zero-quantity",
            with(&|v| v["items"][0]["quantity"] = 0.into()),
            "invalid",
        ),
        (
            "sub-cent-amount",
            with(&|v| v["amount"] = 0.001.into()),
            "shape",
        ),
    ];

    let mut accepted = HashSet::new();
    for (i, (key, payload, _)) in poison.iter().enumerate() {
        accepted.insert(writer.write_order(i as u64 + 1, 1_000 + i as i64).await);
        writer
            .write_opt(topics::ORDERS, key, payload.as_deref())
            .await;
    }
    // Poison for the notification service too, on `payments`.
    writer
        .write(topics::PAYMENTS, "payments-garbage", b"\x00\x01garbage")
        .await;
    writer
        .write(
            topics::PAYMENTS,
            "payments-wrong-event",
            br#"{"event_type": "order_created"}"#,
        )
        .await;
    accepted.insert(writer.write_order(99, 1_099).await);

    wait_notified(&stack.notification, accepted.len()).await;
    let injected = HashSet::from([
        "payments-garbage".to_owned(),
        "payments-wrong-event".to_owned(),
    ]);
    audit_ignoring(&broker.bootstrap, &accepted, &injected)
        .await
        .assert_exactly_once();

    // Each poison record is dead-lettered once by each group on `orders` (payment, inventory).
    let expected = 2 * poison.len();
    let dead = eventually(
        "every poison record dead-lettered",
        Duration::from_secs(60),
        || async {
            let dead = read_all(&broker.bootstrap, "orders.dlq").await;
            (dead.len() >= expected).then_some(dead)
        },
    )
    .await;
    assert_eq!(dead.len(), expected);
    for (key, payload, kind) in &poison {
        let copies: Vec<_> = dead
            .iter()
            .filter(|r| r.key.as_deref() == Some(*key))
            .collect();
        let groups: HashSet<String> = copies
            .iter()
            .filter_map(|r| r.header("dlq.consumer.group"))
            .collect();
        assert_eq!(
            groups,
            HashSet::from(["payment".to_owned(), "inventory".to_owned()]),
            "{key}"
        );
        for r in copies {
            assert_eq!(
                r.header("dlq.error.kind").as_deref(),
                Some(*kind),
                "{key}: {:?}",
                r.header("dlq.reason")
            );
            assert!(
                r.header("dlq.reason").is_some_and(|s| !s.is_empty()),
                "{key} has a reason"
            );
            assert_eq!(
                r.payload.as_deref(),
                payload
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .or(payload.as_deref()),
                "{key} keeps its bytes"
            );
        }
    }
    let dead_payments = read_all(&broker.bootstrap, "payments.dlq").await;
    let keys: HashSet<_> = dead_payments.iter().filter_map(|r| r.key.clone()).collect();
    assert_eq!(
        keys,
        HashSet::from([
            "payments-garbage".to_owned(),
            "payments-wrong-event".to_owned()
        ])
    );
    let counted = stack
        .payment
        .metric("kafka_records_dead_lettered_total")
        .await;
    assert_eq!(
        counted,
        poison.len() as f64,
        "payment counts what it dead-lettered"
    );
}

/// SIGKILL under saturating load, with hundreds of records in flight in the killed member: the
/// offsets it committed never pass a record whose outcome was not yet published, and after the
/// survivors take over, no order has two different outcomes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_with_many_records_in_flight_never_commits_past_an_unfinished_record() {
    const ORDERS: usize = 20_000;
    let broker = Broker::start_system();
    // Gateway times from 20 ms to 1 s: records finish far out of order, so an offset stored for
    // a finished record while an earlier one still runs would be caught by the check below. The
    // long tail also keeps records in flight when the writer (sharing two cores with every
    // service and the broker) is slower than the members.
    let env = [
        ("PAYMENT_GATEWAY_LATENCY_MS", "20"),
        ("PAYMENT_GATEWAY_JITTER_MS", "1000"),
        ("PAYMENT_FAILURE_RATE", "0.1"),
    ];
    let stack = Stack::start("faults_kill_in_flight", &broker, &env).await;
    let mut victim = Service::start("faults_kill_in_flight", "payment", &broker, &env);
    partitions_shared_by(&[&stack.payment, &victim]).await;

    let writing = {
        let bootstrap = broker.bootstrap.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            let writer = Writer::new(&bootstrap);
            futures::stream::iter(0..ORDERS)
                .map(|i| writer.write_order(1 + i as u64 % 100, 1_000 + i as i64 % 300))
                .buffer_unordered(256)
                .collect::<HashSet<String>>()
                .await
        })
    };
    let in_flight = eventually(
        "the victim mid-stream with many records in flight",
        Duration::from_secs(120),
        || async {
            let done = victim.metric("payments_processed_total").await;
            let in_flight = victim.metric("kafka_consumer_in_flight_records").await;
            (done >= 1_000.0 && in_flight >= 100.0).then_some(in_flight)
        },
    )
    .await;
    victim.signal("KILL");
    victim.wait_exit(Duration::from_secs(10)).await;
    println!("killed a payment member holding {in_flight} records in flight");

    // Before the survivor takes the victim's partitions over (a session timeout away), every
    // committed offset must stand only on records whose outcome is already in `payments`.
    let committed =
        system_tests::topics::committed(&broker.bootstrap, "payment", topics::ORDERS).await;
    let decided: HashSet<String> = read_all(&broker.bootstrap, topics::PAYMENTS)
        .await
        .iter()
        .filter_map(|r| r.key.clone())
        .collect();
    let orders = read_all(&broker.bootstrap, topics::ORDERS).await;
    let mut covered = 0;
    for record in &orders {
        if committed
            .get(&record.partition)
            .is_some_and(|&c| record.offset < c)
        {
            covered += 1;
            let id = record.key.clone().expect("orders are keyed");
            assert!(
                decided.contains(&id),
                "offset {} of orders[{}] is committed (up to {:?}) but order {id} has no outcome",
                record.offset,
                record.partition,
                committed.get(&record.partition)
            );
        }
    }
    assert!(covered > 0, "something was committed before the kill");
    println!("{covered} committed records checked against their outcomes");

    let accepted = writing.await.expect("writer task");
    assert_eq!(accepted.len(), ORDERS);
    wait_notified(&stack.notification, ORDERS).await;
    let report = audit(&broker.bootstrap, &accepted).await;
    report.assert_exactly_once();
    println!(
        "redelivered after the kill: {} identical payment outcomes",
        report.duplicate_payment_records
    );
}
