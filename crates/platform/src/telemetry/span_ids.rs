//! Trace context without recording: when no exporter is configured, each span gets only its W3C
//! ids (trace id, span id, flags, state), so that `traceparent` still crosses HTTP and Kafka and
//! log lines still carry `trace_id`/`span_id`, but nothing else about the span is kept.
//!
//! With an exporter, `tracing-opentelemetry` builds a full OpenTelemetry span for every tracing
//! span: attributes, timings and a lock per span, work that only an exporter needs; what that
//! cost the order flow is measured in `docs/benchmarks.md` ("The services' CPU per order, and
//! spans").
//!
//! [`set_parent`] and [`context`] work with either layer (on a subscriber built on
//! `tracing_subscriber::Registry`, as `telemetry::init` builds it), and behave alike:
//! - `set_parent` is called on a new span, before it has children or its context is read (the
//!   exporting layer ignores it after that; this one does not check);
//! - a parent context without a valid span makes the span the root of a new trace;
//! - a root is marked sampled, as the SDK's default sampler (parent-based, always on) marks it, so
//!   a downstream service that does export keeps the trace. `OTEL_TRACES_SAMPLER` applies only
//!   where spans are exported;
//! - only the span context is propagated: with export off, other entries of a context (baggage)
//!   are not carried, and only the W3C trace-context propagator is installed.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing::Subscriber;
use tracing::span::{Attributes, Id};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};
use tracing_subscriber::{Layer, Registry};

/// A span's ids, in the span's extensions.
#[derive(Debug, Clone)]
struct SpanIds(SpanContext);

/// Gives every new span its ids: the trace of its parent span, or a new trace for a root.
#[derive(Debug)]
pub(super) struct SpanIdsLayer;

impl<S> Layer<S> for SpanIdsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let parent = if let Some(parent) = attrs.parent() {
            ctx.span(parent)
        } else if attrs.is_contextual() {
            ctx.lookup_current()
        } else {
            None
        };
        let inherited =
            parent.and_then(|p| p.extensions().get::<SpanIds>().map(|ids| ids.0.clone()));
        let span_id = RandomIdGenerator::default().new_span_id();
        let ids = match inherited {
            Some(parent) => SpanContext::new(
                parent.trace_id(),
                span_id,
                parent.trace_flags(),
                false,
                parent.trace_state().clone(),
            ),
            None => root(span_id),
        };
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanIds(ids));
        }
    }
}

/// The first span of a new trace. (The generator holds no state: it draws from a thread-local
/// random number generator.)
fn root(span_id: SpanId) -> SpanContext {
    SpanContext::new(
        RandomIdGenerator::default().new_trace_id(),
        span_id,
        TraceFlags::SAMPLED,
        false,
        TraceState::NONE,
    )
}

/// Runs `f` on `span` as the registry holds it, if the current subscriber is built on one.
fn in_registry<R>(
    span: &tracing::Span,
    f: impl for<'a> FnOnce(SpanRef<'a, Registry>) -> Option<R>,
) -> Option<R> {
    span.with_subscriber(|(id, dispatch)| f(dispatch.downcast_ref::<Registry>()?.span(id)?))
        .flatten()
}

/// The ids the layer gave `span` (a log line's `trace_id` and `span_id`).
pub(super) fn ids_of<'a, S: LookupSpan<'a>>(span: &SpanRef<'a, S>) -> Option<(TraceId, SpanId)> {
    span.extensions()
        .get::<SpanIds>()
        .map(|ids| (ids.0.trace_id(), ids.0.span_id()))
}

