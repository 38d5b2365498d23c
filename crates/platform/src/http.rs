//! HTTP plumbing: the ops server (`/healthz`, `/readyz`, `/metrics`) on its own port, readiness
//! gates, JSON errors for the services' APIs, and serving a router until shutdown.

use crate::metrics::Metrics;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One condition readiness depends on, set by the component that knows it (the broker probe,
/// the consumer's rebalance callback). Starts not ready with the reason given.
#[derive(Clone, Debug)]
pub struct Gate {
    name: String,
    blocked_by: Arc<RwLock<Option<String>>>,
    /// False for a check `/readyz` shows without failing on it (a dependency the service can
    /// work without for a while).
    blocking: bool,
}

impl Gate {
    pub fn ready(&self) {
        *self.blocked_by.write().expect("gate lock") = None;
    }

    pub fn not_ready(&self, reason: impl Into<String>) {
        *self.blocked_by.write().expect("gate lock") = Some(reason.into());
    }

    pub fn is_ready(&self) -> bool {
        self.blocked_by.read().expect("gate lock").is_none()
    }

    fn status(&self) -> Option<String> {
        self.blocked_by.read().expect("gate lock").clone()
    }
}

/// The set of gates behind `/readyz`. The service is ready when every gate is open and shutdown has
/// not begun.
#[derive(Clone, Debug)]
pub struct Readiness {
    gates: Arc<Mutex<Vec<Gate>>>,
    /// What `/readyz` shows beside the checks, without gating on it (a consumer's assignment).
    details: Arc<Mutex<serde_json::Map<String, serde_json::Value>>>,
    shutdown: CancellationToken,
}

impl Readiness {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            gates: Arc::default(),
            details: Arc::default(),
            shutdown,
        }
    }

    /// Sets an informational entry of the `/readyz` body.
    pub fn set_detail(&self, name: &str, value: serde_json::Value) {
        self.details
            .lock()
            .expect("details lock")
            .insert(name.to_owned(), value);
    }

    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        self.details.lock().expect("details lock").clone()
    }

    pub fn gate(&self, name: &'static str, initial_reason: impl Into<String>) -> Gate {
        self.gate_named(name, initial_reason)
    }

    /// A gate whose name is made at run time (`state:<store>`).
    pub fn gate_named(&self, name: impl Into<String>, initial_reason: impl Into<String>) -> Gate {
        self.add(name.into(), initial_reason.into(), true)
    }

    /// A check shown in `/readyz` that does not make it fail: a dependency the service keeps
    /// working without (accounts writes its events to an outbox while the broker is away).
    pub fn informational(&self, name: &'static str, initial_reason: impl Into<String>) -> Gate {
        self.add(name.to_owned(), initial_reason.into(), false)
    }

    fn add(&self, name: String, initial_reason: String, blocking: bool) -> Gate {
        let gate = Gate {
            name,
            blocked_by: Arc::new(RwLock::new(Some(initial_reason))),
            blocking,
        };
        self.gates.lock().expect("gates lock").push(gate.clone());
        gate
    }

    /// `Ok` when ready, else each check's name and state, and the reasons in one sentence.
    pub fn report(&self) -> Result<serde_json::Value, (serde_json::Value, String)> {
        let mut checks = serde_json::Map::new();
        let mut reasons = Vec::new();
        if self.shutdown.is_cancelled() {
            checks.insert("shutdown".into(), json!("shutting down"));
            reasons.push("shutdown: shutting down".to_owned());
        }
        for gate in self.gates.lock().expect("gates lock").iter() {
            match gate.status() {
                None => {
                    checks.insert(gate.name.clone(), json!("ok"));
                }
                Some(reason) => {
                    if gate.blocking {
                        reasons.push(format!("{}: {reason}", gate.name));
                    }
                    checks.insert(gate.name.clone(), json!(reason));
                }
            }
        }
        if reasons.is_empty() {
            Ok(serde_json::Value::Object(checks))
        } else {
            Err((serde_json::Value::Object(checks), reasons.join("; ")))
        }
    }
}

