//! The stream processor: one consumer group (`stream-processor`) that runs two jobs, with their
//! state in state stores (`platform::state`) restored from compacted changelogs:
//!
//! - **numbers** (the seeds' demo): `input-topic` → `output-topic`, each number squared and
//!   enriched with the running aggregate of its key (count, sum, mean, min, max);
//! - **payment windows**: `payments` is re-keyed by `user_id` into
//!   `stream-processor-payments-by-user-repartition` (so one user's payments meet in one
//!   partition), then counted per user in tumbling one-minute windows by event time; each closed
//!   window goes to `payment-windows`, flagged when it holds enough declines to look like a
//!   stolen card being tested;
//! - **login windows**: `login-events` (keyed by username already) counted per username in the
//!   same one-minute windows; each closed window goes to `login-windows`, flagged as a suspected
//!   brute-force attempt when it holds enough failed logins.
//!
//! `GET /state/{key}` answers a key's aggregate and its open windows.

pub mod numbers;
pub mod windows;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use events::{LoginEvent, PaymentProcessed, topics};
use numbers::{KEYLESS, KeyState, Source, Step};
use platform::config::{ConfigError, Env};
use platform::http::ApiError;
use platform::kafka::{HandleError, Handler, Publisher, RecordMeta, Rejection};
use platform::state::Store;
use platform::{Api, ConsumerService, ServiceConfig};
use prometheus::{IntCounterVec, register_int_counter_vec_with_registry};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use tokio_util::sync::CancellationToken;
use windows::{Added, Observation, Rules, UserWindows, Window};

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
    /// `STREAM_BRUTE_FORCE_FAILURES`: failed logins of one username in one window that flag it.
    pub brute_force_failures: u64,
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
            brute_force_failures: env.checked(
                "STREAM_BRUTE_FORCE_FAILURES",
                5,
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
    Login(LoginEvent),
}

/// Renders a closed window of a key: the record's payload, and whether the window is flagged.
type Render = fn(&Rules, &str, i64, &Window) -> (Vec<u8>, bool);

/// A windowed count over one input topic: its store, rules, output and metrics.
struct WindowJob {
    /// The `job` label of the metrics.
    name: &'static str,
    store: Store<UserWindows>,
    rules: Rules,
    output: &'static str,
    /// The record published for a closed window, and whether it is flagged.
    render: Render,
    /// Stream time per partition of the input, rebuilt on restore.
    stream_time: Mutex<HashMap<i32, i64>>,
    late: IntCounterVec,
    closed: IntCounterVec,
}

struct Processor {
    publisher: Publisher,
    aggregates: Store<KeyState>,
    payments: WindowJob,
    logins: WindowJob,
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
}

impl WindowJob {
    /// Counts `event` in `key`'s window, then publishes (and drops) any window of the partition
    /// that stream time has closed.
    async fn handle(
        &self,
        publisher: &Publisher,
        key: &str,
        event: &Observation,
        partition: i32,
    ) -> Result<(), HandleError> {
        let rules = self.rules;
        let t = event.at_ms;
        let ((added, closed), acks) = self
            .store
            .write(partition, |w| {
                let mut times = self.stream_time.lock().expect("stream time lock");
                let before = times.get(&partition).copied();
                let mut entry = w.get(key).cloned().unwrap_or_default();
                let added = rules.add(&mut entry, event, before.unwrap_or(i64::MIN));
                // Written in every case: see `platform::state` on idempotence.
                w.put(key, entry);
                let now = before.map_or(t, |b| b.max(t));
                times.insert(partition, now);
                // Windows close only when stream time crosses a window end + grace; a partition
                // just restored is looked over once.
                let crossed = before.is_none_or(|b| {
                    rules.start(now - rules.grace_ms) > rules.start(b - rules.grace_ms)
                });
                let mut closed = Vec::new();
                if crossed {
                    for (key, windows) in w.entries() {
                        for start in rules.closed(windows, now) {
                            closed.push((key.clone(), start, windows.windows[&start].clone()));
                        }
                    }
                }
                (added, closed)
            })
            .map_err(retriable)?;
        acks.await.map_err(retriable)?;
        if added == Added::Late {
            self.late.with_label_values(&[self.name]).inc();
            tracing::debug!(
                job = self.name,
                key,
                at_ms = t,
                "late event dropped: its window has closed"
            );
        }
        if closed.is_empty() {
            return Ok(());
        }
        // Results first, then the windows go: a crash in between closes them again, identically.
        for (key, start, window) in &closed {
            let (payload, flagged) = (self.render)(&rules, key, *start, window);
            if flagged {
                tracing::warn!(
                    job = self.name,
                    key,
                    window_start_ms = start,
                    flagged = window.flagged,
                    "window flagged"
                );
            }
            publisher
                .publish(self.output, key, &payload)
                .await
                .map_err(retriable)?;
            let flag = if flagged { "true" } else { "false" };
            self.closed.with_label_values(&[self.name, flag]).inc();
        }
        let ((), acks) = self
            .store
            .write(partition, |w| {
                for (key, start, _) in &closed {
                    if let Some(mut entry) = w.get(key).cloned()
                        && entry.windows.remove(start).is_some()
                    {
                        w.put(key, entry);
                    }
                }
            })
            .map_err(retriable)?;
        acks.await.map_err(retriable)
    }

