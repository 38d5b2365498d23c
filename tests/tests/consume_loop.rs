//! The platform's consume loop in-process against the real broker, with a handler that records
//! what it is given: one key strictly in order while different keys overlap, the in-flight bound,
//! and a retrying record that pauses only its partition while the member stays in its group.

use platform::config::Env;
use platform::http::Readiness;
use platform::kafka::{
    ConsumeLoop, HandleError, Handler, KafkaConfig, Publisher, RecordMeta, Rejection,
};
use platform::metrics::Metrics;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use system_tests::{Broker, eventually};
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "work";

/// What the handler saw: each successful call in completion order, and how many ran at once.
#[derive(Default)]
struct Recorder {
    done: Mutex<Vec<(i32, i64, String, u64)>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
    /// A key whose records fail retriably until this instant.
    stuck: Option<(String, Instant)>,
    failures: AtomicUsize,
}

impl Recorder {
    fn done(&self) -> Vec<(i32, i64, String, u64)> {
        self.done.lock().expect("lock").clone()
    }
}

struct Recording(Arc<Recorder>);

impl Handler for Recording {
    type Input = u64;

    fn decode(&self, _meta: &RecordMeta, payload: Option<&[u8]>) -> Result<u64, Rejection> {
        std::str::from_utf8(payload.unwrap_or_default())
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(Rejection {
                kind: "syntax",
                reason: "not a sequence number".into(),
            })
    }