#[derive(Clone)]
struct OpsState {
    readiness: Readiness,
    metrics: Metrics,
}

/// The ops router. `/healthz` answers whenever the process can serve HTTP at all.
pub fn ops_router(readiness: Readiness, metrics: Metrics) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({"status": "alive"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(OpsState { readiness, metrics })
}

async fn readyz(State(state): State<OpsState>) -> Response {
    let (status, mut body) = match state.readiness.report() {
        Ok(checks) => (StatusCode::OK, json!({"status": "ready", "checks": checks})),
        Err((checks, reason)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "reason": reason, "checks": checks}),
        ),
    };
    for (name, value) in state.readiness.details() {
        body[name] = value;
    }
    (status, Json(body)).into_response()
}

async fn metrics_text(State(state): State<OpsState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// A running HTTP server and the address it bound (port 0 becomes a real port).
pub struct Server {
    pub name: &'static str,
    pub local_addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Binds `addr` and serves `router` until `stop` is cancelled, then finishes in-flight requests.
    /// Logs the bound address, which the system tests read back.
    pub async fn start(
        name: &'static str,
        addr: SocketAddr,
        router: Router,
        stop: CancellationToken,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        tracing::info!(server = name, addr = %local_addr, "listening");
        let signal = stop.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(signal.cancelled_owned())
                .await
        });
        Ok(Self {
            name,
            local_addr,
            stop,
            task,
        })
    }

    /// Stops accepting (if not already told to) and waits for in-flight requests.
    pub async fn stop(self) {
        self.stop.cancel();
        match self.task.await {
            Ok(Ok(())) => tracing::info!(server = self.name, "server stopped"),
            Ok(Err(err)) => tracing::error!(server = self.name, error = %err, "server failed"),
            Err(err) => tracing::error!(server = self.name, error = %err, "server task panicked"),
        }
    }
}

/// An API error: a status and a JSON body `{"error": <kind>, "reason": <sentence>}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub reason: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            error,
            reason: reason.into(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    reason: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.error,
                reason: &self.reason,
            }),
        )
            .into_response()
    }
}

/// `Json<T>` whose rejections are JSON too: 400 for bad syntax, 422 for a wrong shape, 415 for a
/// wrong content type, 413 for a body over the limit.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    let status = rejection.status();
    let error = match rejection {
        JsonRejection::JsonSyntaxError(_) => "malformed_json",
        JsonRejection::JsonDataError(_) => "invalid_shape",
        JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        _ => "bad_request",
    };
    ApiError::new(status, error, rejection.body_text())
}

/// Wraps an API router in server spans (`POST /orders`, kind server), continuing a caller's W3C
/// trace context when the request carries one, and caps request bodies at `max_body` bytes (413).
pub fn api(router: Router, max_body: usize) -> Router {
    use tower_http::trace::TraceLayer;
    router
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(server_span)
                .on_request(())
                .on_failure(())
                .on_response(
                    |res: &Response, latency: std::time::Duration, span: &tracing::Span| {
                        crate::telemetry::record(
                            span,
                            "http.response.status_code",
                            res.status().as_u16(),
                        );
                        if res.status().is_server_error() {
                            crate::telemetry::record(span, "otel.status_code", "ERROR");
                        }
                        tracing::debug!(
                            status = res.status().as_u16(),
                            latency_ms = latency.as_millis() as u64,
                            "request served"
                        );
                    },
                ),
        )
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
}

fn server_span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or(req.uri().path(), axum::extract::MatchedPath::as_str);
    let span = tracing::info_span!(
        "http_request",
        otel.name = %format_args!("{} {route}", req.method()),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %req.method(),
        http.route = route,
        url.path = req.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&opentelemetry_http::HeaderExtractor(req.headers()))
    });
    crate::telemetry::set_parent(&span, parent);
    span
}
