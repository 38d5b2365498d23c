//! `make bench`: the order flow side by side with the seed-style Python peer
//! (`../shared/peers/seed_pipeline.py`, kafka-python) on the same local broker, in the same run,
//! printed as tables with ratios and written to `target/bench/results.json`. Not a test: nothing
//! here passes or fails on a number.
//!
//! Both sides run order → payment → notification (inventory, which the peer does not have, is
//! left out), gateway 0 ms, INFO logs as shipped. The project runs with the short-wait fetch
//! profile (`KAFKA_FETCH_WAIT_MAX_MS=10`, the test harness's default) unless a run says
//! otherwise; the peer's kafka-python keeps its default 500 ms wait.
//!
//! 1. Throughput, orders written straight to `orders` (20,000 orders, as fast as possible); then
//!    again with the shipped 500 ms fetch wait instead of the short-wait profile (the peer's
//!    client waits 500 ms too): saturated, a fetch finds records waiting either way, but the
//!    short wait has every idle moment cost a fetch, on both the consumers' and the broker's CPU.
//! 2. Throughput through `POST /orders` (the load generator, 20,000 orders, rate 0); the peer has
//!    no API, so its straight figure is the reference.
//! 3. Latency created → notified at a steady 1,000 orders/s (10,000 orders), also over each fifth
//!    of the run, then through fresh services on the broker that run left behind (2,000 orders);
//!    then all of that again with the producers lingering 5 ms (librdkafka's default) instead of
//!    the shipped 10 ms. The latency comes from the notification events' own timestamps; the
//!    load generator's reader only counts, and waits 500 ms so as not to load the broker.
//! 4. CPU per 1,000 orders: order + payment + notification (the peer: its three processes,
//!    start-up included), saturated and at the steady rate, and each service's resident memory,
//!    idle and peak (and payment's and notification's peak in the straight run). The broker's
//!    own CPU per 1,000 orders beside it, for both sides: what each side's clients cost the
//!    broker they share the machine with.
//!    Then where the whole machine's CPU went in the saturated runs (the services, the harness
//!    writing or loading them, the broker), and the throughput that much CPU per order allows on
//!    the machine's cores.
//! 5. One payment replica with a 5 ms gateway, then 1 → 2 → 3 → 6 replicas, draining a backlog.
//!
//! Without `../shared` (a user's clone), the peer's columns are skipped with a line saying so.

use events::{NotificationSent, PaymentProcessed, topics};
use futures::StreamExt;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use system_tests::procfs::{cpu_seconds, peak_rss_kib, rss_kib, sample_peaks};
use system_tests::service::partitions_shared_by;
use system_tests::topics::{Writer, read_all};
use system_tests::{Broker, Service, eventually};

const ORDERS: usize = 20_000;
const STEADY_RATE: f64 = 1_000.0;
const STEADY_ORDERS: u64 = 10_000;
/// Orders at the steady rate through fresh services on the broker the steady run left behind.
const AGED_ORDERS: u64 = 2_000;
const GATEWAY_0: &[(&str, &str)] = &[("PAYMENT_GATEWAY_LATENCY_MS", "0")];
/// The steady run is repeated with the producers batching for 5 ms (librdkafka's default, and the
/// project's before 10 ms measured better) instead of the shipped 10 ms. The
/// local broker's cost is per request (librdkafka sends one per partition and batch) and per
/// stored batch, so at 1,000 orders/s fewer, fuller batches weigh on it less
/// (`docs/benchmarks.md`, "What the broker spends, and the producers' linger").
const LINGER_5: &[(&str, &str)] = &[
    ("PAYMENT_GATEWAY_LATENCY_MS", "0"),
    ("KAFKA_LINGER_MS", "5"),
];
/// The load generator's `notifications` reader's fetch wait in the steady runs (see `load`).
const OBSERVER_WAIT: Duration = Duration::from_millis(500);
const GATEWAY_5: &[(&str, &str)] = &[("PAYMENT_GATEWAY_LATENCY_MS", "5")];
/// The straight run again with the shipped fetch wait (`KafkaConfig`'s default, librdkafka's and
/// the peer's client's too) instead of the harness's short-wait profile.
const FETCH_WAIT_500: &[(&str, &str)] = &[
    ("PAYMENT_GATEWAY_LATENCY_MS", "0"),
    ("KAFKA_FETCH_WAIT_MAX_MS", "500"),
];

#[derive(Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    memory_gib: f64,
    kernel: String,
    broker: &'static str,
    profile: &'static str,
}

