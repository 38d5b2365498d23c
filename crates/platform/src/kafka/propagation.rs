//! W3C trace context (`traceparent`, `tracestate`) in Kafka record headers.

use opentelemetry::propagation::{Extractor, Injector};
use rdkafka::message::{Header, Headers, OwnedHeaders};

/// Collects the propagator's fields, then becomes record headers.
#[derive(Debug, Default)]
pub struct HeaderInjector(Vec<(String, String)>);

impl Injector for HeaderInjector {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

impl HeaderInjector {
    /// Appends the collected fields to `headers`.
    pub fn into_headers(self, mut headers: OwnedHeaders) -> OwnedHeaders {
        for (key, value) in &self.0 {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        headers
    }
}

/// Reads propagator fields from a record's headers; a header that is not UTF-8 is ignored.
pub struct HeaderExtractor<'a, H: Headers>(pub &'a H);

impl<H: Headers> Extractor for HeaderExtractor<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| h.key.eq_ignore_ascii_case(key))
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|h| h.key).collect()
    }
}

/// Injects the context of `span` into new headers.
pub fn inject(span: &tracing::Span, headers: OwnedHeaders) -> OwnedHeaders {
    let mut injector = HeaderInjector::default();
    let context = crate::telemetry::context(span);
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut injector));
    injector.into_headers(headers)
}

/// The remote parent carried by `headers`, if any.
pub fn extract<H: Headers>(headers: Option<&H>) -> opentelemetry::Context {
    match headers {
        Some(h) => {
            opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(h)))
        }
        None => opentelemetry::Context::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    #[test]
    fn traceparent_round_trips_through_record_headers() {
        let propagator = TraceContextPropagator::new();
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex"),
            SpanId::from_hex("00f067aa0ba902b7").expect("hex"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = opentelemetry::Context::new().with_remote_span_context(sc.clone());
        let mut injector = HeaderInjector::default();
        propagator.inject_context(&cx, &mut injector);
        let headers = injector.into_headers(OwnedHeaders::new().insert(Header {
            key: "other",
            value: Some(b"x".as_slice()),
        }));
        assert_eq!(
            HeaderExtractor(&headers).get("traceparent"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        assert_eq!(HeaderExtractor(&headers).get("other"), Some("x"));

        let extracted = propagator.extract(&HeaderExtractor(&headers));
        let got = extracted.span().span_context().clone();
        assert_eq!(got.trace_id(), sc.trace_id());
        assert_eq!(got.span_id(), sc.span_id());
        assert!(got.is_remote());
    }
}
