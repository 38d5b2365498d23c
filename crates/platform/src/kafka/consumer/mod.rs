//! The consume loop: concurrent, ordered per key, at-least-once.
//!
//! # Design
//!
//! **Lanes.** Each assigned partition gets a queue of its own
//! ([`StreamConsumer::split_partition_queue`]) and a task, its lane, that takes records from it in
//! offset order. The member's main queue then carries only rebalance events and errors; a thread
//! of its own keeps polling it, so the member stays in the group (`max.poll.interval.ms`) however
//! long a lane waits.
//!
//! **Ordering and concurrency.** Inside a lane, records of different keys are handled
//! concurrently and records of one key strictly one after the other, in offset order: a record
//! whose key is busy waits behind it. Orders, payments and notifications are keyed by `order_id`,
//! so one order's events stay in order while different orders overlap. A record without a key is
//! ordered with the other keyless records of its partition.
//!
//! **In-flight bound.** Every record taken and not yet finished holds one of
//! `KAFKA_MAX_IN_FLIGHT` permits shared by the member's lanes. When they are all taken, lanes stop
//! taking records; librdkafka's per-partition prefetch (`queued.max.messages.kbytes`) then fills
//! and fetching stops, so memory stays bounded under any backlog. While a partition's prefetch is
//! full, librdkafka looks again every 10 ms (`fetch.queue.backoff.ms`; its default second left
//! lanes that had drained their queue idle). Since a record is held until its outputs are
//! acknowledged, the bound divided by that wait is the most a member can handle per second: size
//! it for the broker's round trip.
//!
//! **Outputs.** A handler publishes its outputs and awaits their acknowledgements, but the lane
//! does not wait for one record before taking the next: many records' outputs are in flight at
//! once and the producer batches them.
//!
//! **Offsets.** A record's offset is stored only when it and every earlier record of its partition
//! are finished (processed, or dead-lettered with the dead letter acknowledged): the contiguous
//! run of finished records ([`offsets::OffsetTracker`]). Stored offsets are committed in the
//! background, on revocation and at shutdown. A crash therefore redelivers from the first
//! unfinished record and never skips one; handlers are idempotent, so redelivery is harmless.
//!
//! **Topics.** A member may subscribe to several topics (a stream processor reads its inputs and
//! its own repartition topic in one group, as Kafka Streams does). Each assigned partition of each
//! topic gets its lane; the handler sees the topic in [`RecordMeta`].
//!
//! **State.** Before a lane takes its first record it calls [`Handler::assigned`], where a
//! stateful handler restores the partition's state (see [`crate::state`]); a failure there is
//! retried with the same backoff, and no record is taken until it succeeds. After the lane has
//! drained, [`Handler::revoked`] lets the handler drop that partition's state.
//!
//! **Dead letters.** A record that cannot be decoded, or that its handler rejects, is copied to
//! `<topic>.dlq` with the reason in its headers, and the lane moves on.
//!
//! **Retries.** A retriable failure (the broker did not acknowledge an output, a database is
//! down) retries that record with jittered exponential backoff (`backon`, 100 ms up to
//! `KAFKA_RETRY_BACKOFF_MAX_MS`), without limit: a record is never skipped. While any record of a
//! partition is retrying, that partition is paused (no new records are taken, and librdkafka stops
//! fetching it); records already in flight finish, and the other partitions keep flowing.
//!
//! **Revocation and shutdown.** When partitions are revoked (a rebalance) or the member stops, the
//! rebalance callback holds the rebalance while the affected lanes stop taking records and finish
//! what they hold, for at most `KAFKA_DRAIN_TIMEOUT_MS`; records still unfinished then are
//! abandoned unstored, to be redelivered to the next owner. The stored offsets are then committed.
//!
//! **Budgets.** They are checked together at start ([`crate::ServiceConfig`]):
//! - `KAFKA_DELIVERY_TIMEOUT_MS` ≤ `KAFKA_DRAIN_TIMEOUT_MS`: every output in flight at a
//!   revocation is settled (acknowledged or failed) within the drain;
//! - `KAFKA_DRAIN_TIMEOUT_MS` < `KAFKA_SESSION_TIMEOUT_MS`: a revocation never holds the group
//!   longer than a member may stay silent;
//! - drain + final commit (5 s) + producer flush (the delivery timeout) ≤ `SHUTDOWN_TIMEOUT_MS`,
//!   which the Helm chart derives from `terminationGracePeriodSeconds`.

