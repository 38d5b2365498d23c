//! The order flow end to end: orders over HTTP reach payment, notification and inventory, with the
//! gateway's deterministic decision, each exactly once.

use events::{OrderCreated, PaymentProcessed, topics};
use futures::future::join_all;
use payment::gateway::Gateway;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use system_tests::topics::read_all;
use system_tests::{Broker, Stack, eventually, order_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_order_reaches_a_notification_with_the_gateways_decision() {
    let broker = Broker::start_system();
    // A low limit makes some orders fail by amount, and the failure rate others by draw.
    let env = [
        ("PAYMENT_FAILURE_RATE", "0.25"),
        ("PAYMENT_LIMIT", "300"),
        ("PAYMENT_GATEWAY_LATENCY_MS", "1"),
        ("KAFKA_SUMMARY_INTERVAL_MS", "500"),
    ];
    let stack = Stack::start("order_flow", &broker, &env).await;

    let placed: Vec<String> = join_all((0..200).map(|i| {
        let stack = &stack;
        async move {
            stack
                .place_order(&order_body(
                    1 + i % 50,
                    1_000 + i64::try_from(i).expect("small") * 250,
                ))
                .await
        }
    }))
    .await;
    assert_eq!(
        placed.iter().collect::<HashSet<_>>().len(),
        200,
        "order ids are unique"
    );

    let sent = eventually("200 notifications", Duration::from_secs(90), || async {
        let n = stack.notifications("limit=1000").await;
        (n["sent_total"].as_u64() >= Some(200)).then_some(n)
    })
    .await;
    assert_eq!(sent["sent_total"], 200, "no order is notified twice");
    assert_eq!(sent["duplicates_skipped"], 0);

    // Every outcome matches the gateway's pure decision for that order.
    let gateway = Gateway {
        failure_rate: 0.25,
        limit: events::Amount::from_cents(30_000),
    };
    let orders: HashMap<String, OrderCreated> = read_all(&broker.bootstrap, topics::ORDERS)
        .await
        .iter()
        .map(|r| {
            let o: OrderCreated = serde_json::from_value(r.json()).expect("order event");
            (o.order_id.to_string(), o)
        })
        .collect();
    assert_eq!(orders.len(), 200);
    let payments = read_all(&broker.bootstrap, topics::PAYMENTS).await;
    assert_eq!(payments.len(), 200, "one payment event per order");
    let mut statuses = HashMap::new();
    for record in &payments {
        let p: PaymentProcessed = serde_json::from_value(record.json()).expect("payment event");
        let order = &orders[&p.order_id.to_string()];
        let expected = gateway.decide(order);
        assert_eq!(
            (p.status, p.reason.clone()),
            (expected.status, expected.reason),
            "order {}",
            p.order_id
        );
        assert_eq!(
            p.event_id,
            payment::gateway::payment_event_id(order.order_id)
        );
        assert_eq!(
            record.key.as_deref(),
            Some(p.order_id.to_string().as_str()),
            "keyed by order id"
        );
        *statuses.entry(p.status).or_insert(0) += 1;
    }
    assert_eq!(statuses.len(), 2, "both outcomes occur: {statuses:?}");

    let notified: HashSet<String> = sent["notifications"]
        .as_array()
        .expect("list")
        .iter()
        .map(|n| n["order_id"].as_str().expect("order_id").to_owned())
        .collect();
    assert_eq!(
        notified,
        placed.into_iter().collect(),
        "every placed order was notified"
    );

    // Inventory consumed every order in its own group.
    let inventory = read_all(&broker.bootstrap, topics::INVENTORY).await;
    let reserved: HashSet<String> = inventory
        .iter()
        .map(|r| r.json()["order_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(reserved.len(), 200);
    let stock: serde_json::Value = system_tests::http()
        .get(stack.inventory.url("http", "/stock").await)
        .send()
        .await
        .expect("GET /stock")
        .json()
        .await
        .expect("json");
    assert_eq!(stock["orders_seen"], 200);
    // 200 orders × (1 keyboard + 2 mice), from the six shards (partitions) of 1000 units each.
    assert_eq!(stock["reserved"]["SKU-KEYBOARD"], 200);
    assert_eq!(stock["reserved"]["SKU-MOUSE"], 400);
    let shards = stock["partitions"].as_object().expect("partitions");
    assert_eq!(shards.len(), 6, "one member holds every shard: {stock}");
    let left: u64 = shards
        .values()
        .filter_map(|levels| levels["SKU-KEYBOARD"].as_u64())
        .map(|units| 1000 - units)
        .sum();
    assert_eq!(left, 200, "the levels agree with the reservations");

    // At INFO, a consumer logs no line per record but a periodic summary that adds up.
    let summaries = eventually(
        "payment's summaries to add up to 200",
        Duration::from_secs(10),
        || async {
            let lines = stack.payment.logged("consumer summary");
            let total: u64 = lines.iter().filter_map(|l| l["processed"].as_u64()).sum();
            (total == 200).then_some(lines)
        },
    )
    .await;
    assert!(
        summaries
            .iter()
            .all(|l| l["topic"] == "orders" && l["lag"].is_i64())
    );
    assert!(
        stack.payment.logs().len() < 100,
        "no line per record at INFO ({} lines)",
        stack.payment.logs().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_requests_get_a_json_reason_and_publish_nothing() {
    let broker = Broker::start_system();
    let order = system_tests::Service::start("invalid_requests", "order", &broker, &[]);
    order.wait_ready().await;
    let url = order.url("http", "/orders").await;
    let client = system_tests::http();
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            client
                .post(&url)
                .header("content-type", "application/json")
                .body("{\"user_id\": 1,"),
            400,
            "malformed_json",
        ),
        (
            client
                .post(&url)
                .json(&serde_json::json!({"user_id": "one"})),
            422,
            "invalid_shape",
        ),
        (
            client.post(&url).json(&order_body(1, -500)),
            422,
            "validation_failed",
        ),
        (
            client
                .post(&url)
                .json(&serde_json::json!({"user_id": 1, "amount": 5, "items": []})),
            422,
            "validation_failed",
        ),
        (client.post(&url).body("{}"), 415, "unsupported_media_type"),
        (
            client
                .post(&url)
                .header("content-type", "application/json")
                .body(vec![b' '; 100 * 1024]),
            413,
            "payload_too_large",
        ),
    ];
    for (request, status, error) in cases {
        let res = request.send().await.expect("request");
        assert_eq!(res.status().as_u16(), status, "expected {error}");
        let body: serde_json::Value = res.json().await.expect("a JSON error body");
        assert_eq!(body["error"], error);
        assert!(
            body["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{body}"
        );
    }
    assert!(
        read_all(&broker.bootstrap, topics::ORDERS).await.is_empty(),
        "nothing was published"
    );
}
