//! The payment service: consumer group `payment` on `orders`. Each order goes through the simulated
//! gateway and its outcome, `payment_processed`, is published to `payments` keyed by `order_id`.
//! This is the service that scales out: replicas share the `orders` partitions.

pub mod gateway;

use events::{Amount, OrderCreated, topics};
use gateway::Gateway;
use platform::config::{ConfigError, Env};
use platform::kafka::{HandleError, Handler, Publisher, RecordMeta, Rejection};
use platform::{ConsumerService, ServiceConfig};
use prometheus::{
    HistogramVec, IntCounterVec, register_histogram_vec_with_registry,
    register_int_counter_vec_with_registry,
};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "payment";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub service: ServiceConfig,
    pub gateway: Gateway,
    /// `PAYMENT_GATEWAY_LATENCY_MS`: how long the simulated gateway takes per payment.
    pub gateway_latency: Duration,
    /// `PAYMENT_GATEWAY_JITTER_MS`: up to this much more, drawn per payment, as a real gateway's
    /// response times vary (so payments finish out of order).
    pub gateway_jitter: Duration,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let limit: f64 = env.checked(
            "PAYMENT_LIMIT",
            10_000.0,
            "a positive amount with at most two decimals",
            |v: &f64| *v > 0.0 && Amount::from_decimal(*v).is_ok(),
        )?;
        Ok(Self {
            service: ServiceConfig::from_env(env, SERVICE)?,
            gateway: Gateway {
                failure_rate: env.checked(
                    "PAYMENT_FAILURE_RATE",
                    0.1,
                    "a number from 0 to 1",
                    |r: &f64| (0.0..=1.0).contains(r),
                )?,
                limit: Amount::from_decimal(limit).expect("checked above"),
            },
            gateway_latency: env.millis("PAYMENT_GATEWAY_LATENCY_MS", Duration::from_millis(20))?,
            gateway_jitter: env.millis("PAYMENT_GATEWAY_JITTER_MS", Duration::ZERO)?,
        })
    }
}

struct Payments {
    gateway: Gateway,
    latency: Duration,
    jitter: Duration,
    publisher: Publisher,
    processed: IntCounterVec,
    end_to_end: HistogramVec,
}

impl Handler for Payments {
    type Input = OrderCreated;

    fn decode(
        &self,
        _meta: &RecordMeta,
        payload: Option<&[u8]>,
    ) -> Result<OrderCreated, Rejection> {
        events::decode(payload).map_err(Rejection::from)
    }

    async fn handle(&self, order: &OrderCreated, _meta: &RecordMeta) -> Result<(), HandleError> {
        let latency = self.latency + self.jitter.mul_f64(fastrand::f64());
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let event = self.gateway.process(order, chrono::Utc::now());
        let payload = serde_json::to_vec(&event).expect("events serialise");
        self.publisher
            .publish(topics::PAYMENTS, &order.order_id.to_string(), &payload)
            .await
            .map_err(|e| HandleError::Retriable(e.to_string()))?;
        let status = event.status.as_str();
        self.processed.with_label_values(&[status]).inc();
        let elapsed = (event.occurred_at - order.occurred_at)
            .to_std()
            .unwrap_or_default();
        self.end_to_end
            .with_label_values(&[status])
            .observe(elapsed.as_secs_f64());
        tracing::debug!(
            order_id = %event.order_id,
            user_id = event.user_id,
            amount = %event.amount,
            status,
            reason = event.reason.as_deref(),
            "payment processed"
        );
        Ok(())
    }
}

/// Builds the service: binds its ports (read them back from the value), creates its clients and
/// subscribes; nothing is consumed until `run_until_stopped`.
pub async fn build(
    config: Config,
    shutdown: &CancellationToken,
) -> Result<ConsumerService<impl Handler>, platform::Error> {
    let access = events::topology::of(SERVICE);
    ConsumerService::build(&config.service, access, shutdown, |rt| {
        let registry = rt.metrics.registry();
        let processed = register_int_counter_vec_with_registry!(
            "payments_processed_total",
            "Payments decided and published, by status.",
            &["status"],
            registry
        )
        .expect("valid metric");
        let end_to_end = register_histogram_vec_with_registry!(
            "order_to_payment_seconds",
            "Time from order creation to its payment outcome, from the event timestamps.",
            &["status"],
            prometheus::exponential_buckets(0.005, 2.0, 14).expect("valid buckets"),
            registry
        )
        .expect("valid metric");
        let handler = Payments {
            gateway: config.gateway,
            latency: config.gateway_latency,
            jitter: config.gateway_jitter,
            publisher: rt.publisher(),
            processed,
            end_to_end,
        };
        (handler, None)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_settings_are_validated() {
        let base = ("KAFKA_BOOTSTRAP_SERVERS", "k:9092");
        let c = Config::from_env(&Env::from_pairs([base])).expect("defaults are valid");
        assert_eq!(c.gateway.failure_rate, 0.1);
        for (var, value) in [
            ("PAYMENT_FAILURE_RATE", "1.5"),
            ("PAYMENT_LIMIT", "-3"),
            ("PAYMENT_GATEWAY_LATENCY_MS", "soon"),
        ] {
            let err = Config::from_env(&Env::from_pairs([base, (var, value)])).unwrap_err();
            assert!(err.to_string().starts_with(var), "{err}");
        }
    }
}
