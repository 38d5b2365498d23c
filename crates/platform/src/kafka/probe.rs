//! Broker reachability for readiness: a periodic metadata request that also checks the topics a
//! service needs exist.

use super::Publisher;
use crate::http::Gate;
use rdkafka::producer::Producer;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct BrokerProbe;

impl BrokerProbe {
    /// Probes every 2 s until ready, then every 10 s. The gate carries the last failure's reason.
    pub fn spawn(
        publisher: &Publisher,
        topics: Vec<String>,
        gate: Gate,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let producer = publisher.client().clone();
        let errors = publisher.errors();
        tokio::spawn(async move {
            let mut was_ready = None;
            loop {
                let p = producer.clone();
                let wanted = topics.clone();
                let verdict = tokio::task::spawn_blocking(move || {
                    let md = p
                        .client()
                        .fetch_metadata(None, Duration::from_secs(3))
                        .map_err(|e| format!("broker unreachable: {e}"))?;
                    for topic in &wanted {
                        match md.topics().iter().find(|t| t.name() == topic) {
                            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {}
                            _ => return Err(format!("topic `{topic}` does not exist")),
                        }
                    }
                    Ok(md.brokers().len())
                })
                .await
                .unwrap_or_else(|e| Err(format!("probe task failed: {e}")));
                // A failed login or TLS handshake shows as a metadata timeout; the client's own
                // report says which it was.
                let verdict = verdict.map_err(|reason| match errors.last() {
                    Some(cause) => format!("{reason} (last client error: {cause})"),
                    None => reason,
                });
                if verdict.is_ok() {
                    errors.clear();
                }
                let ready = verdict.is_ok();
                match verdict {
                    Ok(brokers) => {
                        gate.ready();
                        if was_ready != Some(true) {
                            tracing::info!(brokers, "broker reachable");
                        }
                    }
                    Err(reason) => {
                        if was_ready != Some(false) {
                            tracing::warn!(reason = %reason, "broker not ready");
                        }
                        gate.not_ready(reason);
                    }
                }
                was_ready = Some(ready);
                let pause = if ready {
                    Duration::from_secs(10)
                } else {
                    Duration::from_secs(2)
                };
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        })
    }
}