#[derive(Serialize, Default, Clone)]
struct PeerRun {
    /// How many orders it ran.
    orders: usize,
    output: String,
    throughput: Option<f64>,
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    cpu_s: f64,
    /// The broker's CPU time over the peer's whole run, its start-up included.
    broker_cpu_s: f64,
}

impl PeerRun {
    /// Its three processes' CPU, as milliseconds per 1,000 orders.
    fn cpu_ms_per_1000(&self) -> f64 {
        ms_per_1000(self.cpu_s, self.orders)
    }

    /// The broker's CPU over its run, as milliseconds per 1,000 orders.
    fn broker_cpu_ms_per_1000(&self) -> f64 {
        ms_per_1000(self.broker_cpu_s, self.orders)
    }
}

#[derive(Serialize)]
struct Resources {
    service: String,
    idle_rss_mib: f64,
    peak_rss_mib: f64,
    cpu_ms_per_1000_orders: f64,
}

#[derive(Serialize)]
struct Scaling {
    replicas: usize,
    orders: usize,
    throughput: f64,
    efficiency: f64,
}

#[derive(Serialize)]
struct Steady {
    /// The load generator's report: its counts. Its own latency figures include its reader's
    /// `OBSERVER_WAIT`; `created_to_notified` is the latency to read.
    report: loadgen::Report,
    /// Created → notified from the notification events' own timestamps, as the peer measures.
    created_to_notified: loadgen::Latency,
    /// Its p99 over each fifth of the run, by creation time.
    p99_ms_by_fifth: Vec<f64>,
    /// Created → notified through fresh services, on the broker the run left behind.
    fresh_services_aged_broker: loadgen::Latency,
    /// Order + payment + notification during the run (start-up left out).
    cpu_ms_per_1000: f64,
    /// The broker during the run.
    broker_cpu_ms_per_1000: f64,
}

/// Orders written straight to `orders`.
#[derive(Serialize)]
struct Straight {
    throughput: f64,
    /// Payment + notification, from the first write to the last notification.
    cpu_ms_per_1000: f64,
    /// The broker over the same time.
    broker_cpu_ms_per_1000: f64,
    /// The writer (this process) over the same time.
    harness_cpu_ms_per_1000: f64,
    /// When, after the first write, every order had been acknowledged, the last payment was
    /// published and the last notification sent.
    written_ms: f64,
    last_payment_ms: f64,
    last_notification_ms: f64,
    /// Payment's and notification's highest resident memory (`VmHWM`), start-up included.
    peak_rss_mib: [f64; 2],
}

/// The saturating run through the API.
#[derive(Serialize)]
struct Api {
    report: loadgen::Report,
    /// The load generator (this process: its HTTP clients and its `notifications` reader)
    /// during the run.
    harness_cpu_ms_per_1000: f64,
    /// The broker during the run.
    broker_cpu_ms_per_1000: f64,
}

#[derive(Serialize)]
struct Results {
    machine: Machine,
    peer_available: bool,
    straight_peer: Option<PeerRun>,
    straight_project: Straight,
    straight_project_fetch_wait_500: Straight,
    api_project: Api,
    steady_peer: Option<PeerRun>,
    steady_project: Steady,
    steady_project_linger_5: Steady,
    resources: Vec<Resources>,
    payment_scaling: Vec<Scaling>,
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    Machine {
        cpu: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".into()),
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        memory_gib: kib / 1024.0 / 1024.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        broker: "tansu (in memory), same machine",
        profile: "release",
    }
}

/// The peer's script: `PEER_SCRIPT`, else `../shared/peers/seed_pipeline.py` beside the checkout.
fn peer_script() -> Option<PathBuf> {
    let path = std::env::var_os("PEER_SCRIPT").map_or_else(
        || system_tests::root().join("../shared/peers/seed_pipeline.py"),
        PathBuf::from,
    );
    path.is_file().then_some(path)
}

