//! Partitioned state that survives restarts and rebalances: a key-value store per input
//! partition, kept in memory and written through to a compacted changelog topic, the way Kafka
//! Streams keeps its state stores.
//!
//! # How it works
//!
//! - **Partitioned like the input.** Partition `p` of the changelog holds the state of input
//!   partition `p`, so the state moves with the partition. The changelog has as many partitions
//!   as the input topic and `cleanup.policy=compact`: the latest value of each key survives, and
//!   a tombstone (a record without payload) deletes one.
//! - **Restore before the first record.** When a partition is assigned, the consume loop calls
//!   [`Handler::assigned`](crate::kafka::Handler::assigned); the handler calls
//!   [`Store::restore`], which reads the changelog partition from its start to its end (the end
//!   is the high watermark a fetch reports) and only then installs the state. While any
//!   partition is restoring, the `state` readiness gate is closed. When the partition is
//!   revoked, [`Store::release`] drops it.
//! - **Writes.** [`Store::write`] runs a closure on one partition's entries under the store's
//!   lock and enqueues every change to the changelog before the lock is released, so the
//!   changelog holds the changes in the order they were made. It returns a future that resolves
//!   when the broker has acknowledged them; a handler awaits it before it publishes what the
//!   change implies and returns, so a record's offset is stored only after its state change is
//!   durable.
//! - **Idempotence is the handler's.** After a crash, records after the last committed offset
//!   are delivered again, and some of them may already be in the restored state. A handler
//!   therefore records in its state what it has applied (the input offset of the last record
//!   applied to a key, or the event ids it has seen) and, seeing a record already applied,
//!   writes the entry again and republishes the identical output instead of applying it twice.
//!   Writing the entry again also repairs the one case where memory is ahead of the changelog:
//!   a change whose changelog write failed, retried.
//! - **Values are JSON**, so the console tool shows a changelog as it is.
//!
//! Without Kafka transactions (the local broker has none) a member that loses its partition
//! while a changelog write is in flight could, in principle, land that write after the new
//! owner restored: `KAFKA_DELIVERY_TIMEOUT_MS` ≤ `KAFKA_DRAIN_TIMEOUT_MS` makes every write in
//! flight at a revocation settle before the partition is handed over.

use crate::http::{Gate, Readiness};
use crate::kafka::reader;
use crate::kafka::{KafkaConfig, PublishError, Publisher};
use crate::metrics::Metrics;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt};
use prometheus::{Histogram, IntCounter, IntGauge};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A partition marked as restoring (the `state:<store>` gate closed) while it lives.
struct Restoring<'a, V: Serialize + DeserializeOwned + Send + 'static> {
    store: &'a Store<V>,
    partition: i32,
}

impl<'a, V: Serialize + DeserializeOwned + Send + 'static> Restoring<'a, V> {
    fn mark(store: &'a Store<V>, partition: i32) -> Self {
        store.restoring(partition, true);
        Self { store, partition }
    }
}

impl<V: Serialize + DeserializeOwned + Send + 'static> Drop for Restoring<'_, V> {
    fn drop(&mut self) {
        self.store.restoring(self.partition, false);
    }
}

/// A changelog record: a key and its value, or `None` for a deletion.
type Change = (String, Option<Vec<u8>>);

/// The longest a partition's restore may take before it is retried.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);

/// The entries of one partition of a store.
pub type Entries<V> = HashMap<String, V>;

/// One partition: its entries, and their keys in the order they were first written (what
/// [`Writer::evict_to`] removes first). A deleted key stays in `order` until it reaches the front.
struct Partition<V> {
    entries: Entries<V>,
    order: VecDeque<String>,
}

impl<V> Default for Partition<V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<V> Partition<V> {
    fn insert(&mut self, key: String, value: V) {
        if !self.entries.contains_key(&key) {
            self.order.push_back(key.clone());
        }
        self.entries.insert(key, value);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("restoring {changelog}[{partition}]: {source}")]
    Restore {
        changelog: String,
        partition: i32,
        source: KafkaError,
    },
    #[error(
        "{changelog}[{partition}] does not exist: the changelog needs as many partitions as its input topic"
    )]
    MissingPartition { changelog: String, partition: i32 },
    #[error("partition {partition} of store `{store}` is not held by this member")]
    NotHeld { store: String, partition: i32 },
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// The wait for a write's changelog records to be acknowledged.
pub type Acks = BoxFuture<'static, Result<(), StateError>>;

