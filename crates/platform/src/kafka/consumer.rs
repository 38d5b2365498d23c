//! The at-least-once consume loop.
//!
//! For each record: extract the trace context from its headers, open a `<topic> process` span,
//! decode it, hand it to the service's [`Handler`], and only when the handler's output has been
//! acknowledged store the record's offset (committed in the background and on shutdown). A record
//! that cannot be decoded, or that the handler rejects, is copied to `<topic>.dlq` with the reason in
//! its headers, and its offset is stored once the dead letter is acknowledged. Retriable failures are
//! retried with backoff and never skipped, so nothing is lost; handlers are idempotent, so
//! redelivery after a crash or a rebalance is harmless.

use super::producer::text_header;
use super::{KafkaConfig, Publisher, propagation};
use crate::http::{Gate, Readiness};
use crate::metrics::Metrics;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Dead-letter header names.
pub mod headers {
    pub const REASON: &str = "dlq.reason";
    pub const ERROR_KIND: &str = "dlq.error.kind";
    pub const SOURCE_TOPIC: &str = "dlq.source.topic";
    pub const SOURCE_PARTITION: &str = "dlq.source.partition";
    pub const SOURCE_OFFSET: &str = "dlq.source.offset";
    pub const CONSUMER_GROUP: &str = "dlq.consumer.group";
}

/// Where a record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
}

/// Why a record goes to the dead-letter topic: a short kind for labels, and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandleError {
    /// A dependency failed (the broker did not acknowledge, a database was down): try again.
    Retriable(String),
    /// The record can never be handled: dead-letter it and move on.
    Rejected(Rejection),
}

/// What a service does with the records of one topic.
pub trait Handler: Send + Sync + 'static {
    type Input: Clone + Send + Sync;

    /// Turns the payload into the service's input, or says why it cannot.
    fn decode(&self, payload: Option<&[u8]>) -> Result<Self::Input, Rejection>;

    /// Does the work, including publishing (and awaiting) any output. Must be idempotent: the same
    /// record may be handed over again after a crash or rebalance.
    fn handle(
        &self,
        input: Self::Input,
        meta: &RecordMeta,
    ) -> impl Future<Output = Result<(), HandleError>> + Send;
}

/// Consumer callbacks: keeps the assignment, the readiness gate and the lag gauges current.
pub struct GroupContext {
    metrics: Metrics,
    gate: Gate,
    assigned: Mutex<BTreeSet<(String, i32)>>,
}

