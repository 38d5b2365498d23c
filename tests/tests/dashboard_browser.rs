//! The dashboard in a real browser (headless Chromium over WebDriver): the page loads from the
//! binary alone, the table and both charts fill from the simulator within seconds, and a reading
//! injected above the threshold makes its alert appear on the page, then clear. The screenshot
//! is saved as `target/system-tests/dashboard_browser/dashboard.png`.

use serde_json::{Value, json};
use std::time::Duration;
use system_tests::browser::Browser;
use system_tests::{Broker, Service, eventually, http, log_dir};

const SENSORS: u64 = 40;
/// Not one of the simulated sensors (1..=40), so only the test's readings move it.
const INJECTED: u64 = 9_999;

/// What the page shows, read from its DOM.
const PAGE_STATE: &str = r#"
    const rows = document.querySelectorAll('#sensor-table tbody tr');
    const alert = (status) => document.querySelector(
        `#alerts li[data-sensor-id="9999"][data-status="${status}"]`);
    const injected = document.querySelector('#sensor-table tr[data-sensor-id="9999"]');
    return {
        connection: document.getElementById('connection').dataset.state,
        rows: rows.length,
        hot_rows: document.querySelectorAll('#sensor-table tr.hot').length,
        temperature_points: +document.getElementById('temperature-chart').dataset.points,
        humidity_points: +document.getElementById('humidity-chart').dataset.points,
        canvases: document.querySelectorAll('.chart canvas').length,
        open_alert: alert('open') ? alert('open').textContent : null,
        cleared_alert: alert('cleared') ? alert('cleared').textContent : null,
        injected_row_hot: injected ? injected.classList.contains('hot') : null,
    };
"#;

async fn post_reading(sensor: &Service, temperature: f64) {
    let response = http()
        .post(sensor.url("http", "/readings").await)
        .json(&json!({"sensor_id": INJECTED, "temperature": temperature, "humidity": 45.0}))
        .send()
        .await
        .expect("post reading");
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_fills_live_and_shows_an_injected_alert_raised_then_cleared() {
    let test = "dashboard_browser";
    let broker = Broker::start_system();
    let alerting = Service::start(test, "alerting", &broker, &[]);
    let dashboard = Service::start(test, "dashboard", &broker, &[]);
    let sensor = Service::start(
        test,
        "sensor",
        &broker,
        &[
            ("SENSOR_COUNT", &SENSORS.to_string()),
            ("SENSOR_INTERVAL_MS", "250"),
        ],
    );
    for s in [&alerting, &dashboard, &sensor] {
        s.wait_ready().await;
    }
    let browser = Browser::start(test, 1400, 1100).await;
    browser
        .client
        .goto(&dashboard.url("http", "/").await)
        .await
        .expect("open the dashboard");
    assert_eq!(
        browser.client.title().await.expect("title"),
        "Sensors · kafka-microservices"
    );

    let state = || async { browser.eval(PAGE_STATE).await };
    let filled = eventually(
        "the table and both charts to fill",
        Duration::from_secs(20),
        || async {
            let s = state().await;
            (s["connection"] == "live"
                && s["rows"].as_u64() == Some(SENSORS)
                && s["temperature_points"].as_u64() >= Some(3)
                && s["humidity_points"].as_u64() >= Some(3))
            .then_some(s)
        },
    )
    .await;
    assert_eq!(filled["canvases"], 2, "{filled}");

    post_reading(&sensor, 36.5).await;
    let raised: Value = eventually(
        "the injected alert to appear",
        Duration::from_secs(15),
        || async {
            let s = state().await;
            (s["open_alert"].is_string() && s["injected_row_hot"] == true).then_some(s)
        },
    )
    .await;
    let text = raised["open_alert"].as_str().unwrap();
    assert!(
        text.contains("Sensor #9999") && text.contains("36.5"),
        "{text}"
    );
    assert!(raised["hot_rows"].as_u64() >= Some(1));
    let shot = log_dir(test).join("dashboard.png");
    browser.screenshot(&shot).await;
    eprintln!("screenshot: {}", shot.display());

    post_reading(&sensor, 21.0).await;
    let cleared = eventually(
        "the injected alert to clear",
        Duration::from_secs(15),
        || async {
            let s = state().await;
            (s["cleared_alert"].is_string() && s["open_alert"].is_null()).then_some(s)
        },
    )
    .await;
    assert_eq!(cleared["injected_row_hot"], false);
    browser
        .screenshot(&log_dir(test).join("dashboard-cleared.png"))
        .await;
    browser.close().await;
}
