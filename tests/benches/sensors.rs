//! `make bench`, the sensor path: alerting and the dashboard with 10 event-stream clients on a
//! real broker, release binaries, the short-wait fetch profile. Printed as a table and written to
//! `target/bench/sensors.json`. Not a test: nothing here passes or fails on a number.
//!
//! 1. Ingest: 200,000 readings of 1,000 sensors (200 simulated seconds of the simulator's weather)
//!    written to `sensor-readings` first, then alerting and the dashboard started; readings per second from each one's first record to its last
//!    (the dashboard's count includes delivering every one to 10 connected clients).
//!    The clients only count what they receive here. The dashboard drops a client whose queue of
//!    frames is full; the client then reconnects with `Last-Event-ID`, as a browser does, and
//!    counts as complete only if every reading reached it, none lost to a fresh snapshot.
//! 2. Latency, on a fresh broker: the sensor simulator at 1,000 readings/s (1,000 sensors, one
//!    reading a second each) for 30 s from its first acknowledged reading; for every reading
//!    each of the 10 clients receives (and parses), the time from the reading's timestamp to its
//!    arrival in the client. The readings from before the first acknowledgement (the producer's
//!    start-up) are left out, and how long that took is printed on its own line.
//! 3. Resident memory of the sensor, alerting and dashboard processes: idle (fresh, before the
//!    latency run) and the peak over both runs.
//!
//! The targets: ≥ 20,000 readings/s, p99 < 100 ms, < 64 MiB per service. There is no
//! peer: the seeds' sensor demo has no consumer to measure beside this one.

use chrono::{DateTime, Utc};
use events::{SensorReading, topics};
use futures::StreamExt;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use system_tests::procfs::{rss_kib, sample_peaks};
use system_tests::sse::SseClient;
use system_tests::topics::Writer;
use system_tests::{Broker, Service, eventually_every};

const BACKLOG: usize = 200_000;
const SENSORS: u32 = 1_000;
const CLIENTS: usize = 10;
const STEADY_RATE: u32 = 1_000;
const STEADY_SECONDS: u64 = 30;

#[derive(Serialize)]
struct Results {
    backlog_readings: usize,
    alerting_readings_per_s: f64,
    dashboard_readings_per_s: f64,
    clients: usize,
    clients_complete: usize,
    /// Reconnections after the dashboard dropped a client that fell behind, over the backlog run.
    client_reconnects: usize,
    /// The same over the latency run, and the clients that missed readings there.
    steady_client_reconnects: usize,
    steady_clients_with_gaps: usize,
    steady_rate: u32,
    steady_seconds: u64,
    /// From starting the simulator to its first acknowledged reading (polled every 5 ms); the
    /// latencies count the readings from then on.
    first_reading_acknowledged_after_ms: f64,
    latency_samples: usize,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_max_ms: f64,
    latency_p99_ms_by_third: Vec<f64>,
    rss_mib: Vec<(String, f64, f64)>,
}

/// Per client: how many readings it received, and (in the steady run) each one's timestamp and
/// latency in ms, in the order they arrived.
struct ClientRun {
    readings: usize,
    latencies_ms: Vec<(DateTime<Utc>, f64)>,
    /// Times the dashboard dropped it for falling behind and it reconnected.
    reconnects: usize,
    /// A reconnection got a fresh snapshot instead of the frames it missed.
    gap: bool,
    /// A reconnection failed, and why.
    failed: Option<String>,
}

