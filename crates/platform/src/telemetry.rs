//! Logs and traces: JSON log lines carrying `trace_id`/`span_id`, and OTLP trace export configured
//! only by the standard `OTEL_*` variables.
//!
//! Spans are exported only when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, and never when `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none`. The exporter and the SDK read the rest (`OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_BSP_*`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, …). Without an exporter, spans
//! keep only their ids ([`span_ids`]): trace context still crosses HTTP and Kafka and shows up in
//! logs, and nothing is recorded that no one would read. [`set_parent`] and [`context`] work
//! either way.

mod span_ids;

pub use span_ids::{context, set_parent};

use crate::config::{ConfigError, Env};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::Level;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInstalled(String),
}

/// Flushes and shuts the tracer provider down when dropped: the last step of a service's shutdown.
#[must_use = "dropping the guard shuts tracing down"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(err) = self.provider.shutdown() {
            eprintln!("telemetry shutdown failed: {err}");
        }
    }
}

/// Whether this process exports spans; set by [`init`] and [`init_tool`].
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported: whether anything reads a field recorded on a span after it was
/// created (see [`record`]).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Records a field on a span for the trace exporter, and does nothing when spans are not exported.
///
/// Log lines carry no span fields ([`NoSpanFields`]), so the exporter is the only reader of a
/// field recorded after the span was created (an outcome, an offset, a status). Without one, the
/// log layer would still look the span up twice and lock it for every call, which perf put at
/// 1.6–2.5 % of each service's CPU. Fields given when the span is created are not affected.
///
/// Two consequences: a `RUST_LOG` directive that matches a recorded field's value (say
/// `[http_request{http.response.status_code=500}]=debug`) matches only while exporting, and a
/// program that installs its own exporting subscriber instead of [`init`] gets no recorded
/// fields.
pub fn record<V: tracing::Value>(span: &tracing::Span, field: &str, value: V) {
    if exporting() {
        span.record(field, value);
    }
}

/// What `init` decided, for the one start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceExport {
    pub service_name: String,
    pub endpoint: Option<String>,
}

impl TraceExport {
    pub fn from_env(env: &Env, default_service_name: &str) -> Result<Self, ConfigError> {
        let service_name = env
            .raw("OTEL_SERVICE_NAME")
            .unwrap_or(default_service_name)
            .to_owned();
        let disabled = env.or("OTEL_SDK_DISABLED", false, "true or false")?
            || env.raw("OTEL_TRACES_EXPORTER") == Some("none");
        if let Some(exporter) = env
            .raw("OTEL_TRACES_EXPORTER")
            .filter(|e| *e != "none" && *e != "otlp")
        {
            return Err(ConfigError::Invalid {
                var: "OTEL_TRACES_EXPORTER".into(),
                value: exporter.into(),
                expected: "otlp or none".into(),
            });
        }
        let protocol = env
            .raw("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .map(|p| ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", p))
            .or_else(|| {
                env.raw("OTEL_EXPORTER_OTLP_PROTOCOL")
                    .map(|p| ("OTEL_EXPORTER_OTLP_PROTOCOL", p))
            });
        if let Some((var, value)) = protocol.filter(|(_, p)| *p != "grpc") {
            return Err(ConfigError::Invalid {
                var: var.into(),
                value: value.into(),
                expected: "grpc (the only OTLP transport built in)".into(),
            });
        }
        let endpoint = env
            .raw("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| env.raw("OTEL_EXPORTER_OTLP_ENDPOINT"))
            .filter(|_| !disabled)
            .map(str::to_owned);
        Ok(Self {
            service_name,
            endpoint,
        })
    }
}

/// Installs the global subscriber (JSON logs on stdout filtered by `RUST_LOG`, default `info`)
/// and tracer.
pub fn init(env: &Env, default_service_name: &str) -> Result<TelemetryGuard, TelemetryError> {
    install(
        env,
        default_service_name,
        std::io::stdout,
        "info,librdkafka=warn,rdkafka=warn,h2=warn,tower=warn,hyper=warn",
    )
}

/// [`init`] for a command-line tool: stdout is the tool's output, so logs go to stderr, and only
/// errors (the tool reports a failure in a sentence of its own) unless `RUST_LOG` says otherwise.
/// Spans are exported as for a service.
pub fn init_tool(env: &Env, name: &str) -> Result<TelemetryGuard, TelemetryError> {
    install(
        env,
        name,
        std::io::stderr,
        "error,librdkafka=off,rdkafka=off",
    )
}

