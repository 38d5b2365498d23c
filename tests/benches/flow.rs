//! `make bench`: figures of the whole system on the local broker, printed as tables and written to
//! `target/bench/results.json`. Not a test: nothing here passes or fails on a number.
//!
//! 1. End to end: the load generator against the whole flow (6 payment replicas, 5 ms simulated
//!    gateway), once as fast as the API accepts orders and once at a steady 200 orders/s.
//! 2. Payment scaling: 1, 2, 3 and 6 payment replicas with a 5 ms gateway drain a backlog of
//!    orders; throughput from the payment events' own timestamps, and the efficiency against
//!    perfect linear scaling.
//! 3. Resources: each service's resident memory idle and its peak under the saturating run, and
//!    its CPU time per 1,000 orders.

use events::{PaymentProcessed, topics};
use futures::StreamExt;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use system_tests::procfs::{cpu_seconds, rss_kib};
use system_tests::service::partitions_shared_by;
use system_tests::topics::{Writer, read_all};
use system_tests::{Broker, FLOW_TOPICS, Service, Stack, eventually};

// Services run as shipped: INFO logs, a line per order and payment.
const GATEWAY: &[(&str, &str)] = &[("PAYMENT_GATEWAY_LATENCY_MS", "5")];
const SCALING_ORDERS: usize = 3_000;

#[derive(Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    memory_gib: f64,
    kernel: String,
    broker: &'static str,
    profile: &'static str,
}

#[derive(Serialize)]
struct FlowRun {
    name: String,
    report: loadgen::Report,
}

#[derive(Serialize)]
struct Scaling {
    replicas: usize,
    orders: usize,
    throughput: f64,
    efficiency: f64,
}

#[derive(Serialize)]
struct Resources {
    service: String,
    processes: usize,
    idle_rss_mib: f64,
    peak_rss_mib: f64,
    cpu_ms_per_1000_orders: f64,
}