/// One partition's entries, as a write sees them: reads, and changes that are recorded to be
/// written to the changelog.
pub struct Writer<'a, V> {
    partition: &'a mut Partition<V>,
    changes: Vec<Change>,
}

impl<V: Serialize> Writer<'_, V> {
    pub fn get(&self, key: &str) -> Option<&V> {
        self.partition.entries.get(key)
    }

    pub fn entries(&self) -> &Entries<V> {
        &self.partition.entries
    }

    /// Sets `key` (written to the changelog even when the value is unchanged: see the module's
    /// note on idempotence).
    pub fn put(&mut self, key: &str, value: V) {
        let bytes = serde_json::to_vec(&value).expect("state values serialise");
        self.partition.insert(key.to_owned(), value);
        self.changes.push((key.to_owned(), Some(bytes)));
    }

    pub fn delete(&mut self, key: &str) {
        if self.partition.entries.remove(key).is_some() {
            self.changes.push((key.to_owned(), None));
        }
    }

    /// Deletes the oldest entries (first written first), except those `keep` names, until at
    /// most `limit` remain: a bounded window of recent keys beside entries that stay.
    pub fn evict_to(&mut self, limit: usize, keep: impl Fn(&str) -> bool) {
        let mut kept = 0;
        while self.partition.entries.len() > limit && kept < self.partition.order.len() {
            let Some(oldest) = self.partition.order.pop_front() else {
                return;
            };
            if keep(&oldest) && self.partition.entries.contains_key(&oldest) {
                self.partition.order.push_back(oldest);
                kept += 1;
            } else {
                self.delete(&oldest);
            }
        }
        // Keys deleted earlier linger in `order`; drop them once they outnumber the entries.
        if self.partition.order.len() > 2 * self.partition.entries.len() + 64 {
            let entries = &self.partition.entries;
            self.partition.order.retain(|k| entries.contains_key(k));
        }
    }
}

struct Inner<V> {
    name: String,
    changelog: String,
    publisher: Publisher,
    restore_config: ClientConfig,
    partitions: Mutex<HashMap<i32, Partition<V>>>,
    restoring: Mutex<BTreeSet<i32>>,
    gate: Gate,
    entries: IntGauge,
    writes: IntCounter,
    restored: IntCounter,
    restore_seconds: Histogram,
}

/// A partitioned key-value store backed by a compacted changelog topic. Cheap to clone.
pub struct Store<V> {
    inner: Arc<Inner<V>>,
}