/// Runs the peer (`N [RATE]`) against `broker` under a wrapper that adds up the CPU time of its
/// processes.
fn run_peer(script: &PathBuf, broker: &Broker, n: usize, rate: Option<f64>) -> PeerRun {
    let python = system_tests::install_tools("peer")
        .parent()
        .expect(".tools")
        .join("peer-venv/bin/python");
    const WRAPPER: &str = "import resource, subprocess, sys\n\
        r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n\
        u = resource.getrusage(resource.RUSAGE_CHILDREN)\n\
        sys.stdout.write(r.stdout); sys.stderr.write(r.stderr)\n\
        print(f'cpu_s {u.ru_utime + u.ru_stime}')\n\
        sys.exit(r.returncode)\n";
    let mut cmd = std::process::Command::new(&python);
    cmd.args(["-c", WRAPPER])
        .arg(&python)
        .arg(script)
        .arg(&broker.bootstrap)
        .arg(n.to_string());
    if let Some(rate) = rate {
        cmd.arg(rate.to_string());
    }
    let broker_before = process_cpu(broker.pid());
    let out = cmd.output().expect("run the peer");
    let broker_cpu_s = process_cpu(broker.pid()) - broker_before;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the peer failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut run = PeerRun {
        orders: n,
        broker_cpu_s,
        ..PeerRun::default()
    };
    for line in stdout.lines() {
        if let Some(cpu) = line.strip_prefix("cpu_s ") {
            run.cpu_s = cpu.parse().unwrap_or(0.0);
        } else if line.starts_with("peer:") {
            run.output = line.to_owned();
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |w: &str| {
                words
                    .iter()
                    .position(|x| *x == w)
                    .and_then(|i| words.get(i + 1))
                    .and_then(|v| {
                        v.trim_start_matches('(')
                            .trim_end_matches("/s)")
                            .parse()
                            .ok()
                    })
            };
            run.p50_ms = after("p50");
            run.p95_ms = after("p95");
            run.p99_ms = after("p99");
            run.max_ms = after("max");
            run.throughput = words.last().filter(|w| w.ends_with("/s)")).and_then(|w| {
                w.trim_start_matches('(')
                    .trim_end_matches("/s)")
                    .parse()
                    .ok()
            });
        }
    }
    run
}

/// CPU seconds spent on `orders` orders, as milliseconds per 1,000 orders.
fn ms_per_1000(cpu_s: f64, orders: usize) -> f64 {
    cpu_s * 1000.0 / orders as f64 * 1000.0
}

/// User plus system CPU seconds of a process so far (0 once it has gone).
fn process_cpu(pid: u32) -> f64 {
    cpu_seconds(pid).unwrap_or(0.0)
}

fn cpu_of<'a>(services: impl IntoIterator<Item = &'a Service>) -> f64 {
    services.into_iter().map(|s| process_cpu(s.pid())).sum()
}

/// This process's CPU so far: the writer's or the load generator's, the harness's side of a run.
fn harness_cpu() -> f64 {
    process_cpu(std::process::id())
}

/// Writes `ORDERS` valid orders straight to `orders`, every one handed to the producer at once
/// and acknowledged as the broker takes it, as the peer's producer sends them all and flushes at
/// the end: the writer does not pace the services draining them (with a bound on the writes in
/// flight it did, one round trip per bound's worth of orders).
async fn write_orders(writer: &Writer, cents: impl Fn(usize) -> i64) {
    futures::stream::iter(0..ORDERS)
        .map(|i| writer.write_order(1 + i as u64 % 100, cents(i)))
        .buffer_unordered(ORDERS)
        .collect::<Vec<String>>()
        .await;
}

/// The `occurred_at` of every event of type `E` in `topic`.
async fn occurred<E: serde::de::DeserializeOwned>(
    broker: &Broker,
    topic: &str,
    at: impl Fn(&E) -> chrono::DateTime<chrono::Utc>,
) -> Vec<chrono::DateTime<chrono::Utc>> {
    read_all(&broker.bootstrap, topic)
        .await
        .iter()
        .filter_map(|r| serde_json::from_value::<E>(r.json()).ok())
        .map(|e| at(&e))
        .collect()
}