mod group;
mod lane;
mod offsets;

pub use group::GroupContext;

use super::{KafkaConfig, Publisher};
use crate::http::Readiness;
use crate::metrics::Metrics;
use group::Callback;
use prometheus::{Histogram, IntCounter};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

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
    /// The record's timestamp (milliseconds since the epoch), when it has one.
    pub timestamp: Option<i64>,
}

/// Why a record goes to the dead-letter topic: a short kind for labels, and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: &'static str,
    pub reason: String,
}

/// An undecodable or invalid event: its kind and its sentence, as the dead-letter headers carry
/// them.
impl From<events::DecodeError> for Rejection {
    fn from(e: events::DecodeError) -> Self {
        Self {
            kind: e.kind(),
            reason: e.to_string(),
        }
    }
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
    type Input: Send + Sync + 'static;

    /// Turns the payload into the service's input, or says why it cannot.
    fn decode(&self, meta: &RecordMeta, payload: Option<&[u8]>) -> Result<Self::Input, Rejection>;

    /// Does the work, including publishing (and awaiting) any output. Called concurrently for
    /// records of different keys, one at a time per key. Must be idempotent: the same record may
    /// be handed over again after a crash or rebalance, and again after a retriable failure.
    fn handle(
        &self,
        input: &Self::Input,
        meta: &RecordMeta,
    ) -> impl Future<Output = Result<(), HandleError>> + Send;

    /// Called in a newly assigned partition's lane before it takes a record: a stateful handler
    /// restores the partition's state here. An error is logged and retried with backoff; the lane
    /// takes no record until this succeeds.
    fn assigned(
        &self,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<(), String>> + Send {
        let _ = (topic, partition);
        async { Ok(()) }
    }

    /// Called once a partition's lane has ended (revocation or shutdown), everything it held
    /// finished or abandoned: a stateful handler drops the partition's state here.
    fn revoked(&self, topic: &str, partition: i32) {
        let _ = (topic, partition);
    }
}

/// How long the final commit and group leave may take before shutdown goes on without them.
pub const COMMIT_BUDGET: Duration = Duration::from_secs(5);

/// What every lane of a member shares.
struct Shared<H> {
    handler: H,
    publisher: Publisher,
    consumer: Arc<StreamConsumer<GroupContext>>,
    topics: HashMap<String, Arc<TopicSeries>>,
    group: String,
    in_flight: Arc<Semaphore>,
    retry_backoff_max: Duration,
    metrics: Metrics,
}

/// What a lane needs of its topic: the span name and the per-record metric series, resolved once
/// instead of looked up by label on every record.
struct TopicSeries {
    topic: String,
    /// `<topic> process`, the span name of every record.
    span_name: String,
    processed: IntCounter,
    dead_lettered: IntCounter,
    retries: IntCounter,
    processing: Histogram,
}

impl TopicSeries {
    fn new(metrics: &Metrics, topic: &str) -> Self {
        Self {
            topic: topic.to_owned(),
            span_name: format!("{topic} process"),
            processed: metrics.consumed.with_label_values(&[topic, "processed"]),
            dead_lettered: metrics
                .consumed
                .with_label_values(&[topic, "dead_lettered"]),
            retries: metrics.retries.with_label_values(&[topic]),
            processing: metrics.processing.with_label_values(&[topic]),
        }
    }
}

/// One consumer-group member on one or more topics.
pub struct ConsumeLoop<H> {
    shared: Arc<Shared<H>>,
    callbacks: mpsc::UnboundedReceiver<Callback>,
    drain_timeout: Duration,
    summary_interval: Duration,
}

impl<H: Handler> ConsumeLoop<H> {
    /// Creates the consumer and subscribes. Readiness gets a `group` gate that opens once the
    /// member has joined its group, with or without partitions (see [`GroupContext`]).
    pub fn new(
        config: &KafkaConfig,
        group: &str,
        topics: &[&str],
        handler: H,
        publisher: Publisher,
        metrics: Metrics,
        readiness: &Readiness,
    ) -> KafkaResult<Self> {
        let (tx, callbacks) = mpsc::unbounded_channel();
        let context = GroupContext::new(metrics.clone(), readiness, group, tx);
        let consumer: StreamConsumer<GroupContext> =
            config.consumer_config(group).create_with_context(context)?;
        consumer.subscribe(topics)?;
        tracing::info!(
            topics = %topics.join(","),
            group,
            max_in_flight = config.max_in_flight,
            "subscribed"
        );
        let shared = Shared {
            handler,
            publisher,
            consumer: Arc::new(consumer),
            topics: topics
                .iter()
                .map(|t| ((*t).to_owned(), Arc::new(TopicSeries::new(&metrics, t))))
                .collect(),
            group: group.to_owned(),
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            retry_backoff_max: config.retry_backoff_max,
            metrics,
        };
        Ok(Self {
            shared: Arc::new(shared),
            callbacks,
            drain_timeout: config.drain_timeout,
            summary_interval: config.summary_interval,
        })
    }