impl<V> Clone for Store<V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<V> Store<V>
where
    V: Serialize + DeserializeOwned + Send + 'static,
{
    /// A store named `name` (its metrics label and readiness gate) over `changelog`.
    pub fn new(
        name: &str,
        changelog: &str,
        kafka: &KafkaConfig,
        publisher: Publisher,
        metrics: &Metrics,
        readiness: &Readiness,
    ) -> Self {
        let gate = readiness.gate_named(format!("state:{name}"), "no partition restored yet");
        // A member without partitions has nothing to restore.
        gate.ready();
        Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                changelog: changelog.to_owned(),
                publisher,
                restore_config: kafka.reader_config(),
                partitions: Mutex::default(),
                restoring: Mutex::default(),
                gate,
                entries: metrics.state_entries.with_label_values(&[name]),
                writes: metrics.state_writes.with_label_values(&[name]),
                restored: metrics.state_restored.with_label_values(&[name]),
                restore_seconds: metrics.state_restore.with_label_values(&[name]),
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn changelog(&self) -> &str {
        &self.inner.changelog
    }

    /// Reads changelog partition `partition` from its start to its end and installs it. Returns
    /// the number of entries restored.
    pub async fn restore(&self, partition: i32) -> Result<usize, StateError> {
        let inner = &self.inner;
        // Clears the `restoring` mark however this ends, dropped mid-way (the lane was told to
        // end before the restore finished) included.
        let _restoring = Restoring::mark(self, partition);
        let started = Instant::now();
        let (config, changelog, name) = (
            inner.restore_config.clone(),
            inner.changelog.clone(),
            inner.name.clone(),
        );
        // Each record is applied as it is read: memory holds the state, never the changelog.
        let read = tokio::task::spawn_blocking(move || {
            read_partition::<V>(&config, &changelog, partition, &name)
        })
        .await
        .expect("restore task");
        let Restored {
            partition: mut restored,
            records: count,
            skipped,
        } = read?;
        inner.restored.inc_by(count as u64);
        let elapsed = started.elapsed();
        inner.restore_seconds.observe(elapsed.as_secs_f64());
        let entries = &restored.entries;
        restored.order.retain(|k| entries.contains_key(k));
        let len = restored.entries.len();
        let previous = inner
            .partitions
            .lock()
            .expect("state lock")
            .insert(partition, restored);
        let delta = len as i64 - previous.map_or(0, |p| p.entries.len() as i64);
        inner.entries.add(delta);
        tracing::info!(
            store = %inner.name,
            changelog = %inner.changelog,
            partition,
            records = count,
            entries = len,
            skipped,
            restore_ms = elapsed.as_millis() as u64,
            "state restored"
        );
        Ok(len)
    }

    fn restoring(&self, partition: i32, on: bool) {
        let mut restoring = self.inner.restoring.lock().expect("restoring lock");
        if on {
            restoring.insert(partition);
        } else {
            restoring.remove(&partition);
        }
        if restoring.is_empty() {
            self.inner.gate.ready();
        } else {
            let list: Vec<String> = restoring.iter().map(ToString::to_string).collect();
            self.inner.gate.not_ready(format!(
                "restoring {}[{}]",
                self.inner.changelog,
                list.join(",")
            ));
        }
    }

    /// Drops a revoked partition's entries.
    pub fn release(&self, partition: i32) {
        if let Some(p) = self
            .inner
            .partitions
            .lock()
            .expect("state lock")
            .remove(&partition)
        {
            self.inner.entries.sub(p.entries.len() as i64);
        }
    }

    /// Forgets `key` in memory only: undoes a write whose changelog record was not acknowledged,
    /// so that the record's retry applies it again instead of taking it for already applied.
    pub fn discard(&self, partition: i32, key: &str) {
        let mut partitions = self.inner.partitions.lock().expect("state lock");
        if let Some(p) = partitions.get_mut(&partition)
            && p.entries.remove(key).is_some()
        {
            self.inner.entries.dec();
        }
    }

    /// Reads one partition's entries (`None` when the partition is not held).
    pub fn read<R>(&self, partition: i32, f: impl FnOnce(Option<&Entries<V>>) -> R) -> R {
        f(self
            .inner
            .partitions
            .lock()
            .expect("state lock")
            .get(&partition)
            .map(|p| &p.entries))
    }

    /// Runs `f` on each held partition's entries.
    pub fn read_all(&self, mut f: impl FnMut(i32, &Entries<V>)) {
        for (partition, p) in self.inner.partitions.lock().expect("state lock").iter() {
            f(*partition, &p.entries);
        }
    }

    /// The partitions held (restored and not released).
    pub fn held(&self) -> Vec<i32> {
        let mut held: Vec<i32> = self
            .inner
            .partitions
            .lock()
            .expect("state lock")
            .keys()
            .copied()
            .collect();
        held.sort_unstable();
        held
    }

    /// Changes one partition's entries and enqueues the changes to the changelog, in one step.
    /// The returned [`Acks`] resolves once the broker has acknowledged them.
    pub fn write<R>(
        &self,
        partition: i32,
        f: impl FnOnce(&mut Writer<'_, V>) -> R,
    ) -> Result<(R, Acks), StateError> {
        let inner = &self.inner;
        let mut partitions = inner.partitions.lock().expect("state lock");
        let held = partitions
            .get_mut(&partition)
            .ok_or_else(|| StateError::NotHeld {
                store: inner.name.clone(),
                partition,
            })?;
        let before = held.entries.len();
        let mut writer = Writer {
            partition: held,
            changes: Vec::new(),
        };
        let result = f(&mut writer);
        let Writer {
            partition: held,
            changes,
        } = writer;
        inner.entries.add(held.entries.len() as i64 - before as i64);
        let mut acks = Vec::with_capacity(changes.len());
        for (key, payload) in &changes {
            let ack = inner.publisher.enqueue(
                &inner.changelog,
                partition,
                key.as_bytes(),
                payload.as_deref(),
            );
            inner.writes.inc();
            acks.push(ack);
        }
        drop(partitions);
        let acks = futures::future::try_join_all(acks)
            .map_ok(|_| ())
            .map_err(StateError::from)
            .boxed();
        Ok((result, acks))
    }
}

/// Every record of `topic[partition]`, key and payload, from its start to its end.
/// A partition read from its changelog: the state, and how many records made it.
struct Restored<V> {
    partition: Partition<V>,
    records: usize,
    skipped: usize,
}

/// Reads `topic[partition]` from its start to its end, applying each record to the state as it
/// comes (a tombstone deletes its key; an undecodable value is skipped and logged).
fn read_partition<V: DeserializeOwned>(
    config: &ClientConfig,
    topic: &str,
    partition: i32,
    store: &str,
) -> Result<Restored<V>, StateError> {
    let restore_err = |source| StateError::Restore {
        changelog: topic.to_owned(),
        partition,
        source,
    };
    let consumer = reader::reader(config).map_err(restore_err)?;
    let mut restored = Restored {
        partition: Partition::default(),
        records: 0,
        skipped: 0,
    };
    reader::read_to_end(&consumer, topic, partition, RESTORE_TIMEOUT, |m| {
        restored.records += 1;
        let key = reader::key_text(&m);
        match m.payload() {
            None => {
                restored.partition.entries.remove(&key);
            }
            Some(bytes) => match serde_json::from_slice(bytes) {
                Ok(v) => restored.partition.insert(key, v),
                Err(err) => {
                    restored.skipped += 1;
                    tracing::warn!(store, key, error = %err, "undecodable changelog record skipped");
                }
            },
        }
    })
    .map_err(|e| match e {
        KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownPartition) => {
            StateError::MissingPartition {
                changelog: topic.to_owned(),
                partition,
            }
        }
        e => restore_err(e),
    })?;
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &mut Partition<u32>, f: impl FnOnce(&mut Writer<'_, u32>)) -> Vec<Change> {
        let mut w = Writer {
            partition: p,
            changes: Vec::new(),
        };
        f(&mut w);
        w.changes
    }

    #[test]
    fn changes_are_recorded_in_the_order_made_and_deletes_are_tombstones() {
        let mut p = Partition::default();
        let changes = write(&mut p, |w| {
            w.put("a", 1);
            w.put("b", 2);
            w.put("a", 3);
            w.delete("b");
            w.delete("never-there");
        });
        let keys: Vec<(&str, Option<&[u8]>)> = changes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("a", Some(b"1".as_slice())),
                ("b", Some(b"2".as_slice())),
                ("a", Some(b"3".as_slice())),
                ("b", None)
            ]
        );
        assert_eq!(p.entries, HashMap::from([("a".to_owned(), 3)]));
    }

    #[test]
    fn eviction_removes_the_oldest_first_and_spares_the_kept() {
        let mut p = Partition::default();
        write(&mut p, |w| {
            w.put("level", 0);
            for i in 1..=5 {
                w.put(&format!("k{i}"), i);
            }
            // Written again: keeps its place as the oldest window key.
            w.put("k1", 10);
        });
        let changes = write(&mut p, |w| w.evict_to(3, |k| k == "level"));
        let deleted: Vec<&str> = changes.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(deleted, vec!["k1", "k2", "k3"]);
        assert!(changes.iter().all(|(_, v)| v.is_none()));
        let mut left: Vec<&String> = p.entries.keys().collect();
        left.sort();
        assert_eq!(left, vec!["k4", "k5", "level"]);
        // Nothing but kept keys left to evict: the limit cannot be met, and nothing loops.
        let changes = write(&mut p, |w| w.evict_to(0, |_| true));
        assert!(changes.is_empty());
    }
}
