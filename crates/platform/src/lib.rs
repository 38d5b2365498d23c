//! Everything every service needs, so no service repeats it: typed configuration, telemetry,
//! Kafka plumbing, the ops HTTP server and the shutdown sequence.

pub mod config;
pub mod http;
pub mod idempotency;
pub mod kafka;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;

use config::{ConfigError, Env};
use http::{Readiness, Server};
use kafka::KafkaConfig;
use metrics::Metrics;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

/// Settings every service has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    pub kafka: KafkaConfig,
    /// `OPS_ADDR`: where `/healthz`, `/readyz` and `/metrics` are served.
    pub ops_addr: SocketAddr,
    /// `KAFKA_CONSUMER_GROUP`: replaces a consuming service's default group name.
    pub consumer_group: Option<String>,
}

impl ServiceConfig {
    pub fn from_env(env: &Env, service: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            kafka: KafkaConfig::from_env(env, service)?,
            ops_addr: env.addr("OPS_ADDR", "0.0.0.0:9090")?,
            consumer_group: env.raw("KAFKA_CONSUMER_GROUP").map(str::to_owned),
        })
    }
}

/// Why a service could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot bind {what}: {source}")]
    Bind {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Publish(#[from] kafka::PublishError),
}

/// The parts of a running service that outlive its workers: metrics, readiness and the ops server,
/// which keeps answering (503 on `/readyz`) while the workers drain.
pub struct Runtime {
    pub metrics: Metrics,
    pub readiness: Readiness,
    ops: Server,
}

impl Runtime {
    pub async fn start(ops_addr: SocketAddr, shutdown: CancellationToken) -> Result<Self, Error> {
        let metrics = Metrics::new();
        let readiness = Readiness::new(shutdown.clone());
        let router = http::ops_router(readiness.clone(), metrics.clone());
        let ops = Server::start("ops", ops_addr, router, CancellationToken::new())
            .await
            .map_err(|source| Error::Bind {
                what: "OPS_ADDR",
                source,
            })?;
        Ok(Self {
            metrics,
            readiness,
            ops,
        })
    }

    /// The last step before telemetry is flushed: stop the ops server.
    pub async fn stop(self) {
        self.ops.stop().await;
        tracing::info!("shutdown complete");
    }
}

/// What a consuming service reads and writes.
#[derive(Debug, Clone, Copy)]
pub struct Subscription<'a> {
    /// The default consumer group; `KAFKA_CONSUMER_GROUP` replaces it.
    pub group: &'a str,
    pub topic: &'a str,
    /// Topics the handler publishes to; readiness waits until they (and the dead-letter topic) exist.
    pub writes: &'a [&'a str],
}

/// An optional HTTP API beside the consumer.
pub struct Api {
    pub addr: SocketAddr,
    pub router: axum::Router,
}

/// Runs a consuming service until `shutdown`: builds the publisher and the handler, probes the
/// broker, serves the API if any, consumes, then drains in the order `shutdown` documents.
pub async fn run_consumer<H, F>(
    config: &ServiceConfig,
    subscription: Subscription<'_>,
    shutdown: CancellationToken,
    build: F,
) -> Result<(), Error>
where
    H: kafka::Handler,
    F: FnOnce(&Runtime, kafka::Publisher) -> (H, Option<Api>),
{
    let rt = Runtime::start(config.ops_addr, shutdown.clone()).await?;
    let publisher = kafka::Publisher::new(&config.kafka, rt.metrics.clone())?;
    let mut needed: Vec<String> = vec![
        subscription.topic.to_owned(),
        format!("{}.dlq", subscription.topic),
    ];
    needed.extend(subscription.writes.iter().map(|t| (*t).to_owned()));
    let probe = kafka::BrokerProbe::spawn(
        &publisher,
        needed,
        rt.readiness.gate("broker", "not probed yet"),
        shutdown.clone(),
    );
    let (handler, api) = build(&rt, publisher.clone());
    let http = match api {
        Some(api) => Some(
            Server::start("http", api.addr, api.router, shutdown.clone())
                .await
                .map_err(|source| Error::Bind {
                    what: "HTTP_ADDR",
                    source,
                })?,
        ),
        None => None,
    };
    let consumer = kafka::ConsumeLoop::new(
        &config.kafka,
        config
            .consumer_group
            .as_deref()
            .unwrap_or(subscription.group),
        subscription.topic,
        handler,
        publisher.clone(),
        rt.metrics.clone(),
        &rt.readiness,
    )?;
    consumer.run(shutdown).await;
    if let Some(http) = http {
        http.stop().await;
    }
    publisher.flush(std::time::Duration::from_secs(10)).await;
    probe.abort();
    rt.stop().await;
    Ok(())
}
