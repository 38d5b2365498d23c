//! A service binary running as a process, its JSON log lines collected (and kept under
//! `target/system-tests/<test>/`), its bound addresses read back from its `listening` lines.

use crate::{Broker, eventually, log_dir, root};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The directory holding the service binaries of the profile these tests were built with, built
/// on first use so that a plain `cargo test` needs nothing beforehand.
fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test>
        let dir = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("target/<profile>")
            .to_path_buf();
        let profile = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_owned();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(root())
            .args(["build", "--workspace", "--bins"]);
        if profile != "debug" {
            build.args(["--profile", &profile]);
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "building the service binaries failed");
        dir
    })
    .clone()
}

/// The path of a workspace binary, built if needed.
pub fn binary(name: &str) -> PathBuf {
    bin_dir().join(name)
}

pub struct Service {
    pub name: String,
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    log_path: PathBuf,
    /// The threads reading stdout and stderr; they end when the process has closed both.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Service {
    /// Starts `name` against `broker` with test-friendly defaults (ports 0, a 6 s session timeout,
    /// fast span export), overridden by `env`.
    pub fn start(test: &str, name: &str, broker: &Broker, env: &[(&str, &str)]) -> Self {
        Self::start_with(test, name, &broker.bootstrap, env)
    }

    pub fn start_with(test: &str, name: &str, bootstrap: &str, env: &[(&str, &str)]) -> Self {
        let mut vars: Vec<(String, String)> = [("KAFKA_BOOTSTRAP_SERVERS", bootstrap)]
            .into_iter()
            .chain(crate::TEST_SERVICE_ENV.iter().copied())
            .chain([
                ("KAFKA_STATISTICS_INTERVAL_MS", "1000"),
                ("OTEL_BSP_SCHEDULE_DELAY", "100"),
                ("RUST_LOG", "info"),
            ])
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        for (key, value) in env {
            vars.retain(|(k, _)| k != key);
            vars.push(((*key).to_owned(), (*value).to_owned()));
        }
        Self::start_exact(test, name, &vars)
    }