/// Reads `update` events until `stop` or until it has `enough` readings, counting readings and,
/// when `timed`, timing each from its timestamp (which parses every reading, as a page does; the
/// backlog run only counts them, so the clients are not what limits it). When the dashboard
/// drops it for falling behind, it reconnects with `Last-Event-ID`, as a browser does, and gets
/// the frames it missed, or a fresh snapshot (a gap) when they are no longer kept. A client
/// that only counts (`timed` false) stops at a gap, since it can no longer see every reading.
async fn client(
    addr: std::net::SocketAddr,
    enough: usize,
    timed: bool,
    stop: tokio_util::sync::CancellationToken,
) -> ClientRun {
    let mut sse = SseClient::connect(addr, "/events", None).await;
    let mut last_id = String::new();
    let mut run = ClientRun {
        readings: 0,
        latencies_ms: Vec::new(),
        reconnects: 0,
        gap: false,
        failed: None,
    };
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => break,
            e = sse.next() => e,
        };
        let Some(event) = event else {
            run.reconnects += 1;
            match SseClient::try_connect(addr, "/events", Some(&last_id)).await {
                Ok(resumed) => sse = resumed,
                Err(e) => {
                    run.failed = Some(e);
                    break;
                }
            }
            continue;
        };
        if !event.id.is_empty() {
            last_id.clone_from(&event.id);
        }
        if event.name == "snapshot" && run.reconnects > 0 {
            run.gap = true;
            if !timed {
                break;
            }
        }
        if event.name != "update" {
            continue;
        }
        if !timed {
            run.readings += event.data.matches("\"sensor_reading\"").count();
            if run.readings >= enough {
                break;
            }
            continue;
        }
        let now = Utc::now();
        let update: serde_json::Value = serde_json::from_str(&event.data).expect("update json");
        for r in update["readings"].as_array().expect("readings") {
            run.readings += 1;
            let ts: DateTime<Utc> = r["timestamp"].as_str().expect("ts").parse().expect("time");
            run.latencies_ms.push((
                ts,
                (now - ts).num_microseconds().unwrap_or(0) as f64 / 1000.0,
            ));
        }
        if run.readings >= enough {
            break;
        }
    }
    run
}