/// Orders written straight to `orders`, payment and notification (started with `env`) draining
/// them: orders/s from the first write to the last notification's timestamp, when the writing,
/// the payments and the notifications ended, and the CPU ms per 1,000 orders of the two
/// services, of the writer and of the broker.
async fn run_straight(test: &str, broker: &Broker, env: &[(&str, &str)]) -> Straight {
    let payment = Service::start(test, "payment", broker, env);
    let notification = Service::start(test, "notification", broker, env);
    payment.wait_ready().await;
    notification.wait_ready().await;
    let cpu_before = cpu_of([&payment, &notification]);
    let broker_before = process_cpu(broker.pid());
    let harness_before = harness_cpu();
    let writer = Writer::new(&broker.bootstrap);
    let started = chrono::Utc::now();
    write_orders(&writer, |i| 1_000 + i as i64 % 400).await;
    let written = chrono::Utc::now();
    eventually("every order notified", Duration::from_secs(600), || async {
        (notification.metric("notifications_sent_total").await >= ORDERS as f64).then_some(())
    })
    .await;
    let cpu = cpu_of([&payment, &notification]) - cpu_before;
    let broker_cpu = process_cpu(broker.pid()) - broker_before;
    let harness = harness_cpu() - harness_before;
    let since = |t: chrono::DateTime<chrono::Utc>| {
        (t - started).to_std().unwrap_or_default().as_secs_f64() * 1000.0
    };
    let last =
        |times: Vec<chrono::DateTime<chrono::Utc>>| since(times.into_iter().max().expect("events"));
    let last_payment_ms = last(
        occurred(broker, topics::PAYMENTS, |p: &PaymentProcessed| {
            p.occurred_at
        })
        .await,
    );
    let last_notification_ms = last(
        occurred(broker, topics::NOTIFICATIONS, |n: &NotificationSent| {
            n.occurred_at
        })
        .await,
    );
    Straight {
        throughput: ORDERS as f64 / (last_notification_ms / 1000.0),
        cpu_ms_per_1000: ms_per_1000(cpu, ORDERS),
        broker_cpu_ms_per_1000: ms_per_1000(broker_cpu, ORDERS),
        harness_cpu_ms_per_1000: ms_per_1000(harness, ORDERS),
        written_ms: since(written),
        last_payment_ms,
        last_notification_ms,
        peak_rss_mib: [&payment, &notification]
            .map(|s| peak_rss_kib(s.pid()).unwrap_or(0) as f64 / 1024.0),
    }
}

/// Order, payment and notification, ready, on `broker`.
async fn flow_services(test: &str, broker: &Broker, env: &[(&str, &str)]) -> Vec<Service> {
    let services: Vec<Service> = ["order", "payment", "notification"]
        .iter()
        .map(|name| Service::start(test, name, broker, env))
        .collect();
    for s in &services {
        s.wait_ready().await;
    }
    services
}

/// Load generator options against `order`. Each request waits for the broker's acknowledgement
/// (202 only once the broker has the order), so the saturating run keeps many in flight.
///
/// `fetch_wait` is its `notifications` reader's. The saturating run's throughput ends at the last
/// notification that reader sees, so it reads with the short wait; the steady runs take latency
/// from the notification events' own timestamps and use the reader only to count, so it waits
/// `OBSERVER_WAIT` there (the peer's client's 500 ms), rather than add a fetch every 10 ms to the
/// broker under test, which the peer, measuring in its own process, does not.
async fn load(
    order: &Service,
    broker: &Broker,
    count: u64,
    rate: f64,
    fetch_wait: Duration,
) -> loadgen::Options {
    loadgen::Options {
        fetch_wait,
        order_url: order.url("http", "").await,
        bootstrap_servers: broker.bootstrap.clone(),
        rate,
        count: Some(count),
        duration: None,
        concurrency: 256,
        drain_timeout: Duration::from_secs(120),
        progress_bar: false,
    }
}

/// Created → notified of the orders created since `since`, from the notification events' own
/// timestamps, in the order they were created.
async fn created_to_notified(
    broker: &Broker,
    since: chrono::DateTime<chrono::Utc>,
) -> Vec<Duration> {
    let mut samples: Vec<(chrono::DateTime<chrono::Utc>, Duration)> =
        read_all(&broker.bootstrap, topics::NOTIFICATIONS)
            .await
            .iter()
            .filter_map(|r| serde_json::from_value::<NotificationSent>(r.json()).ok())
            .filter(|n| n.order_created_at >= since)
            .filter_map(|n| {
                (n.occurred_at - n.order_created_at)
                    .to_std()
                    .ok()
                    .map(|d| (n.order_created_at, d))
            })
            .collect();
    samples.sort_by_key(|(created, _)| *created);
    samples.into_iter().map(|(_, d)| d).collect()
}

