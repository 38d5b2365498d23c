//! One assigned partition's lane: takes its records in offset order, runs different keys
//! concurrently and one key in order, retries with backoff while the partition is paused, and
//! stores the offset of the contiguous run of finished records.

use super::offsets::OffsetTracker;
use super::{
    GroupContext, HandleError, Handler, RecordMeta, Rejection, Shared, TopicSeries, headers,
};
use crate::kafka::producer::text_header;
use crate::kafka::{dead_letter_topic, propagation};
use crate::telemetry;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::Consumer;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::error::KafkaResult;
use rdkafka::message::{Headers, Message, OwnedHeaders, OwnedMessage};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The shortest retry delay; the longest is `KAFKA_RETRY_BACKOFF_MAX_MS`.
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(100);

type Key = Option<Vec<u8>>;

/// A record taken from the queue and not finished: running, waiting behind its key, or waiting
/// for its next retry.
struct InFlight<I> {
    record: OwnedMessage,
    key: Key,
    meta: RecordMeta,
    /// `None` when the payload could not be decoded (the step is then a dead letter).
    input: Option<I>,
    step: Step,
    span: tracing::Span,
    /// Started at the first retriable failure.
    backoff: Option<ExponentialBackoff>,
    taken: Instant,
    _slot: Slot,
}

