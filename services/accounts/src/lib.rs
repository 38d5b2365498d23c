//! The accounts service (the seeds' Demo 2): registration and login on PostgreSQL. Every change
//! is written with its event, in one transaction, to `users`, `events` and an outbox row that
//! carries the request's trace context; a relay publishes the outbox to `login-events`, keyed by
//! username, at least once and in order per key.
//!
//! Passwords are hashed with Argon2id on the blocking pool, and never logged, traced, put in an
//! event or echoed in an error. A login for an unknown user is verified against a dummy hash, so
//! it costs what a known user's does. Repeated failures lock the account for a while.

pub mod db;
pub mod passwords;
pub mod relay;
pub mod validation;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use events::{LoginEvent, LoginEventType};
use passwords::Passwords;
use platform::config::{ConfigError, Env};
use platform::http::{ApiError, Gate, JsonBody, Server};
use platform::{Runtime, ServiceConfig};
use prometheus::{
    IntCounterVec, register_int_counter_vec_with_registry, register_int_counter_with_registry,
    register_int_gauge_with_registry,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const SERVICE: &str = "accounts";

#[derive(Clone)]
pub struct Config {
    pub service: ServiceConfig,
    /// `HTTP_ADDR`: the page, `POST /register` and `POST /login`.
    pub http_addr: SocketAddr,
    /// `DATABASE_URL`: `postgres://user:password@host:port/db` (on Kubernetes, from the
    /// CloudNativePG secret). Never logged.
    pub database: sqlx::postgres::PgConnectOptions,
    /// `ACCOUNTS_LOCKOUT_THRESHOLD`: failed logins in a row that lock an account.
    pub lockout_threshold: u32,
    /// `ACCOUNTS_LOCKOUT_MS`: how long a locked account refuses logins.
    pub lockout: Duration,
    /// `ACCOUNTS_RELAY_INTERVAL_MS`: how often the relay looks at the outbox when nothing woke it.
    pub relay_interval: Duration,
    /// `ACCOUNTS_RELAY_ENABLED`: false runs no relay (events stay in the outbox).
    pub relay_enabled: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("http_addr", &self.http_addr)
            .field("database_url", &"<redacted>")
            .field("lockout_threshold", &self.lockout_threshold)
            .field("lockout", &self.lockout)
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let url = env
            .raw("DATABASE_URL")
            .ok_or_else(|| ConfigError::Missing {
                var: "DATABASE_URL".into(),
                expected: "a postgres:// URL".into(),
            })?;
        // The value may hold a password: an error names the variable, never the value.
        let database = url
            .starts_with("postgres")
            .then(|| url.parse::<sqlx::postgres::PgConnectOptions>().ok())
            .flatten()
            .ok_or_else(|| ConfigError::Invalid {
                var: "DATABASE_URL".into(),
                value: "<redacted>".into(),
                expected: "a postgres:// or postgresql:// URL".into(),
            })?;
        Ok(Self {
            service: ServiceConfig::from_env(env, SERVICE)?,
            http_addr: env.addr("HTTP_ADDR", "0.0.0.0:8080")?,
            database,
            lockout_threshold: env.checked(
                "ACCOUNTS_LOCKOUT_THRESHOLD",
                5,
                "a whole number from 1 to 100",
                |n: &u32| (1..=100).contains(n),
            )?,
            lockout: env.millis("ACCOUNTS_LOCKOUT_MS", Duration::from_secs(15 * 60))?,
            relay_interval: env.millis("ACCOUNTS_RELAY_INTERVAL_MS", Duration::from_millis(500))?,
            relay_enabled: env.or("ACCOUNTS_RELAY_ENABLED", true, "true or false")?,
        })
    }
}

#[derive(Clone)]
struct Accounts {
    pool: PgPool,
    passwords: Arc<Passwords>,
    relay: Arc<Notify>,
    lockout_threshold: u32,
    lockout: Duration,
    registrations: IntCounterVec,
    logins: IntCounterVec,
    verifications: IntCounterVec,
}

