//! The member's side of the group protocol: rebalance callbacks that set lanes up before a
//! partition is assigned and drain them before it is revoked, the readiness gate, lag metrics,
//! and the periodic summary line.

use super::lane::Lane;
use super::{Handler, Shared};
use crate::http::{Gate, Readiness};
use crate::kafka::Warnings;
use crate::metrics::Metrics;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A rebalance step the callback thread hands to the coordinator; the callback blocks until the
/// coordinator drops the sender.
pub(super) enum Callback {
    Assign(Vec<(String, i32)>, SyncSender<()>),
    Revoke(Vec<(String, i32)>, SyncSender<()>),
    Shutdown(SyncSender<()>),
}

/// Consumer callbacks: lanes through the coordinator, the assignment, readiness and lag.
///
/// Readiness means "a member of the group, able to work": the `group` gate opens once the member
/// has joined, whether or not it holds partitions. A member beyond the partition count is a ready
/// standby; `/readyz` and `kafka_consumer_assigned_partitions` show what it holds. Gating readiness
/// on holding a partition would leave a rolling update's surge pod unready forever whenever
/// replicas equal partitions, and hang `kubectl rollout status`.
pub struct GroupContext {
    metrics: Metrics,
    gate: Gate,
    readiness: Readiness,
    group: String,
    assigned: Mutex<BTreeSet<(String, i32)>>,
    lag: AtomicI64,
    callbacks: mpsc::UnboundedSender<Callback>,
    warnings: Warnings,
}

impl GroupContext {
    pub(super) fn new(
        metrics: Metrics,
        readiness: &Readiness,
        group: &str,
        callbacks: mpsc::UnboundedSender<Callback>,
    ) -> Self {
        readiness.set_detail(
            "assignment",
            serde_json::json!({"partitions": [], "count": 0}),
        );
        Self {
            metrics,
            gate: readiness.gate("group", format!("not yet a member of group `{group}`")),
            readiness: readiness.clone(),
            group: group.to_owned(),
            assigned: Mutex::default(),
            lag: AtomicI64::new(0),
            callbacks,
            warnings: Warnings::default(),
        }
    }

    /// `topic[partition]`, as logs and `/readyz` name a partition.
    fn name(topic: &str, partition: i32) -> String {
        format!("{topic}[{partition}]")
    }

