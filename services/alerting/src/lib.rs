//! The alerting service: consumer group `alerting` on `sensor-readings`. Raises `alert_raised`
//! on `sensor-alerts` when a sensor crosses a threshold and `alert_cleared` when it falls back
//! (the rules, with their hysteresis and redelivery handling, are in [`rules`]).
//!
//! The open alerts are a state store (`platform::state`) partitioned like `sensor-readings` and
//! kept in `alerting-state-changelog`: a restarted or rebalanced member restores them before its
//! first reading, so it neither forgets an open alert nor raises it again. `GET /alerts/open`
//! lists the open alerts this member holds.

pub mod rules;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use events::{AlertEventType, Metric, SensorAlert, SensorReading, topics};
use platform::config::{ConfigError, Env};
use platform::kafka::{ClientDefaults, HandleError, Handler, Publisher, RecordMeta, Rejection};
use platform::state::Store;
use platform::{Api, ConsumerService, ServiceConfig};
use prometheus::{
    IntCounterVec, IntGaugeVec, register_int_counter_vec_with_registry,
    register_int_gauge_vec_with_registry,
};
use rules::{Outcome, Rules, SensorState, Threshold};
use serde_json::json;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "alerting";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub service: ServiceConfig,
    /// `HTTP_ADDR`: where `GET /alerts/open` is served.
    pub http_addr: SocketAddr,
    /// `ALERT_TEMPERATURE_THRESHOLD` (°C, default 30) and `ALERT_TEMPERATURE_HYSTERESIS` (°C,
    /// default 1); `ALERT_HUMIDITY_THRESHOLD` (%, default 80) and `ALERT_HUMIDITY_HYSTERESIS`
    /// (%, default 5).
    pub rules: Rules,
}

/// One metric's threshold from `raise_var` and its hysteresis from `hysteresis_var`.
fn threshold(
    env: &Env,
    (raise_var, hysteresis_var): (&str, &str),
    default: Threshold,
    range: std::ops::RangeInclusive<f64>,
) -> Result<Threshold, ConfigError> {
    let raise = env.checked(
        raise_var,
        default.raise,
        &format!("a number from {} to {}", range.start(), range.end()),
        |v: &f64| range.contains(v),
    )?;
    let hysteresis = env.checked(
        hysteresis_var,
        default.hysteresis,
        "a number from 0 to 20",
        |v: &f64| (0.0..=20.0).contains(v),
    )?;
    Ok(Threshold { raise, hysteresis })
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Rules::default();
        Ok(Self {
            service: ServiceConfig::from_env_with(
                env,
                SERVICE,
                ClientDefaults::RECORDS_FINISH_AT_ONCE,
            )?,
            http_addr: env.addr("HTTP_ADDR", "0.0.0.0:8080")?,
            rules: Rules {
                temperature: threshold(
                    env,
                    (
                        "ALERT_TEMPERATURE_THRESHOLD",
                        "ALERT_TEMPERATURE_HYSTERESIS",
                    ),
                    defaults.temperature,
                    events::TEMPERATURE_RANGE,
                )?,
                humidity: threshold(
                    env,
                    ("ALERT_HUMIDITY_THRESHOLD", "ALERT_HUMIDITY_HYSTERESIS"),
                    defaults.humidity,
                    0.0..=100.0,
                )?,
            },
        })
    }
}

struct Alerting {
    rules: Rules,
    state: Store<SensorState>,
    publisher: Publisher,
    published: IntCounterVec,
    open: IntGaugeVec,
}

impl Alerting {
    /// Sets the open-alert gauge from the partitions held.
    fn recount(&self) {
        let mut counts = [0i64; 2];
        self.state.read_all(|_, entries| {
            for state in entries.values() {
                for metric in state.open.keys() {
                    counts[*metric as usize] += 1;
                }
            }
        });
        for metric in Metric::ALL {
            self.open
                .with_label_values(&[metric.as_str()])
                .set(counts[metric as usize]);
        }
    }
}

impl Handler for Alerting {
    type Input = SensorReading;

    fn decode(
        &self,
        _meta: &RecordMeta,
        payload: Option<&[u8]>,
    ) -> Result<SensorReading, Rejection> {
        events::decode(payload).map_err(Rejection::from)
    }