/// What a JSON body must hold: two strings. Reasons never quote the body.
fn credentials(body: &Value) -> Result<(&str, &str), ApiError> {
    let field = |name: &str| {
        body.get(name).and_then(Value::as_str).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_shape",
                "expected a JSON object with string fields `username` and `password`",
            )
        })
    };
    Ok((field("username")?, field("password")?))
}

fn unavailable(err: &sqlx::Error) -> ApiError {
    tracing::error!(error = %err, "database request failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the database is unavailable; nothing was changed, try again",
    )
}

/// The current span's trace context, for the outbox row.
fn trace_context() -> db::TraceContext {
    let mut fields = std::collections::HashMap::<String, String>::new();
    let context = platform::telemetry::context(&tracing::Span::current());
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut fields));
    db::TraceContext {
        traceparent: fields.remove("traceparent"),
        tracestate: fields.remove("tracestate").filter(|s| !s.is_empty()),
    }
}

fn event(event_type: LoginEventType, username: &str) -> LoginEvent {
    LoginEvent {
        event_id: Uuid::new_v4(),
        event_type,
        occurred_at: Utc::now(),
        username: username.to_owned(),
        failed_attempts: None,
        locked_until: None,
    }
}

impl Accounts {
    /// Runs a password check on the blocking pool.
    async fn verify(&self, hash: Option<String>, password: &str) -> bool {
        let passwords = self.passwords.clone();
        let password = password.to_owned();
        let against = if hash.is_some() { "user" } else { "dummy" };
        self.verifications.with_label_values(&[against]).inc();
        tokio::task::spawn_blocking(move || match hash {
            Some(h) => passwords.verify(&h, &password),
            None => passwords.verify_dummy(&password),
        })
        .await
        .expect("password check task")
    }

    /// Commits `events` (with the change `apply` makes) in one transaction, then wakes the relay.
    async fn commit<F>(&self, events: &[LoginEvent], apply: F) -> Result<(), ApiError>
    where
        F: for<'t> FnOnce(
            &'t mut sqlx::Transaction<'static, sqlx::Postgres>,
        ) -> futures::future::BoxFuture<'t, sqlx::Result<()>>,
    {
        let trace = trace_context();
        let mut tx = self.pool.begin().await.map_err(|e| unavailable(&e))?;
        apply(&mut tx).await.map_err(|e| unavailable(&e))?;
        for e in events {
            db::record(&mut tx, e, &trace)
                .await
                .map_err(|e| unavailable(&e))?;
        }
        tx.commit().await.map_err(|e| unavailable(&e))?;
        self.relay.notify_one();
        Ok(())
    }
}

async fn register(
    State(accounts): State<Accounts>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let (username, password) = credentials(&body)?;
    let mut violations = validation::username(username);
    violations.extend(validation::password(password));
    if !violations.is_empty() {
        accounts.registrations.with_label_values(&["invalid"]).inc();
        let reason = violations
            .iter()
            .map(|v| format!("{} {}", v.field, v.message))
            .collect::<Vec<_>>()
            .join("; ");
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "validation_failed", "reason": reason, "violations": violations})),
        )
            .into_response());
    }
    let passwords = accounts.passwords.clone();
    let pw = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || passwords.hash(&pw))
        .await
        .expect("hash task");
    let created = event(LoginEventType::NewUserCreated, username);
    let trace = trace_context();
    let mut tx = accounts.pool.begin().await.map_err(|e| unavailable(&e))?;
    let inserted = db::insert_user(&mut tx, username, &hash)
        .await
        .map_err(|e| unavailable(&e))?;
    if !inserted {
        accounts.registrations.with_label_values(&["taken"]).inc();
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "username_taken",
            format!("the username `{username}` is taken"),
        ));
    }
    db::record(&mut tx, &created, &trace)
        .await
        .map_err(|e| unavailable(&e))?;
    tx.commit().await.map_err(|e| unavailable(&e))?;
    accounts.relay.notify_one();
    accounts.registrations.with_label_values(&["created"]).inc();
    tracing::info!(username, event_id = %created.event_id, "user registered");
    Ok((
        StatusCode::CREATED,
        Json(json!({"username": username, "event_id": created.event_id})),
    )
        .into_response())
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "unknown username or wrong password",
    )
}

