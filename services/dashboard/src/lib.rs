//! The dashboard service: consumer group `dashboard` on `sensor-readings` and `sensor-alerts`,
//! and one web page with the latest reading of every sensor, charts of the fleet's temperature
//! and humidity over a sliding window, and the alerts, open and cleared, kept live with
//! Server-Sent Events (see [`hub`]). Everything the page needs is served by this binary.
//!
//! The view lives in memory. The alerts are rebuilt from `sensor-alerts` when its partitions are
//! assigned (the topic is read from its start, and events applied before are recognised), so a
//! restarted dashboard still lists the open alerts; the readings fill in again as they arrive.
//!
//! The dashboard is one replica: it shows every partition, and a second member of its group
//! would take half of them.

pub mod hub;
pub mod view;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use events::{SensorAlert, SensorReading, topics};
use futures::StreamExt;
use hub::{Hub, HubConfig, HubMetrics, Update};
use platform::config::{ConfigError, Env};
use platform::http::ApiError;
use platform::kafka::{
    ClientDefaults, HandleError, Handler, KafkaConfig, RecordMeta, Rejection, reader,
};
use platform::{Api, ConsumerService, ServiceConfig};
use prometheus::{
    register_histogram_with_registry, register_int_counter_with_registry,
    register_int_gauge_with_registry,
};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use view::Limits;

pub const SERVICE: &str = "dashboard";

/// How often idle event streams get a keepalive comment.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// The longest reading `sensor-alerts` from its start may take on an assignment.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub service: ServiceConfig,
    /// `HTTP_ADDR`: where the page, its assets, `/events` and `/api/*` are served.
    pub http_addr: SocketAddr,
    /// `DASHBOARD_WINDOW_SECONDS` (default 300): the charts' window;
    /// `DASHBOARD_ALERT_HISTORY` (default 500): alerts kept;
    /// `DASHBOARD_MAX_SENSORS` (default 10000): sensors kept.
    /// `DASHBOARD_CLIENT_BUFFER` (default 64): frames a browser may fall behind before it is
    /// dropped; `DASHBOARD_MAX_CLIENTS` (default 100); `DASHBOARD_REPLAY_BYTES` (default 4 MiB):
    /// recent frames kept for resuming; `DASHBOARD_HOT_TEMPERATURE` (default 30): rows at or
    /// above it are highlighted.
    pub hub: HubConfig,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let positive = |var: &str, default: usize| {
            env.checked(var, default, "a positive whole number", |n: &usize| *n > 0)
        };
        Ok(Self {
            service: ServiceConfig::from_env_with(
                env,
                SERVICE,
                ClientDefaults::RECORDS_FINISH_AT_ONCE,
            )?,
            http_addr: env.addr("HTTP_ADDR", "0.0.0.0:8080")?,
            hub: HubConfig {
                limits: Limits {
                    window_seconds: env.checked(
                        "DASHBOARD_WINDOW_SECONDS",
                        300,
                        "seconds, from 10 to 86400",
                        |s: &i64| (10..=86_400).contains(s),
                    )?,
                    alert_history: positive("DASHBOARD_ALERT_HISTORY", 500)?,
                    max_sensors: positive("DASHBOARD_MAX_SENSORS", 10_000)?,
                },
                client_buffer: positive("DASHBOARD_CLIENT_BUFFER", 64)?,
                max_clients: positive("DASHBOARD_MAX_CLIENTS", 100)?,
                replay_bytes: positive("DASHBOARD_REPLAY_BYTES", 4 << 20)?,
                hot_temperature: env.checked(
                    "DASHBOARD_HOT_TEMPERATURE",
                    30.0,
                    "°C, from -80 to 80",
                    |t: &f64| events::TEMPERATURE_RANGE.contains(t),
                )?,
            },
        })
    }
}

struct Dashboard {
    updates: mpsc::Sender<Update>,
    hub: Arc<Hub>,
    kafka: KafkaConfig,
}

impl Handler for Dashboard {
    type Input = Update;