#[derive(Serialize)]
struct Results {
    machine: Machine,
    end_to_end: Vec<FlowRun>,
    payment_scaling: Vec<Scaling>,
    resources: Vec<Resources>,
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

/// Samples the resident memory of `pids` every 100 ms until stopped; the peak per pid.
fn sample_peaks(pids: Vec<u32>) -> (Arc<Mutex<HashMap<u32, u64>>>, tokio::task::JoinHandle<()>) {
    let peaks = Arc::new(Mutex::new(HashMap::new()));
    let shared = peaks.clone();
    let task = tokio::spawn(async move {
        loop {
            for &pid in &pids {
                if let Some(rss) = rss_kib(pid) {
                    let mut p = shared.lock().expect("peaks lock");
                    let e = p.entry(pid).or_insert(0);
                    *e = (*e).max(rss);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (peaks, task)
}

async fn end_to_end() -> (Vec<FlowRun>, Vec<Resources>) {
    let broker = Broker::start(FLOW_TOPICS);
    let stack = Stack::start("bench_flow", &broker, GATEWAY).await;
    let extra: Vec<Service> = (0..5)
        .map(|_| Service::start("bench_flow", "payment", &broker, GATEWAY))
        .collect();
    for s in &extra {
        s.wait_ready().await;
    }
    let groups: Vec<(&str, Vec<&Service>)> = vec![
        ("order", vec![&stack.order]),
        (
            "payment",
            std::iter::once(&stack.payment)
                .chain(extra.iter())
                .collect(),
        ),
        ("notification", vec![&stack.notification]),
        ("inventory", vec![&stack.inventory]),
    ];
    let idle: HashMap<u32, u64> = groups
        .iter()
        .flat_map(|(_, ss)| ss.iter().map(|s| (s.pid(), rss_kib(s.pid()).unwrap_or(0))))
        .collect();
    let cpu_before: HashMap<u32, f64> = idle
        .keys()
        .map(|&p| (p, cpu_seconds(p).unwrap_or(0.0)))
        .collect();
    let (peaks, sampler) = sample_peaks(idle.keys().copied().collect());

    let order_url = stack.order.url("http", "").await;
    let load = |count: u64, rate: f64| loadgen::Options {
        order_url: order_url.clone(),
        bootstrap_servers: broker.bootstrap.clone(),
        rate,
        count: Some(count),
        duration: None,
        concurrency: 64,
        drain_timeout: Duration::from_secs(120),
        progress_bar: false,
    };
    eprintln!("end to end: 5000 orders as fast as possible …");
    let saturating = loadgen::run(load(5_000, 0.0))
        .await
        .expect("saturating run");
    sampler.abort();
    let orders = saturating.completed.max(1) as f64;
    let peaks = peaks.lock().expect("peaks lock").clone();
    let resources = groups
        .iter()
        .map(|(name, ss)| {
            let pids: Vec<u32> = ss.iter().map(|s| s.pid()).collect();
            let sum = |m: &dyn Fn(u32) -> f64| pids.iter().map(|&p| m(p)).sum::<f64>();
            Resources {
                service: (*name).to_owned(),
                processes: pids.len(),
                idle_rss_mib: sum(&|p| idle[&p] as f64) / pids.len() as f64 / 1024.0,
                peak_rss_mib: sum(&|p| peaks.get(&p).copied().unwrap_or(0) as f64)
                    / pids.len() as f64
                    / 1024.0,
                cpu_ms_per_1000_orders: sum(&|p| cpu_seconds(p).unwrap_or(0.0) - cpu_before[&p])
                    * 1000.0
                    / orders
                    * 1000.0,
            }
        })
        .collect();

    eprintln!("end to end: 3000 orders at 200/s …");
    let steady = loadgen::run(load(3_000, 200.0)).await.expect("steady run");
    (
        vec![
            FlowRun {
                name: "as fast as possible, 5000 orders".into(),
                report: saturating,
            },
            FlowRun {
                name: "steady 200 orders/s, 3000 orders".into(),
                report: steady,
            },
        ],
        resources,
    )
}

async fn payment_throughput(replicas: usize) -> f64 {
    let broker = Broker::start(&[(topics::ORDERS, 6), (topics::PAYMENTS, 6)]);
    let test = format!("bench_scaling_{replicas}");
    let payments: Vec<Service> = (0..replicas)
        .map(|_| Service::start(&test, "payment", &broker, GATEWAY))
        .collect();
    partitions_shared_by(&payments.iter().collect::<Vec<_>>()).await;
    // The backlog is written straight to the topic, far faster than payment drains it.
    let writer = Writer::new(&broker.bootstrap);
    futures::stream::iter(0..SCALING_ORDERS)
        .map(|i| writer.write_order(1 + i as u64 % 100, 1_000))
        .buffer_unordered(64)
        .collect::<Vec<String>>()
        .await;
    eventually("the backlog to drain", Duration::from_secs(300), || async {
        let mut done = 0.0;
        for p in &payments {
            done += p.metric("payments_processed_total").await;
        }
        (done >= SCALING_ORDERS as f64).then_some(())
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

fn print_tables(r: &Results) {
    let m = &r.machine;
    println!(
        "\nMachine: {} ({} cores, {:.0} GiB, Linux {}); broker: {}; {} build\n",
        m.cpu, m.cores, m.memory_gib, m.kernel, m.broker, m.profile
    );
    println!(
        "End to end (order API → payment ×6, 5 ms gateway → notification; latency = request sent → notification seen)"
    );
    println!(
        "| run | sent | completed | lost | throughput (orders/s) | p50 ms | p95 ms | p99 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for f in &r.end_to_end {
        let x = &f.report;
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} |",
            f.name,
            x.sent,
            x.completed,
            x.lost,
            x.throughput,
            x.latency.p50_ms,
            x.latency.p95_ms,
            x.latency.p99_ms
        );
    }
    println!(
        "\nPayment scaling ({SCALING_ORDERS}-order backlog, 6 partitions, 5 ms simulated gateway)"
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
    println!("\nResources per process (saturating run; CPU is user + system time)");
    println!("| service | processes | idle RSS MiB | peak RSS MiB | CPU ms per 1000 orders |");
    println!("|---|---:|---:|---:|---:|");
    for s in &r.resources {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.0} |",
            s.service, s.processes, s.idle_rss_mib, s.peak_rss_mib, s.cpu_ms_per_1000_orders
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let started = Instant::now();
    let (end_to_end, resources) = end_to_end().await;
    let mut payment_scaling = Vec::new();
    for replicas in [1, 2, 3, 6] {
        eprintln!("payment scaling: {replicas} replica(s) …");
        let throughput = payment_throughput(replicas).await;
        let base = payment_scaling
            .first()
            .map_or(throughput, |s: &Scaling| s.throughput);
        payment_scaling.push(Scaling {
            replicas,
            orders: SCALING_ORDERS,
            throughput,
            efficiency: throughput / (base * replicas as f64),
        });
    }
    let results = Results {
        machine: machine(),
        end_to_end,
        payment_scaling,
        resources,
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
