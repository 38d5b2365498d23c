//! The database side: migrations, and each change written with its event and outbox row in one
//! transaction.

use chrono::{DateTime, Utc};
use events::{LoginEvent, topics};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{Postgres, Row, Transaction};
use std::time::Duration;

/// The migrations in `migrations/`, embedded in the binary and applied at start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A pool that connects on first use, so the service starts (unready) without its database.
///
/// sqlx's statement logging is off: it asks `tracing` whether its per-statement events are
/// enabled and, when they are not, never emits them, which leaves tracing-subscriber's
/// per-layer filter state stale on that thread, and the service's next event on it was
/// silently dropped (seen as INFO lines missing unless `RUST_LOG` enabled `sqlx=debug`).
/// Database errors are logged by the service where it handles them.
pub fn pool(options: PgConnectOptions) -> PgPool {
    use sqlx::ConnectOptions;
    let options = options
        .log_statements(log::LevelFilter::Off)
        .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(1));
    PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options)
}

/// The W3C trace context of the request that made an event.
#[derive(Debug, Clone, Default)]
pub struct TraceContext {
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// Writes `event` to `events` and to the outbox, inside `tx`.
pub async fn record(
    tx: &mut Transaction<'_, Postgres>,
    event: &LoginEvent,
    trace: &TraceContext,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO events (event_id, event_type, username, occurred_at, payload) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(event.event_id)
    .bind(event.event_type.as_str())
    .bind(&event.username)
    .bind(event.occurred_at)
    .bind(Json(event))
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO outbox (event_id, topic, key, payload, traceparent, tracestate) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(event.event_id)
    .bind(topics::LOGIN_EVENTS)
    .bind(&event.username)
    .bind(Json(event))
    .bind(&trace.traceparent)
    .bind(&trace.tracestate)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A user's stored credentials and lock state.
pub struct Credentials {
    pub password_hash: String,
    pub locked_until: Option<DateTime<Utc>>,
}

pub async fn credentials(pool: &PgPool, username: &str) -> sqlx::Result<Option<Credentials>> {
    let row = sqlx::query("SELECT password_hash, locked_until FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| Credentials {
        password_hash: r.get("password_hash"),
        locked_until: r.get("locked_until"),
    }))
}

/// Creates the user; false when the name is taken.
pub async fn insert_user(
    tx: &mut Transaction<'_, Postgres>,
    username: &str,
    password_hash: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO users (username, password_hash) VALUES ($1, $2) \
         ON CONFLICT (username) DO NOTHING",
    )
    .bind(username)
    .bind(password_hash)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn reset_failures(
    tx: &mut Transaction<'_, Postgres>,
    username: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET failed_attempts = 0, locked_until = NULL WHERE username = $1")
        .bind(username)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Counts a failed login; returns the failures in a row.
pub async fn count_failure(
    tx: &mut Transaction<'_, Postgres>,
    username: &str,
) -> sqlx::Result<u32> {
    let n: i32 = sqlx::query_scalar(
        "UPDATE users SET failed_attempts = failed_attempts + 1 WHERE username = $1 \
         RETURNING failed_attempts",
    )
    .bind(username)
    .fetch_one(&mut **tx)
    .await?;
    Ok(u32::try_from(n).unwrap_or(0))
}

pub async fn lock(
    tx: &mut Transaction<'_, Postgres>,
    username: &str,
    until: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET failed_attempts = 0, locked_until = $2 WHERE username = $1")
        .bind(username)
        .bind(until)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// An outbox row waiting to be published.
pub struct Pending {
    pub id: i64,
    pub topic: String,
    pub key: String,
    pub payload: serde_json::Value,
    pub trace: TraceContext,
}

/// The oldest unpublished rows, locked until `tx` ends: another replica's relay waits for them
/// instead of publishing them too, and rows leave in id order.
pub async fn pending(tx: &mut Transaction<'_, Postgres>, limit: i64) -> sqlx::Result<Vec<Pending>> {
    let rows = sqlx::query(
        "SELECT id, topic, key, payload, traceparent, tracestate FROM outbox \
         WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE",
    )
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Pending {
            id: r.get("id"),
            topic: r.get("topic"),
            key: r.get("key"),
            payload: r.get::<Json<serde_json::Value>, _>("payload").0,
            trace: TraceContext {
                traceparent: r.get("traceparent"),
                tracestate: r.get("tracestate"),
            },
        })
        .collect())
}

pub async fn mark_published(tx: &mut Transaction<'_, Postgres>, ids: &[i64]) -> sqlx::Result<()> {
    sqlx::query("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
        .bind(ids)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn unpublished(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(pool)
        .await
}
