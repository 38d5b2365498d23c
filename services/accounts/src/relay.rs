//! The outbox relay: publishes outbox rows to Kafka in id order, at least once, and marks them
//! published in the same transaction that locked them. A broker outage leaves the rows in the
//! outbox until it ends; a crash between publish and commit publishes them again, with the same
//! `event_id`.

use crate::db;
use backon::{BackoffBuilder, ExponentialBuilder};
use opentelemetry::propagation::Extractor;
use platform::kafka::{KafkaConfig, PublishError, Publisher};
use platform::metrics::Metrics;
use prometheus::{IntCounter, IntGauge};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::Producer;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub struct Relay {
    pub pool: PgPool,
    /// The relay's own producer: it is replaced when it fails fatally (below).
    pub publisher: Publisher,
    pub kafka: KafkaConfig,
    pub metrics: Metrics,
    /// Woken after each commit that wrote to the outbox.
    pub wake: Arc<Notify>,
    pub interval: Duration,
    pub batch: i64,
    pub published: IntCounter,
    pub pending: IntGauge,
}

/// The stored trace context, as an extractor for the propagator.
struct Stored<'a>(HashMap<&'static str, &'a str>);

impl Extractor for Stored<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).copied()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().copied().collect()
    }
}

enum Round {
    Published(usize),
    Failed(String),
    /// The broker fenced this producer: it can send nothing more.
    Fenced(String),
}

impl Relay {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = None;
        loop {
            let pause = match self.round().await {
                Round::Published(0) => {
                    backoff = None;
                    self.interval
                }
                Round::Published(n) => {
                    backoff = None;
                    tracing::debug!(events = n, "outbox rows published");
                    continue;
                }
                Round::Fenced(reason) => {
                    tracing::warn!(
                        reason,
                        "the relay's producer was fenced; starting a new one"
                    );
                    self.renew();
                    continue;
                }
                Round::Failed(reason) => {
                    let delay = backoff
                        .get_or_insert_with(|| {
                            ExponentialBuilder::default()
                                .with_min_delay(Duration::from_millis(200))
                                .with_max_delay(Duration::from_secs(5))
                                .with_jitter()
                                .without_max_times()
                                .build()
                        })
                        .next()
                        .unwrap_or(Duration::from_secs(5));
                    tracing::warn!(
                        reason,
                        retry_in_ms = delay.as_millis() as u64,
                        "outbox relay failed; the events stay in the outbox"
                    );
                    delay
                }
            };
            if let Ok(n) = db::unpublished(&self.pool).await {
                self.pending.set(n);
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// After a broker outage longer than the delivery timeout, an idempotent producer's records
    /// have timed out and its sequence numbers no longer line up; the broker may then fence it
    /// (seen with the local broker), and a fenced producer can send nothing more. A new producer,
    /// with a new producer id, takes over; the rows the old one did not send are still in the
    /// outbox.
    fn renew(&mut self) {
        match Publisher::new(&self.kafka, self.metrics.clone()) {
            Ok(p) => self.publisher = p,
            Err(e) => tracing::error!(error = %e, "cannot create a producer; retrying later"),
        }
    }

    /// Publishes one batch and marks it, or leaves it all for the next round.
    async fn round(&self) -> Round {
        let mut tx = match self.pool.begin().await {
            Ok(tx) => tx,
            Err(e) => return Round::Failed(format!("database: {e}")),
        };
        let rows = match db::pending(&mut tx, self.batch).await {
            Ok(rows) => rows,
            Err(e) => return Round::Failed(format!("database: {e}")),
        };
        if rows.is_empty() {
            return Round::Published(0);
        }
        // Started in id order: the producer enqueues each record on its first poll, and
        // join_all polls them in order, so one key's events reach its partition in order.
        let sends = rows.iter().map(|row| {
            let payload = serde_json::to_vec(&row.payload).expect("json");
            let span = tracing::info_span!("relay", otel.name = "outbox relay", outbox.id = row.id);
            let mut fields = HashMap::new();
            if let Some(tp) = &row.trace.traceparent {
                fields.insert("traceparent", tp.as_str());
            }
            if let Some(ts) = &row.trace.tracestate {
                fields.insert("tracestate", ts.as_str());
            }
            let stored = Stored(fields);
            let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&stored));
            platform::telemetry::set_parent(&span, parent);
            let publisher = self.publisher.clone();
            async move {
                publisher
                    .publish_with(&row.topic, Some(&row.key), &payload, OwnedHeaders::new())
                    .await
            }
            .instrument(span)
        });
        let results = futures::future::join_all(sends).await;
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            // Nothing is marked: the whole batch is published again later (duplicates carry the
            // same event_id).
            let _ = tx.rollback().await;
            let fenced = matches!(
                e,
                PublishError::NotAcknowledged {
                    source: KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced),
                    ..
                }
            ) || self.publisher.client().client().fatal_error().is_some();
            return if fenced {
                Round::Fenced(e.to_string())
            } else {
                Round::Failed(e.to_string())
            };
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        if let Err(e) = db::mark_published(&mut tx, &ids).await {
            return Round::Failed(format!("database: {e}"));
        }
        if let Err(e) = tx.commit().await {
            return Round::Failed(format!("database: {e}"));
        }
        self.published.inc_by(ids.len() as u64);
        Round::Published(ids.len())
    }
}