/// Makes `span` continue the trace of `parent` (a context extracted from a request's or a
/// record's headers). A parent without a valid span makes `span` the root of a new trace.
pub fn set_parent(span: &tracing::Span, parent: opentelemetry::Context) {
    let remote = parent.span().span_context().clone();
    let found = in_registry(span, |span| {
        let mut extensions = span.extensions_mut();
        let ids = extensions.get_mut::<SpanIds>()?;
        ids.0 = if remote.is_valid() {
            SpanContext::new(
                remote.trace_id(),
                ids.0.span_id(),
                remote.trace_flags(),
                false,
                remote.trace_state().clone(),
            )
        } else {
            root(ids.0.span_id())
        };
        Some(())
    });
    if found.is_none() {
        // The exporting layer, or none (then this does nothing).
        let _ = OpenTelemetrySpanExt::set_parent(span, parent);
    }
}

/// The trace context of `span`, to inject into outgoing headers.
pub fn context(span: &tracing::Span) -> opentelemetry::Context {
    // The read lock: a context is read for every record published.
    let ids = in_registry(span, |span| {
        span.extensions().get::<SpanIds>().map(|ids| ids.0.clone())
    });
    match ids {
        Some(ids) => opentelemetry::Context::new().with_remote_span_context(ids),
        None => OpenTelemetrySpanExt::context(span),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use std::collections::HashMap;
    use tracing_subscriber::layer::SubscriberExt;

    fn traceparent(span: &tracing::Span) -> String {
        let mut fields = HashMap::<String, String>::new();
        TraceContextPropagator::new().inject_context(&context(span), &mut fields);
        fields.remove("traceparent").expect("a traceparent")
    }

    #[test]
    fn children_continue_the_trace_and_a_remote_parent_is_adopted() {
        let subscriber = tracing_subscriber::registry().with(SpanIdsLayer);
        tracing::subscriber::with_default(subscriber, || {
            let root = tracing::info_span!("root");
            let root_tp = traceparent(&root);
            let (_, root_trace, root_span, flags) = split(&root_tp);
            assert_ne!(root_trace, "0".repeat(32), "a root starts a valid trace");
            assert_eq!(flags, "01");

            let child = root.in_scope(|| tracing::info_span!("child"));
            let explicit = tracing::info_span!(parent: &root, "explicit");
            for span in [&child, &explicit] {
                let tp = traceparent(span);
                let (_, trace, span_id, _) = split(&tp);
                assert_eq!(trace, root_trace, "{tp}");
                assert_ne!(span_id, root_span, "{tp}");
            }

            let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
            let remote = TraceContextPropagator::new().extract(&HashMap::from([(
                "traceparent".to_owned(),
                caller.to_owned(),
            )]));
            let consumer = tracing::info_span!("consumer");
            set_parent(&consumer, remote);
            let tp = traceparent(&consumer);
            let (_, trace, span_id, flags) = split(&tp);
            assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_ne!(
                span_id, "00f067aa0ba902b7",
                "the span keeps an id of its own"
            );
            assert_eq!(flags, "00", "the caller's sampling decision is kept");
            let grandchild = tracing::info_span!(parent: &consumer, "publish");
            assert_eq!(split(&traceparent(&grandchild)).1, trace);

            // No headers: a new trace, even under a local parent, as with the exporting layer.
            let orphan = root.in_scope(|| tracing::info_span!("orphan"));
            set_parent(&orphan, opentelemetry::Context::new());
            let tp = traceparent(&orphan);
            let (_, trace, _, flags) = split(&tp);
            assert_ne!(trace, root_trace, "{tp}");
            assert_ne!(trace, "0".repeat(32), "{tp}");
            assert_eq!(flags, "01");
        });
    }

    #[test]
    fn without_the_ids_layer_there_is_no_context() {
        let span = tracing::info_span!("unobserved");
        assert!(!context(&span).span().span_context().is_valid());
        // A span the registry has, without ids: the exporting layer's path, which has none either.
        tracing::subscriber::with_default(tracing_subscriber::registry(), || {
            let span = tracing::info_span!("registered");
            set_parent(&span, opentelemetry::Context::new());
            assert!(!context(&span).span().span_context().is_valid());
        });
    }

    fn split(tp: &str) -> (&str, &str, &str, &str) {
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        (parts[0], parts[1], parts[2], parts[3])
    }
}