/// The order API at a steady rate: the load generator's report, and created → notified from the
/// notification events' own timestamps, over the whole run and over each fifth of it (by
/// creation). Then the same rate for `AGED_ORDERS` more orders through fresh services on the
/// broker the run left behind: if the latency grows over the run because the broker's log grew,
/// fresh services start where the run ended; if it grew in the services, they start low again.
async fn steady_run(test: &str, broker: &Broker, env: &[(&str, &str)]) -> Steady {
    let mut services = flow_services(test, broker, env).await;
    let started = chrono::Utc::now();
    let cpu_before = cpu_of(&services);
    let broker_before = process_cpu(broker.pid());
    let report = loadgen::run(
        load(
            &services[0],
            broker,
            STEADY_ORDERS,
            STEADY_RATE,
            OBSERVER_WAIT,
        )
        .await,
    )
    .await
    .expect("steady run");
    let cpu_ms_per_1000 = ms_per_1000(cpu_of(&services) - cpu_before, STEADY_ORDERS as usize);
    let broker_cpu_ms_per_1000 = ms_per_1000(
        process_cpu(broker.pid()) - broker_before,
        STEADY_ORDERS as usize,
    );
    let samples = created_to_notified(broker, started).await;
    let fifth = samples.len().div_ceil(5).max(1);
    let p99_ms_by_fifth = samples
        .chunks(fifth)
        .map(|c| loadgen::Latency::from_samples(c.to_vec()).p99_ms)
        .collect();

    for s in &mut services {
        s.signal("TERM");
        s.wait_exit(Duration::from_secs(30)).await;
    }
    let services = flow_services(&format!("{test}_aged"), broker, env).await;
    let restarted = chrono::Utc::now();
    loadgen::run(
        load(
            &services[0],
            broker,
            AGED_ORDERS,
            STEADY_RATE,
            OBSERVER_WAIT,
        )
        .await,
    )
    .await
    .expect("run on the aged broker");
    Steady {
        report,
        created_to_notified: loadgen::Latency::from_samples(samples),
        p99_ms_by_fifth,
        fresh_services_aged_broker: loadgen::Latency::from_samples(
            created_to_notified(broker, restarted).await,
        ),
        cpu_ms_per_1000,
        broker_cpu_ms_per_1000,
    }
}

/// The order API saturated, with each service's memory and CPU, and the load generator's and the
/// broker's CPU.
async fn api_project(broker: &Broker) -> (Api, Vec<Resources>) {
    let services = flow_services("bench_api", broker, GATEWAY_0).await;
    let idle: Vec<u64> = services
        .iter()
        .map(|s| rss_kib(s.pid()).unwrap_or(0))
        .collect();
    let cpu_before: Vec<f64> = services.iter().map(|s| process_cpu(s.pid())).collect();
    let broker_before = process_cpu(broker.pid());
    let harness_before = harness_cpu();
    let (peaks, sampler) = sample_peaks(services.iter().map(Service::pid).collect());
    let report = loadgen::run(
        load(
            &services[0],
            broker,
            ORDERS as u64,
            0.0,
            Duration::from_millis(10),
        )
        .await,
    )
    .await
    .expect("saturating run");
    let harness = harness_cpu() - harness_before;
    let broker_cpu = process_cpu(broker.pid()) - broker_before;
    sampler.abort();
    let peaks = peaks.lock().expect("peaks lock").clone();
    let orders = report.completed.max(1) as usize;
    let resources = services
        .iter()
        .enumerate()
        .map(|(i, s)| Resources {
            service: s.name.clone(),
            idle_rss_mib: idle[i] as f64 / 1024.0,
            peak_rss_mib: peaks.get(&s.pid()).copied().unwrap_or(0) as f64 / 1024.0,
            cpu_ms_per_1000_orders: ms_per_1000(process_cpu(s.pid()) - cpu_before[i], orders),
        })
        .collect();
    let api = Api {
        report,
        harness_cpu_ms_per_1000: ms_per_1000(harness, orders),
        broker_cpu_ms_per_1000: ms_per_1000(broker_cpu, orders),
    };
    (api, resources)
}

/// `replicas` payment members with a 5 ms gateway drain a backlog written straight to `orders`;
/// orders/s from the payment events' own timestamps.
async fn payment_throughput(replicas: usize) -> f64 {
    let broker = Broker::start(&[(topics::ORDERS, 6), (topics::PAYMENTS, 6)]);
    let test = format!("bench_scaling_{replicas}");
    let payments: Vec<Service> = (0..replicas)
        .map(|_| Service::start(&test, "payment", &broker, GATEWAY_5))
        .collect();
    partitions_shared_by(&payments.iter().collect::<Vec<_>>()).await;
    let writer = Writer::new(&broker.bootstrap);
    write_orders(&writer, |_| 1_000).await;
    eventually("the backlog to drain", Duration::from_secs(600), || async {
        let mut done = 0.0;
        for p in &payments {
            done += p.metric("payments_processed_total").await;
        }
        (done >= ORDERS as f64).then_some(())
    })
    .await;
    let events: Vec<PaymentProcessed> = read_all(&broker.bootstrap, topics::PAYMENTS)
        .await
        .iter()
        .map(|r| serde_json::from_value(r.json()).expect("payment event"))
        .collect();
    let first = events.iter().map(|e| e.occurred_at).min().expect("events");
    let last = events.iter().map(|e| e.occurred_at).max().expect("events");
    let span = (last - first)
        .to_std()
        .unwrap_or_default()
        .as_secs_f64()
        .max(f64::EPSILON);
    events.len() as f64 / span
}