    /// Restores a partition's windows and its stream time.
    async fn restore(&self, partition: i32) -> Result<(), String> {
        self.store
            .restore(partition)
            .await
            .map_err(|e| e.to_string())?;
        let latest = self.store.read(partition, |entries| {
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

    fn release(&self, partition: i32) {
        self.store.release(partition);
        self.stream_time
            .lock()
            .expect("stream time lock")
            .remove(&partition);
    }
}

fn payment_window(rules: &Rules, user: &str, start: i64, w: &Window) -> (Vec<u8>, bool) {
    let r = rules.result(user.parse().unwrap_or_default(), start, w);
    (
        serde_json::to_vec(&r).expect("events serialise"),
        r.suspected_card_testing,
    )
}

fn login_window(rules: &Rules, username: &str, start: i64, w: &Window) -> (Vec<u8>, bool) {
    let r = rules.login_result(username, start, w);
    (
        serde_json::to_vec(&r).expect("events serialise"),
        r.suspected_brute_force,
    )
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
        } else if meta.topic == topics::LOGIN_EVENTS {
            events::decode(payload)
                .map(Input::Login)
                .map_err(Rejection::from)
        } else {
            events::decode(payload)
                .map(Input::Payment)
                .map_err(Rejection::from)
        }
    }

    async fn handle(&self, input: &Input, meta: &RecordMeta) -> Result<(), HandleError> {
        match input {
            Input::Number(n) => self.number(*n, meta).await,
            Input::Payment(p) if meta.topic == topics::PAYMENTS => {
                self.rekey(p, p.user_id.to_string()).await
            }
            Input::Payment(p) => {
                let key = p.user_id.to_string();
                self.payments
                    .handle(
                        &self.publisher,
                        &key,
                        &Observation::payment(p),
                        meta.partition,
                    )
                    .await
            }
            Input::Login(e) => match Observation::login(e) {
                Some(o) => {
                    self.logins
                        .handle(&self.publisher, &e.username, &o, meta.partition)
                        .await
                }
                None => Ok(()),
            },
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
            topics::PAYMENTS_BY_USER => self.payments.restore(partition).await,
            topics::LOGIN_EVENTS => self.logins.restore(partition).await,
            _ => Ok(()),
        }
    }

    fn revoked(&self, topic: &str, partition: i32) {
        match topic {
            topics::INPUT => self.aggregates.release(partition),
            topics::PAYMENTS_BY_USER => self.payments.release(partition),
            topics::LOGIN_EVENTS => self.logins.release(partition),
            _ => {}
        }
    }
}

#[derive(Clone)]
struct Stores {
    aggregates: Store<KeyState>,
    payment_windows: Store<UserWindows>,
    login_windows: Store<UserWindows>,
}

/// The open windows of `key` in `store`, per partition held.
fn open_windows(store: &Store<UserWindows>, key: &str) -> Vec<serde_json::Value> {
    let mut found = Vec::new();
    store.read_all(|partition, entries| {
        if let Some(u) = entries.get(key) {
            let open: Vec<_> = u
                .windows
                .iter()
                .map(|(start, w)| {
                    json!({
                        "window_start": chrono::DateTime::<Utc>::from_timestamp_millis(*start),
                        "count": w.count,
                        "flagged": w.flagged,
                    })
                })
                .collect();
            found.push(json!({"partition": partition, "open_windows": open}));
        }
    });
    found
}

/// `GET /state/{key}`: the key's aggregate (per partition, for keyless records), and its open
/// windows as a user id (payments) and as a username (logins). 404 when this member holds none.
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
    let payment_windows = open_windows(&stores.payment_windows, &key);
    let login_windows = open_windows(&stores.login_windows, &key);
    if aggregates.is_empty() && payment_windows.is_empty() && login_windows.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_key",
            format!(
                "no state for key `{key}` on this member (it holds {:?} of {}, {:?} of {}, \
                 {:?} of {}); another replica may hold it",
                stores.aggregates.held(),
                topics::INPUT,
                stores.payment_windows.held(),
                topics::PAYMENTS_BY_USER,
                stores.login_windows.held(),
                topics::LOGIN_EVENTS,
            ),
        ));
    }
    Ok(Json(json!({
        "key": key,
        "aggregates": aggregates,
        "payment_windows": payment_windows,
        "login_windows": login_windows,
    })))
}

/// Builds the service: binds its ports (read them back from the value), creates its clients and
/// subscribes; nothing is consumed until `run_until_stopped`.
pub async fn build(
    config: Config,
    shutdown: &CancellationToken,
) -> Result<ConsumerService<impl Handler>, platform::Error> {
    let access = events::topology::of(SERVICE);
    ConsumerService::build(&config.service, access, shutdown, |rt| {
        let stores = Stores {
            aggregates: rt.store("aggregates", topics::AGGREGATES_CHANGELOG),
            payment_windows: rt.store("payment-windows", topics::WINDOWS_CHANGELOG),
            login_windows: rt.store("login-windows", topics::LOGIN_WINDOWS_CHANGELOG),
        };
        let registry = rt.metrics.registry();
        let late = register_int_counter_vec_with_registry!(
            "stream_late_records_total",
            "Events dropped because their window had closed, by job.",
            &["job"],
            registry
        )
        .expect("valid metric");
        let closed = register_int_counter_vec_with_registry!(
            "stream_windows_closed_total",
            "Windows closed and published, by job and whether they were flagged.",
            &["job", "flagged"],
            registry
        )
        .expect("valid metric");
        let rules = |flag_at| Rules {
            size_ms: 60_000,
            grace_ms: config.window_grace_ms,
            flag_at,
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
            payments: WindowJob {
                name: "payments",
                store: stores.payment_windows,
                rules: rules(config.card_testing_declines),
                output: topics::PAYMENT_WINDOWS,
                render: payment_window,
                stream_time: Mutex::default(),
                late: late.clone(),
                closed: closed.clone(),
            },
            logins: WindowJob {
                name: "logins",
                store: stores.login_windows,
                rules: rules(config.brute_force_failures),
                output: topics::LOGIN_WINDOWS,
                render: login_window,
                stream_time: Mutex::default(),
                late,
                closed,
            },
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
