//! State that survives restarts: notification's de-duplication window and inventory's stock
//! live in state stores restored from their changelogs, so a member killed mid-stream and
//! restarted neither tells a customer twice nor resets its stock, even when every record it saw
//! before the kill is delivered again afterwards.

use events::{PaymentProcessed, PaymentStatus, topics};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use system_tests::topics::{Writer, read_all};
use system_tests::{Broker, Service, eventually};
use uuid::Uuid;

fn payment(i: u64) -> PaymentProcessed {
    let now = chrono::Utc::now();
    PaymentProcessed {
        event_id: Uuid::new_v4(),
        event_type: PaymentProcessed::EVENT_TYPE.into(),
        occurred_at: now,
        order_id: Uuid::new_v4(),
        user_id: 1 + i % 50,
        amount: events::Amount::from_cents(1_000 + i as i64),
        currency: "USD".into(),
        status: if i.is_multiple_of(10) {
            PaymentStatus::PaymentFailed
        } else {
            PaymentStatus::PaymentSuccessful
        },
        reason: i.is_multiple_of(10).then(|| "declined".into()),
        order_created_at: now,
    }
}

/// The order ids of the customer messages a notification process logged ("sent").
fn told(service: &Service) -> Vec<String> {
    service
        .logs()
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Payment "))
        })
        .map(|l| l["order_id"].as_str().expect("order_id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notification_killed_mid_stream_never_tells_a_customer_twice() {
    let broker = Broker::start_system();
    let test = "state_notification";
    let env = [("RUST_LOG", "info,notification=debug")];
    let first = Service::start(test, "notification", &broker, &env);
    first.wait_ready().await;
    let writer = Writer::new(&broker.bootstrap);
    let write = async |p: &PaymentProcessed| {
        let payload = serde_json::to_vec(p).expect("json");
        writer
            .write(topics::PAYMENTS, &p.order_id.to_string(), &payload)
            .await;
    };
    let before: Vec<PaymentProcessed> = (0..200).map(payment).collect();
    for p in &before {
        write(p).await;
    }
    eventually("notifications flowing", Duration::from_secs(30), || async {
        (read_all(&broker.bootstrap, topics::NOTIFICATIONS)
            .await
            .len()
            >= 80)
            .then_some(())
    })
    .await;
    first.signal("KILL");
    let second = Service::start(test, "notification", &broker, &env);
    second.wait_ready().await;
    // Every payment event from before the kill comes again (as an upstream redelivery would
    // bring it), then new ones.
    let after: Vec<PaymentProcessed> = (200..300).map(payment).collect();
    for p in before.iter().chain(&after) {
        write(p).await;
    }
    // Each delivery republishes its notification: 200 + 200 + 100 records at least, and one for
    // every payment event.
    eventually(
        "every delivery handled",
        Duration::from_secs(60),
        || async {
            let n = read_all(&broker.bootstrap, topics::NOTIFICATIONS).await;
            let ids: HashSet<String> = n
                .iter()
                .map(|r| {
                    r.json()["payment_event_id"]
                        .as_str()
                        .expect("id")
                        .to_owned()
                })
                .collect();
            (n.len() >= 500 && ids.len() == 300).then_some(())
        },
    )
    .await;

    let mut times: HashMap<String, usize> = HashMap::new();
    for order in told(&first).into_iter().chain(told(&second)) {
        *times.entry(order).or_default() += 1;
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "customers told twice: {twice:?}");
    // The window is remembered before the message is sent, with no I/O between the two, so the
    // kill lost no message either.
    assert_eq!(times.len(), 300, "every customer told once");
    assert!(
        second.metric("notifications_duplicates_total").await >= 200.0,
        "the restarted member recognised the redelivered events from its restored window"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_inventory_killed_mid_stream_continues_its_stock() {
    let broker = Broker::start_system();
    let test = "state_inventory";
    let first = Service::start(test, "inventory", &broker, &[]);
    first.wait_ready().await;
    let writer = Writer::new(&broker.bootstrap);
    for i in 0..60 {
        writer.write_order(1 + i % 10, 1_000).await;
    }
    eventually("inventory flowing", Duration::from_secs(30), || async {
        (read_all(&broker.bootstrap, topics::INVENTORY).await.len() >= 30).then_some(())
    })
    .await;
    first.signal("KILL");
    let second = Service::start(test, "inventory", &broker, &[]);
    second.wait_ready().await;
    // 20 of the first orders again (an upstream redelivery), then 40 new ones.
    for r in read_all(&broker.bootstrap, topics::ORDERS)
        .await
        .iter()
        .take(20)
    {
        let key = r.key.clone().expect("key");
        writer
            .write(topics::ORDERS, &key, r.payload.as_deref().expect("payload"))
            .await;
    }
    for i in 0..40 {
        writer.write_order(1 + i % 10, 1_000).await;
    }
    // Every delivery handled: 60 + 20 + 40 records at least, and an outcome for each order.
    let events = eventually(
        "every delivery handled",
        Duration::from_secs(60),
        || async {
            let e = read_all(&broker.bootstrap, topics::INVENTORY).await;
            let orders: HashSet<String> = e
                .iter()
                .map(|r| r.json()["order_id"].as_str().expect("id").to_owned())
                .collect();
            (e.len() >= 120 && orders.len() == 100).then_some(e)
        },
    )
    .await;
    assert!(
        events
            .iter()
            .all(|r| r.json()["event_type"] == "inventory_reserved"),
        "a thousand units per shard are plenty"
    );
    // An order delivered again gets its first outcome back, identical.
    let mut outcomes: HashMap<String, serde_json::Value> = HashMap::new();
    for r in &events {
        let v = r.json();
        let id = v["order_id"].as_str().expect("id").to_owned();
        if let Some(first) = outcomes.get(&id) {
            assert_eq!(first, &v, "the same outcome for a redelivered order");
        }
        outcomes.insert(id, v);
    }
    let stock: serde_json::Value = system_tests::http()
        .get(second.url("http", "/stock").await)
        .send()
        .await
        .expect("GET /stock")
        .json()
        .await
        .expect("json");
    // Each order is one keyboard and two mice: 100 orders, none reserved twice, none forgotten.
    assert_eq!(stock["reserved"]["SKU-KEYBOARD"], 100, "{stock}");
    assert_eq!(stock["reserved"]["SKU-MOUSE"], 200, "{stock}");
}

/// A changelog with fewer partitions than the store's input cannot hold the state of the others:
/// taking such a partition over fails with a reason that says so (and is retried, in case the
/// topic is being fixed), instead of a restore that waits for a partition that will never come.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changelog_short_of_partitions_is_named() {
    let broker = Broker::start(&[
        (topics::PAYMENTS, 2),
        (topics::NOTIFICATIONS, 1),
        (topics::NOTIFICATION_SENT_CHANGELOG, 1),
    ]);
    let notification = Service::start("state_short_changelog", "notification", &broker, &[]);
    // Partition 0 has its changelog partition and is taken over; its restore runs beside
    // partition 1's failing one, and may end after it.
    let reason = eventually(
        "notification to name the missing changelog partition and restore partition 0",
        Duration::from_secs(60),
        || async {
            let restored = notification
                .logged("state restored")
                .iter()
                .any(|l| l["partition"] == 0);
            notification
                .logged("partition setup failed; retrying before taking records")
                .iter()
                .filter(|l| l["partition"] == 1)
                .find_map(|l| l["reason"].as_str().map(str::to_owned))
                .filter(|_| restored)
        },
    )
    .await;
    assert!(
        reason.contains("notification-sent-changelog[1] does not exist")
            && reason.contains("as many partitions as its input topic"),
        "{reason}"
    );
}