fn install<W>(
    env: &Env,
    default_service_name: &str,
    writer: W,
    default_filter: &str,
) -> Result<TelemetryGuard, TelemetryError>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let export = TraceExport::from_env(env, default_service_name)?;
    let resource = Resource::builder()
        .with_service_name(export.service_name.clone())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if export.endpoint.is_some() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer(export.service_name.clone());

    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Exporting, spans are built for every record, so only what a trace shows is kept: no
    // per-span location, thread, target or busy/idle attributes, and no context activation on
    // every poll (propagation reads the span's own context). Events below INFO do not become span
    // events. Not exporting, spans get their ids and nothing else.
    let exporting = export.endpoint.is_some().then(|| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_filter(filter::filter_fn(|meta| {
                meta.is_span() || *meta.level() <= Level::INFO
            }))
    });
    let ids_only = export
        .endpoint
        .is_none()
        .then(|| span_ids::SpanIdsLayer.with_filter(filter::filter_fn(|meta| meta.is_span())));
    tracing_subscriber::registry()
        .with(exporting)
        .with(ids_only)
        .with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(NoSpanFields)
                .event_format(JsonLines)
                .with_writer(writer)
                .with_filter(filter),
        )
        .try_init()
        .map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
    EXPORTING.store(export.endpoint.is_some(), Ordering::Relaxed);

    tracing::info!(
        service = %export.service_name,
        otlp_endpoint = export.endpoint.as_deref().unwrap_or("none (export off)"),
        version = env!("CARGO_PKG_VERSION"),
        "telemetry initialised"
    );
    Ok(TelemetryGuard { provider })
}

/// Span fields are not copied into log lines: every record's span carries a dozen attributes, and
/// formatting them for every span, logged or not, cost more than the rest of a record's handling.
/// A line inside a span names the span and carries its `trace_id`, which leads to the attributes.
///
/// This is why the formatter below is the project's own rather than tracing-subscriber's JSON
/// format or the json-subscriber crate: both serialise every span's fields to JSON when the span is
/// created (json-subscriber 0.3 in `on_new_span`), which perf measured at about a tenth of the
/// consumers' CPU per record with nothing logged.
struct NoSpanFields;

impl<'writer> FormatFields<'writer> for NoSpanFields {
    fn format_fields<R: RecordFields>(&self, _: Writer<'writer>, _: R) -> fmt::Result {
        Ok(())
    }
}

/// One JSON object a line: `timestamp`, `level`, `message`, the event's fields, then the current
/// span's name and its `trace_id`/`span_id`.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        line.insert("timestamp".into(), Value::String(now));
        line.insert("level".into(), Value::String(meta.level().to_string()));
        let mut fields = FieldVisitor::default();
        event.record(&mut fields);
        line.insert(
            "message".into(),
            fields.message.take().map_or(Value::Null, Value::String),
        );
        line.extend(fields.fields);
        line.insert("target".into(), Value::String(meta.target().to_owned()));

        if let Some(span) = ctx.event_scope().and_then(|mut scope| scope.next()) {
            let mut span_obj = Map::new();
            span_obj.insert("name".into(), Value::String(span.name().to_owned()));
            line.insert("span".into(), Value::Object(span_obj));
            let ids = span_ids::ids_of(&span).or_else(|| {
                tracing::dispatcher::get_default(|dispatch| {
                    tracing_opentelemetry::get_otel_context(&span.id(), dispatch)
                })
                .map(|cx| {
                    let sc = cx.span().span_context().clone();
                    (sc.trace_id(), sc.span_id())
                })
            });
            if let Some((trace_id, span_id)) = ids.filter(|(t, s)| {
                *t != opentelemetry::trace::TraceId::INVALID
                    && *s != opentelemetry::trace::SpanId::INVALID
            }) {
                line.insert("trace_id".into(), Value::String(trace_id.to_string()));
                line.insert("span_id".into(), Value::String(span_id.to_string()));
            }
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

#[derive(Default)]
struct FieldVisitor {
    message: Option<String>,
    fields: Map<String, Value>,
}

impl FieldVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for FieldVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_is_off_without_an_endpoint() {
        let export = TraceExport::from_env(&Env::default(), "order").expect("valid");
        assert_eq!(export.endpoint, None);
        assert_eq!(export.service_name, "order");
    }

    #[test]
    fn standard_variables_choose_endpoint_and_name() {
        let env = Env::from_pairs([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4317"),
            ("OTEL_SERVICE_NAME", "payment-eu"),
        ]);
        let export = TraceExport::from_env(&env, "payment").expect("valid");
        assert_eq!(export.endpoint.as_deref(), Some("http://jaeger:4317"));
        assert_eq!(export.service_name, "payment-eu");

        let disabled = Env::from_pairs([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert_eq!(
            TraceExport::from_env(&disabled, "x")
                .expect("valid")
                .endpoint,
            None
        );
    }

    #[test]
    fn an_unsupported_protocol_names_its_variable() {
        let env = Env::from_pairs([("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]);
        let err = TraceExport::from_env(&env, "x").unwrap_err();
        assert!(
            err.to_string().starts_with("OTEL_EXPORTER_OTLP_PROTOCOL="),
            "{err}"
        );
    }
}
