//! Records that cannot be handled go to `<topic>.dlq` with the reason in their headers, and the
//! records after them are still processed.

use events::topics;
use std::collections::HashSet;
use std::time::Duration;
use system_tests::topics::{Writer, read_all};
use system_tests::{Broker, Stack, eventually, order_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_records_are_dead_lettered_and_the_stream_moves_on() {
    let broker = Broker::start_system();
    let stack = Stack::start(
        "dead_letters",
        &broker,
        &[("PAYMENT_GATEWAY_LATENCY_MS", "1")],
    )
    .await;
    let before = stack.place_order(&order_body(1, 1_000)).await;

    let mut negative = serde_json::to_value(events::OrderCreated::new(
        serde_json::from_value(order_body(18, 12_050)).expect("order"),
        chrono::Utc::now(),
    ))
    .expect("json");
    negative["amount"] = (-120.5).into();
    let poison: [(&str, Vec<u8>, &str); 3] = [
        (
            "malformed",
            b"{\"order_id\": 17, \"amount\": ".to_vec(),
            "syntax",
        ),
        (
            "wrong-shape",
            br#"{"event_type": "order_created", "order_id": [1, 2], "amount": "lots"}"#.to_vec(),
            "shape",
        ),
        (
            "negative",
            serde_json::to_vec(&negative).expect("json"),
            "invalid",
        ),
    ];
    let writer = Writer::new(&broker.bootstrap);
    for (key, payload, _) in &poison {
        writer.write(topics::ORDERS, key, payload).await;
    }
    let after = stack.place_order(&order_body(2, 2_000)).await;

    eventually(
        "both valid orders notified",
        Duration::from_secs(60),
        || async {
            let n = stack.notifications("").await;
            (n["sent_total"] == 2).then_some(())
        },
    )
    .await;
    for id in [&before, &after] {
        assert_eq!(
            stack.notifications(&format!("order_id={id}")).await["notifications"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
    }

    // Both groups on `orders` (payment, inventory) dead-letter each poison record once.
    let dead = eventually("six dead letters", Duration::from_secs(30), || async {
        let dead = read_all(&broker.bootstrap, "orders.dlq").await;
        (dead.len() >= 6).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 6);
    let orders = read_all(&broker.bootstrap, topics::ORDERS).await;
    let mut seen = HashSet::new();
    for record in &dead {
        let key = record.key.clone().expect("the original key is kept");
        let (_, payload, kind) = poison
            .iter()
            .find(|(k, _, _)| *k == key)
            .expect("a poison record");
        assert_eq!(
            record.payload.as_deref(),
            Some(payload.as_slice()),
            "the original bytes are kept"
        );
        assert_eq!(record.header("dlq.error.kind").as_deref(), Some(*kind));
        assert!(record.header("dlq.reason").is_some_and(|r| !r.is_empty()));
        assert_eq!(record.header("dlq.source.topic").as_deref(), Some("orders"));
        let source = orders
            .iter()
            .find(|r| r.key.as_deref() == Some(key.as_str()))
            .expect("the poison record on orders");
        assert_eq!(
            record.header("dlq.source.partition"),
            Some(source.partition.to_string())
        );
        assert_eq!(
            record.header("dlq.source.offset"),
            Some(source.offset.to_string())
        );
        seen.insert((
            key,
            record.header("dlq.consumer.group").expect("group header"),
        ));
    }
    assert_eq!(
        seen.len(),
        6,
        "each group dead-letters each record once: {seen:?}"
    );
    let negative_reason = dead
        .iter()
        .find(|r| r.key.as_deref() == Some("negative"))
        .and_then(|r| r.header("dlq.reason"));
    assert!(
        negative_reason.is_some_and(|r| r.contains("amount")),
        "the reason names the field"
    );
    assert!(
        stack
            .payment
            .metrics()
            .await
            .contains(r#"kafka_records_dead_lettered_total{reason="invalid",topic="orders"} 1"#)
    );
}