/// Waits until `metric` of `service` reaches `n`; returns when it first moved and when it got
/// there (polled every 20 ms).
async fn drain_time(service: &Service, metric: &str, n: f64) -> (Instant, Instant) {
    let mut first = None;
    loop {
        let v = service.metric(metric).await;
        if v > 0.0 && first.is_none() {
            first = Some(Instant::now());
        }
        if v >= n {
            return (first.unwrap_or_else(Instant::now), Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let test = "bench_sensors";
    let broker = Broker::start_system();
    let writer = Writer::new(&broker.bootstrap);

    eprintln!("sensors: writing {BACKLOG} readings of {SENSORS} sensors …");
    // The simulator's weather, a reading a second per sensor: mostly calm, with the hot share's
    // crossings (alerts raised and cleared) where their simulated days take them.
    let mut rng = fastrand::Rng::with_seed(42);
    let mut fleet = sensor::weather::fleet(1, SENSORS, 0.2, 0.1, &mut rng);
    let start = Utc::now() - chrono::Duration::seconds((BACKLOG / SENSORS as usize) as i64);
    let mut readings = Vec::with_capacity(BACKLOG);
    for second in 0..BACKLOG / SENSORS as usize {
        let day_fraction = (second % 600) as f64 / 600.0;
        for s in &mut fleet {
            s.step(1.0, day_fraction, &mut rng);
            let (t, h) = s.reported();
            let at = start + chrono::Duration::seconds(second as i64);
            readings.push(SensorReading::new(s.sensor_id, t, h, at));
        }
    }
    futures::stream::iter(readings)
        .map(|r| {
            let writer = &writer;
            async move {
                writer
                    .write(
                        topics::SENSOR_READINGS,
                        &r.key(),
                        &serde_json::to_vec(&r).unwrap(),
                    )
                    .await
            }
        })
        .buffer_unordered(512)
        .collect::<Vec<()>>()
        .await;

    eprintln!("sensors: alerting and the dashboard ({CLIENTS} clients) drain them …");
    let alerting = Service::start(test, "alerting", &broker, &[]);
    let dashboard = Service::start(test, "dashboard", &broker, &[]);
    let addr = dashboard.addr("http").await;
    let stop = tokio_util::sync::CancellationToken::new();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(client(addr, BACKLOG, false, stop.clone())))
        .collect();
    let (peaks, sampler) = sample_peaks(vec![alerting.pid(), dashboard.pid()]);
    let consumed = "kafka_records_consumed_total";
    let (a, d) = tokio::join!(
        drain_time(&alerting, consumed, BACKLOG as f64),
        drain_time(&dashboard, "dashboard_readings_total", BACKLOG as f64),
    );
    let alerting_rate = BACKLOG as f64 / (a.1 - a.0).as_secs_f64();
    let dashboard_rate = BACKLOG as f64 / (d.1 - d.0).as_secs_f64();
    // Every client receives every reading, unless a reconnection could not resume where it was
    // dropped (a gap) or failed, or it is still behind a minute after the drain; one still behind
    // then is stopped and counted with what it has.
    let give_up = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            stop.cancel();
        })
    };
    let (mut complete, mut reconnects) = (0, 0);
    for c in clients {
        let run = c.await.expect("client");
        reconnects += run.reconnects;
        if let Some(e) = &run.failed {
            eprintln!("sensors: a client's reconnection failed: {e}");
        }
        if run.readings >= BACKLOG && !run.gap && run.failed.is_none() {
            complete += 1;
        }
    }
    give_up.abort();
    stop.cancel();
    sampler.abort();
    let drain_peaks: HashMap<&str, f64> = [("alerting", &alerting), ("dashboard", &dashboard)]
        .into_iter()
        .map(|(name, s)| {
            let kib = peaks.lock().unwrap().get(&s.pid()).copied().unwrap_or(0);
            (name, kib as f64 / 1024.0)
        })
        .collect();
    drop((alerting, dashboard, broker));

    // A fresh broker: the local broker's fetches slow down as its logs grow (README,
    // "Benchmarks"), and the backlog above would weigh on the latency run.
    eprintln!(
        "sensors: the simulator at {STEADY_RATE} readings/s for {STEADY_SECONDS} s, {CLIENTS} clients …"
    );
    let broker = Broker::start_system();
    let alerting = Service::start(test, "alerting", &broker, &[]);
    let dashboard = Service::start(test, "dashboard", &broker, &[]);
    alerting.wait_ready().await;
    dashboard.wait_ready().await;
    let addr = dashboard.addr("http").await;
    let idle = |s: &Service| rss_kib(s.pid()).unwrap_or(0) as f64 / 1024.0;
    let stop = tokio_util::sync::CancellationToken::new();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(client(addr, usize::MAX, true, stop.clone())))
        .collect();
    let (peaks, sampler) = sample_peaks(vec![alerting.pid(), dashboard.pid()]);
    let sensor_started = Utc::now();
    let sensor = Service::start(
        test,
        "sensor",
        &broker,
        &[
            ("SENSOR_COUNT", &SENSORS.to_string()),
            ("SENSOR_RATE", &STEADY_RATE.to_string()),
        ],
    );
    sensor.wait_ready().await;
    // The steady state starts with the simulator's first acknowledged reading. Before it, the
    // readings wait for the producer's id (the idempotent producer asks for one first, and when
    // no broker connection is up yet at its first try, librdkafka tries again after a fixed
    // 500 ms); that start-up wait is reported on its own line, not mixed into the steady p99.
    let producing_since = eventually_every(
        "the simulator's first acknowledged reading",
        Duration::from_secs(30),
        Duration::from_millis(5),
        || async { (sensor.metric("sensor_readings_published_total").await > 0.0).then(Utc::now) },
    )
    .await;
    let first_ack_ms = (producing_since - sensor_started)
        .num_microseconds()
        .unwrap_or(0) as f64
        / 1000.0;
    let idle_rss: Vec<(String, f64)> = [&sensor, &alerting, &dashboard]
        .iter()
        .map(|s| (s.name.clone(), idle(s)))
        .collect();
    let (sensor_peak, sensor_sampler) = sample_peaks(vec![sensor.pid()]);
    tokio::time::sleep(Duration::from_secs(STEADY_SECONDS)).await;
    stop.cancel();
    let mut latencies: Vec<f64> = Vec::new();
    // p99 over each third of the run (by arrival), to show whether the latency grows with the
    // broker's log.
    let mut thirds: [Vec<f64>; 3] = Default::default();
    let (mut steady_reconnects, mut steady_gaps) = (0, 0);
    for c in clients {
        let run = c.await.expect("client");
        steady_reconnects += run.reconnects;
        steady_gaps += usize::from(run.gap || run.failed.is_some());
        let run: Vec<f64> = run
            .latencies_ms
            .into_iter()
            .filter(|(ts, _)| *ts >= producing_since)
            .map(|(_, ms)| ms)
            .collect();
        let third = run.len().div_ceil(3).max(1);
        for (i, chunk) in run.chunks(third).enumerate() {
            thirds[i.min(2)].extend_from_slice(chunk);
        }
        latencies.extend(run);
    }
    latencies.sort_by(f64::total_cmp);
    let p99_by_third: Vec<f64> = thirds
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            percentile(t, 0.99)
        })
        .collect();
    sampler.abort();
    sensor_sampler.abort();
    let peak = |s: &Service| {
        let p = peaks.lock().unwrap().get(&s.pid()).copied();
        let q = sensor_peak.lock().unwrap().get(&s.pid()).copied();
        let drain = drain_peaks.get(s.name.as_str()).copied().unwrap_or(0.0);
        (p.or(q).unwrap_or(0) as f64 / 1024.0).max(drain)
    };
    let rss_mib: Vec<(String, f64, f64)> = [&sensor, &alerting, &dashboard]
        .iter()
        .zip(idle_rss)
        .map(|(s, (name, idle))| (name, idle, peak(s).max(idle)))
        .collect();

    let results = Results {
        backlog_readings: BACKLOG,
        alerting_readings_per_s: alerting_rate,
        dashboard_readings_per_s: dashboard_rate,
        clients: CLIENTS,
        clients_complete: complete,
        client_reconnects: reconnects,
        steady_client_reconnects: steady_reconnects,
        steady_clients_with_gaps: steady_gaps,
        steady_rate: STEADY_RATE,
        steady_seconds: STEADY_SECONDS,
        first_reading_acknowledged_after_ms: first_ack_ms,
        latency_samples: latencies.len(),
        latency_p50_ms: percentile(&latencies, 0.5),
        latency_p99_ms: percentile(&latencies, 0.99),
        latency_max_ms: latencies.last().copied().unwrap_or(f64::NAN),
        latency_p99_ms_by_third: p99_by_third,
        rss_mib,
    };
    println!("\nSensor path (release binaries, local broker, {CLIENTS} event-stream clients)");
    println!("| measure | result | target |");
    println!("|---|---:|---|");
    println!(
        "| alerting: readings ingested per second ({BACKLOG} backlog) | {:.0}/s | ≥ 20,000/s |",
        results.alerting_readings_per_s
    );
    println!(
        "| dashboard: readings ingested per second, {CLIENTS} clients | {:.0}/s | ≥ 20,000/s |",
        results.dashboard_readings_per_s
    );
    println!(
        "| clients that received every reading (a client the dashboard dropped for falling behind reconnects with `Last-Event-ID`, as a browser does) | {} of {CLIENTS} ({} reconnections) | all |",
        results.clients_complete, results.client_reconnects
    );
    println!(
        "| reading → browser event p50 / p99 / max at {STEADY_RATE}/s ({} samples) | {:.1} / {:.1} / {:.1} ms | p99 < 100 ms |",
        results.latency_samples,
        results.latency_p50_ms,
        results.latency_p99_ms,
        results.latency_max_ms
    );
    println!(
        "| the same p99 over the run's first, second and last 10 s | {:.1} / {:.1} / {:.1} ms | |",
        results.latency_p99_ms_by_third[0],
        results.latency_p99_ms_by_third[1],
        results.latency_p99_ms_by_third[2]
    );
    println!(
        "| clients dropped for falling behind during that run: reconnections; clients that missed readings | {}; {} of {CLIENTS} | |",
        results.steady_client_reconnects, results.steady_clients_with_gaps
    );
    println!(
        "| the simulator's first reading acknowledged after (start-up, left out of the latencies) | {:.0} ms | |",
        results.first_reading_acknowledged_after_ms
    );
    for (name, idle, peak) in &results.rss_mib {
        println!("| {name}: RSS idle / peak | {idle:.1} / {peak:.1} MiB | < 64 MiB |");
    }
    let dir = system_tests::root().join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let path = dir.join("sensors.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&results).expect("json")).expect("write");
    println!("\nWritten to {}", path.display());
}
