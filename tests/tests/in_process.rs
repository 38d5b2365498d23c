//! Services built in-process: building binds the ports and the test reads them from the value
//! (no log line to parse), then runs the service until its shutdown token is cancelled.

use events::topics;
use platform::config::Env;
use std::time::Duration;
use system_tests::topics::read_all;
use system_tests::{Broker, eventually, order_body};
use tokio_util::sync::CancellationToken;

fn env(broker: &Broker, extra: &[(&str, &str)]) -> Env {
    let mut pairs = vec![("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap.as_str())];
    pairs.extend_from_slice(system_tests::TEST_SERVICE_ENV);
    pairs.extend_from_slice(extra);
    Env::from_pairs(pairs)
}

async fn status(url: String) -> u16 {
    system_tests::http()
        .get(url)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn built_services_report_their_bound_ports_and_stop_on_their_token() {
    let broker = Broker::start(&[(topics::ORDERS, 6), (topics::PAYMENTS, 6)]);
    let shutdown = CancellationToken::new();

    let order_config = order::Config::from_env(&env(&broker, &[])).expect("order config");
    let order = order::Application::build(order_config, &shutdown)
        .await
        .expect("order builds");
    let (order_ops, order_http) = (order.ops_addr(), order.http_addr());
    assert_ne!(order_http.port(), 0, "port 0 became a real port");

    let payment_config =
        payment::Config::from_env(&env(&broker, &[("PAYMENT_GATEWAY_LATENCY_MS", "0")]))
            .expect("payment config");
    let payment = payment::build(payment_config, &shutdown)
        .await
        .expect("payment builds");
    let payment_ops = payment.ops_addr();
    assert_eq!(payment.http_addr(), None, "payment has no API");

    let running = [
        tokio::spawn(order.run_until_stopped(shutdown.clone())),
        tokio::spawn(payment.run_until_stopped(shutdown.clone())),
    ];
    for ops in [order_ops, payment_ops] {
        eventually(&format!("{ops} ready"), Duration::from_secs(60), || async {
            (status(format!("http://{ops}/readyz")).await == 200).then_some(())
        })
        .await;
    }

    let id = system_tests::place_order(
        &format!("http://{order_http}/orders"),
        &order_body(3, 4_200),
        None,
    )
    .await;
    eventually("its payment outcome", Duration::from_secs(30), || async {
        read_all(&broker.bootstrap, topics::PAYMENTS)
            .await
            .iter()
            .any(|r| r.key.as_deref() == Some(id.as_str()))
            .then_some(())
    })
    .await;

    shutdown.cancel();
    for task in running {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("stops within its budget")
            .expect("no panic");
    }
    assert_eq!(
        status(format!("http://{payment_ops}/healthz")).await,
        0,
        "the ops server is gone after the stop"
    );
}