/// A record's place among the member's records in flight: its permit, and its count in the
/// `kafka_consumer_in_flight_records` gauge, both given back when the record is dropped, however
/// it ends (finished, abandoned, or dropped with its lane).
struct Slot {
    _permit: OwnedSemaphorePermit,
    gauge: prometheus::IntGauge,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self {
            _permit: permit,
            gauge: gauge.clone(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

enum Step {
    Handle,
    DeadLetter(Rejection),
}

enum Attempt {
    Processed,
    DeadLettered,
    Retry(String),
    /// The lane is ending: the record stays unstored, for the partition's next owner.
    Abandoned,
}

enum Event<I> {
    Settled(Box<InFlight<I>>, Attempt),
    End(tokio::time::Instant),
    Deadline,
    Taken(OwnedSemaphorePermit, KafkaResult<OwnedMessage>),
}

type Running<I> = FuturesUnordered<BoxFuture<'static, (Box<InFlight<I>>, Attempt)>>;

pub(super) struct Lane<H: Handler> {
    shared: Arc<Shared<H>>,
    topic: Arc<TopicSeries>,
    partition: i32,
    offsets: OffsetTracker,
    /// Keys with a record running or retrying, and the records waiting behind it.
    waiting: HashMap<Key, VecDeque<Box<InFlight<H::Input>>>>,
    running: Running<H::Input>,
    /// Records between their first retriable failure and their end; the partition is paused
    /// while there are any.
    retrying: usize,
    /// Whether this lane has the partition paused. librdkafka keeps a pause across revocation
    /// and reassignment, so a lane never ends with its partition paused.
    paused: bool,
    /// Cancelled when the lane is told to end: retry delays stop and the records are abandoned.
    ending: CancellationToken,
}

impl<H: Handler> Lane<H> {
    pub(super) fn new(shared: Arc<Shared<H>>, topic: Arc<TopicSeries>, partition: i32) -> Self {
        Self {
            shared,
            topic,
            partition,
            offsets: OffsetTracker::default(),
            waiting: HashMap::new(),
            running: FuturesUnordered::new(),
            retrying: 0,
            paused: false,
            ending: CancellationToken::new(),
        }
    }

    /// Runs until told to end (revocation or shutdown) and everything it holds is finished, or
    /// the deadline it was given passes.
    pub(super) async fn run(
        mut self,
        queue: StreamPartitionQueue<GroupContext>,
        mut end: oneshot::Receiver<tokio::time::Instant>,
    ) {
        if !restore(&self.shared, &self.topic.topic, self.partition, &mut end).await {
            return;
        }
        let permits = self.shared.in_flight.clone();
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let intake = deadline.is_none() && self.retrying == 0;
            let event = tokio::select! {
                biased;
                Some((rec, attempt)) = self.running.next(), if !self.running.is_empty() => {
                    Event::Settled(rec, attempt)
                }
                // A dropped sender (the coordinator is gone) ends the lane at once.
                at = &mut end, if deadline.is_none() => {
                    Event::End(at.unwrap_or_else(|_| tokio::time::Instant::now()))
                }
                // Built lazily: select! evaluates every branch's expression on each turn, and
                // a timer (a clock read and a runtime handle) per record is wasted while no
                // deadline is set.
                () = async move {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                }, if deadline.is_some() => Event::Deadline,
                (permit, taken) = take(&queue, &permits), if intake => Event::Taken(permit, taken),
            };
            match event {
                Event::Settled(rec, attempt) => self.settle(rec, attempt),
                Event::End(at) => {
                    deadline = Some(at);
                    self.ending.cancel();
                }
                Event::Deadline => break,
                Event::Taken(permit, Ok(record)) => self.admit(permit, record),
                Event::Taken(_, Err(err)) => {
                    tracing::warn!(error = %err, partition = self.partition, "consume error");
                }
            }
            if deadline.is_some() && self.running.is_empty() {
                break;
            }
        }
        let abandoned = self.offsets.unfinished();
        if abandoned > 0 {
            tracing::warn!(
                topic = %self.topic.topic,
                partition = self.partition,
                abandoned,
                "unfinished records left unstored for redelivery"
            );
        }
        if self.paused {
            self.set_paused(false);
        }
        drop(self.running);
        self.shared
            .handler
            .revoked(&self.topic.topic, self.partition);
    }

    /// Takes a record into the lane: decodes it, and starts it unless its key is busy.
    fn admit(&mut self, permit: OwnedSemaphorePermit, record: OwnedMessage) {
        let shared = &self.shared;
        let offset = record.offset();
        self.offsets.take(offset);
        let topic = &self.topic;
        let meta = RecordMeta {
            topic: topic.topic.clone(),
            partition: self.partition,
            offset,
            key: record
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            timestamp: record.timestamp().to_millis(),
        };
        let span = tracing::info_span!(
            "process",
            otel.name = %topic.span_name,
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.destination.name = %topic.topic,
            messaging.consumer.group.name = %shared.group,
            messaging.destination.partition.id = self.partition,
            messaging.kafka.offset = offset,
            messaging.kafka.message.key = meta.key.as_deref().unwrap_or_default(),
            messaging.message.body.size = record.payload().map_or(0, <[u8]>::len),
            outcome = tracing::field::Empty,
        );
        // A record without trace headers starts a trace of its own.
        telemetry::set_parent(&span, propagation::extract(record.headers()));
        let (input, step) = match shared.handler.decode(&meta, record.payload()) {
            Ok(input) => (Some(input), Step::Handle),
            Err(rejection) => (None, Step::DeadLetter(rejection)),
        };
        let key = record.key().map(<[u8]>::to_vec);
        let rec = Box::new(InFlight {
            record,
            key: key.clone(),
            meta,
            input,
            step,
            span,
            backoff: None,
            taken: Instant::now(),
            _slot: Slot::new(permit, &shared.metrics.in_flight),
        });
        match self.waiting.entry(key) {
            Entry::Occupied(mut queued) => queued.get_mut().push_back(rec),
            Entry::Vacant(free) => {
                free.insert(VecDeque::new());
                self.start(rec, Duration::ZERO);
            }
        }
    }

    fn start(&mut self, rec: Box<InFlight<H::Input>>, delay: Duration) {
        self.running.push(Box::pin(attempt(
            self.shared.clone(),
            rec,
            delay,
            self.ending.clone(),
        )));
    }

    fn settle(&mut self, mut rec: Box<InFlight<H::Input>>, attempt: Attempt) {
        let series = self.topic.clone();
        let outcome = match attempt {
            Attempt::Processed => "processed",
            Attempt::DeadLettered => "dead_lettered",
            Attempt::Retry(reason) if !self.ending.is_cancelled() => {
                series.retries.inc();
                let first = rec.backoff.is_none();
                let max = self.shared.retry_backoff_max;
                let delay = rec
                    .backoff
                    .get_or_insert_with(|| retry_backoff(max))
                    .next()
                    .unwrap_or(max);
                if first {
                    self.retrying += 1;
                    if self.retrying == 1 {
                        self.set_paused(true);
                    }
                }
                tracing::warn!(
                    parent: &rec.span,
                    reason,
                    offset = rec.meta.offset,
                    retry_in_ms = delay.as_millis() as u64,
                    "handling failed; retrying"
                );
                self.start(rec, delay);
                return;
            }
            Attempt::Retry(_) | Attempt::Abandoned => {
                // Ending: this record, and the ones of its key waiting behind it, stay unstored
                // and hold their offsets back; the next owner gets them again.
                telemetry::record(&rec.span, "outcome", "abandoned");
                if rec.backoff.is_some() {
                    self.retrying -= 1;
                }
                self.waiting.remove(&rec.key);
                return;
            }
        };
        if rec.backoff.is_some() {
            self.retrying -= 1;
            if self.retrying == 0 && !self.ending.is_cancelled() {
                self.set_paused(false);
            }
        }
        telemetry::record(&rec.span, "outcome", outcome);
        if outcome == "processed" {
            series.processed.inc();
        } else {
            series.dead_lettered.inc();
        }
        series.processing.observe(rec.taken.elapsed().as_secs_f64());
        tracing::debug!(parent: &rec.span, outcome, "record finished");
        if let Some(offset) = self.offsets.finish(rec.meta.offset)
            && let Err(err) =
                self.shared
                    .consumer
                    .store_offset(&self.topic.topic, self.partition, offset)
        {
            // The partition was revoked meanwhile; its new owner will see the records again.
            tracing::debug!(error = %err, offset, "offset not stored");
        }
        // The next record of the same key, if one is waiting.
        if let Entry::Occupied(mut queued) = self.waiting.entry(rec.key.take()) {
            match queued.get_mut().pop_front() {
                Some(next) => self.start(next, Duration::ZERO),
                None => {
                    queued.remove();
                }
            }
        }
    }

    /// Pauses or resumes fetching this partition. Records already taken are unaffected, and
    /// fetching resumes after the last record taken, so nothing is skipped or taken twice.
    fn set_paused(&mut self, paused: bool) {
        if self.paused == paused {
            return;
        }
        self.paused = paused;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic.topic, self.partition);
        let result = if paused {
            self.shared.metrics.paused_partitions.inc();
            self.shared.consumer.pause(&tpl)
        } else {
            self.shared.metrics.paused_partitions.dec();
            self.shared.consumer.resume(&tpl)
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, partition = self.partition, paused, "pause or resume failed");
        } else if paused {
            tracing::warn!(topic = %self.topic.topic, partition = self.partition, "partition paused while a record retries");
        } else {
            tracing::info!(topic = %self.topic.topic, partition = self.partition, "partition resumed");
        }
    }
}