fn ratio(project: f64, peer: Option<f64>) -> String {
    peer.filter(|p| *p > 0.0)
        .map_or("–".into(), |p| format!("{:.1}×", project / p))
}

/// A side-by-side row with one figure on each side, and their ratio.
fn row(measure: &str, peer: Option<f64>, project: f64, target: &str) {
    println!(
        "| {measure} | {} | {project:.0} | {} | {target} |",
        cell(peer, ""),
        ratio(project, peer)
    );
}

fn cell(v: Option<f64>, unit: &str) -> String {
    v.map_or("skipped".into(), |v| format!("{v:.0}{unit}"))
}

fn print_steady(label: &str, s: &Steady) {
    println!(
        "\nSteady {STEADY_RATE:.0}/s run{label}: {} sent, {} completed, {} lost, max {:.0} ms",
        s.report.sent, s.report.completed, s.report.lost, s.created_to_notified.max_ms
    );
    let fifths: Vec<String> = s
        .p99_ms_by_fifth
        .iter()
        .map(|p| format!("{p:.1}"))
        .collect();
    let aged = &s.fresh_services_aged_broker;
    println!(
        "p99 over each fifth of it: {} ms; then {AGED_ORDERS} more at {STEADY_RATE:.0}/s through fresh services on the same broker: p50 {:.1}, p99 {:.1} ms",
        fifths.join(" / "),
        aged.p50_ms,
        aged.p99_ms
    );
}

/// Where the machine's CPU went in the saturated runs, every process on it counted, and the
/// throughput that much CPU per order allows on its cores: a run that reaches it is bound by CPU,
/// not by waiting.
fn print_cpu_budget(r: &Results, api_services: f64) {
    let cores = r.machine.cores as f64;
    let st = &r.straight_project;
    println!(
        "\nStraight run: every order acknowledged {:.0} ms after the first write, the last payment at {:.0} ms, the last notification at {:.0} ms",
        st.written_ms, st.last_payment_ms, st.last_notification_ms
    );
    println!(
        "\nWhere the machine's CPU went, saturated (user + system ms per 1,000 orders; {cores:.0} cores)"
    );
    println!(
        "| run | services | harness | broker | all | orders/s that allows on {cores:.0} cores | orders/s measured |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let line = |run: &str, services: f64, harness: Option<f64>, broker: f64, measured: f64| {
        let all = services + harness.unwrap_or(0.0) + broker;
        println!(
            "| {run} | {services:.0} | {} | {broker:.0} | {all:.0} | {:.0} | {measured:.0} |",
            harness.map_or("–".into(), |h| format!("{h:.0}")),
            cores * 1e6 / all
        );
    };
    line(
        "project, straight (payment + notification; harness: the writer)",
        st.cpu_ms_per_1000,
        Some(st.harness_cpu_ms_per_1000),
        st.broker_cpu_ms_per_1000,
        st.throughput,
    );
    let api = &r.api_project;
    line(
        "project, through the API (order + payment + notification; harness: the load generator)",
        api_services,
        Some(api.harness_cpu_ms_per_1000),
        api.broker_cpu_ms_per_1000,
        api.report.throughput,
    );
    if let Some(peer) = &r.straight_peer {
        line(
            "peer, straight (its three processes, its writer and start-up included)",
            peer.cpu_ms_per_1000(),
            None,
            peer.broker_cpu_ms_per_1000(),
            peer.throughput.unwrap_or_default(),
        );
    }
}

