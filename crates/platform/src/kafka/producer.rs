//! A producer whose `publish` returns only once the broker has acknowledged the record, inside a
//! `<topic> publish` span whose context travels in the record headers.

use super::ClientErrors;
use super::KafkaConfig;
use super::propagation;
use crate::metrics::Metrics;
use crate::telemetry;
use futures::FutureExt;
use futures::future::BoxFuture;
use opentelemetry::trace::TraceContextExt;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use std::time::Duration;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot create the Kafka producer: {0}")]
    Create(KafkaError),
    #[error("record to `{topic}` was not acknowledged: {source}")]
    NotAcknowledged { topic: String, source: KafkaError },
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub partition: i32,
    pub offset: i64,
}

/// Producer callbacks: client errors (a broker going away) are warnings the client recovers from,
/// and the last of them is kept for readiness.
pub struct ProducerContext {
    errors: ClientErrors,
}

impl rdkafka::ClientContext for ProducerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.errors.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.warn(&error, reason);
    }
}

#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer<ProducerContext>,
    errors: ClientErrors,
    metrics: Metrics,
    /// The delivery timeout: nothing queued can take longer to settle.
    flush_timeout: Duration,
}

impl Publisher {
    pub fn new(config: &KafkaConfig, metrics: Metrics) -> Result<Self, PublishError> {
        let errors = ClientErrors::default();
        let producer = config
            .producer_config()
            .create_with_context(ProducerContext {
                errors: errors.clone(),
            })
            .map_err(PublishError::Create)?;
        Ok(Self {
            producer,
            errors,
            metrics,
            flush_timeout: config.delivery_timeout,
        })
    }

    /// The errors the client reported: the broker probe names the last one.
    pub fn errors(&self) -> ClientErrors {
        self.errors.clone()
    }

    /// The underlying client, for metadata requests.
    pub fn client(&self) -> &FutureProducer<ProducerContext> {
        &self.producer
    }

    /// Publishes one record in a producer span and waits for its acknowledgement.
    pub async fn publish(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
    ) -> Result<Published, PublishError> {
        self.publish_with(topic, Some(key), payload, OwnedHeaders::new())
            .await
    }

    /// [`publish`](Self::publish) with an optional key and headers of the caller's; the trace
    /// context is appended to them.
    ///
    /// Without an exporter a span is nothing but its ids ([`telemetry`]), and a `publish` span's
    /// id would reach no one: the record then carries the caller's context (the consumer's
    /// `process` span, the HTTP request's span), and no span is made. A `publish` span per record
    /// (created, entered on every poll, closed) cost a tenth of payment's CPU in a profile.
    /// Outside any traced span, the `publish` span is still made, as the root of a new trace.
    pub async fn publish_with(
        &self,
        topic: &str,
        key: Option<&str>,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<Published, PublishError> {
        if !telemetry::exporting() {
            let caller = telemetry::context(&tracing::Span::current());
            if caller.span().span_context().is_valid() {
                let headers = propagation::inject_context(&caller, headers);
                return self
                    .send(topic, key.map(str::as_bytes), Some(payload), headers)
                    .await;
            }
        }
        let span = tracing::info_span!(
            "publish",
            // Formatted only by a layer that reads it (the exporter's), not for every record.
            otel.name = %format_args!("{topic} publish"),
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "kafka",
            messaging.operation.type = "send",
            messaging.operation.name = "publish",
            messaging.destination.name = topic,
            messaging.kafka.message.key = key.unwrap_or_default(),
            messaging.message.body.size = payload.len(),
            messaging.destination.partition.id = tracing::field::Empty,
            messaging.kafka.offset = tracing::field::Empty,
        );
        let headers = propagation::inject(&span, headers);
        async {
            let result = self
                .send(topic, key.map(str::as_bytes), Some(payload), headers)
                .await;
            // For the exporter only (`telemetry::record`); the span lookup is skipped too.
            if telemetry::exporting() {
                let current = tracing::Span::current();
                match &result {
                    Ok(p) => {
                        current.record(
                            "messaging.destination.partition.id",
                            tracing::field::display(p.partition),
                        );
                        current.record("messaging.kafka.offset", p.offset);
                    }
                    Err(_) => {
                        current.record("otel.status_code", "ERROR");
                    }
                }
            }
            result
        }
        .instrument(span)
        .await
    }

    /// Sends a record as given (used for dead letters, which keep the original bytes and headers).
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: OwnedHeaders,
    ) -> Result<Published, PublishError> {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        record.key = key;
        record.payload = payload;
        match self
            .producer
            .send(record, Timeout::After(Duration::from_secs(5)))
            .await
        {
            Ok(delivery) => {
                self.metrics
                    .produced
                    .with_label_values(&[topic, "ok"])
                    .inc();
                Ok(Published {
                    partition: delivery.partition,
                    offset: delivery.offset,
                })
            }
            Err((source, _)) => {
                self.metrics
                    .produced
                    .with_label_values(&[topic, "error"])
                    .inc();
                Err(PublishError::NotAcknowledged {
                    topic: topic.to_owned(),
                    source,
                })
            }
        }
    }

    /// Enqueues a record for one partition at once, without a span (changelog writes), and
    /// returns the wait for its acknowledgement. Records enqueued one after the other to a
    /// partition land in that order (the producer is idempotent). `payload: None` is a tombstone.
    pub fn enqueue(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
        payload: Option<&[u8]>,
    ) -> BoxFuture<'static, Result<Published, PublishError>> {
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(topic).partition(partition).key(key);
        record.payload = payload;
        let metrics = self.metrics.clone();
        let topic = topic.to_owned();
        let fail = move |metrics: &Metrics, topic: String, source| {
            metrics.produced.with_label_values(&[&topic, "error"]).inc();
            Err(PublishError::NotAcknowledged { topic, source })
        };
        match self.producer.send_result(record) {
            Err((source, _)) => {
                let result = fail(&metrics, topic, source);
                async move { result }.boxed()
            }
            Ok(delivery) => async move {
                match delivery.await {
                    Ok(Ok(d)) => {
                        metrics.produced.with_label_values(&[&topic, "ok"]).inc();
                        Ok(Published {
                            partition: d.partition,
                            offset: d.offset,
                        })
                    }
                    Ok(Err((source, _))) => fail(&metrics, topic, source),
                    Err(_) => fail(&metrics, topic, KafkaError::Canceled),
                }
            }
            .boxed(),
        }
    }

    /// Waits for everything still queued to be acknowledged, up to the delivery timeout.
    pub async fn flush(&self) {
        let producer = self.producer.clone();
        let timeout = self.flush_timeout;
        match tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout))).await {
            Ok(Ok(())) => tracing::info!("producer flushed"),
            Ok(Err(err)) => {
                tracing::error!(error = %err, "producer flush incomplete; queued records may be lost")
            }
            Err(err) => tracing::error!(error = %err, "producer flush task failed"),
        }
    }
}

/// A header with a UTF-8 value.
pub(crate) fn text_header(headers: OwnedHeaders, key: &str, value: &str) -> OwnedHeaders {
    headers.insert(Header {
        key,
        value: Some(value.as_bytes()),
    })
}
