//! `kafka-console`: what the seeds did with Kafka's console scripts, and what users like in kcat
//! and kafkactl, with the services' own connection settings (`KAFKA_BOOTSTRAP_SERVERS`,
//! `KAFKA_EXTRA_CONFIG`, `-X name=value`) and trace propagation.
//!
//! - `produce`: lines from stdin or a file into a topic; a prompt when stdin is a terminal.
//! - `consume`: from the beginning, the end, an offset or a time; in a group or not; follow.
//! - `topics`: list, describe (partitions and watermarks), create (one, or the whole system's).
//! - `groups`: list, describe (members, and lag per partition).

pub mod admin;
pub mod consume;
pub mod format;
pub mod produce;

use clap::{Parser, Subcommand};
use platform::config::Env;
use platform::kafka::KafkaConfig;
use platform::kafka::reader::{self, ReaderContext};
use rdkafka::ClientConfig;
use rdkafka::consumer::Consumer;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "kafka-console",
    version,
    about = "Produce, consume and inspect the topics of the system, or of any Kafka cluster",
    after_help = "Connection settings are the services': KAFKA_BOOTSTRAP_SERVERS and KAFKA_EXTRA_CONFIG \
                  (name=value,…), or -b and -X. Set OTEL_EXPORTER_OTLP_ENDPOINT to export the \
                  spans of produced records."
)]
pub struct Cli {
    /// Bootstrap servers, host:port[,host:port…].
    #[arg(
        short,
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "localhost:9092",
        global = true
    )]
    pub bootstrap_servers: String,
    /// A librdkafka property, name=value (repeatable), after those of KAFKA_EXTRA_CONFIG.
    #[arg(
        short = 'X',
        long = "property",
        value_name = "NAME=VALUE",
        global = true
    )]
    pub properties: Vec<String>,
    /// How long to wait for the broker to answer before giving up, in seconds.
    #[arg(long, default_value_t = 10, global = true)]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write lines from stdin (or a file) to a topic, one record each.
    Produce(produce::Args),
    /// Print a topic's records.
    Consume(consume::Args),
    /// List, describe and create topics.
    #[command(subcommand)]
    Topics(admin::Topics),
    /// List consumer groups, and describe one's members and lag.
    #[command(subcommand)]
    Groups(admin::Groups),
}

/// Why a command failed, in words for the terminal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(#[from] platform::config::ConfigError),
    #[error(
        "no broker answered at {servers} within {seconds} s ({cause}). Is it running? \
         `make run` and the kind cluster both listen on localhost:9092 (README, \"Console tool\")"
    )]
    Unreachable {
        servers: String,
        seconds: u64,
        /// The request's error, and the client's own last error (such as a failed login).
        cause: String,
    },
    #[error("{0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A consumer outside any group.
pub type Reader = rdkafka::consumer::BaseConsumer<ReaderContext>;

/// The connection: the services' Kafka settings, from the environment and the flags.
pub struct Connection {
    pub config: KafkaConfig,
    pub timeout: Duration,
}

impl Connection {
    pub fn new(cli: &Cli) -> Result<Self, Error> {
        let mut pairs: Vec<(String, String)> = std::env::vars().collect();
        pairs.retain(|(k, _)| k != "KAFKA_BOOTSTRAP_SERVERS" && k != "KAFKA_EXTRA_CONFIG");
        pairs.push((
            "KAFKA_BOOTSTRAP_SERVERS".into(),
            cli.bootstrap_servers.clone(),
        ));
        let mut extra: Vec<String> = std::env::var("KAFKA_EXTRA_CONFIG")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .into_iter()
            .collect();
        extra.extend(cli.properties.iter().cloned());
        if !extra.is_empty() {
            pairs.push(("KAFKA_EXTRA_CONFIG".into(), extra.join(",")));
        }
        let config = KafkaConfig::from_env(&Env::from_pairs(pairs), "kafka-console")?;
        Ok(Self {
            config,
            timeout: Duration::from_secs(cli.timeout),
        })
    }

    /// A consumer outside any group, reading partitions it is given to their end.
    pub fn reader(&self) -> Result<Reader, Error> {
        Ok(reader::reader(&self.config.reader_config())?)
    }

    pub fn client_config(&self) -> ClientConfig {
        self.config.reader_config()
    }

    /// Fails with a sentence naming the servers when no broker answers in time.
    pub fn check_reachable(&self, consumer: &Reader) -> Result<(), Error> {
        consumer
            .fetch_metadata(None, self.timeout)
            .map(drop)
            .map_err(|source| Error::Unreachable {
                servers: self.config.bootstrap_servers.clone(),
                seconds: self.timeout.as_secs(),
                cause: match consumer.context().errors().last() {
                    Some(last) => format!("{source}; {last}"),
                    None => source.to_string(),
                },
            })
    }
}

/// Runs the command; the returned code is the process's exit code.
pub async fn run(cli: Cli) -> Result<i32, Error> {
    let connection = Connection::new(&cli)?;
    match cli.command {
        Command::Produce(args) => produce::run(&connection, args).await,
        Command::Consume(args) => {
            tokio::task::spawn_blocking(move || consume::run(&connection, &args))
                .await
                .expect("consume task")
        }
        Command::Topics(cmd) => {
            let reader = connection.reader()?;
            connection.check_reachable(&reader)?;
            admin::topics(&connection, &reader, cmd).await
        }
        Command::Groups(cmd) => tokio::task::spawn_blocking(move || {
            let reader = connection.reader()?;
            connection.check_reachable(&reader)?;
            admin::groups(&connection, &reader, &cmd)
        })
        .await
        .expect("groups task"),
    }
}
