//! The stream processor against the real broker: numbers in, results and running aggregates out;
//! a processor killed mid-stream that continues from its changelog with no reset and no double
//! count; payments counted per user per minute with the window and late-record rules; dead
//! letters; `GET /state/{key}`.

use chrono::{DateTime, Utc};
use events::{
    Aggregate, Amount, LoginEvent, LoginEventType, PaymentProcessed, PaymentStatus, topics,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use system_tests::topics::{Record, Writer, read_all};
use system_tests::{Broker, Service, eventually};
use uuid::Uuid;

/// Output records of `output-topic`, one per input position (duplicates after a crash are the
/// same record again, which the test checks), by key in input order.
fn outputs_by_key(records: &[Record]) -> BTreeMap<String, Vec<Value>> {
    let mut by_id: HashMap<String, Value> = HashMap::new();
    for r in records {
        let v = r.json();
        let id = v["event_id"].as_str().expect("event_id").to_owned();
        if let Some(first) = by_id.get(&id) {
            assert_eq!(first, &v, "a redelivered input yields the identical output");
        }
        by_id.insert(id, v);
    }
    let mut by_key: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for v in by_id.into_values() {
        let key = v["key"].as_str().unwrap_or("(none)").to_owned();
        by_key.entry(key).or_default().push(v);
    }
    for outputs in by_key.values_mut() {
        outputs.sort_by_key(|v| v["source_offset"].as_i64());
    }
    by_key
}

/// Checks each key's outputs against the aggregate folded in the test from its inputs.
fn check_against_reference(
    by_key: &BTreeMap<String, Vec<Value>>,
    inputs: &BTreeMap<String, Vec<f64>>,
) {
    for (key, numbers) in inputs {
        let outputs = &by_key[key];
        assert_eq!(
            outputs.len(),
            numbers.len(),
            "one output per input of {key}"
        );
        let mut reference: Option<Aggregate> = None;
        for (n, out) in numbers.iter().zip(outputs) {
            let next = reference.map_or(Aggregate::of(*n), |a| a.with(*n));
            reference = Some(next);
            assert_eq!(out["input"].as_f64(), Some(*n), "{key}: {out}");
            assert_eq!(out["result"].as_f64(), Some(n * n), "{key}: {out}");
            let got: Aggregate =
                serde_json::from_value(out["aggregate"].clone()).expect("aggregate");
            assert_eq!(got, next, "{key}: the running aggregate after {n}");
        }
    }
}

async fn state(processor: &Service, key: &str) -> (u16, Value) {
    let res = system_tests::http()
        .get(processor.url("http", &format!("/state/{key}")).await)
        .send()
        .await
        .expect("GET /state");
    (res.status().as_u16(), res.json().await.expect("json"))
}

/// Writes the numbers `value(i)` for `i` in `range`, keyed round-robin by `keys`, to
/// `input-topic`, and records them per key in `inputs` (the reference's input).
async fn write_numbers(
    writer: &Writer,
    keys: &[&str],
    range: std::ops::Range<usize>,
    value: fn(usize) -> f64,
    inputs: &mut BTreeMap<String, Vec<f64>>,
) {
    for i in range {
        let (key, n) = (keys[i % keys.len()], value(i));
        writer
            .write(topics::INPUT, key, n.to_string().as_bytes())
            .await;
        inputs.entry(key.to_owned()).or_default().push(n);
    }
}

/// Waits until `output-topic` holds an output (by `event_id`) for each of `n` inputs.
async fn outputs_for(bootstrap: &str, n: usize) -> Vec<Record> {
    eventually(
        &format!("an output for each of {n} inputs"),
        Duration::from_secs(60),
        || async {
            let out = read_all(bootstrap, topics::OUTPUT).await;
            let ids: std::collections::HashSet<_> =
                out.iter().map(|r| r.json()["event_id"].clone()).collect();
            (ids.len() >= n).then_some(out)
        },
    )
    .await
}

/// Waits until `topic` holds at least `n` closed windows; returns them, and each by its record's
/// key (the user id or the username).
async fn closed_windows(
    bootstrap: &str,
    topic: &str,
    n: usize,
) -> (Vec<Record>, HashMap<String, Value>) {
    let windows = eventually(
        &format!("{n} closed windows on {topic}"),
        Duration::from_secs(30),
        || async {
            let w = read_all(bootstrap, topic).await;
            (w.len() >= n).then_some(w)
        },
    )
    .await;
    let by_key = windows
        .iter()
        .map(|r| (r.key.clone().expect("key"), r.json()))
        .collect();
    (windows, by_key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn numbers_are_squared_and_aggregated_per_key_and_bad_input_is_dead_lettered() {
    let broker = Broker::start_system();
    let processor = Service::start("stream_numbers", "stream-processor", &broker, &[]);
    processor.wait_ready().await;
    let writer = Writer::new(&broker.bootstrap);
    let mut inputs: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (i, key) in ["alice", "bob", "carol"]
        .iter()
        .cycle()
        .take(30)
        .enumerate()
    {
        let n = (i as f64) * 1.5 - 10.0;
        writer
            .write(topics::INPUT, key, n.to_string().as_bytes())
            .await;
        inputs.entry((*key).to_owned()).or_default().push(n);
        if i == 10 {
            writer.write(topics::INPUT, "alice", b"eleven").await;
        }
    }
    let outputs = eventually("30 outputs", Duration::from_secs(30), || async {
        let out = read_all(&broker.bootstrap, topics::OUTPUT).await;
        (out.len() >= 30).then_some(out)
    })
    .await;
    check_against_reference(&outputs_by_key(&outputs), &inputs);

    let dead = eventually(
        "the bad input dead-lettered",
        Duration::from_secs(30),
        || async {
            let dead = read_all(
                &broker.bootstrap,
                &platform::kafka::dead_letter_topic(topics::INPUT),
            )
            .await;
            (!dead.is_empty()).then_some(dead)
        },
    )
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload.as_deref(), Some(b"eleven".as_slice()));
    assert_eq!(
        dead[0].header("dlq.error.kind").as_deref(),
        Some("not_a_number")
    );
    assert_eq!(
        dead[0].header("dlq.consumer.group").as_deref(),
        Some("stream-processor")
    );

    let (status, body) = state(&processor, "bob").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["aggregates"][0]["aggregate"]["count"], 10, "{body}");
    let (status, body) = state(&processor, "nobody").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "unknown_key", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_processor_killed_mid_stream_continues_its_aggregates_from_the_changelog() {
    let broker = Broker::start_system();
    let test = "stream_restart";
    let first = Service::start(test, "stream-processor", &broker, &[]);
    first.wait_ready().await;
    let writer = Writer::new(&broker.bootstrap);
    let keys = ["k1", "k2", "k3", "k4", "k5"];
    let mut inputs: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let value = |i: usize| i as f64;
    write_numbers(&writer, &keys, 0..150, value, &mut inputs).await;
    eventually(
        "some outputs before the kill",
        Duration::from_secs(30),
        || async { (read_all(&broker.bootstrap, topics::OUTPUT).await.len() >= 60).then_some(()) },
    )
    .await;
    first.signal("KILL");
    drop(first);
    let second = Service::start(test, "stream-processor", &broker, &[]);
    second.wait_ready().await;
    write_numbers(&writer, &keys, 150..300, value, &mut inputs).await;
    let outputs = outputs_for(&broker.bootstrap, 300).await;
    // Every output, before and after the kill, carries the aggregate the reference computes: no
    // reset to zero, no input counted twice.
    check_against_reference(&outputs_by_key(&outputs), &inputs);
    for key in keys {
        let (_, body) = state(&second, key).await;
        let count = body["aggregates"][0]["aggregate"]["count"].as_u64();
        assert_eq!(count, Some(60), "{key}: {body}");
    }
    let restored: u64 = second
        .logged("state restored")
        .iter()
        .filter(|l| l["store"] == "aggregates")
        .filter_map(|l| l["records"].as_u64())
        .sum();
    assert!(
        restored > 0,
        "the new member restored the aggregates from the changelog"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aggregates_move_with_their_partitions_in_a_rebalance() {
    let broker = Broker::start_system();
    let test = "stream_rebalance";
    let mut first = Service::start(test, "stream-processor", &broker, &[]);
    first.wait_ready().await;
    let writer = Writer::new(&broker.bootstrap);
    let keys = ["r1", "r2", "r3", "r4", "r5", "r6"];
    let mut inputs: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let value = |i: usize| (i % 17) as f64 - 3.0;
    write_numbers(&writer, &keys, 0..120, value, &mut inputs).await;
    // A second member joins, then the first leaves: every partition is revoked from one member
    // and assigned to the other, which restores its state from the changelog.
    let second = Service::start(test, "stream-processor", &broker, &[]);
    second.wait_ready().await;
    write_numbers(&writer, &keys, 120..180, value, &mut inputs).await;
    first.signal("TERM");
    first.wait_exit(Duration::from_secs(30)).await;
    write_numbers(&writer, &keys, 180..300, value, &mut inputs).await;
    let outputs = outputs_for(&broker.bootstrap, 300).await;
    check_against_reference(&outputs_by_key(&outputs), &inputs);
    // Every partition of the group's four topics.
    let all: i32 = [
        topics::INPUT,
        topics::PAYMENTS,
        topics::PAYMENTS_BY_USER,
        topics::LOGIN_EVENTS,
    ]
    .iter()
    .map(|t| topics::get(t).expect("a topic of the table").partitions)
    .sum();
    eventually(
        "the second member to hold every partition",
        Duration::from_secs(30),
        || async {
            let (status, body) = second.readyz().await;
            (status == 200 && body["assignment"]["count"] == all).then_some(())
        },
    )
    .await;
    let restored: u64 = second
        .logged("state restored")
        .iter()
        .filter(|l| l["store"] == "aggregates")
        .filter_map(|l| l["records"].as_u64())
        .sum();
    assert!(
        restored > 0,
        "the second member restored what the first had written"
    );
}

fn payment(user_id: u64, at: DateTime<Utc>, declined: bool, cents: i64) -> PaymentProcessed {
    PaymentProcessed {
        event_id: Uuid::new_v4(),
        event_type: PaymentProcessed::EVENT_TYPE.into(),
        occurred_at: at,
        order_id: Uuid::new_v4(),
        user_id,
        amount: Amount::from_cents(cents),
        currency: "USD".into(),
        status: if declined {
            PaymentStatus::PaymentFailed
        } else {
            PaymentStatus::PaymentSuccessful
        },
        reason: declined.then(|| "card declined".into()),
        order_created_at: at,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_are_counted_per_user_per_minute_and_late_ones_are_dropped() {
    let broker = Broker::start_system();
    let processor = Service::start("stream_windows", "stream-processor", &broker, &[]);
    processor.wait_ready().await;
    let writer = Writer::new(&broker.bootstrap);
    // Keyed by user here (payment keys by order), so that each user's payments reach the
    // processor in the order written and the test knows what is late.
    let write = async |p: &PaymentProcessed| {
        let payload = serde_json::to_vec(p).expect("json");
        writer
            .write(topics::PAYMENTS, &format!("user-{}", p.user_id), &payload)
            .await;
    };
    let t0: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().expect("time");
    let at = |s: i64| t0 + chrono::Duration::milliseconds(s);
    // User 7: three declines and a success in [10:00, 10:01), one of them delivered twice;
    // user 8: one success in the same minute, then one at 10:01:30 that closes its window.
    let first_minute = [
        payment(7, at(1_000), true, 1_000),
        payment(7, at(20_000), true, 2_000),
        payment(7, at(59_999), true, 3_000),
        payment(7, at(30_000), false, 4_000),
        payment(8, at(5_000), false, 500),
    ];
    for p in &first_minute {
        write(p).await;
    }
    write(&first_minute[0]).await;
    // 10:01:09.999 is inside the 10 s grace: the first minute stays open and takes a straggler.
    write(&payment(7, at(69_999), false, 100)).await;
    write(&payment(7, at(45_000), false, 5_000)).await;
    // 10:01:10 closes 10:00 for user 7's partition; a 10:00 payment after that is late.
    write(&payment(7, at(70_000), false, 100)).await;
    write(&payment(7, at(50_000), true, 9_999)).await;
    write(&payment(8, at(90_000), false, 100)).await;

    let (windows, by_user) = closed_windows(&broker.bootstrap, topics::PAYMENT_WINDOWS, 2).await;
    let u7 = &by_user["7"];
    assert_eq!(u7["window_start"], "2026-11-22T10:00:00Z");
    assert_eq!(u7["window_end"], "2026-11-22T10:01:00Z");
    assert_eq!(
        u7["payments"], 5,
        "the duplicate once, the straggler in, the late one out: {u7}"
    );
    assert_eq!(u7["declined"], 3);
    assert_eq!(u7["amount"], 150.0);
    assert_eq!(u7["suspected_card_testing"], true);
    let u8 = &by_user["8"];
    assert_eq!(
        (u8["payments"].as_u64(), u8["declined"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(u8["suspected_card_testing"], false);
    assert_eq!(windows.len(), 2, "each window is published once");

    let late = eventually(
        "the late payment counted",
        Duration::from_secs(10),
        || async {
            let n = processor.metric("stream_late_records_total").await;
            (n >= 1.0).then_some(n)
        },
    )
    .await;
    assert_eq!(late, 1.0);
    // User 7's 10:01 window is still open.
    let (status, body) = state(&processor, "7").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["payment_windows"][0]["open_windows"][0]["window_start"], "2026-11-22T10:01:00Z",
        "{body}"
    );
    // Each re-keyed payment kept its trace: the repartition topic carries a traceparent.
    let rekeyed = read_all(&broker.bootstrap, topics::PAYMENTS_BY_USER).await;
    assert!(rekeyed.iter().all(|r| r.header("traceparent").is_some()));
    assert!(
        rekeyed
            .iter()
            .all(|r| r.key.as_deref() == Some("7") || r.key.as_deref() == Some("8"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_logins_per_username_per_minute_flag_a_brute_force_attempt() {
    let broker = Broker::start_system();
    let processor = Service::start("stream_logins", "stream-processor", &broker, &[]);
    processor.wait_ready().await;
    let writer = Writer::new(&broker.bootstrap);
    let t0: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().expect("time");
    let login = |username: &str, event_type: LoginEventType, s: i64| LoginEvent {
        event_id: Uuid::new_v4(),
        event_type,
        occurred_at: t0 + chrono::Duration::milliseconds(s),
        username: username.to_owned(),
        failed_attempts: None,
        locked_until: None,
    };
    let mut events = vec![login("eve", LoginEventType::NewUserCreated, 500)];
    for i in 1..=5 {
        events.push(login("eve", LoginEventType::IncorrectPassword, i * 1_000));
    }
    events.push(login("eve", LoginEventType::LoginSucceeded, 9_000));
    events.push(login("bob", LoginEventType::LoginSucceeded, 2_000));
    // Past 10:01:10 for each username's partition: their 10:00 windows close.
    events.push(login("eve", LoginEventType::IncorrectPassword, 75_000));
    events.push(login("bob", LoginEventType::LoginSucceeded, 80_000));
    for e in &events {
        let payload = serde_json::to_vec(e).expect("json");
        writer
            .write(topics::LOGIN_EVENTS, &e.username, &payload)
            .await;
    }
    let (_, by_name) = closed_windows(&broker.bootstrap, topics::LOGIN_WINDOWS, 2).await;
    let eve = &by_name["eve"];
    assert_eq!(eve["window_start"], "2026-11-22T10:00:00Z");
    assert_eq!(
        (eve["attempts"].as_u64(), eve["failed"].as_u64()),
        (Some(6), Some(5)),
        "{eve}"
    );
    assert_eq!(eve["suspected_brute_force"], true);
    let bob = &by_name["bob"];
    assert_eq!(
        (bob["attempts"].as_u64(), bob["failed"].as_u64()),
        (Some(1), Some(0)),
        "{bob}"
    );
    assert_eq!(bob["suspected_brute_force"], false);
    let (status, body) = state(&processor, "eve").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["login_windows"][0]["open_windows"][0]["window_start"], "2026-11-22T10:01:00Z",
        "{body}"
    );
}
