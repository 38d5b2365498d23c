//! The stream processor: one consumer group (`stream-processor`) that runs two jobs, with their
//! state in state stores (`platform::state`) restored from compacted changelogs:
//!
//! - **numbers** (the seeds' demo): `input-topic` → `output-topic`, each number squared and
//!   enriched with the running aggregate of its key (count, sum, mean, min, max);
//! - **payment windows**: `payments` is re-keyed by `user_id` into
//!   `stream-processor-payments-by-user-repartition` (so one user's payments meet in one
//!   partition), then counted per user in tumbling one-minute windows by event time; each closed
//!   window goes to `payment-windows`, flagged when it holds enough declines to look like a
//!   stolen card being tested.
//!
//! `GET /state/{key}` answers a key's aggregate and a user's open windows.

pub mod numbers;
pub mod windows;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use events::{PaymentProcessed, topics};
use numbers::{KEYLESS, KeyState, Source, Step};
use platform::config::{ConfigError, Env};
use platform::http::ApiError;
use platform::kafka::{HandleError, Handler, Publisher, RecordMeta, Rejection};
use platform::state::Store;
use platform::{Api, ConsumerService, ServiceConfig, Subscription};
use prometheus::{
    IntCounter, IntCounterVec, register_int_counter_vec_with_registry,
    register_int_counter_with_registry,
};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use tokio_util::sync::CancellationToken;
use windows::{Added, Rules, UserWindows};

pub const SERVICE: &str = "stream-processor";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub service: ServiceConfig,
    /// `HTTP_ADDR`: where `GET /state/{key}` is served.
    pub http_addr: SocketAddr,
    /// `STREAM_WINDOW_GRACE_MS`: how long after its end a window still takes payments.
    pub window_grace_ms: i64,
    /// `STREAM_CARD_TESTING_DECLINES`: declines in one window that flag it.
    pub card_testing_declines: u64,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceConfig::from_env(env, SERVICE)?,
            http_addr: env.addr("HTTP_ADDR", "0.0.0.0:8080")?,
            window_grace_ms: env.checked(
                "STREAM_WINDOW_GRACE_MS",
                10_000,
                "0 to 3600000 milliseconds",
                |ms: &i64| (0..=3_600_000).contains(ms),
            )?,
            card_testing_declines: env.checked(
                "STREAM_CARD_TESTING_DECLINES",
                3,
                "a positive whole number",
                |n: &u64| *n > 0,
            )?,
        })
    }
}

/// A record of any of the group's topics.
pub enum Input {
    Number(f64),
    Payment(PaymentProcessed),
}

struct Metrics {
    late: IntCounter,
    closed: IntCounterVec,
}

struct Processor {
    publisher: Publisher,
    aggregates: Store<KeyState>,
    windows: Store<UserWindows>,
    rules: Rules,
    /// Stream time per partition of the repartition topic, rebuilt on restore.
    stream_time: Mutex<HashMap<i32, i64>>,
    metrics: Metrics,
}

fn retriable(e: impl ToString) -> HandleError {
    HandleError::Retriable(e.to_string())
}

impl Processor {
    async fn number(&self, n: f64, meta: &RecordMeta) -> Result<(), HandleError> {
        let key = meta.key.as_deref().unwrap_or(KEYLESS).to_owned();
        let timestamp = meta
            .timestamp
            .and_then(chrono::DateTime::from_timestamp_millis)
            .unwrap_or_else(Utc::now);
        let source = Source {
            topic: &meta.topic,
            partition: meta.partition,
            offset: meta.offset,
            key: meta.key.as_deref(),
            timestamp,
        };
        let (step, acks) = self
            .aggregates
            .write(meta.partition, |w| {
                let step = numbers::step(w.get(&key).copied(), n, &source);
                if let Step::Apply(state, _) | Step::Replay(state, _) = &step {
                    w.put(&key, *state);
                }
                step
            })
            .map_err(retriable)?;
        acks.await.map_err(retriable)?;
        let output = match step {
            Step::Apply(_, output) => {
                tracing::debug!(
                    key,
                    input = n,
                    result = output.result,
                    count = output.aggregate.count,
                    "number processed"
                );
                output
            }
            Step::Replay(_, output) => output,
            Step::Done => return Ok(()),
        };
        let payload = serde_json::to_vec(&output).expect("events serialise");
        self.publisher
            .publish_with(
                topics::OUTPUT,
                meta.key.as_deref(),
                &payload,
                rdkafka::message::OwnedHeaders::new(),
            )
            .await
            .map_err(retriable)?;
        Ok(())
    }

