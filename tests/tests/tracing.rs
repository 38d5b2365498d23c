//! One order is one trace: HTTP → Kafka → every service, exported over OTLP/gRPC; with export off,
//! the trace context still crosses every hop and reaches the logs.

use std::time::Duration;
use system_tests::otlp::Span;
use system_tests::{Broker, Collector, Service, Stack, eventually, order_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_order_is_one_trace_from_http_through_kafka_to_every_service() {
    let broker = Broker::start_system();
    let collector = Collector::start().await;
    let stack = Stack::start(
        "tracing",
        &broker,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint),
            ("PAYMENT_GATEWAY_LATENCY_MS", "1"),
            // Per-record lines are DEBUG; the trace id must be on them when they are on.
            ("RUST_LOG", "info,payment=debug"),
        ],
    )
    .await;
    let order_id = stack.place_order(&order_body(18, 12_050)).await;

    let find = |spans: &[Span], service: &str, name: &str| -> Option<Span> {
        spans
            .iter()
            .find(|s| s.service == service && s.name == name)
            .cloned()
    };
    let http = eventually("the POST /orders span", Duration::from_secs(30), || async {
        find(&collector.spans(), "order", "POST /orders")
    })
    .await;
    assert_eq!(http.kind, Span::KIND_SERVER);
    // Fields recorded after a span starts go only to the exporter (`telemetry::record`).
    assert_eq!(
        http.attributes
            .get("http.response.status_code")
            .map(String::as_str),
        Some("202")
    );
    assert!(
        http.parent_span_id.is_empty(),
        "the HTTP span is the root of the trace"
    );
    // Each service exports on its own schedule (a consumer's span can arrive before the span
    // of the producer it follows): wait until every expected span is in.
    let expected = [
        ("order", "orders publish"),
        ("payment", "orders process"),
        ("payment", "payments publish"),
        ("notification", "payments process"),
        ("inventory", "orders process"),
    ];
    let trace: Vec<Span> = eventually(
        "every span of the order's trace",
        Duration::from_secs(30),
        || async {
            let trace: Vec<Span> = collector
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == http.trace_id)
                .collect();
            expected
                .iter()
                .all(|(service, name)| find(&trace, service, name).is_some())
                .then_some(trace)
        },
    )
    .await;

    let child_of = |parent: &Span, service: &str, name: &str, kind: i32| -> Span {
        let span = find(&trace, service, name)
            .unwrap_or_else(|| panic!("no `{name}` span from {service} in {trace:#?}"));
        assert_eq!(
            span.parent_span_id, parent.span_id,
            "`{name}` ({service}) is a child of `{}`",
            parent.name
        );
        assert_eq!(span.kind, kind, "`{name}` kind");
        assert_eq!(
            span.attributes.get("messaging.system").map(String::as_str),
            Some("kafka")
        );
        span
    };
    let orders_publish = child_of(&http, "order", "orders publish", Span::KIND_PRODUCER);
    assert_eq!(
        orders_publish.attributes["messaging.destination.name"],
        "orders"
    );
    assert_eq!(
        orders_publish.attributes["messaging.kafka.message.key"],
        order_id
    );
    for field in [
        "messaging.destination.partition.id",
        "messaging.kafka.offset",
    ] {
        let value = orders_publish.attributes.get(field);
        assert!(
            value.is_some_and(|v| v.parse::<i64>().is_ok_and(|n| n >= 0)),
            "`orders publish` records where the broker put the order: {field} = {value:?}"
        );
    }
    let orders_process = child_of(
        &orders_publish,
        "payment",
        "orders process",
        Span::KIND_CONSUMER,
    );
    assert_eq!(
        orders_process.attributes["messaging.consumer.group.name"],
        "payment"
    );
    assert_eq!(
        orders_process.attributes["messaging.operation.type"],
        "process"
    );
    assert_eq!(orders_process.attributes["outcome"], "processed");
    let payments_publish = child_of(
        &orders_process,
        "payment",
        "payments publish",
        Span::KIND_PRODUCER,
    );
    assert_eq!(
        payments_publish.attributes["messaging.destination.name"],
        "payments"
    );
    let payments_process = child_of(
        &payments_publish,
        "notification",
        "payments process",
        Span::KIND_CONSUMER,
    );
    assert_eq!(
        payments_process.attributes["messaging.destination.name"],
        "payments"
    );
    // Inventory's consumer hangs off the same publish, in its own group.
    let inventory = child_of(
        &orders_publish,
        "inventory",
        "orders process",
        Span::KIND_CONSUMER,
    );
    assert_eq!(
        inventory.attributes["messaging.consumer.group.name"],
        "inventory"
    );

    // The payment service's (DEBUG) log line for this order carries the same trace id.
    let line = stack
        .payment
        .logged("payment processed")
        .into_iter()
        .find(|l| l["order_id"] == order_id.as_str())
        .expect("payment log line");
    assert_eq!(line["trace_id"], http.trace_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_placed_inside_a_callers_trace_continues_that_trace() {
    let broker = Broker::start(&[(events::topics::ORDERS, 6)]);
    let collector = Collector::start().await;
    let order = Service::start(
        "tracing_caller",
        "order",
        &broker,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint)],
    );
    order.wait_ready().await;
    let (trace_id, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    system_tests::place_order(
        &order.url("http", "/orders").await,
        &order_body(7, 2_500),
        Some(&format!("00-{trace_id}-{caller_span}-01")),
    )
    .await;
    let span = eventually("the POST /orders span", Duration::from_secs(30), || async {
        collector
            .spans()
            .into_iter()
            .find(|s| s.service == "order" && s.name == "POST /orders")
    })
    .await;
    assert_eq!(span.trace_id, trace_id, "the caller's trace continues");
    assert_eq!(span.parent_span_id, caller_span, "under the caller's span");
}