    fn decode(&self, meta: &RecordMeta, payload: Option<&[u8]>) -> Result<Update, Rejection> {
        if meta.topic == topics::SENSOR_ALERTS {
            events::decode::<SensorAlert>(payload)
                .map(Update::Alert)
                .map_err(Rejection::from)
        } else {
            events::decode::<SensorReading>(payload)
                .map(Update::Reading)
                .map_err(Rejection::from)
        }
    }

    async fn handle(&self, update: &Update, _meta: &RecordMeta) -> Result<(), HandleError> {
        self.updates
            .send(update.clone())
            .await
            .map_err(|_| HandleError::Retriable("the dashboard is stopping".into()))
    }

    /// An alerts partition is read from its start first: the alerts raised before this member
    /// started (or took the partition over) are listed too.
    async fn assigned(&self, topic: &str, partition: i32) -> Result<(), String> {
        if topic != topics::SENSOR_ALERTS {
            return Ok(());
        }
        let config = self.kafka.reader_config();
        let history = tokio::task::spawn_blocking(move || {
            let consumer = reader::reader(&config)?;
            let mut alerts = Vec::new();
            reader::read_to_end(
                &consumer,
                topics::SENSOR_ALERTS,
                partition,
                HISTORY_TIMEOUT,
                |m| {
                    use rdkafka::Message;
                    // An undecodable record is dead-lettered by the consumer; history skips it.
                    if let Ok(a) = events::decode::<SensorAlert>(m.payload()) {
                        alerts.push(Update::Alert(a));
                    }
                },
            )
            .map(|()| alerts)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("reading {}[{partition}]: {e}", topics::SENSOR_ALERTS))?;
        tracing::info!(
            partition,
            alerts = history.len(),
            "alert history read from sensor-alerts"
        );
        self.hub.apply(history);
        Ok(())
    }
}

// --- HTTP -------------------------------------------------------------------------------------

const INDEX_HTML: &str = include_str!("../assets/index.html");

/// The page's assets: name, content type, body. uPlot is MIT-licensed (assets/uPlot.LICENSE).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../assets/app.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("../assets/uPlot.min.css"),
    ),
    (
        "uPlot.LICENSE",
        "text/plain; charset=utf-8",
        include_str!("../assets/uPlot.LICENSE"),
    ),
];

/// Everything comes from this origin: no CDN, no inline script.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(n, ..)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no asset named `{name}`"),
        )
        .into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// For clients that cannot set the `Last-Event-ID` header.
    last_event_id: Option<String>,
}

/// `GET /events`: the event stream (`snapshot`, then `update`s).
async fn events_stream(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(q.last_event_id);
    let (first, live) = hub.subscribe(last.as_deref()).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_clients",
            format!(
                "{} event streams are open, the most this dashboard serves",
                e.0
            ),
        )
    })?;
    let stream = futures::stream::iter(first)
        .chain(tokio_stream::wrappers::ReceiverStream::new(live))
        .map(Ok::<Bytes, Infallible>);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            // Proxies (nginx-style ingresses) must not buffer the stream.
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