    /// Stage one: the payment, as it is, keyed by its user.
    async fn rekey(&self, payment: &PaymentProcessed, raw_user: String) -> Result<(), HandleError> {
        let payload = serde_json::to_vec(payment).expect("events serialise");
        self.publisher
            .publish(topics::PAYMENTS_BY_USER, &raw_user, &payload)
            .await
            .map_err(retriable)?;
        Ok(())
    }

    /// Stage two: the user's window, and any window of the partition that closed.
    async fn window(
        &self,
        payment: &PaymentProcessed,
        meta: &RecordMeta,
    ) -> Result<(), HandleError> {
        let user = payment.user_id.to_string();
        let rules = self.rules;
        let t = payment.occurred_at.timestamp_millis();
        let ((added, closed), acks) = self
            .windows
            .write(meta.partition, |w| {
                let mut times = self.stream_time.lock().expect("stream time lock");
                let before = times.get(&meta.partition).copied();
                let mut entry = w.get(&user).cloned().unwrap_or_default();
                let added = rules.add(&mut entry, payment, before.unwrap_or(i64::MIN));
                // Written in every case: see `platform::state` on idempotence.
                w.put(&user, entry);
                let now = before.map_or(t, |b| b.max(t));
                times.insert(meta.partition, now);
                // Windows close only when stream time crosses a window end + grace; a partition
                // just restored is looked over once.
                let crossed = before.is_none_or(|b| {
                    rules.start(now - rules.grace_ms) > rules.start(b - rules.grace_ms)
                });
                let mut closed = Vec::new();
                if crossed {
                    for (user, windows) in w.entries() {
                        for start in rules.closed(windows, now) {
                            closed.push((user.clone(), start, windows.windows[&start].clone()));
                        }
                    }
                }
                (added, closed)
            })
            .map_err(retriable)?;
        acks.await.map_err(retriable)?;
        if added == Added::Late {
            self.metrics.late.inc();
            tracing::debug!(user_id = payment.user_id, occurred_at = %payment.occurred_at, "late payment dropped: its window has closed");
        }
        if closed.is_empty() {
            return Ok(());
        }
        // Results first, then the windows go: a crash in between closes them again, identically.
        for (user, start, window) in &closed {
            let user_id: u64 = user.parse().unwrap_or_default();
            let result = rules.result(user_id, *start, window);
            let flagged = if result.suspected_card_testing {
                "true"
            } else {
                "false"
            };
            if result.suspected_card_testing {
                tracing::warn!(user_id, declined = result.declined, window_start = %result.window_start, "suspected card testing");
            }
            let payload = serde_json::to_vec(&result).expect("events serialise");
            self.publisher
                .publish(topics::PAYMENT_WINDOWS, user, &payload)
                .await
                .map_err(retriable)?;
            self.metrics.closed.with_label_values(&[flagged]).inc();
        }
        let ((), acks) = self
            .windows
            .write(meta.partition, |w| {
                for (user, start, _) in &closed {
                    if let Some(mut entry) = w.get(user).cloned()
                        && entry.windows.remove(start).is_some()
                    {
                        w.put(user, entry);
                    }
                }
            })
            .map_err(retriable)?;
        acks.await.map_err(retriable)
    }
}

impl Handler for Processor {
    type Input = Input;

    fn decode(&self, meta: &RecordMeta, payload: Option<&[u8]>) -> Result<Input, Rejection> {
        if meta.topic == topics::INPUT {
            numbers::parse(payload)
                .map(Input::Number)
                .map_err(|reason| Rejection {
                    kind: "not_a_number",
                    reason,
                })
        } else {
            events::decode(payload)
                .map(Input::Payment)
                .map_err(|e| Rejection {
                    kind: e.kind(),
                    reason: e.to_string(),
                })
        }
    }

    async fn handle(&self, input: &Input, meta: &RecordMeta) -> Result<(), HandleError> {
        match input {
            Input::Number(n) => self.number(*n, meta).await,
            Input::Payment(p) if meta.topic == topics::PAYMENTS => {
                self.rekey(p, p.user_id.to_string()).await
            }
            Input::Payment(p) => self.window(p, meta).await,
        }
    }