fn print_tables(r: &Results) {
    let m = &r.machine;
    println!(
        "\nMachine: {} ({} cores, {:.0} GiB, Linux {}); broker: {}; {} build\n",
        m.cpu, m.cores, m.memory_gib, m.kernel, m.broker, m.profile
    );
    if !r.peer_available {
        println!(
            "peer: skipped (../shared/peers/seed_pipeline.py not found; set PEER_SCRIPT to run it)\n"
        );
    }
    let peer_straight = r.straight_peer.as_ref().and_then(|p| p.throughput);
    let peer_p99 = r.steady_peer.as_ref().and_then(|p| p.p99_ms);
    let peer_cpu = r.straight_peer.as_ref().map(PeerRun::cpu_ms_per_1000);
    let project_cpu: f64 = r.resources.iter().map(|s| s.cpu_ms_per_1000_orders).sum();
    println!("Side by side (order → payment → notification, gateway 0 ms)");
    println!("| measure | seed-style peer | this project | project ÷ peer | target |");
    println!("|---|---:|---:|---:|---|");
    row(
        &format!("{ORDERS} orders written straight to `orders`, orders/s"),
        peer_straight,
        r.straight_project.throughput,
        "≥ 5×",
    );
    let w500 = &r.straight_project_fetch_wait_500;
    row(
        "the same, the project's fetch wait at the shipped 500 ms (harness: 10 ms)",
        peer_straight,
        w500.throughput,
        "",
    );
    row(
        &format!("{ORDERS} orders through `POST /orders`, orders/s (peer: straight)"),
        peer_straight,
        r.api_project.report.throughput,
        "≥ 3×",
    );
    let s = &r.steady_project.created_to_notified;
    let ps = r.steady_peer.clone().unwrap_or_default();
    println!(
        "| created → notified at {STEADY_RATE:.0}/s, p50 / p95 / p99 ms | {} / {} / {} | {:.1} / {:.1} / {:.1} | {} (p99) | p99 < 50 ms |",
        cell(ps.p50_ms, ""),
        cell(ps.p95_ms, ""),
        cell(ps.p99_ms, ""),
        s.p50_ms,
        s.p95_ms,
        s.p99_ms,
        ratio(s.p99_ms, peer_p99)
    );
    let s5 = &r.steady_project_linger_5.created_to_notified;
    println!(
        "| the same, the project's producers lingering 5 ms (shipped: 10 ms) | – | {:.1} / {:.1} / {:.1} | {} (p99) | |",
        s5.p50_ms,
        s5.p95_ms,
        s5.p99_ms,
        ratio(s5.p99_ms, peer_p99)
    );
    row(
        "CPU ms per 1,000 orders (project: through the API)",
        peer_cpu,
        project_cpu,
        "≤ ⅓",
    );
    // Like for like: the peer's three processes are its writer, payment and notification.
    row(
        "CPU ms per 1,000 orders, straight run: the writer + payment + notification (peer: its three processes)",
        peer_cpu,
        r.straight_project.cpu_ms_per_1000 + r.straight_project.harness_cpu_ms_per_1000,
        "",
    );
    println!(
        "| CPU ms per 1,000 orders, straight run (payment + notification), fetch wait 10 ms; 500 ms | – | {:.0}; {:.0} | – | |",
        r.straight_project.cpu_ms_per_1000, w500.cpu_ms_per_1000
    );
    // At a steady rate, batches are small and every record wakes threads of its own: both sides
    // pay far more per order than when saturated.
    let peer_steady_cpu = r.steady_peer.as_ref().map(PeerRun::cpu_ms_per_1000);
    row(
        &format!(
            "CPU ms per 1,000 orders at a steady {STEADY_RATE:.0}/s (project: through the API)"
        ),
        peer_steady_cpu,
        r.steady_project.cpu_ms_per_1000,
        "",
    );
    // The broker shares the machine: what each side's clients cost it (the peer's figure covers
    // its whole run, start-up included; the project's only the run).
    let peer_broker = r
        .straight_peer
        .as_ref()
        .map(PeerRun::broker_cpu_ms_per_1000);
    println!(
        "| the broker's CPU ms per 1,000 orders, straight run, fetch wait 10 ms; 500 ms (peer: its whole run, start-up included) | {} | {:.0}; {:.0} | {}; {} | |",
        cell(peer_broker, ""),
        r.straight_project.broker_cpu_ms_per_1000,
        w500.broker_cpu_ms_per_1000,
        ratio(r.straight_project.broker_cpu_ms_per_1000, peer_broker),
        ratio(w500.broker_cpu_ms_per_1000, peer_broker)
    );
    let peer_steady_broker = r.steady_peer.as_ref().map(PeerRun::broker_cpu_ms_per_1000);
    row(
        &format!(
            "the broker's CPU ms per 1,000 orders at a steady {STEADY_RATE:.0}/s (peer: its whole run, start-up included; project: the load generator's reader, waiting {} ms, included)",
            OBSERVER_WAIT.as_millis()
        ),
        peer_steady_broker,
        r.steady_project.broker_cpu_ms_per_1000,
        "",
    );
    let [payment_mib, notification_mib] = r.straight_project.peak_rss_mib;
    println!(
        "| peak resident memory, payment / notification, straight run, MiB | – | {payment_mib:.1} / {notification_mib:.1} | – | < 40 |"
    );
    if let Some(one) = r.payment_scaling.first() {
        println!(
            "| one payment replica, 5 ms gateway, orders/s | – | {:.0} | – | ≥ 2,000 |",
            one.throughput
        );
    }
    print_cpu_budget(r, project_cpu);
    print_steady("", &r.steady_project);
    print_steady(", producers lingering 5 ms", &r.steady_project_linger_5);
    println!("\nResources per process (saturating API run; CPU is user + system time)");
    println!("| service | idle RSS MiB | peak RSS MiB | CPU ms per 1,000 orders |");
    println!("|---|---:|---:|---:|");
    for s in &r.resources {
        println!(
            "| {} | {:.1} | {:.1} | {:.0} |",
            s.service, s.idle_rss_mib, s.peak_rss_mib, s.cpu_ms_per_1000_orders
        );
    }
    println!(
        "\nPayment scaling ({ORDERS}-order backlog, 6 partitions, 5 ms simulated gateway, {} cores shared with the broker)",
        r.machine.cores
    );
    println!("| replicas | throughput (orders/s) | efficiency vs linear |");
    println!("|---:|---:|---:|");
    for s in &r.payment_scaling {
        println!(
            "| {} | {:.0} | {:.0} % |",
            s.replicas,
            s.throughput,
            s.efficiency * 100.0
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let started = Instant::now();
    let peer = peer_script();

    // A fresh broker for every run, so that neither side works against the other's records.
    let straight_peer = peer.as_ref().map(|script| {
        eprintln!("peer: {ORDERS} orders as fast as possible …");
        run_peer(script, &Broker::start(&[]), ORDERS, None)
    });
    eprintln!("project: {ORDERS} orders written straight to `orders` …");
    let straight_project = run_straight("bench_straight", &Broker::start_system(), GATEWAY_0).await;
    eprintln!("project: the same with the shipped 500 ms fetch wait …");
    let straight_project_fetch_wait_500 = run_straight(
        "bench_straight_fetch_wait_500",
        &Broker::start_system(),
        FETCH_WAIT_500,
    )
    .await;
    let steady_peer = peer.as_ref().map(|script| {
        eprintln!("peer: {STEADY_ORDERS} orders at {STEADY_RATE}/s …");
        run_peer(
            script,
            &Broker::start(&[]),
            STEADY_ORDERS as usize,
            Some(STEADY_RATE),
        )
    });
    eprintln!("project: {STEADY_ORDERS} orders at {STEADY_RATE}/s through the API …");
    let steady_project = steady_run("bench_steady", &Broker::start_system(), GATEWAY_0).await;
    eprintln!("project: the same with the producers' linger at 5 ms …");
    let steady_project_linger_5 =
        steady_run("bench_steady_linger_5", &Broker::start_system(), LINGER_5).await;
    eprintln!("project: {ORDERS} orders through the API as fast as possible …");
    let (api_project, resources) = api_project(&Broker::start_system()).await;

    let mut payment_scaling = Vec::new();
    for replicas in [1, 2, 3, 6] {
        eprintln!("payment scaling: {replicas} replica(s) …");
        let throughput = payment_throughput(replicas).await;
        let base = payment_scaling
            .first()
            .map_or(throughput, |s: &Scaling| s.throughput);
        payment_scaling.push(Scaling {
            replicas,
            orders: ORDERS,
            throughput,
            efficiency: throughput / (base * replicas as f64),
        });
    }
    let results = Results {
        machine: machine(),
        peer_available: peer.is_some(),
        straight_peer,
        straight_project,
        straight_project_fetch_wait_500,
        api_project,
        steady_peer,
        steady_project,
        steady_project_linger_5,
        resources,
        payment_scaling,
    };
    print_tables(&results);
    let dir = system_tests::root().join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let path = dir.join("results.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&results).expect("json"))
        .expect("write results");
    println!(
        "\nwritten to {} in {:.0} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
}