    async fn handle(&self, seq: &u64, meta: &RecordMeta) -> Result<(), HandleError> {
        let r = &self.0;
        let now = r.active.fetch_add(1, Ordering::SeqCst) + 1;
        r.max_active.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(3)).await;
        let key = meta.key.clone().unwrap_or_default();
        let result = match &r.stuck {
            Some((stuck, until)) if *stuck == key && Instant::now() < *until => {
                r.failures.fetch_add(1, Ordering::SeqCst);
                Err(HandleError::Retriable("injected failure".into()))
            }
            _ => {
                r.done
                    .lock()
                    .expect("lock")
                    .push((meta.partition, meta.offset, key, *seq));
                Ok(())
            }
        };
        r.active.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

fn config(broker: &Broker, extra: &[(&str, &str)]) -> KafkaConfig {
    let mut pairs = vec![("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap.as_str())];
    pairs.extend_from_slice(system_tests::TEST_SERVICE_ENV);
    pairs.push(("KAFKA_RETRY_BACKOFF_MAX_MS", "500"));
    pairs.extend_from_slice(extra);
    KafkaConfig::from_env(&Env::from_pairs(pairs), "consume-loop-test").expect("valid config")
}

/// Starts a member of a fresh group; returns its metrics and the token that stops it.
fn start(
    config: &KafkaConfig,
    recorder: &Arc<Recorder>,
) -> (Metrics, CancellationToken, tokio::task::JoinHandle<()>) {
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let readiness = Readiness::new(shutdown.clone());
    let publisher = Publisher::new(config, metrics.clone()).expect("producer");
    let group = format!("test-{}", uuid::Uuid::new_v4());
    let consumer = ConsumeLoop::new(
        config,
        &group,
        &[TOPIC],
        Recording(recorder.clone()),
        publisher,
        metrics.clone(),
        &readiness,
    )
    .expect("consumer");
    let task = tokio::spawn(consumer.run(shutdown.clone()));
    (metrics, shutdown, task)
}

async fn write(broker: &Broker, records: &[(i32, String, u64)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let sends = records.iter().map(|(partition, key, seq)| {
        let payload = seq.to_string();
        let producer = producer.clone();
        let key = key.clone();
        let partition = *partition;
        async move {
            producer
                .send(
                    FutureRecord::to(TOPIC)
                        .partition(partition)
                        .key(&key)
                        .payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("written");
        }
    });
    // One partition's records must land in order: write them one partition at a time.
    let mut by_partition: HashMap<i32, Vec<_>> = HashMap::new();
    for (send, (p, _, _)) in sends.zip(records) {
        by_partition.entry(*p).or_default().push(send);
    }
    let tasks = by_partition.into_values().map(|sends| async move {
        for send in sends {
            send.await;
        }
    });
    futures::future::join_all(tasks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_key_runs_in_order_while_different_keys_overlap_under_the_in_flight_bound() {
    let broker = Broker::start(&[(TOPIC, 3)]);
    // 30 keys, 20 records each, a key always on the same partition.
    let records: Vec<(i32, String, u64)> = (0..600u64)
        .map(|i| {
            let key = i % 30;
            ((key % 3) as i32, format!("key-{key}"), i / 30)
        })
        .collect();
    write(&broker, &records).await;

    let recorder = Arc::new(Recorder::default());
    let (metrics, shutdown, task) = start(
        &config(&broker, &[("KAFKA_MAX_IN_FLIGHT", "16")]),
        &recorder,
    );
    eventually("600 records handled", Duration::from_secs(60), || async {
        (recorder.done().len() >= 600).then_some(())
    })
    .await;
    shutdown.cancel();
    task.await.expect("consume loop");

    let done = recorder.done();
    assert_eq!(done.len(), 600, "each record handled once");
    let mut per_key: HashMap<&str, Vec<u64>> = HashMap::new();
    for (_, _, key, seq) in &done {
        per_key.entry(key).or_default().push(*seq);
    }
    for (key, seqs) in &per_key {
        assert_eq!(
            *seqs,
            (0..20).collect::<Vec<u64>>(),
            "{key} handled in order"
        );
    }
    let max = recorder.max_active.load(Ordering::SeqCst);
    assert!(
        max > 1,
        "different keys ran concurrently (at most {max} at once)"
    );
    assert!(
        max <= 16,
        "{max} records ran at once, above the bound of 16"
    );
    assert_eq!(metrics.in_flight.get(), 0, "nothing left in flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retrying_record_pauses_only_its_partition_and_the_member_stays_in_its_group() {
    let broker = Broker::start(&[(TOPIC, 2)]);
    // Longer than max.poll.interval.ms: a member that stopped polling while it retries would be
    // evicted from the group and its partitions revoked.
    let stuck_for = Duration::from_secs(9);
    let recorder = Arc::new(Recorder {
        stuck: Some(("stuck".into(), Instant::now() + stuck_for)),
        ..Recorder::default()
    });
    write(&broker, &[(0, "stuck".to_owned(), 0)]).await;
    let config = config(
        &broker,
        &[("KAFKA_EXTRA_CONFIG", "max.poll.interval.ms=6000")],
    );
    let (metrics, shutdown, task) = start(&config, &recorder);
    eventually(
        "the stuck record's partition paused",
        Duration::from_secs(30),
        || async { (metrics.paused_partitions.get() == 1).then_some(()) },
    )
    .await;

    // Written while the stuck record retries: the other partition flows, its own waits.
    let mut records: Vec<(i32, String, u64)> =
        (1..=50).map(|i| (0, format!("after-{i}"), i)).collect();
    records.extend((1..=50).map(|i| (1, format!("other-{i}"), i)));
    write(&broker, &records).await;
    eventually(
        "the other partition drained",
        Duration::from_secs(30),
        || async { (recorder.done().iter().filter(|d| d.0 == 1).count() == 50).then_some(()) },
    )
    .await;
    let early = recorder.done();
    assert!(
        early.iter().all(|d| d.0 == 1),
        "records of the paused partition were taken while the stuck one retries: {:?}",
        early.iter().filter(|d| d.0 == 0).collect::<Vec<_>>()
    );
    assert!(recorder.failures.load(Ordering::SeqCst) >= 1);

    eventually("every record handled", Duration::from_secs(60), || async {
        (recorder.done().len() == 101).then_some(())
    })
    .await;
    assert_eq!(metrics.paused_partitions.get(), 0, "resumed");
    let partition0: Vec<i64> = recorder
        .done()
        .iter()
        .filter(|d| d.0 == 0)
        .map(|d| d.1)
        .collect();
    assert_eq!(
        partition0[0], 0,
        "the stuck record finished first in its partition"
    );
    assert_eq!(
        metrics.rebalances.with_label_values(&["revoke"]).get(),
        0,
        "the member kept its partitions through {stuck_for:?} of retries"
    );
    shutdown.cancel();
    task.await.expect("consume loop");
}