fn locked(until: DateTime<Utc>) -> Response {
    (
        StatusCode::LOCKED,
        Json(json!({
            "error": "account_locked",
            "reason": format!("too many failed logins; try again after {}", until.to_rfc3339()),
            "locked_until": until,
        })),
    )
        .into_response()
}

async fn login(
    State(accounts): State<Accounts>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let (username, password) = credentials(&body)?;
    if username.len() > 64 || password.len() > 1024 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_shape",
            "username or password too long",
        ));
    }
    let stored = db::credentials(&accounts.pool, username)
        .await
        .map_err(|e| unavailable(&e))?;
    let Some(stored) = stored else {
        // The same work as a known user's login: a full hash verification.
        accounts.verify(None, password).await;
        let e = event(LoginEventType::UnknownUser, username);
        accounts
            .commit(std::slice::from_ref(&e), |_| Box::pin(async { Ok(()) }))
            .await?;
        accounts.logins.with_label_values(&["unknown_user"]).inc();
        return Err(invalid_credentials());
    };
    let ok = accounts.verify(Some(stored.password_hash), password).await;
    let now = Utc::now();
    if let Some(until) = stored.locked_until.filter(|u| *u > now) {
        accounts.logins.with_label_values(&["locked"]).inc();
        return Ok(locked(until));
    }
    let name = username.to_owned();
    if ok {
        let e = event(LoginEventType::LoginSucceeded, username);
        accounts
            .commit(std::slice::from_ref(&e), |tx| {
                Box::pin(async move { db::reset_failures(tx, &name).await })
            })
            .await?;
        accounts.logins.with_label_values(&["succeeded"]).inc();
        return Ok((
            StatusCode::OK,
            Json(json!({"username": username, "status": "logged_in", "event_id": e.event_id})),
        )
            .into_response());
    }
    // A failure: counted, and at the threshold the account locks, in one transaction.
    let trace = trace_context();
    let mut tx = accounts.pool.begin().await.map_err(|e| unavailable(&e))?;
    let failures = db::count_failure(&mut tx, &name)
        .await
        .map_err(|e| unavailable(&e))?;
    let mut wrong = event(LoginEventType::IncorrectPassword, username);
    wrong.failed_attempts = Some(failures);
    db::record(&mut tx, &wrong, &trace)
        .await
        .map_err(|e| unavailable(&e))?;
    let lock_until = (failures >= accounts.lockout_threshold).then(|| {
        now + chrono::Duration::from_std(accounts.lockout).unwrap_or(chrono::Duration::MAX)
    });
    if let Some(until) = lock_until {
        db::lock(&mut tx, &name, until)
            .await
            .map_err(|e| unavailable(&e))?;
        let mut locked_event = event(LoginEventType::AccountLocked, username);
        locked_event.locked_until = Some(until);
        db::record(&mut tx, &locked_event, &trace)
            .await
            .map_err(|e| unavailable(&e))?;
    }
    tx.commit().await.map_err(|e| unavailable(&e))?;
    accounts.relay.notify_one();
    accounts
        .logins
        .with_label_values(&["incorrect_password"])
        .inc();
    match lock_until {
        Some(until) => {
            tracing::warn!(username, failures, locked_until = %until, "account locked");
            Ok(locked(until))
        }
        None => Err(invalid_credentials()),
    }
}

async fn page() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        Html(include_str!("page.html")),
    )
}

