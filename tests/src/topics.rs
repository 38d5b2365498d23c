//! Reading a topic from the beginning to its current end, and writing raw records to it, as a
//! test's independent view of what the services produced.

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    pub fn header(&self, key: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_ref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn json(&self) -> Value {
        self.payload
            .as_deref()
            .and_then(|p| serde_json::from_slice(p).ok())
            .unwrap_or(Value::Null)
    }
}

/// Every record now in `topic`, from each partition's start to its high watermark.
///
/// The high watermark comes from the fetch responses (librdkafka's `hi_offset` statistic), not from
/// a ListOffsets request, which the local broker answers wrongly.
pub async fn read_all(bootstrap: &str, topic: &str) -> Vec<Record> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_all_blocking(&bootstrap, &topic))
        .await
        .expect("reader task")
}

/// The latest high watermark per partition of one topic, from statistics.
#[derive(Default)]
struct HighWatermarks {
    topic: String,
    hi: Mutex<HashMap<i32, i64>>,
}

impl ClientContext for HighWatermarks {
    fn stats(&self, statistics: Statistics) {
        if let Some(t) = statistics.topics.get(&self.topic) {
            let mut hi = self.hi.lock().expect("hi lock");
            for (p, s) in &t.partitions {
                if *p >= 0 && s.hi_offset >= 0 {
                    hi.insert(*p, s.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for HighWatermarks {}

fn read_all_blocking(bootstrap: &str, topic: &str) -> Vec<Record> {
    let context = HighWatermarks {
        topic: topic.to_owned(),
        hi: Mutex::default(),
    };
    let consumer: BaseConsumer<HighWatermarks> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("test-reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("statistics.interval.ms", "100")
        .create_with_context(context)
        .expect("reader consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let partitions: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = {
            let hi = consumer.context().hi.lock().expect("hi lock");
            partitions.iter().all(|p| {
                hi.get(p)
                    .is_some_and(|&h| next.get(p).copied().unwrap_or(0) >= h)
            })
        };
        if done {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "reading {topic} to its end timed out"
        );
        let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let msg = msg.expect("consume");
        next.insert(msg.partition(), msg.offset() + 1);
        records.push(Record {
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: msg.payload().map(<[u8]>::to_vec),
            headers: msg
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
}

/// A producer for writing raw (possibly broken) records straight to a topic.
pub struct Writer(FutureProducer);

impl Writer {
    pub fn new(bootstrap: &str) -> Self {
        Self(
            ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("acks", "all")
                .create()
                .expect("test producer"),
        )
    }

    pub async fn write(&self, topic: &str, key: &str, payload: &[u8]) {
        self.write_opt(topic, key, Some(payload)).await;
    }

    /// Writes a valid `order_created` for `user_id` straight to `orders` (bypassing the order API),
    /// keyed by its order id, and returns that id.
    pub async fn write_order(&self, user_id: u64, cents: i64) -> String {
        let order = events::OrderCreated::new(
            serde_json::from_value(crate::order_body(user_id, cents)).expect("a valid order body"),
            chrono::Utc::now(),
        );
        let id = order.order_id.to_string();
        let payload = serde_json::to_vec(&order).expect("json");
        self.write(events::topics::ORDERS, &id, &payload).await;
        id
    }

    /// Writes a record with its timestamp set (ms since the epoch).
    pub async fn write_at(&self, topic: &str, key: &str, payload: &[u8], timestamp: i64) {
        let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .timestamp(timestamp);
        self.0
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("raw record acknowledged");
    }

    /// Writes a record whose payload may be absent (a tombstone).
    pub async fn write_opt(&self, topic: &str, key: &str, payload: Option<&[u8]>) {
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).key(key);
        record.payload = payload;
        self.0
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("raw record acknowledged");
    }
}

/// The offsets `group` has committed on `topic`, per partition (partitions without a commit are
/// left out). Asks the group coordinator without joining the group.
pub async fn committed(bootstrap: &str, group: &str, topic: &str) -> HashMap<i32, i64> {
    let (bootstrap, group, topic) = (bootstrap.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("offsets consumer");
        let md = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("topic metadata");
        let mut tpl = TopicPartitionList::new();
        for p in md.topics()[0].partitions() {
            tpl.add_partition(&topic, p.id());
        }
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    })
    .await
    .expect("offsets task")
}