    /// Starts `name` with exactly `env` (and `PATH`), nothing added.
    pub fn start_exact(test: &str, name: &str, env: &[(String, String)]) -> Self {
        let dir = log_dir(test);
        let mut n = 0;
        let log_path = loop {
            let p = dir.join(format!("{name}-{n}.log"));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let mut cmd = Command::new(bin_dir().join(name));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let file = Arc::new(Mutex::new(
            std::fs::File::create(&log_path).expect("log file"),
        ));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut readers = Vec::new();
        for (stream, parse) in [
            (Box::new(stdout) as Box<dyn std::io::Read + Send>, true),
            (Box::new(stderr), false),
        ] {
            let (lines, file) = (lines.clone(), file.clone());
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = writeln!(file.lock().expect("log file lock"), "{line}");
                    let value = if parse {
                        serde_json::from_str(&line).unwrap_or(Value::String(line))
                    } else {
                        serde_json::json!({"stderr": line})
                    };
                    lines.lock().expect("lines lock").push(value);
                }
            }));
        }
        Self {
            name: name.to_owned(),
            child,
            lines,
            log_path,
            readers,
        }
    }

    /// Every log line so far, parsed (a non-JSON line is kept as a string).
    pub fn logs(&self) -> Vec<Value> {
        self.lines.lock().expect("lines lock").clone()
    }

    /// Log lines whose `message` is `message`.
    pub fn logged(&self, message: &str) -> Vec<Value> {
        self.logs()
            .into_iter()
            .filter(|l| l["message"] == message)
            .collect()
    }

    /// The address the named server (`ops` or `http`) bound, read from its `listening` line.
    pub async fn addr(&self, server: &str) -> SocketAddr {
        eventually(
            &format!(
                "{} to log its {server} address ({})",
                self.name,
                self.log_path.display()
            ),
            Duration::from_secs(30),
            || async {
                self.logged("listening")
                    .iter()
                    .find(|l| l["server"] == server)
                    .and_then(|l| l["addr"].as_str()?.parse().ok())
            },
        )
        .await
    }

    pub async fn url(&self, server: &str, path: &str) -> String {
        format!("http://{}{path}", self.addr(server).await)
    }

    /// `/readyz` status code and body.
    pub async fn readyz(&self) -> (u16, Value) {
        let url = self.url("ops", "/readyz").await;
        match crate::http().get(url).send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                (status, res.json().await.unwrap_or(Value::Null))
            }
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    pub async fn wait_ready(&self) {
        let what = format!(
            "{} to be ready (logs: {})",
            self.name,
            self.log_path.display()
        );
        eventually(&what, Duration::from_secs(60), || async {
            (self.readyz().await.0 == 200).then_some(())
        })
        .await;
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let url = self.url("ops", "/metrics").await;
        crate::http()
            .get(url)
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The sum of every series of a metric (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// Waits for the process to exit, then for its last output lines to be collected.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let name = self.name.clone();
        let child = &mut self.child;
        let status = eventually(&format!("{name} to exit"), timeout, || {
            let r = child.try_wait().expect("try_wait");
            async move { r }
        })
        .await;
        // The process is gone, so its pipes reach their end and the readers finish.
        for reader in std::mem::take(&mut self.readers) {
            let _ = tokio::task::spawn_blocking(move || reader.join()).await;
        }
        status
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &PathBuf {
        &self.log_path
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The four services of the order flow, ready.
pub struct Stack {
    pub order: Service,
    pub payment: Service,
    pub notification: Service,
    pub inventory: Service,
}

impl Stack {
    pub async fn start(test: &str, broker: &Broker, env: &[(&str, &str)]) -> Self {
        let stack = Self {
            payment: Service::start(test, "payment", broker, env),
            notification: Service::start(test, "notification", broker, env),
            inventory: Service::start(test, "inventory", broker, env),
            order: Service::start(test, "order", broker, env),
        };
        for s in [
            &stack.payment,
            &stack.notification,
            &stack.inventory,
            &stack.order,
        ] {
            s.wait_ready().await;
        }
        stack
    }

    /// POSTs an order and returns its id.
    pub async fn place_order(&self, body: &Value) -> String {
        crate::place_order(&self.order.url("http", "/orders").await, body, None).await
    }

    /// `GET /notifications` with a query string.
    pub async fn notifications(&self, query: &str) -> Value {
        let url = self
            .notification
            .url("http", &format!("/notifications?{query}"))
            .await;
        crate::http()
            .get(url)
            .send()
            .await
            .expect("GET /notifications")
            .json()
            .await
            .expect("json")
    }
}

/// Places `count` orders over HTTP in the background, `concurrency` at a time, at most `rate` a
/// second (so a test can change the system while the stream is still flowing).
pub struct Feeder {
    placed: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<std::collections::HashSet<String>>,
}

impl Feeder {
    pub async fn start(order: &Service, count: usize, concurrency: usize, rate: f64) -> Self {
        use futures::StreamExt;
        let url = order.url("http", "/orders").await;
        let placed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = placed.clone();
        let task = tokio::spawn(async move {
            let client = crate::http();
            let ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            tokio_stream::wrappers::IntervalStream::new(ticks)
                .take(count)
                .enumerate()
                .map(|(i, _)| {
                    let (client, url, counter) = (client.clone(), url.clone(), counter.clone());
                    async move {
                        let body =
                            crate::order_body(1 + (i as u64 % 100), 500 + (i as i64 % 400) * 25);
                        let res = client
                            .post(url)
                            .json(&body)
                            .send()
                            .await
                            .expect("POST /orders");
                        assert_eq!(res.status().as_u16(), 202, "order {i} accepted");
                        let id = res.json::<Value>().await.expect("json")["order_id"]
                            .as_str()
                            .expect("order_id")
                            .to_owned();
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        id
                    }
                })
                .buffer_unordered(concurrency)
                .collect()
                .await
        });
        Self { placed, task }
    }

    pub fn placed(&self) -> usize {
        self.placed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until at least `n` orders are placed.
    pub async fn reached(&self, n: usize) {
        eventually(
            &format!("{n} orders placed"),
            Duration::from_secs(120),
            || async { (self.placed() >= n).then_some(()) },
        )
        .await;
    }

    /// The ids of every accepted order.
    pub async fn finish(self) -> std::collections::HashSet<String> {
        self.task.await.expect("feeder task")
    }
}

/// Waits until the consumer replicas together hold all six `orders` partitions, each at least one.
pub async fn partitions_shared_by(replicas: &[&Service]) {
    let what = format!("{} replicas to share the 6 partitions", replicas.len());
    eventually(&what, Duration::from_secs(120), || async {
        let mut total = 0.0;
        for r in replicas {
            let n = r.metric("kafka_consumer_assigned_partitions").await;
            if n < 1.0 {
                return None;
            }
            total += n;
        }
        (total == 6.0).then_some(())
    })
    .await;
}