    /// Consumes until `shutdown` is cancelled, then drains the lanes, commits and leaves the group.
    pub async fn run(self, shutdown: CancellationToken) {
        let Self {
            shared,
            callbacks,
            drain_timeout,
            summary_interval,
        } = self;
        let coordinator = tokio::spawn(group::coordinate(shared.clone(), callbacks, drain_timeout));
        let summary = tokio::spawn(group::summarise(
            shared.clone(),
            summary_interval,
            shutdown.clone(),
        ));
        // The main queue is polled on a thread of its own: rebalance callbacks run there and block
        // it while lanes are set up or drained, which must not block a runtime worker.
        let consumer = shared.consumer.clone();
        let group = shared.group.clone();
        drop(shared);
        let runtime = tokio::runtime::Handle::current();
        let (done, finished) = tokio::sync::oneshot::channel();
        let poll_shutdown = shutdown.clone();
        std::thread::Builder::new()
            .name("kafka-group".into())
            .spawn(move || {
                runtime.block_on(poll_main_queue(&consumer, &poll_shutdown));
                tracing::info!(group = %group, "stopped polling; draining lanes");
                consumer.context().shut_down();
                match consumer.commit_consumer_state(CommitMode::Sync) {
                    Ok(()) => tracing::info!(group = %group, "offsets committed"),
                    Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                    Err(err) => tracing::warn!(
                        error = %err,
                        "final offset commit failed; uncommitted records will be redelivered"
                    ),
                }
                consumer.unsubscribe();
                drop(consumer);
                tracing::info!(group = %group, "left the consumer group");
                let _ = done.send(());
            })
            .expect("spawn the consumer thread");
        shutdown.cancelled().await;
        // With the broker gone, committing and leaving the group could block forever; the stop
        // goes on without them after the budget.
        let budget = drain_timeout + COMMIT_BUDGET;
        if tokio::time::timeout(budget, finished).await.is_err() {
            tracing::warn!(
                budget_s = budget.as_secs(),
                "the group did not let go in time; uncommitted records will be redelivered"
            );
        }
        summary.abort();
        coordinator.abort();
    }
}

/// Serves the main queue until shutdown: rebalance callbacks and client errors. Records never
/// arrive here, since every assigned partition's queue is split off before it is assigned.
async fn poll_main_queue(consumer: &StreamConsumer<GroupContext>, shutdown: &CancellationToken) {
    loop {
        let received = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            received = consumer.recv() => received,
        };
        match received {
            Ok(m) => tracing::error!(
                partition = rdkafka::Message::partition(&m),
                "record arrived on the main queue; it stays uncommitted and will be redelivered"
            ),
            Err(err) => {
                tracing::warn!(error = %err, "consume error");
                // Errors come in bursts while a broker is away; one line per burst is enough.
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}