    fn describe(tpl: &TopicPartitionList) -> String {
        tpl.elements()
            .iter()
            .map(|e| Self::name(e.topic(), e.partition()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
        tpl.elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect()
    }

    /// Hands `make(sender)` to the coordinator and waits until it is done with it. Returns at once
    /// if the coordinator is gone (after shutdown).
    fn rendezvous(&self, make: impl FnOnce(SyncSender<()>) -> Callback) {
        let (tx, rx) = sync_channel(0);
        if self.callbacks.send(make(tx)).is_ok() {
            while rx.recv().is_ok() {}
        }
    }

    /// Drains every lane (the shutdown drain). Blocks; called on the consumer thread.
    pub(super) fn shut_down(&self) {
        self.rendezvous(Callback::Shutdown);
    }

    /// Consumer lag summed over the assigned partitions, from the last statistics.
    pub(super) fn lag(&self) -> i64 {
        self.lag.load(Ordering::Relaxed)
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        let assigned = self.assigned.lock().expect("assignment lock");
        let mut total = 0;
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if p.consumer_lag >= 0 && assigned.contains(&(topic.clone(), *partition)) {
                    total += p.consumer_lag;
                    self.metrics
                        .lag
                        .with_label_values(&[topic.as_str(), &partition.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
        self.lag.store(total, Ordering::Relaxed);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.warnings.warn(&error, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            // Queues are split off before the assignment takes effect, so no record of an
            // assigned partition ever lands on the main queue.
            Rebalance::Assign(tpl) if tpl.count() > 0 => {
                self.rendezvous(|tx| Callback::Assign(Self::partitions(tpl), tx));
            }
            Rebalance::Revoke(tpl) if tpl.count() > 0 => {
                let started = Instant::now();
                self.rendezvous(|tx| Callback::Revoke(Self::partitions(tpl), tx));
                match consumer.commit_consumer_state(CommitMode::Sync) {
                    Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                    Err(err) => tracing::warn!(
                        error = %err,
                        "commit before revocation failed; the new owner may see records again"
                    ),
                }
                tracing::info!(
                    partitions = %Self::describe(tpl),
                    drain_ms = started.elapsed().as_millis() as u64,
                    "revoked partitions drained and committed"
                );
            }
            _ => {}
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut assigned = self.assigned.lock().expect("assignment lock");
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.metrics.rebalances.with_label_values(&["assign"]).inc();
                for e in tpl.elements() {
                    assigned.insert((e.topic().to_owned(), e.partition()));
                }
                tracing::info!(partitions = %Self::describe(tpl), total = assigned.len(), "partitions assigned");
                // Joined (an empty assignment included): a member, able to take over partitions.
                self.gate.ready();
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
                tracing::warn!(error = %err, group = %self.group, "rebalance failed");
            }
        }
        let count = assigned.len();
        self.metrics
            .assigned_partitions
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        let names: Vec<String> = assigned.iter().map(|(t, p)| Self::name(t, *p)).collect();
        let mut detail = serde_json::json!({"partitions": names, "count": count});
        if count == 0 {
            detail["note"] = "standby: the group has at least as many members as partitions".into();
        }
        self.readiness.set_detail("assignment", detail);
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

struct LaneHandle {
    end: oneshot::Sender<tokio::time::Instant>,
    task: JoinHandle<()>,
}

/// Runs the lanes: starts one per assigned partition, drains them on revocation and shutdown.
pub(super) async fn coordinate<H: Handler>(
    shared: Arc<Shared<H>>,
    mut callbacks: mpsc::UnboundedReceiver<Callback>,
    drain_timeout: Duration,
) {
    let mut lanes: HashMap<(String, i32), LaneHandle> = HashMap::new();
    let done = loop {
        let Some(callback) = callbacks.recv().await else {
            return;
        };
        match callback {
            Callback::Assign(partitions, done) => {
                for (topic, partition) in partitions {
                    let Some(queue) = shared.consumer.split_partition_queue(&topic, partition)
                    else {
                        tracing::error!(topic = %topic, partition, "cannot split the partition's queue");
                        continue;
                    };
                    let (end, ended) = oneshot::channel();
                    let Some(series) = shared.topics.get(&topic).cloned() else {
                        tracing::error!(topic = %topic, partition, "assigned a topic not subscribed to");
                        continue;
                    };
                    let lane = Lane::new(shared.clone(), series, partition);
                    let task = tokio::spawn(lane.run(queue, ended));
                    lanes.insert((topic, partition), LaneHandle { end, task });
                }
                drop(done);
            }
            Callback::Revoke(partitions, done) => {
                let ending = partitions
                    .iter()
                    .filter_map(|tp| lanes.remove(tp))
                    .collect();
                drain(ending, drain_timeout).await;
                drop(done);
            }
            Callback::Shutdown(done) => {
                drain(lanes.drain().map(|(_, l)| l).collect(), drain_timeout).await;
                break done;
            }
        }
    };
    // Let go of the consumer before the consumer thread closes it.
    drop(shared);
    drop(done);
}

/// Tells `lanes` to finish what they hold by the drain deadline, and waits for them.
async fn drain(lanes: Vec<LaneHandle>, drain_timeout: Duration) {
    let deadline = tokio::time::Instant::now() + drain_timeout;
    let mut tasks = Vec::with_capacity(lanes.len());
    for lane in lanes {
        let _ = lane.end.send(deadline);
        tasks.push(lane.task);
    }
    for task in tasks {
        // A lane abandons what is unfinished at the deadline by itself; this only guards
        // against one that does not.
        let abort = task.abort_handle();
        if tokio::time::timeout_at(deadline + Duration::from_secs(1), task)
            .await
            .is_err()
        {
            tracing::error!("a lane overran the drain deadline; aborted");
            abort.abort();
        }
    }
}

/// One INFO line every `interval` while records flow: records, rate, dead letters, retries,
/// records in flight and lag. Per-record detail is at DEBUG.
pub(super) async fn summarise<H: Handler>(
    shared: Arc<Shared<H>>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let totals = || {
        shared.topics.values().fold((0, 0, 0), |(p, d, r), s| {
            (
                p + s.processed.get(),
                d + s.dead_lettered.get(),
                r + s.retries.get(),
            )
        })
    };
    let mut last = totals();
    let mut topics: Vec<&str> = shared.topics.keys().map(String::as_str).collect();
    topics.sort_unstable();
    let topics = topics.join(",");
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now = totals();
        let (processed, dead_lettered, retries) = (now.0 - last.0, now.1 - last.1, now.2 - last.2);
        last = now;
        let m = &shared.metrics;
        if processed + dead_lettered + retries == 0 && m.in_flight.get() == 0 {
            continue;
        }
        tracing::info!(
            topic = %topics,
            processed,
            dead_lettered,
            retries,
            rate_per_s = (processed + dead_lettered) as f64 / interval.as_secs_f64(),
            in_flight = m.in_flight.get(),
            paused_partitions = m.paused_partitions.get(),
            assigned_partitions = m.assigned_partitions.get(),
            lag = shared.consumer.context().lag(),
            "consumer summary"
        );
    }
}