    async fn handle(&self, reading: &SensorReading, meta: &RecordMeta) -> Result<(), HandleError> {
        let key = reading.key();
        let (events, acks) = self
            .state
            .write(meta.partition, |w| {
                let state = w.get(&key).cloned().unwrap_or_default();
                match self.rules.apply(&state, reading, meta.offset) {
                    Outcome::Unchanged => None,
                    Outcome::Changed(next, events) => {
                        w.put(&key, next);
                        Some((events, true))
                    }
                    // Written again: repairs a change whose changelog write failed.
                    Outcome::Redelivered(events) => {
                        w.put(&key, state);
                        Some((events, false))
                    }
                }
            })
            .map_err(|e| HandleError::Retriable(e.to_string()))?;
        let Some((events, changed)) = events else {
            return Ok(());
        };
        // Durable before published: a crash in between finds the change restored, and the
        // reading's redelivery publishes the same events.
        acks.await
            .map_err(|e| HandleError::Retriable(e.to_string()))?;
        if changed {
            self.recount();
        }
        for alert in &events {
            publish(&self.publisher, alert).await?;
            if changed {
                self.published
                    .with_label_values(&[alert.metric.as_str(), alert.event_type.as_str()])
                    .inc();
                log(alert);
            }
        }
        Ok(())
    }

    async fn assigned(&self, _topic: &str, partition: i32) -> Result<(), String> {
        self.state
            .restore(partition)
            .await
            .map_err(|e| e.to_string())?;
        self.recount();
        Ok(())
    }

    fn revoked(&self, _topic: &str, partition: i32) {
        self.state.release(partition);
        self.recount();
    }
}

async fn publish(publisher: &Publisher, alert: &SensorAlert) -> Result<(), HandleError> {
    let payload = serde_json::to_vec(alert).expect("events serialise");
    publisher
        .publish(
            topics::SENSOR_ALERTS,
            &alert.sensor_id.to_string(),
            &payload,
        )
        .await
        .map(drop)
        .map_err(|e| HandleError::Retriable(e.to_string()))
}

fn log(alert: &SensorAlert) {
    let message = match alert.event_type {
        AlertEventType::AlertRaised => "alert raised",
        AlertEventType::AlertCleared => "alert cleared",
    };
    tracing::info!(
        sensor_id = alert.sensor_id,
        metric = alert.metric.as_str(),
        value = alert.value,
        threshold = alert.threshold,
        alert_id = %alert.alert_id,
        "{message}"
    );
}

async fn open_alerts(State(state): State<Store<SensorState>>) -> Json<serde_json::Value> {
    let mut open = Vec::new();
    state.read_all(|_, entries| {
        for (sensor, s) in entries {
            for (metric, alert) in &s.open {
                open.push(json!({
                    "sensor_id": sensor.parse::<u32>().ok(),
                    "metric": metric,
                    "alert_id": alert.alert_id,
                    "raised_at": alert.raised_at,
                    "value": alert.value,
                }));
            }
        }
    });
    open.sort_by_key(|a| {
        (
            a["sensor_id"].as_u64(),
            a["metric"].as_str().map(str::to_owned),
        )
    });
    Json(json!({ "partitions": state.held(), "open": open }))
}

/// Builds the service: binds its ports (read them back from the value), creates its clients and
/// subscribes; nothing is consumed until `run_until_stopped`.
pub async fn build(
    config: Config,
    shutdown: &CancellationToken,
) -> Result<ConsumerService<impl Handler>, platform::Error> {
    let access = events::topology::of(SERVICE);
    ConsumerService::build(&config.service, access, shutdown, |rt| {
        let state = rt.store("alerting-state", topics::ALERTING_STATE_CHANGELOG);
        let registry = rt.metrics.registry();
        let published = register_int_counter_vec_with_registry!(
            "sensor_alerts_total",
            "Alert events published, by metric and event type (redeliveries not counted).",
            &["metric", "event_type"],
            registry
        )
        .expect("valid metric");
        let open = register_int_gauge_vec_with_registry!(
            "sensor_alerts_open",
            "Open alerts in the partitions this member holds, by metric.",
            &["metric"],
            registry
        )
        .expect("valid metric");
        let router = platform::http::api(
            Router::new()
                .route("/alerts/open", get(open_alerts))
                .with_state(state.clone()),
            1024,
        );
        let handler = Alerting {
            rules: config.rules,
            state,
            publisher: rt.publisher(),
            published,
            open,
        };
        (
            handler,
            Some(Api {
                addr: config.http_addr,
                router,
            }),
        )
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_configurable_and_validated() {
        let base = ("KAFKA_BOOTSTRAP_SERVERS", "k:9092");
        let c = Config::from_env(&Env::from_pairs([base])).expect("defaults");
        assert_eq!(c.rules, Rules::default());
        let c = Config::from_env(&Env::from_pairs([
            base,
            ("ALERT_TEMPERATURE_THRESHOLD", "35.5"),
            ("ALERT_HUMIDITY_HYSTERESIS", "2"),
        ]))
        .expect("valid");
        assert_eq!(c.rules.temperature.raise, 35.5);
        assert_eq!(c.rules.humidity.clear_below(), 78.0);
        let err = Config::from_env(&Env::from_pairs([
            base,
            ("ALERT_HUMIDITY_THRESHOLD", "120"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().starts_with("ALERT_HUMIDITY_THRESHOLD="),
            "{err}"
        );
    }
}
