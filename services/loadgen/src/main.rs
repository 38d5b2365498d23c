use clap::Parser;
use std::io::IsTerminal;
use std::time::Duration;

/// Sends orders to the order API and reports sent, completed, lost, throughput and end-to-end
/// latency (request sent → notification seen on the `notifications` topic).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Base URL of the order API (plain HTTP).
    #[arg(
        long,
        env = "LOADGEN_ORDER_URL",
        default_value = "http://localhost:8080"
    )]
    order_url: String,
    /// Kafka bootstrap servers, to watch the notifications topic.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "localhost:9092"
    )]
    bootstrap_servers: String,
    /// Orders per second; 0 sends as fast as the API accepts them.
    #[arg(long, env = "LOADGEN_RATE", default_value_t = 100.0)]
    rate: f64,
    /// How many orders to send.
    #[arg(long, env = "LOADGEN_COUNT")]
    count: Option<u64>,
    /// For how long to send, in seconds (with --count, whichever ends first).
    #[arg(long, env = "LOADGEN_DURATION_S")]
    duration_s: Option<f64>,
    /// Requests in flight at most, each on a keep-alive connection of its own.
    #[arg(long, env = "LOADGEN_CONCURRENCY", default_value_t = 32)]
    concurrency: usize,
    /// Seconds to wait for the last notifications after sending stops.
    #[arg(long, env = "LOADGEN_DRAIN_TIMEOUT_S", default_value_t = 60.0)]
    drain_timeout_s: f64,
    /// The longest the notifications reader's fetch waits at the broker, in milliseconds. It
    /// counts in every latency reported, so keep it short unless only the counts matter.
    #[arg(long, env = "LOADGEN_FETCH_WAIT_MS", default_value_t = 10)]
    fetch_wait_ms: u64,
    /// Also write the report as JSON to this file.
    #[arg(long, env = "LOADGEN_JSON")]
    json: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let count = args.count.or(args.duration_s.is_none().then_some(1_000));
    let report = loadgen::run(loadgen::Options {
        order_url: args.order_url,
        bootstrap_servers: args.bootstrap_servers,
        rate: args.rate,
        count,
        duration: args.duration_s.map(Duration::from_secs_f64),
        concurrency: args.concurrency,
        drain_timeout: Duration::from_secs_f64(args.drain_timeout_s),
        progress_bar: std::io::stderr().is_terminal(),
        fetch_wait: Duration::from_millis(args.fetch_wait_ms),
    })
    .await?;
    println!("{}", report.table());
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    }
    if report.lost > 0 || report.rejected > 0 {
        anyhow::bail!("{} orders lost, {} rejected", report.lost, report.rejected);
    }
    Ok(())
}
