//! W3C trace context (`traceparent`, `tracestate`) in Kafka record headers.

use opentelemetry::propagation::{Extractor, Injector};
use rdkafka::message::{Header, Headers, OwnedHeaders};

/// Appends the propagator's fields to record headers as it sets them.
#[derive(Debug)]
pub struct HeaderInjector(Option<OwnedHeaders>);

impl Injector for HeaderInjector {
    fn set(&mut self, key: &str, value: String) {
        let headers = self.0.take().unwrap_or_default();
        self.0 = Some(headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        }));
    }
}

impl HeaderInjector {
    /// Appends to `headers`.
    pub fn new(headers: OwnedHeaders) -> Self {
        Self(Some(headers))
    }

    /// The headers with the fields appended.
    pub fn into_headers(self) -> OwnedHeaders {
        self.0.unwrap_or_default()
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

/// Appends the context of `span` to `headers`.
pub fn inject(span: &tracing::Span, headers: OwnedHeaders) -> OwnedHeaders {
    inject_context(&crate::telemetry::context(span), headers)
}

/// Appends `context` to `headers`.
pub fn inject_context(context: &opentelemetry::Context, headers: OwnedHeaders) -> OwnedHeaders {
    let mut injector = HeaderInjector::new(headers);
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(context, &mut injector));
    injector.into_headers()
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
        let mut injector = HeaderInjector::new(OwnedHeaders::new().insert(Header {
            key: "other",
            value: Some(b"x".as_slice()),
        }));
        propagator.inject_context(&cx, &mut injector);
        let headers = injector.into_headers();
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
