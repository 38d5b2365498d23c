//! The notification service: consumer group `notification` on `payments`. "Sends" the customer
//! message (a structured log line, as the original demo printed it), records it as
//! `notification_sent` on `notifications`, keeps the recent ones at `GET /notifications`, and never
//! sends twice for a payment event still in its window.
//!
//! The window (payment event id → when it was first notified) is a state store
//! (`platform::state`) partitioned like `payments` and kept in `notification-sent-changelog`, so
//! a restarted or rebalanced member restores it before its first record and remembers what was
//! sent before the restart.

mod outbox;

pub use outbox::{Outbox, message_for, notification};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use events::{PaymentProcessed, topics};
use platform::config::{ConfigError, Env};
use platform::kafka::{HandleError, Handler, Publisher, RecordMeta, Rejection};
use platform::state::Store;
use platform::{Api, ConsumerService, ServiceConfig};
use prometheus::{
    IntCounter, IntCounterVec, register_int_counter_vec_with_registry,
    register_int_counter_with_registry,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const SERVICE: &str = "notification";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub service: ServiceConfig,
    /// `HTTP_ADDR`: where `GET /notifications` is served.
    pub http_addr: SocketAddr,
    /// `NOTIFICATION_DEDUP_WINDOW`: how many recent payment events are remembered, per partition
    /// of `payments`, to avoid sending twice.
    pub dedup_window: usize,
    /// `NOTIFICATION_HISTORY`: how many sent notifications `GET /notifications` keeps.
    pub history: usize,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceConfig::from_env(env, SERVICE)?,
            http_addr: env.addr("HTTP_ADDR", "0.0.0.0:8080")?,
            dedup_window: env.checked(
                "NOTIFICATION_DEDUP_WINDOW",
                100_000,
                "a positive whole number",
                |n: &usize| *n > 0,
            )?,
            history: env.checked(
                "NOTIFICATION_HISTORY",
                1_000,
                "a positive whole number",
                |n: &usize| *n > 0,
            )?,
        })
    }
}

/// What the window remembers of a payment event: when its notification was first sent.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Sent {
    sent_at: DateTime<Utc>,
}

struct Notifier {
    outbox: Arc<Mutex<Outbox>>,
    window: Store<Sent>,
    window_len: usize,
    publisher: Publisher,
    sent: IntCounterVec,
    duplicates: IntCounter,
}

impl Handler for Notifier {
    type Input = PaymentProcessed;

    fn decode(
        &self,
        _meta: &RecordMeta,
        payload: Option<&[u8]>,
    ) -> Result<PaymentProcessed, Rejection> {
        events::decode(payload).map_err(Rejection::from)
    }

    async fn handle(
        &self,
        payment: &PaymentProcessed,
        meta: &RecordMeta,
    ) -> Result<(), HandleError> {
        let key = payment.event_id.to_string();
        let now = Utc::now();
        // Seen before (in this window, restored across restarts): the first send time, and the
        // entry is written again (see `platform::state` on idempotence). New: remembered first,
        // durably, then sent, so that no crash can make it be sent twice.
        let (first, acks) = self
            .window
            .write(meta.partition, |w| {
                let first = w.get(&key).map(|s| s.sent_at);
                w.put(
                    &key,
                    Sent {
                        sent_at: first.unwrap_or(now),
                    },
                );
                if first.is_none() {
                    w.evict_to(self.window_len, |_| false);
                }
                first
            })
            .map_err(|e| HandleError::Retriable(e.to_string()))?;
        if let Err(err) = acks.await {
            if first.is_none() {
                // Not durable, and not sent: the retry must take it as new again.
                self.window.discard(meta.partition, &key);
            }
            return Err(HandleError::Retriable(err.to_string()));
        }
        let sent = notification(payment, first.unwrap_or(now));
        if first.is_none() {
            self.sent
                .with_label_values(&[payment.status.as_str()])
                .inc();
            tracing::debug!(
                order_id = %sent.order_id,
                user_id = sent.user_id,
                status = payment.status.as_str(),
                channel = %sent.channel,
                "{}",
                sent.message
            );
            self.outbox.lock().expect("outbox lock").sent(sent.clone());
        } else {
            self.duplicates.inc();
            self.outbox.lock().expect("outbox lock").duplicate();
            tracing::debug!(event_id = %payment.event_id, order_id = %payment.order_id, "duplicate payment event; notification already sent");
        }
        // Published on every delivery: if the first publish was lost with a crash, this is its retry,
        // and downstream sees the identical record.
        let payload = serde_json::to_vec(&sent).expect("events serialise");
        self.publisher
            .publish(topics::NOTIFICATIONS, &sent.order_id.to_string(), &payload)
            .await
            .map_err(|e| HandleError::Retriable(e.to_string()))?;
        Ok(())
    }

    async fn assigned(&self, _topic: &str, partition: i32) -> Result<(), String> {
        self.window
            .restore(partition)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn revoked(&self, _topic: &str, partition: i32) {
        self.window.release(partition);
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    order_id: Option<Uuid>,
    limit: Option<usize>,
}

async fn list(
    State(outbox): State<Arc<Mutex<Outbox>>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, platform::http::ApiError> {
    let Query(q) = query.map_err(|e| {
        platform::http::ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            e.body_text(),
        )
    })?;
    let outbox = outbox.lock().expect("outbox lock");
    let notifications = outbox.recent(q.order_id, q.limit.unwrap_or(100));
    Ok(Json(json!({
        "sent_total": outbox.sent_total(),
        "duplicates_skipped": outbox.duplicates(),
        "notifications": notifications,
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
        let outbox = Arc::new(Mutex::new(Outbox::new(config.history)));
        let window = rt.store("notification-sent", topics::NOTIFICATION_SENT_CHANGELOG);
        let registry = rt.metrics.registry();
        let sent = register_int_counter_vec_with_registry!(
            "notifications_sent_total",
            "Customer notifications sent, by payment status.",
            &["status"],
            registry
        )
        .expect("valid metric");
        let duplicates = register_int_counter_with_registry!(
            "notifications_duplicates_total",
            "Payment events seen again and not notified twice.",
            registry
        )
        .expect("valid metric");
        let router = platform::http::api(
            Router::new()
                .route("/notifications", get(list))
                .with_state(outbox.clone()),
            1024,
        );
        let handler = Notifier {
            publisher: rt.publisher(),
            outbox,
            window,
            window_len: config.dedup_window,
            sent,
            duplicates,
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