/// Runs the handler's [`Handler::assigned`] until it succeeds, retrying with backoff. False
/// when the lane was told to end first (nothing was taken, so there is nothing to drain).
async fn restore<H: Handler>(
    shared: &Shared<H>,
    topic: &str,
    partition: i32,
    end: &mut oneshot::Receiver<tokio::time::Instant>,
) -> bool {
    let mut backoff = retry_backoff(shared.retry_backoff_max);
    loop {
        let result = tokio::select! {
            biased;
            _ = &mut *end => return false,
            result = shared.handler.assigned(topic, partition) => result,
        };
        let Err(reason) = result else {
            return true;
        };
        let delay = backoff.next().unwrap_or(shared.retry_backoff_max);
        tracing::warn!(topic = %topic, partition, reason, retry_in_ms = delay.as_millis() as u64, "partition setup failed; retrying before taking records");
        tokio::select! {
            _ = &mut *end => return false,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Waits for an in-flight permit, then for the partition's next record. Cancel-safe: dropped
/// while waiting, it has taken nothing.
async fn take(
    queue: &StreamPartitionQueue<GroupContext>,
    permits: &Arc<Semaphore>,
) -> (OwnedSemaphorePermit, KafkaResult<OwnedMessage>) {
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .expect("the in-flight semaphore is never closed");
    let record = queue.recv().await.map(|m| m.detach());
    (permit, record)
}

fn retry_backoff(max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(RETRY_BACKOFF_MIN)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// One try at a record's current step, after `delay`.
async fn attempt<H: Handler>(
    shared: Arc<Shared<H>>,
    mut rec: Box<InFlight<H::Input>>,
    delay: Duration,
    ending: CancellationToken,
) -> (Box<InFlight<H::Input>>, Attempt) {
    if !delay.is_zero() {
        tokio::select! {
            () = ending.cancelled() => return (rec, Attempt::Abandoned),
            () = tokio::time::sleep(delay) => {}
        }
    }
    let span = rec.span.clone();
    let result = step(&shared, &mut rec).instrument(span).await;
    (rec, result)
}

async fn step<H: Handler>(shared: &Shared<H>, rec: &mut InFlight<H::Input>) -> Attempt {
    if let (Step::Handle, Some(input)) = (&rec.step, &rec.input) {
        match shared.handler.handle(input, &rec.meta).await {
            Ok(()) => return Attempt::Processed,
            Err(HandleError::Retriable(reason)) => return Attempt::Retry(reason),
            Err(HandleError::Rejected(rejection)) => rec.step = Step::DeadLetter(rejection),
        }
    }
    let Step::DeadLetter(rejection) = &rec.step else {
        unreachable!("a record without input is a dead letter");
    };
    telemetry::record(&tracing::Span::current(), "otel.status_code", "ERROR");
    if rec.backoff.is_none() {
        tracing::warn!(kind = rejection.kind, reason = %rejection.reason, "record rejected; dead-lettering it");
    }
    let meta = &rec.meta;
    let mut out = OwnedHeaders::new();
    if let Some(original) = rec.record.headers() {
        for h in original.iter() {
            out = out.insert(h);
        }
    }
    out = text_header(out, headers::REASON, &rejection.reason);
    out = text_header(out, headers::ERROR_KIND, rejection.kind);
    out = text_header(out, headers::SOURCE_TOPIC, &meta.topic);
    out = text_header(out, headers::SOURCE_PARTITION, &meta.partition.to_string());
    out = text_header(out, headers::SOURCE_OFFSET, &meta.offset.to_string());
    out = text_header(out, headers::CONSUMER_GROUP, &shared.group);
    match shared
        .publisher
        .send(
            &dead_letter_topic(&meta.topic),
            rec.record.key(),
            rec.record.payload(),
            out,
        )
        .await
    {
        Ok(_) => {
            shared
                .metrics
                .dead_lettered
                .with_label_values(&[&meta.topic, rejection.kind])
                .inc();
            Attempt::DeadLettered
        }
        Err(err) => Attempt::Retry(format!("dead letter not acknowledged: {err}")),
    }
}
