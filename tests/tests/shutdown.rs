//! Graceful shutdown loses nothing: SIGTERM to payment in the middle of a stream, and every order
//! still reaches a notification once a replacement starts.

use events::topics;
use futures::StreamExt;
use std::collections::HashSet;
use std::time::Duration;
use system_tests::topics::read_all;
use system_tests::{Broker, Service, Stack, eventually, order_body};

const ORDERS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payment_sigterm_mid_stream_loses_no_order() {
    let broker = Broker::start_system();
    let env = [("PAYMENT_GATEWAY_LATENCY_MS", "10")];
    let mut stack = Stack::start("shutdown", &broker, &env).await;

    // Orders keep arriving while payment is stopped and replaced.
    let placing = {
        let url = stack.order.url("http", "/orders").await;
        tokio::spawn(async move {
            let client = system_tests::http();
            futures::stream::iter(0..ORDERS)
                .map(|i| {
                    let (client, url) = (client.clone(), url.clone());
                    async move {
                        let res = client
                            .post(url)
                            .json(&order_body(1 + i as u64 % 20, 1_000))
                            .send()
                            .await
                            .expect("POST");
                        assert_eq!(res.status().as_u16(), 202);
                        res.json::<serde_json::Value>().await.expect("json")["order_id"]
                            .as_str()
                            .expect("id")
                            .to_owned()
                    }
                })
                .buffer_unordered(4)
                .collect::<Vec<_>>()
                .await
        })
    };

    eventually(
        "payment to be mid-stream",
        Duration::from_secs(60),
        || async {
            let sent = stack.notifications("limit=0").await["sent_total"]
                .as_u64()
                .unwrap_or(0);
            (sent >= 50).then_some(())
        },
    )
    .await;
    stack.payment.signal("TERM");
    let status = stack.payment.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "payment exits cleanly on SIGTERM: {status:?}"
    );
    for step in [
        "stopped polling; draining lanes",
        "offsets committed",
        "left the consumer group",
        "producer flushed",
        "shutdown complete",
    ] {
        assert!(
            !stack.payment.logged(step).is_empty(),
            "drain step `{step}` logged"
        );
    }

    let decided_before_restart = read_all(&broker.bootstrap, topics::PAYMENTS).await.len();
    assert!(
        decided_before_restart < ORDERS,
        "the stop came mid-stream ({decided_before_restart} decided)"
    );

    stack.payment = Service::start("shutdown", "payment", &broker, &env);
    let placed: HashSet<String> = placing.await.expect("placing task").into_iter().collect();
    assert_eq!(placed.len(), ORDERS);

    let n = eventually("every order notified", Duration::from_secs(120), || async {
        let n = stack.notifications(&format!("limit={ORDERS}")).await;
        (n["sent_total"].as_u64() >= Some(ORDERS as u64)).then_some(n)
    })
    .await;
    let notified: HashSet<String> = n["notifications"]
        .as_array()
        .expect("list")
        .iter()
        .map(|x| x["order_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(notified, placed, "no order lost");
    assert_eq!(
        n["sent_total"].as_u64(),
        Some(ORDERS as u64),
        "none notified twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payment_stops_within_its_drain_budget_when_the_broker_is_gone() {
    let broker = Broker::start(&[(topics::ORDERS, 6), (topics::PAYMENTS, 6)]);
    let mut payment = Service::start(
        "shutdown_no_broker",
        "payment",
        &broker,
        &[("PAYMENT_GATEWAY_LATENCY_MS", "1")],
    );
    payment.wait_ready().await;
    let writer = system_tests::topics::Writer::new(&broker.bootstrap);
    for i in 0..20 {
        writer.write_order(1 + i, 1_000).await;
    }
    // Offsets are stored but not yet all committed when the broker goes.
    eventually("20 payments", Duration::from_secs(30), || async {
        (payment.metric("payments_processed_total").await == 20.0).then_some(())
    })
    .await;
    drop(broker);
    let started = std::time::Instant::now();
    payment.signal("TERM");
    let status = payment.wait_exit(Duration::from_secs(60)).await;
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "drained in {:?}, within the 20 s budget",
        started.elapsed()
    );
}
