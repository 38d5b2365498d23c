//! The IoT pipeline against the real broker: readings in, alerts out (once per crossing, cleared
//! with hysteresis), the dashboard's APIs reflecting both, dead letters, alert state across a
//! killed alerting service and a restarted dashboard, and an event-stream client that never reads.

use chrono::Utc;
use events::{SensorReading, topics};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;
use system_tests::sse::SseClient;
use system_tests::topics::{Writer, read_all};
use system_tests::{Broker, Service, eventually, http, procfs};

/// Writes a reading straight to `sensor-readings`; its event id.
async fn write_reading(writer: &Writer, sensor: u32, temperature: f64, humidity: f64) -> String {
    let r = SensorReading::new(sensor, temperature, humidity, Utc::now());
    writer
        .write(
            topics::SENSOR_READINGS,
            &r.key(),
            &serde_json::to_vec(&r).expect("json"),
        )
        .await;
    r.event_id.to_string()
}

/// The alert events on `sensor-alerts`, each distinct event once (a redelivered event must be
/// the identical record, which this checks), by sensor in topic order.
async fn alerts_by_sensor(bootstrap: &str) -> HashMap<u64, Vec<Value>> {
    let mut seen: HashMap<String, Value> = HashMap::new();
    let mut by_sensor: HashMap<u64, Vec<Value>> = HashMap::new();
    for record in read_all(bootstrap, topics::SENSOR_ALERTS).await {
        let v = record.json();
        let id = v["event_id"].as_str().expect("event_id").to_owned();
        if let Some(first) = seen.get(&id) {
            assert_eq!(first, &v, "a republished alert is the identical event");
            continue;
        }
        seen.insert(id, v.clone());
        let sensor = v["sensor_id"].as_u64().expect("sensor_id");
        assert_eq!(record.key.as_deref(), Some(sensor.to_string().as_str()));
        by_sensor.entry(sensor).or_default().push(v);
    }
    by_sensor
}

