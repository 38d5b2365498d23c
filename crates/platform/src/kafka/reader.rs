//! Reading partitions outside any group: to their end (state restore, the console tool), and
//! their watermarks.
//!
//! Both take the end of a partition from the fetch responses (librdkafka's partition-EOF event
//! and its `hi_offset` statistic) rather than from a ListOffsets request: those answers come with
//! the data itself on every broker, and the local test broker's ListOffsets answers are not
//! reliable.

use super::ClientErrors;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Client callbacks of a reader: reaching a partition's end is expected, not an error worth a log
/// line; statistics feed [`watermarks`].
#[derive(Default)]
pub struct ReaderContext {
    /// (topic, partition) → (low, high) watermark, from the latest statistics.
    watermarks: Mutex<HashMap<(String, i32), (i64, i64)>>,
    errors: ClientErrors,
}

impl ReaderContext {
    /// The errors the client reported (a failed login, a refused TLS handshake).
    pub fn errors(&self) -> &ClientErrors {
        &self.errors
    }
}

impl ClientContext for ReaderContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.errors.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let end = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !end {
            self.errors.warn(&error, reason);
        }
    }

    fn stats(&self, statistics: Statistics) {
        let mut w = self.watermarks.lock().expect("watermarks lock");
        for (topic, t) in &statistics.topics {
            for (p, s) in &t.partitions {
                if *p >= 0 && s.hi_offset >= 0 {
                    w.insert((topic.clone(), *p), (s.lo_offset.max(0), s.hi_offset));
                }
            }
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// A reader over `config` (`KafkaConfig::reader_config`).
pub fn reader(config: &ClientConfig) -> KafkaResult<BaseConsumer<ReaderContext>> {
    config.create_with_context(ReaderContext::default())
}

/// Every record of `topic[partition]` from its start to its end, handed to `each` in order.
/// Fails with `UnknownPartition` if the partition does not exist, and after `timeout` without
/// reaching the end.
///
/// The topic's metadata is asked for first: a partition assigned before the client knows its
/// leader has its first offset lookup put off by librdkafka's fixed 500 ms ("no current leader"),
/// and every restore on assignment would pay that before its first record.
pub fn read_to_end(
    consumer: &BaseConsumer<ReaderContext>,
    topic: &str,
    partition: i32,
    timeout: Duration,
    mut each: impl FnMut(OwnedMessage),
) -> KafkaResult<()> {
    let deadline = Instant::now() + timeout;
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    let exists = md
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.partitions().iter().any(|p| p.id() == partition));
    if !exists {
        return Err(KafkaError::MetadataFetch(
            RDKafkaErrorCode::UnknownPartition,
        ));
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    loop {
        if Instant::now() > deadline {
            return Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(()),
            Some(Err(err)) => return Err(err),
            Some(Ok(m)) => each(m.detach()),
        }
    }
}

/// The low and high watermark of each of `partitions` of `topic`, as the fetches report them.
/// `config` must set `statistics.interval.ms`.
pub fn watermarks(
    config: &ClientConfig,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> KafkaResult<HashMap<i32, (i64, i64)>> {
    let mut config = config.clone();
    config
        .set("statistics.interval.ms", "100")
        // One small fetch per partition is enough to learn its watermarks.
        .set("fetch.message.max.bytes", "1024")
        .set("queued.max.messages.kbytes", "64");
    let consumer = reader(&config)?;
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    loop {
        let _ = consumer.poll(Duration::from_millis(100));
        let known: HashMap<i32, (i64, i64)> = {
            let w = consumer
                .context()
                .watermarks
                .lock()
                .expect("watermarks lock");
            partitions
                .iter()
                .filter_map(|p| w.get(&(topic.to_owned(), *p)).map(|lh| (*p, *lh)))
                .collect()
        };
        if known.len() == partitions.len() {
            return Ok(known);
        }
        if Instant::now() > deadline {
            return Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::OperationTimedOut,
            ));
        }
    }
}

/// A record's key as text (lossy), or empty.
pub fn key_text(m: &OwnedMessage) -> String {
    m.key()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default()
}