impl GroupContext {
    fn describe(tpl: &TopicPartitionList) -> String {
        tpl.elements()
            .iter()
            .map(|e| format!("{}[{}]", e.topic(), e.partition()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        let assigned = self.assigned.lock().expect("assignment lock");
        for (topic, partitions) in statistics
            .topics
            .iter()
            .map(|(name, t)| (name, &t.partitions))
        {
            for (partition, p) in partitions {
                if p.consumer_lag >= 0 && assigned.contains(&(topic.clone(), *partition)) {
                    self.metrics
                        .lag
                        .with_label_values(&[topic.as_str(), &partition.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(error = %error, reason, "kafka client error");
    }
}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut assigned = self.assigned.lock().expect("assignment lock");
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.metrics.rebalances.with_label_values(&["assign"]).inc();
                for e in tpl.elements() {
                    assigned.insert((e.topic().to_owned(), e.partition()));
                }
                tracing::info!(partitions = %Self::describe(tpl), total = assigned.len(), "partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                self.metrics.rebalances.with_label_values(&["revoke"]).inc();
                for e in tpl.elements() {
                    assigned.remove(&(e.topic().to_owned(), e.partition()));
                    let _ = self
                        .metrics
                        .lag
                        .remove_label_values(&[e.topic(), &e.partition().to_string()]);
                }
                tracing::info!(partitions = %Self::describe(tpl), total = assigned.len(), "partitions revoked");
            }
            Rebalance::Error(err) => {
                self.metrics.rebalances.with_label_values(&["error"]).inc();
                tracing::warn!(error = %err, "rebalance failed");
            }
        }
        self.metrics
            .assigned_partitions
            .set(i64::try_from(assigned.len()).unwrap_or(i64::MAX));
        if assigned.is_empty() {
            self.gate.not_ready("no partitions assigned");
        } else {
            self.gate.ready();
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(offsets = %Self::describe(offsets), "offsets committed"),
            // Nothing new was stored since the last commit.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => {
                tracing::warn!(error = %err, "offset commit failed; it is retried on the next commit")
            }
        }
    }
}

/// One consumer-group member on one topic.
pub struct ConsumeLoop<H> {
    consumer: StreamConsumer<GroupContext>,
    publisher: Publisher,
    handler: H,
    topic: String,
    group: String,
    metrics: Metrics,
}

/// How long the final commit and group leave may take before shutdown goes on without them.
const COMMIT_BUDGET: Duration = Duration::from_secs(5);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

enum Outcome {
    Processed,
    DeadLettered,
    /// Shutdown came while retrying: leave the offset unstored so the record is redelivered.
    Abandoned,
}

impl<H: Handler> ConsumeLoop<H> {
    /// Creates the consumer and subscribes. Readiness gets an `assignment` gate that opens while the
    /// member holds at least one partition.
    pub fn new(
        config: &KafkaConfig,
        group: &str,
        topic: &str,
        handler: H,
        publisher: Publisher,
        metrics: Metrics,
        readiness: &Readiness,
    ) -> KafkaResult<Self> {
        let context = GroupContext {
            metrics: metrics.clone(),
            gate: readiness.gate("assignment", "no partitions assigned yet"),
            assigned: Mutex::default(),
        };
        let consumer: StreamConsumer<GroupContext> =
            config.consumer_config(group).create_with_context(context)?;
        consumer.subscribe(&[topic])?;
        tracing::info!(topic, group, "subscribed");
        Ok(Self {
            consumer,
            publisher,
            handler,
            topic: topic.to_owned(),
            group: group.to_owned(),
            metrics,
        })
    }

    /// Consumes until `shutdown` is cancelled, then finishes the record in hand and commits.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let received = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                received = self.consumer.recv() => received,
            };
            match received {
                Ok(message) => {
                    let record = message.detach();
                    self.process(record, &shutdown).await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, topic = %self.topic, "consume error");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(BACKOFF_START) => {}
                    }
                }
            }
        }
        tracing::info!(topic = %self.topic, "stopped polling; committing offsets");
        // Committing and leaving the group block on the broker; with the broker gone they could
        // block forever. They run on a detached thread that shutdown waits for only so long (a
        // runtime blocking task would hold up the runtime's own shutdown instead).
        let Self {
            consumer, topic, ..
        } = self;
        let (done, closed) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => tracing::info!(topic = %topic, "offsets committed"),
                Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "final offset commit failed; uncommitted records will be redelivered");
                }
            }
            consumer.unsubscribe();
            drop(consumer);
            tracing::info!(topic = %topic, "left the consumer group");
            let _ = done.send(());
        });
        if tokio::time::timeout(COMMIT_BUDGET, closed).await.is_err() {
            tracing::warn!(
                budget_s = COMMIT_BUDGET.as_secs(),
                "broker did not answer the final commit in time; uncommitted records will be redelivered"
            );
        }
    }

    async fn process(&self, record: OwnedMessage, shutdown: &CancellationToken) {
        let started = Instant::now();
        let meta = RecordMeta {
            topic: record.topic().to_owned(),
            partition: record.partition(),
            offset: record.offset(),
            key: record
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
        };
        let span = tracing::info_span!(
            "process",
            otel.name = format!("{} process", meta.topic),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.destination.name = %meta.topic,
            messaging.consumer.group.name = %self.group,
            messaging.destination.partition.id = %meta.partition,
            messaging.kafka.offset = meta.offset,
            messaging.kafka.message.key = meta.key.as_deref().unwrap_or_default(),
            messaging.message.body.size = record.payload().map_or(0, <[u8]>::len),
            outcome = tracing::field::Empty,
        );
        // A record without trace headers starts a trace of its own.
        let _ = span.set_parent(propagation::extract(record.headers()));

        let outcome = self
            .outcome(&record, &meta, shutdown)
            .instrument(span.clone())
            .await;
        let label = match outcome {
            Outcome::Processed => "processed",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Abandoned => {
                span.record("outcome", "abandoned");
                return;
            }
        };
        span.record("outcome", label);
        if let Err(err) = self
            .consumer
            .store_offset(&meta.topic, meta.partition, meta.offset)
        {
            // The partition was revoked meanwhile; its new owner will see the record again.
            tracing::debug!(parent: &span, error = %err, "offset not stored");
        }
        self.metrics
            .consumed
            .with_label_values(&[&meta.topic, label])
            .inc();
        self.metrics
            .processing
            .with_label_values(&[&meta.topic])
            .observe(started.elapsed().as_secs_f64());
    }

    async fn outcome(
        &self,
        record: &OwnedMessage,
        meta: &RecordMeta,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let input = match self.handler.decode(record.payload()) {
            Ok(input) => input,
            Err(rejection) => return self.dead_letter(record, meta, &rejection, shutdown).await,
        };
        let mut backoff = BACKOFF_START;
        loop {
            match self.handler.handle(input.clone(), meta).await {
                Ok(()) => return Outcome::Processed,
                Err(HandleError::Rejected(rejection)) => {
                    return self.dead_letter(record, meta, &rejection, shutdown).await;
                }
                Err(HandleError::Retriable(reason)) => {
                    self.metrics.retries.with_label_values(&[&meta.topic]).inc();
                    tracing::warn!(
                        reason,
                        retry_in_ms = backoff.as_millis() as u64,
                        "handling failed; retrying"
                    );
                    if !sleep_unless_cancelled(backoff, shutdown).await {
                        return Outcome::Abandoned;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    async fn dead_letter(
        &self,
        record: &OwnedMessage,
        meta: &RecordMeta,
        rejection: &Rejection,
        shutdown: &CancellationToken,
    ) -> Outcome {
        tracing::Span::current().record("otel.status_code", "ERROR");
        tracing::warn!(kind = rejection.kind, reason = %rejection.reason, "record rejected; dead-lettering it");
        let dlq = super::dead_letter_topic(&meta.topic);
        let mut backoff = BACKOFF_START;
        loop {
            let mut out = OwnedHeaders::new();
            if let Some(original) = record.headers() {
                for h in original.iter() {
                    out = out.insert(h);
                }
            }
            out = text_header(out, headers::REASON, &rejection.reason);
            out = text_header(out, headers::ERROR_KIND, rejection.kind);
            out = text_header(out, headers::SOURCE_TOPIC, &meta.topic);
            out = text_header(out, headers::SOURCE_PARTITION, &meta.partition.to_string());
            out = text_header(out, headers::SOURCE_OFFSET, &meta.offset.to_string());
            out = text_header(out, headers::CONSUMER_GROUP, &self.group);
            match self
                .publisher
                .send(&dlq, record.key(), record.payload(), out)
                .await
            {
                Ok(_) => {
                    self.metrics
                        .dead_lettered
                        .with_label_values(&[&meta.topic, rejection.kind])
                        .inc();
                    return Outcome::DeadLettered;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "dead letter not acknowledged; retrying");
                    if !sleep_unless_cancelled(backoff, shutdown).await {
                        return Outcome::Abandoned;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

/// Sleeps for `d`; false if shutdown came first.
async fn sleep_unless_cancelled(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}