/// Without an exporter, spans keep only their ids, and those still do the work: a caller's trace
/// id crosses HTTP, `orders`, payment and `payments`, each hop with a span id of its own, and it is
/// on the per-record log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_export_off_the_trace_still_crosses_kafka_and_reaches_the_logs() {
    use events::topics;
    use system_tests::topics::read_all;
    let broker = Broker::start(&[(topics::ORDERS, 2), (topics::PAYMENTS, 2)]);
    let test = "tracing_export_off";
    let order = Service::start(test, "order", &broker, &[]);
    let payment = Service::start(
        test,
        "payment",
        &broker,
        &[
            ("PAYMENT_GATEWAY_LATENCY_MS", "0"),
            ("RUST_LOG", "info,payment=debug"),
        ],
    );
    order.wait_ready().await;
    payment.wait_ready().await;
    // Not sampled: a new trace would be marked sampled, so the flag shows the caller's was kept.
    let (trace_id, caller_span) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let order_id = system_tests::place_order(
        &order.url("http", "/orders").await,
        &order_body(3, 1_999),
        Some(&format!("00-{trace_id}-{caller_span}-00")),
    )
    .await;

    let line = eventually(
        "payment's line for the order",
        Duration::from_secs(30),
        || async {
            payment
                .logged("payment processed")
                .into_iter()
                .find(|l| l["order_id"] == order_id.as_str())
        },
    )
    .await;
    assert_eq!(line["trace_id"], trace_id, "{line}");

    let parent_of = |traceparent: Option<String>| -> (String, String) {
        let tp = traceparent.expect("a traceparent header");
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!(
            parts[3], "00",
            "the caller's sampling decision is kept: {tp}"
        );
        (parts[1].to_owned(), parts[2].to_owned())
    };
    let placed = read_all(&broker.bootstrap, topics::ORDERS)
        .await
        .into_iter()
        .find(|r| r.key.as_deref() == Some(order_id.as_str()))
        .expect("the order in `orders`");
    let (orders_trace, orders_span) = parent_of(placed.header("traceparent"));
    assert_eq!(orders_trace, trace_id);
    assert_ne!(orders_span, caller_span, "the order service's own span");
    let paid = read_all(&broker.bootstrap, topics::PAYMENTS)
        .await
        .into_iter()
        .find(|r| r.key.as_deref() == Some(order_id.as_str()))
        .expect("the payment in `payments`");
    let (payments_trace, payments_span) = parent_of(paid.header("traceparent"));
    assert_eq!(payments_trace, trace_id);
    assert!(
        payments_span != orders_span && payments_span != caller_span,
        "payment's own span: {payments_span}"
    );
    let logged_span = line["span_id"].as_str().expect("span_id");
    assert_eq!(logged_span.len(), 16, "{line}");
    assert!(
        logged_span != caller_span && logged_span != orders_span,
        "the line is in payment's own span: {line}"
    );
    // Without an exporter no publish span is made: the record carries the process span itself.
    assert_eq!(payments_span, logged_span, "{line}");
}