fn bad_query(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadingsQuery {
    sensor_id: Option<u32>,
}

/// `GET /api/readings`: the latest reading of every sensor (or of `?sensor_id=`).
async fn readings(
    State(hub): State<Arc<Hub>>,
    query: Result<Query<ReadingsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    Ok(Json(hub.read(|view| match q.sensor_id {
        Some(id) => json!({ "sensors": view.sensor(id).into_iter().collect::<Vec<_>>() }),
        None => json!({ "sensors": view.sensors() }),
    })))
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StatusFilter {
    Open,
    Cleared,
    All,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsQuery {
    status: Option<StatusFilter>,
    sensor_id: Option<u32>,
}

/// `GET /api/alerts`: the alerts, open first, then the most recently changed.
async fn alerts(
    State(hub): State<Arc<Hub>>,
    query: Result<Query<AlertsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let status = q.status.unwrap_or(StatusFilter::All);
    Ok(Json(hub.read(|view| {
        let alerts: Vec<_> = view
            .alerts()
            .into_iter()
            .filter(|a| q.sensor_id.is_none_or(|id| a.sensor_id == id))
            .filter(|a| match status {
                StatusFilter::Open => a.is_open(),
                StatusFilter::Cleared => !a.is_open(),
                StatusFilter::All => true,
            })
            .collect();
        json!({ "open": view.open_alerts(), "alerts": alerts })
    })))
}

fn router(hub: Arc<Hub>) -> Router {
    platform::http::api(
        Router::new()
            .route("/", get(index))
            .route("/assets/{name}", get(asset))
            .route("/events", get(events_stream))
            .route("/api/readings", get(readings))
            .route("/api/alerts", get(alerts))
            .with_state(hub),
        1024,
    )
}

/// Applies what the consumer hands over, a batch at a time, until every sender is gone.
async fn pump(hub: Arc<Hub>, mut updates: mpsc::Receiver<Update>) {
    let mut batch = Vec::with_capacity(1024);
    while updates.recv_many(&mut batch, 1024).await > 0 {
        hub.apply(batch.drain(..));
    }
}

/// Keeps idle streams alive; at shutdown, ends every stream so the HTTP server can stop.
async fn keepalive(hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(KEEPALIVE_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => hub.keepalive(),
        }
    }
    hub.close_all();
}

/// Builds the service: binds its ports (read them back from the value), creates its clients and
/// subscribes; nothing is consumed until `run_until_stopped`.
pub async fn build(
    config: Config,
    shutdown: &CancellationToken,
) -> Result<ConsumerService<impl Handler>, platform::Error> {
    let access = events::topology::of(SERVICE);
    let kafka = config.service.kafka.clone();
    ConsumerService::build(&config.service, access, shutdown, |rt| {
        let registry = rt.metrics.registry();
        let metrics = HubMetrics {
            clients: register_int_gauge_with_registry!(
                "dashboard_sse_clients",
                "Browsers connected to the event stream.",
                registry
            )
            .expect("valid metric"),
            dropped: register_int_counter_with_registry!(
                "dashboard_sse_clients_dropped_total",
                "Event-stream clients dropped because their buffer was full.",
                registry
            )
            .expect("valid metric"),
            frames: register_int_counter_with_registry!(
                "dashboard_sse_frames_total",
                "Update events sent (each to every connected client).",
                registry
            )
            .expect("valid metric"),
            readings: register_int_counter_with_registry!(
                "dashboard_readings_total",
                "Readings applied to the view.",
                registry
            )
            .expect("valid metric"),
            sensors: register_int_gauge_with_registry!(
                "dashboard_sensors",
                "Sensors in the view.",
                registry
            )
            .expect("valid metric"),
            reading_delay: register_histogram_with_registry!(
                "dashboard_reading_delay_seconds",
                "From a reading's timestamp to its broadcast to the browsers.",
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
                ],
                registry
            )
            .expect("valid metric"),
        };
        let hub = Arc::new(Hub::new(config.hub, metrics));
        let (tx, rx) = mpsc::channel(8192);
        tokio::spawn(pump(hub.clone(), rx));
        tokio::spawn(keepalive(hub.clone(), shutdown.clone()));
        let handler = Dashboard {
            updates: tx,
            hub: hub.clone(),
            kafka,
        };
        (
            handler,
            Some(Api {
                addr: config.http_addr,
                router: router(hub),
            }),
        )
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_configurable_and_validated() {
        let base = ("KAFKA_BOOTSTRAP_SERVERS", "k:9092");
        let c = Config::from_env(&Env::from_pairs([base])).expect("defaults");
        assert_eq!(c.hub.limits.window_seconds, 300);
        assert_eq!(c.hub.client_buffer, 64);
        for (var, value) in [
            ("DASHBOARD_WINDOW_SECONDS", "5"),
            ("DASHBOARD_CLIENT_BUFFER", "0"),
            ("DASHBOARD_HOT_TEMPERATURE", "200"),
        ] {
            let err = Config::from_env(&Env::from_pairs([base, (var, value)])).unwrap_err();
            assert!(err.to_string().starts_with(var), "{var}: {err}");
        }
    }

    #[test]
    fn every_asset_the_page_names_is_served() {
        for name in ["app.js", "app.css", "uPlot.iife.min.js", "uPlot.min.css"] {
            assert!(
                INDEX_HTML.contains(&format!("/assets/{name}")),
                "index.html links {name}"
            );
            assert!(ASSETS.iter().any(|(n, ..)| *n == name), "{name} is served");
        }
    }
}
