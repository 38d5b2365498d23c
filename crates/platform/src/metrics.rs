//! The Prometheus registry of a service and the Kafka metrics every service shares.
//!
//! Labels stay low-cardinality: topic, partition, outcome, reason kind — never an id.
//! Services register their own metrics on [`Metrics::registry`] with prometheus's
//! `register_*_with_registry!` macros.

use prometheus::{
    Encoder, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Registry, TextEncoder,
    histogram_opts, register_histogram_vec_with_registry, register_int_counter_vec_with_registry,
    register_int_gauge_vec_with_registry, register_int_gauge_with_registry,
};
use std::sync::Arc;

/// Buckets from 1 ms to 10 s: record handling spans a cache hit to a slow gateway call.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The service's registry and the shared Kafka metrics. Cloning is one reference count: the
/// publisher and the consume loop hold clones, and the publisher takes one more for every
/// changelog write it enqueues.
#[derive(Clone)]
pub struct Metrics(Arc<Families>);

/// The metric families behind [`Metrics`], reached through it.
pub struct Families {
    registry: Registry,
    /// Records taken from a topic, by what became of them: `processed` or `dead_lettered`.
    pub consumed: IntCounterVec,
    /// Records written, by outcome: `ok` or `error`.
    pub produced: IntCounterVec,
    /// Records sent to a dead-letter topic, by source topic and reason kind.
    pub dead_lettered: IntCounterVec,
    /// Time from taking a record to storing its offset, its output acknowledged.
    pub processing: HistogramVec,
    /// Handler attempts that failed with a retriable error.
    pub retries: IntCounterVec,
    /// Consumer lag per assigned partition, from librdkafka statistics.
    pub lag: IntGaugeVec,
    /// Rebalance events by kind: `assign`, `revoke`, `error`.
    pub rebalances: IntCounterVec,
    /// Partitions currently assigned to this consumer.
    pub assigned_partitions: IntGauge,
    /// Records taken and not yet finished (bounded by `KAFKA_MAX_IN_FLIGHT`).
    pub in_flight: IntGauge,
    /// Partitions paused while one of their records retries.
    pub paused_partitions: IntGauge,
    /// State store entries held in memory, by store ([`crate::state`]).
    pub state_entries: IntGaugeVec,
    /// Changelog records written, by store.
    pub state_writes: IntCounterVec,
    /// Changelog records read while restoring, by store.
    pub state_restored: IntCounterVec,
    /// Time to restore one partition of a store.
    pub state_restore: HistogramVec,
}

impl std::ops::Deref for Metrics {
    type Target = Families;

    fn deref(&self) -> &Families {
        &self.0
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        Self(Arc::new(Families {
            consumed: register_int_counter_vec_with_registry!(
                "kafka_records_consumed_total",
                "Records consumed, by topic and outcome.",
                &["topic", "outcome"],
                r
            )
            .expect("valid metric"),
            produced: register_int_counter_vec_with_registry!(
                "kafka_records_produced_total",
                "Records produced, by topic and outcome.",
                &["topic", "outcome"],
                r
            )
            .expect("valid metric"),
            dead_lettered: register_int_counter_vec_with_registry!(
                "kafka_records_dead_lettered_total",
                "Records routed to a dead-letter topic, by source topic and reason.",
                &["topic", "reason"],
                r
            )
            .expect("valid metric"),
            processing: register_histogram_vec_with_registry!(
                histogram_opts!(
                    "kafka_record_processing_duration_seconds",
                    "Time from taking a record to its output being acknowledged.",
                    DURATION_BUCKETS.to_vec()
                ),
                &["topic"],
                r
            )
            .expect("valid metric"),
            retries: register_int_counter_vec_with_registry!(
                "kafka_record_retries_total",
                "Retriable failures while handling a record.",
                &["topic"],
                r
            )
            .expect("valid metric"),
            lag: register_int_gauge_vec_with_registry!(
                "kafka_consumer_lag",
                "Messages behind the partition's high watermark.",
                &["topic", "partition"],
                r
            )
            .expect("valid metric"),
            rebalances: register_int_counter_vec_with_registry!(
                "kafka_consumer_rebalances_total",
                "Consumer group rebalance events.",
                &["kind"],
                r
            )
            .expect("valid metric"),
            assigned_partitions: register_int_gauge_with_registry!(
                "kafka_consumer_assigned_partitions",
                "Partitions currently assigned to this consumer.",
                r
            )
            .expect("valid metric"),
            in_flight: register_int_gauge_with_registry!(
                "kafka_consumer_in_flight_records",
                "Records taken and not yet finished.",
                r
            )
            .expect("valid metric"),
            paused_partitions: register_int_gauge_with_registry!(
                "kafka_consumer_paused_partitions",
                "Partitions paused while one of their records retries.",
                r
            )
            .expect("valid metric"),
            state_entries: register_int_gauge_vec_with_registry!(
                "state_store_entries",
                "State store entries held in memory, by store.",
                &["store"],
                r
            )
            .expect("valid metric"),
            state_writes: register_int_counter_vec_with_registry!(
                "state_store_writes_total",
                "Changelog records written, by store.",
                &["store"],
                r
            )
            .expect("valid metric"),
            state_restored: register_int_counter_vec_with_registry!(
                "state_store_restored_records_total",
                "Changelog records read while restoring, by store.",
                &["store"],
                r
            )
            .expect("valid metric"),
            state_restore: register_histogram_vec_with_registry!(
                histogram_opts!(
                    "state_store_restore_duration_seconds",
                    "Time to restore one partition of a store from its changelog.",
                    vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]
                ),
                &["store"],
                r
            )
            .expect("valid metric"),
            registry,
        }))
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The registry in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_registered_series() {
        let m = Metrics::new();
        m.consumed.with_label_values(&["orders", "processed"]).inc();
        m.lag.with_label_values(&["orders", "3"]).set(42);
        let text = m.render();
        assert!(
            text.contains(r#"kafka_records_consumed_total{outcome="processed",topic="orders"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"kafka_consumer_lag{partition="3",topic="orders"} 42"#),
            "{text}"
        );
    }
}
