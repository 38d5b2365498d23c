//! The Prometheus registry of a service and the Kafka metrics every service shares.
//!
//! Labels stay low-cardinality: topic, partition, outcome, reason kind — never an id.
//! Services register their own metrics on [`Metrics::registry`].

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Buckets from 1 ms to 10 s: record handling spans a cache hit to a slow gateway call.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone)]
pub struct Metrics {
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
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Self {
            consumed: IntCounterVec::new(
                Opts::new(
                    "kafka_records_consumed_total",
                    "Records consumed, by topic and outcome.",
                ),
                &["topic", "outcome"],
            )
            .expect("valid metric"),
            produced: IntCounterVec::new(
                Opts::new(
                    "kafka_records_produced_total",
                    "Records produced, by topic and outcome.",
                ),
                &["topic", "outcome"],
            )
            .expect("valid metric"),
            dead_lettered: IntCounterVec::new(
                Opts::new(
                    "kafka_records_dead_lettered_total",
                    "Records routed to a dead-letter topic, by source topic and reason.",
                ),
                &["topic", "reason"],
            )
            .expect("valid metric"),
            processing: HistogramVec::new(
                HistogramOpts::new(
                    "kafka_record_processing_duration_seconds",
                    "Time from receiving a record to its output being acknowledged.",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["topic"],
            )
            .expect("valid metric"),
            retries: IntCounterVec::new(
                Opts::new(
                    "kafka_record_retries_total",
                    "Retriable failures while handling a record.",
                ),
                &["topic"],
            )
            .expect("valid metric"),
            lag: IntGaugeVec::new(
                Opts::new(
                    "kafka_consumer_lag",
                    "Messages behind the partition's high watermark.",
                ),
                &["topic", "partition"],
            )
            .expect("valid metric"),
            rebalances: IntCounterVec::new(
                Opts::new(
                    "kafka_consumer_rebalances_total",
                    "Consumer group rebalance events.",
                ),
                &["kind"],
            )
            .expect("valid metric"),
            assigned_partitions: IntGauge::new(
                "kafka_consumer_assigned_partitions",
                "Partitions currently assigned to this consumer.",
            )
            .expect("valid metric"),
            registry,
        };
        m.register(Box::new(m.consumed.clone()));
        m.register(Box::new(m.produced.clone()));
        m.register(Box::new(m.dead_lettered.clone()));
        m.register(Box::new(m.processing.clone()));
        m.register(Box::new(m.retries.clone()));
        m.register(Box::new(m.lag.clone()));
        m.register(Box::new(m.rebalances.clone()));
        m.register(Box::new(m.assigned_partitions.clone()));
        m
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Registers a service's own collector. Names are fixed at compile time, so a clash is a bug.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        self.registry
            .register(collector)
            .expect("metric names are unique within a service");
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