/// `(event_type, metric, value)` of each alert of one sensor.
fn kinds(alerts: &[Value]) -> Vec<(String, String, f64)> {
    alerts
        .iter()
        .map(|a| {
            (
                a["event_type"].as_str().unwrap().to_owned(),
                a["metric"].as_str().unwrap().to_owned(),
                a["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

async fn wait_for_alerts(bootstrap: &str, sensor: u64, count: usize) -> Vec<Value> {
    eventually(
        &format!("{count} alert events of sensor {sensor}"),
        Duration::from_secs(30),
        || async {
            let mut all = alerts_by_sensor(bootstrap).await;
            all.remove(&sensor).filter(|a| a.len() >= count)
        },
    )
    .await
}

async fn get_json(url: &str) -> Value {
    http()
        .get(url)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json body")
}

/// Polls `url` until its JSON has `len` entries in the array `field`; returns that JSON.
async fn wait_for_len(url: &str, field: &str, len: usize, what: &str) -> Value {
    eventually(what, Duration::from_secs(30), || async {
        let v = get_json(url).await;
        (v[field].as_array().map(Vec::len) == Some(len)).then_some(v)
    })
    .await
}

fn raised(a: &str, metric: &str, v: f64) -> (String, String, f64) {
    (a.to_owned(), metric.to_owned(), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readings_in_alerts_out_once_per_crossing_and_the_apis_show_both() {
    let test = "sensors_flow";
    let broker = Broker::start_system();
    let alerting = Service::start(test, "alerting", &broker, &[]);
    let dashboard = Service::start(test, "dashboard", &broker, &[]);
    alerting.wait_ready().await;
    dashboard.wait_ready().await;
    let writer = Writer::new(&broker.bootstrap);

    // Sensor 1 crosses, stays hot, hovers between 29 and 30 (no clear: hysteresis), recovers.
    for t in [25.0, 31.0, 33.5, 29.5, 30.2, 29.1, 28.5] {
        write_reading(&writer, 1, t, 50.0).await;
    }
    // Sensor 2 stays mild; sensor 3 gets humid and dries out.
    for (t, h) in [(20.0, 50.0), (21.0, 60.0)] {
        write_reading(&writer, 2, t, h).await;
    }
    for h in [50.0, 85.0, 79.0, 70.0] {
        write_reading(&writer, 3, 22.0, h).await;
    }
    // A record that is not a reading is dead-lettered, and the stream moves on.
    writer
        .write(
            topics::SENSOR_READINGS,
            "4",
            b"{\"sensor_id\": 4, \"temperature\": ",
        )
        .await;
    write_reading(&writer, 4, 36.0, 40.0).await;

    let one = wait_for_alerts(&broker.bootstrap, 1, 2).await;
    assert_eq!(
        kinds(&one),
        vec![
            raised("alert_raised", "temperature", 31.0),
            raised("alert_cleared", "temperature", 28.5)
        ]
    );
    assert_eq!(one[0]["alert_id"], one[0]["event_id"]);
    assert_eq!(one[1]["alert_id"], one[0]["alert_id"]);
    assert_eq!(one[1]["threshold"].as_f64(), Some(29.0));
    let three = wait_for_alerts(&broker.bootstrap, 3, 2).await;
    assert_eq!(
        kinds(&three),
        vec![
            raised("alert_raised", "humidity", 85.0),
            raised("alert_cleared", "humidity", 70.0)
        ]
    );
    let four = wait_for_alerts(&broker.bootstrap, 4, 1).await;
    assert_eq!(
        kinds(&four),
        vec![raised("alert_raised", "temperature", 36.0)]
    );
    let dead = read_all(
        &broker.bootstrap,
        &format!("{}.dlq", topics::SENSOR_READINGS),
    )
    .await;
    // Both groups reading the topic dead-letter it, each naming itself.
    let mut groups: Vec<String> = dead
        .iter()
        .map(|d| {
            assert_eq!(d.header("dlq.error.kind").as_deref(), Some("syntax"));
            d.header("dlq.consumer.group").unwrap_or_default()
        })
        .collect();
    groups.sort();
    assert_eq!(groups, vec!["alerting", "dashboard"]);
    assert!(
        !alerts_by_sensor(&broker.bootstrap).await.contains_key(&2),
        "a mild sensor raises nothing"
    );

    // The dashboard: the latest reading of each sensor, and the alerts, open first.
    let readings_url = dashboard.url("http", "/api/readings").await;
    let latest = wait_for_len(
        &readings_url,
        "sensors",
        4,
        "the dashboard to have all four sensors",
    )
    .await;
    let temps: Vec<f64> = latest["sensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["temperature"].as_f64().unwrap())
        .collect();
    assert_eq!(
        temps,
        vec![28.5, 21.0, 22.0, 36.0],
        "by sensor id, each its latest"
    );
    let alerts_url = dashboard.url("http", "/api/alerts").await;
    let alerts = wait_for_len(
        &alerts_url,
        "alerts",
        3,
        "the dashboard to list three alerts",
    )
    .await;
    assert_eq!(alerts["open"], 1);
    let list = alerts["alerts"].as_array().unwrap();
    assert_eq!(list[0]["sensor_id"], 4, "the open alert comes first");
    assert_eq!(list[0]["cleared_at"], Value::Null);
    assert!(list[1..].iter().all(|a| a["cleared_at"].is_string()));
    let open_only = get_json(&format!("{alerts_url}?status=open")).await;
    assert_eq!(open_only["alerts"].as_array().unwrap().len(), 1);
    let bad = http()
        .get(format!("{alerts_url}?status=sideways"))
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.expect("json error");
    assert_eq!(body["error"], "invalid_query");
    // The alerting service lists its open alert too.
    let open = get_json(&alerting.url("http", "/alerts/open").await).await;
    assert_eq!(open["open"].as_array().unwrap().len(), 1);
    assert_eq!(open["open"][0]["sensor_id"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarts_keep_alert_state_and_never_raise_a_second_alert() {
    let test = "sensors_restart";
    let broker = Broker::start_system();
    let mut alerting = Service::start(test, "alerting", &broker, &[]);
    let mut dashboard = Service::start(test, "dashboard", &broker, &[]);
    alerting.wait_ready().await;
    dashboard.wait_ready().await;
    let writer = Writer::new(&broker.bootstrap);

    write_reading(&writer, 5, 32.0, 50.0).await;
    write_reading(&writer, 6, 35.0, 50.0).await;
    let five = wait_for_alerts(&broker.bootstrap, 5, 1).await;
    wait_for_alerts(&broker.bootstrap, 6, 1).await;

    // Killed without a chance to commit: the readings are delivered again after the restart.
    alerting.signal("KILL");
    alerting.wait_exit(Duration::from_secs(10)).await;
    let alerting = Service::start(test, "alerting", &broker, &[]);
    alerting.wait_ready().await;
    // Still hot: the restored state knows the alert is open, so nothing new is raised.
    write_reading(&writer, 5, 33.0, 50.0).await;
    write_reading(&writer, 5, 20.0, 50.0).await;
    let five_after = wait_for_alerts(&broker.bootstrap, 5, 2).await;
    assert_eq!(
        kinds(&five_after),
        vec![
            raised("alert_raised", "temperature", 32.0),
            raised("alert_cleared", "temperature", 20.0)
        ],
        "one alert, raised once, cleared once"
    );
    assert_eq!(
        five_after[0], five[0],
        "the same raise event, not a second alert"
    );
    assert_eq!(five_after[1]["alert_id"], five[0]["alert_id"]);
    let open = get_json(&alerting.url("http", "/alerts/open").await).await;
    let open: Vec<u64> = open["open"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["sensor_id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        open,
        vec![6],
        "sensor 6's alert is still open after the restart"
    );

    // A restarted dashboard rebuilds the alert list from the topic.
    dashboard.signal("TERM");
    dashboard.wait_exit(Duration::from_secs(30)).await;
    let dashboard = Service::start(test, "dashboard", &broker, &[]);
    dashboard.wait_ready().await;
    let alerts_url = dashboard.url("http", "/api/alerts").await;
    let alerts = wait_for_len(
        &alerts_url,
        "alerts",
        2,
        "the restarted dashboard to list both alerts",
    )
    .await;
    assert_eq!(alerts["open"], 1);
    assert_eq!(alerts["alerts"][0]["sensor_id"], 6);
    assert_eq!(alerts["alerts"][1]["sensor_id"], 5);
    assert!(alerts["alerts"][1]["cleared_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_stream_client_that_never_reads_is_dropped_and_costs_no_memory() {
    let test = "sensors_stuck_client";
    let broker = Broker::start_system();
    let dashboard = Service::start(
        test,
        "dashboard",
        &broker,
        &[
            ("DASHBOARD_CLIENT_BUFFER", "8"),
            ("DASHBOARD_REPLAY_BYTES", "1048576"),
        ],
    );
    dashboard.wait_ready().await;
    let addr = dashboard.addr("http").await;
    let sensors = Service::start(
        test,
        "sensor",
        &broker,
        // A rate the debug build keeps up with: a consumer lag would grow the prefetch queue.
        &[("SENSOR_COUNT", "300"), ("SENSOR_RATE", "3000")],
    );
    sensors.wait_ready().await;
    let readings = |n: f64| {
        let dashboard = &dashboard;
        async move {
            eventually(
                &format!("the dashboard to apply {n} readings"),
                Duration::from_secs(60),
                || async {
                    (dashboard.metric("dashboard_readings_total").await >= n).then_some(())
                },
            )
            .await
        }
    };
    readings(15_000.0).await;
    let before = procfs::rss_kib(dashboard.pid()).expect("rss");

    // Connects, asks for the stream, and never reads a byte.
    let mut stuck = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stuck,
        "GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .expect("request");
    eventually(
        "the stuck client to be dropped",
        Duration::from_secs(60),
        || async {
            (dashboard
                .metric("dashboard_sse_clients_dropped_total")
                .await
                >= 1.0)
                .then_some(())
        },
    )
    .await;
    let applied = dashboard.metric("dashboard_readings_total").await;
    readings(applied + 60_000.0).await;
    let after = procfs::rss_kib(dashboard.pid()).expect("rss");
    let stream_bytes_sent = 60_000 * 150 / 1024;
    eprintln!(
        "dashboard RSS {before} KiB before, {after} KiB after {stream_bytes_sent} KiB more of stream"
    );
    assert!(
        after < before + 4 * 1024,
        "RSS grew from {before} KiB to {after} KiB with a client that never reads"
    );
    assert_eq!(dashboard.metric("dashboard_sse_clients").await, 0.0);
    // The server ended the response: what was queued, then the end of the chunked body.
    stuck
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut received = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    while !received.ends_with(b"\r\n0\r\n\r\n") {
        let n = stuck
            .read(&mut buf)
            .expect("the response ends instead of hanging");
        assert!(n > 0, "the connection closed before the response ended");
        received.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"));
}

/// The reading ids in `update` events until `n` have arrived; the last event id.
async fn read_updates(sse: &mut SseClient, n: usize) -> (Vec<String>, String) {
    let mut ids = Vec::new();
    let mut last = String::new();
    while ids.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(20), sse.next())
            .await
            .expect("an event within 20 s")
            .expect("the stream goes on");
        assert_eq!(event.name, "update", "{event:?}");
        let data: Value = serde_json::from_str(&event.data).expect("json");
        for r in data["readings"].as_array().expect("readings") {
            ids.push(r["event_id"].as_str().expect("id").to_owned());
        }
        last = event.id;
    }
    (ids, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_stream_resumes_after_its_last_event_id_without_gaps_or_duplicates() {
    let test = "sensors_resume";
    let broker = Broker::start_system();
    let dashboard = Service::start(test, "dashboard", &broker, &[]);
    dashboard.wait_ready().await;
    let addr = dashboard.addr("http").await;
    let writer = Writer::new(&broker.bootstrap);
    let write = |sensor: u32| write_reading(&writer, sensor, 21.0, 50.0);

    let mut sse = SseClient::connect(addr, "/events", None).await;
    let first = sse.next().await.expect("an event");
    assert_eq!(first.name, "snapshot");
    let mut before = Vec::new();
    for sensor in 1..=5 {
        before.push(write(sensor).await);
    }
    let (seen, last_id) = read_updates(&mut sse, 5).await;
    assert_eq!(seen.len(), 5);
    drop(sse);

    // Written while the client is away.
    let mut during = Vec::new();
    for sensor in 6..=10 {
        during.push(write(sensor).await);
    }
    eventually(
        "the dashboard to apply all ten",
        Duration::from_secs(20),
        || async { (dashboard.metric("dashboard_readings_total").await >= 10.0).then_some(()) },
    )
    .await;
    let mut sse = SseClient::connect(addr, "/events", Some(&last_id)).await;
    let (resumed, _) = read_updates(&mut sse, 5).await;
    let mut all: Vec<String> = seen.iter().chain(&resumed).cloned().collect();
    let mut expected: Vec<String> = before.iter().chain(&during).cloned().collect();
    all.sort();
    expected.sort();
    assert_eq!(
        all, expected,
        "every reading exactly once across the reconnect"
    );

    // An id the dashboard cannot resume from (another run's) gets a fresh snapshot.
    let mut sse = SseClient::connect(addr, "/events", Some("1-999999")).await;
    let event = sse.next().await.expect("an event");
    assert_eq!(event.name, "snapshot");
    let snapshot: Value = serde_json::from_str(&event.data).expect("json");
    assert_eq!(snapshot["sensors"].as_array().map(Vec::len), Some(10));
}