/// Applies the migrations once the database answers, then keeps the `database` gate current.
async fn watch_database(pool: PgPool, gate: Gate, shutdown: CancellationToken) {
    let mut migrated = false;
    loop {
        let verdict = if migrated {
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .map(drop)
                .map_err(|e| format!("database unreachable: {e}"))
        } else {
            match db::MIGRATOR.run(&pool).await {
                Ok(()) => {
                    migrated = true;
                    tracing::info!("database migrated");
                    Ok(())
                }
                Err(e) => Err(format!("database not migrated: {e}")),
            }
        };
        match verdict {
            Ok(()) => gate.ready(),
            Err(reason) => {
                if gate.is_ready() {
                    tracing::warn!(reason, "database not ready");
                }
                gate.not_ready(reason);
            }
        }
        let pause = if gate.is_ready() { 5 } else { 1 };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(pause)) => {}
        }
    }
}

/// The accounts service, built: ports bound, clients made, the database watched.
pub struct Application {
    rt: Runtime,
    http: Server,
    relay: Option<relay::Relay>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Application {
    pub async fn build(
        config: Config,
        shutdown: &CancellationToken,
    ) -> Result<Self, platform::Error> {
        // Events wait in the outbox while the broker is away: it does not gate readiness.
        let rt = Runtime::start_with(
            &config.service,
            events::topology::of(SERVICE).written(),
            false,
            shutdown.clone(),
        )
        .await?;
        let pool = db::pool(config.database.clone());
        let gate = rt.readiness.gate("database", "not checked yet");
        let watcher = tokio::spawn(watch_database(pool.clone(), gate, shutdown.clone()));
        let registry = rt.metrics.registry();
        let wake = Arc::new(Notify::new());
        let accounts = Accounts {
            pool: pool.clone(),
            passwords: Arc::new(Passwords::new()),
            relay: wake.clone(),
            lockout_threshold: config.lockout_threshold,
            lockout: config.lockout,
            registrations: register_int_counter_vec_with_registry!(
                "accounts_registrations_total",
                "Registration attempts by outcome: created, taken, invalid.",
                &["outcome"],
                registry
            )
            .expect("valid metric"),
            logins: register_int_counter_vec_with_registry!(
                "accounts_logins_total",
                "Login attempts by outcome: succeeded, incorrect_password, unknown_user, locked.",
                &["outcome"],
                registry
            )
            .expect("valid metric"),
            verifications: register_int_counter_vec_with_registry!(
                "accounts_password_verifications_total",
                "Argon2id verifications, against a user's hash or the dummy hash (unknown users).",
                &["against"],
                registry
            )
            .expect("valid metric"),
        };
        let relay_publisher =
            platform::kafka::Publisher::new(&config.service.kafka, rt.metrics.clone())
                .map_err(platform::Error::Publish)?;
        let relay = config.relay_enabled.then(|| relay::Relay {
            pool,
            publisher: relay_publisher,
            kafka: config.service.kafka.clone(),
            metrics: rt.metrics.clone(),
            wake,
            interval: config.relay_interval,
            batch: 500,
            published: register_int_counter_with_registry!(
                "accounts_outbox_published_total",
                "Outbox rows published to Kafka.",
                registry
            )
            .expect("valid metric"),
            pending: register_int_gauge_with_registry!(
                "accounts_outbox_pending",
                "Outbox rows not yet published.",
                registry
            )
            .expect("valid metric"),
        });
        let router = platform::http::api(
            Router::new()
                .route("/", get(page))
                .route("/register", post(register))
                .route("/login", post(login))
                .with_state(accounts),
            16 * 1024,
        );
        let http = rt
            .serve_api(config.http_addr, router, shutdown.clone())
            .await?;
        Ok(Self {
            rt,
            http,
            relay,
            watcher,
        })
    }

    pub fn ops_addr(&self) -> SocketAddr {
        self.rt.ops_addr()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) {
        let relay = self.relay.map(|r| tokio::spawn(r.run(shutdown.clone())));
        shutdown.cancelled().await;
        self.http.stop().await;
        if let Some(relay) = relay {
            let _ = relay.await;
        }
        self.watcher.abort();
        self.rt.stop().await;
    }
}
