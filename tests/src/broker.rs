//! A tansu broker process on a free loopback port, in memory, killed when dropped.

use events::topics::Cleanup;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Broker {
    pub bootstrap: String,
    /// Where the broker itself listens, for creating topics (the bootstrap may be a proxy).
    admin: String,
    child: Child,
}

/// The broker binary: `TANSU_BIN`, else `.tools/bin/tansu`, installed by the project's script.
fn tansu() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("TANSU_BIN") {
            return PathBuf::from(bin);
        }
        crate::install_tools("broker").join("tansu")
    })
    .clone()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Broker {
    /// Starts a broker and creates `topics` (name, partitions) with their dead-letter topics.
    pub fn start(topics: &[(&str, i32)]) -> Self {
        let broker = Self::start_empty();
        broker.create_topics(topics);
        broker
    }

    /// Starts a broker with every topic of the system ([`crate::system_topics`]).
    pub fn start_system() -> Self {
        let broker = Self::start_empty();
        broker.create_system_topics();
        broker
    }

    /// The broker process's id, for its CPU time and memory.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn start_empty() -> Self {
        Self::start_on(free_port())
    }

    /// Starts a broker on a given port (a test can reserve the address before the broker exists).
    pub fn start_on(port: u16) -> Self {
        Self::start_advertising(port, port)
    }

    /// Starts a broker on `port` that tells clients to connect to `advertised` (a proxy in
    /// front of it); `bootstrap` is the advertised address.
    pub fn start_advertising(port: u16, advertised: u16) -> Self {
        Self::start_behind(port, &format!("127.0.0.1:{advertised}"))
    }

    /// Starts a broker on `port` that tells clients to connect to `advertised` (`host:port` of a
    /// proxy or a TLS terminator in front of it), which becomes `bootstrap`.
    pub fn start_behind(port: u16, advertised: &str) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised_url = format!("tcp://{advertised}");
        let child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised_url,
            ])
            // The broker would otherwise export its own traces into a test's collector.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let listening = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&listening).is_err() {
            assert!(
                Instant::now() < deadline,
                "broker did not listen on {listening}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            bootstrap: advertised.to_owned(),
            admin: listening,
            child,
        }
    }

    /// Creates `topics` (name, partitions), each with its dead-letter topic.
    pub fn create_topics(&self, topics: &[(&str, i32)]) {
        for (name, partitions) in topics {
            self.create_topic(name, *partitions, Cleanup::Delete);
            self.create_topic(
                &platform::kafka::dead_letter_topic(name),
                1,
                Cleanup::Delete,
            );
        }
    }

    pub fn create_system_topics(&self) {
        for (name, partitions, cleanup) in crate::system_topics() {
            self.create_topic(&name, partitions, cleanup);
        }
    }

    pub fn create_topic(&self, topic: &str, partitions: i32, cleanup: Cleanup) {
        create_topic(
            Command::new(tansu()),
            &self.admin,
            topic,
            partitions,
            cleanup,
        );
    }
}

/// Creates `topic` through the broker listening at `admin`, with `tansu`, a command of the
/// broker's binary (the in-memory one, or the secure broker's).
pub(crate) fn create_topic(
    mut tansu: Command,
    admin: &str,
    topic: &str,
    partitions: i32,
    cleanup: Cleanup,
) {
    tansu
        .args(["topic", "create", topic])
        .args(["--partitions", &partitions.to_string()])
        .args(["--config", &format!("cleanup.policy={}", cleanup.policy())])
        .args(["--broker", &format!("tcp://{admin}")])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    crate::succeed(tansu, &format!("creating topic {topic} failed"));
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