    async fn assigned(&self, topic: &str, partition: i32) -> Result<(), String> {
        match topic {
            topics::INPUT => self
                .aggregates
                .restore(partition)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            topics::PAYMENTS_BY_USER => {
                self.windows
                    .restore(partition)
                    .await
                    .map_err(|e| e.to_string())?;
                let latest = self.windows.read(partition, |entries| {
                    entries
                        .into_iter()
                        .flat_map(|e| e.values())
                        .map(|u| u.latest_ms)
                        .max()
                });
                let mut times = self.stream_time.lock().expect("stream time lock");
                match latest {
                    Some(t) => times.insert(partition, t),
                    None => times.remove(&partition),
                };
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn revoked(&self, topic: &str, partition: i32) {
        match topic {
            topics::INPUT => self.aggregates.release(partition),
            topics::PAYMENTS_BY_USER => {
                self.windows.release(partition);
                self.stream_time
                    .lock()
                    .expect("stream time lock")
                    .remove(&partition);
            }
            _ => {}
        }
    }
}

#[derive(Clone)]
struct Stores {
    aggregates: Store<KeyState>,
    windows: Store<UserWindows>,
}

/// `GET /state/{key}`: the key's aggregate (per partition, for keyless records), and, for a
/// user id, the user's open payment windows. 404 when this member holds neither.
async fn state(
    State(stores): State<Stores>,
    Path(key): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut aggregates = Vec::new();
    stores.aggregates.read_all(|partition, entries| {
        if let Some(s) = entries.get(&key) {
            aggregates.push(json!({"partition": partition, "aggregate": s.aggregate, "last_offset": s.last_offset}));
        }
    });
    let mut windows = Vec::new();
    stores.windows.read_all(|partition, entries| {
        if let Some(u) = entries.get(&key) {
            let open: Vec<_> = u
                .windows
                .iter()
                .map(|(start, w)| {
                    json!({
                        "window_start": chrono::DateTime::<Utc>::from_timestamp_millis(*start),
                        "payments": w.payments,
                        "declined": w.declined,
                    })
                })
                .collect();
            windows.push(json!({"partition": partition, "open_windows": open}));
        }
    });
    if aggregates.is_empty() && windows.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_key",
            format!(
                "no state for key `{key}` on this member (held partitions: {:?} of {}, {:?} of {}); another replica may hold it",
                stores.aggregates.held(),
                topics::INPUT,
                stores.windows.held(),
                topics::PAYMENTS_BY_USER
            ),
        ));
    }
    Ok(Json(
        json!({"key": key, "aggregates": aggregates, "payment_windows": windows}),
    ))
}

/// Builds the service: binds its ports (read them back from the value), creates its clients and
/// subscribes; nothing is consumed until `run_until_stopped`.
pub async fn build(
    config: Config,
    shutdown: &CancellationToken,
) -> Result<ConsumerService<impl Handler>, platform::Error> {
    let subscription = Subscription {
        group: "stream-processor",
        topics: &[topics::INPUT, topics::PAYMENTS, topics::PAYMENTS_BY_USER],
        writes: &[
            topics::OUTPUT,
            topics::PAYMENT_WINDOWS,
            topics::AGGREGATES_CHANGELOG,
            topics::WINDOWS_CHANGELOG,
        ],
    };
    ConsumerService::build(&config.service, subscription, shutdown, |rt| {
        let stores = Stores {
            aggregates: rt.store("aggregates", topics::AGGREGATES_CHANGELOG),
            windows: rt.store("payment-windows", topics::WINDOWS_CHANGELOG),
        };
        let registry = rt.metrics.registry();
        let metrics = Metrics {
            late: register_int_counter_with_registry!(
                "stream_late_records_total",
                "Payments dropped because their window had closed.",
                registry
            )
            .expect("valid metric"),
            closed: register_int_counter_vec_with_registry!(
                "stream_windows_closed_total",
                "Payment windows closed and published, by whether they were flagged.",
                &["suspected_card_testing"],
                registry
            )
            .expect("valid metric"),
        };
        let router = platform::http::api(
            Router::new()
                .route("/state/{key}", get(state))
                .with_state(stores.clone()),
            1024,
        );
        let handler = Processor {
            publisher: rt.publisher(),
            aggregates: stores.aggregates,
            windows: stores.windows,
            rules: Rules {
                size_ms: 60_000,
                grace_ms: config.window_grace_ms,
                card_testing_declines: config.card_testing_declines,
            },
            stream_time: Mutex::default(),
            metrics,
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
