//! The order service: `POST /orders` and a built-in generator publish `order_created` to `orders`,
//! keyed by `order_id`. The HTTP (or generator) span is the root of each order's trace.

mod generator;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use events::{NewOrder, OrderCreated, limits, topics};
use platform::config::{ConfigError, Env};
use platform::http::{ApiError, JsonBody};
use platform::kafka::Publisher;
use platform::{Runtime, ServiceConfig};
use prometheus::{IntCounterVec, register_int_counter_vec_with_registry};
use serde_json::json;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "order";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub service: ServiceConfig,
    /// `HTTP_ADDR`: where the order API listens.
    pub http_addr: SocketAddr,
    /// `ORDER_GENERATOR_RATE`: generated orders per second; 0 turns the generator off.
    pub generator_rate: f64,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceConfig::from_env(env, SERVICE)?,
            http_addr: env.addr("HTTP_ADDR", "0.0.0.0:8080")?,
            generator_rate: env.checked(
                "ORDER_GENERATOR_RATE",
                0.0,
                "orders per second, from 0 (off) to 10000",
                |r: &f64| (0.0..=10_000.0).contains(r),
            )?,
        })
    }
}

/// What the API and the generator share.
#[derive(Clone)]
struct Orders {
    publisher: Publisher,
    created: IntCounterVec,
}

impl Orders {
    /// Validates and publishes one order; the order is accepted once the broker has it.
    async fn place(&self, order: NewOrder, source: &'static str) -> Result<OrderCreated, ApiError> {
        order.validate().map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                e.to_string(),
            )
        })?;
        let event = OrderCreated::new(order, Utc::now());
        let payload = serde_json::to_vec(&event).expect("events serialise");
        self.publisher
            .publish(topics::ORDERS, &event.order_id.to_string(), &payload)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "order not published");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the order could not be stored; retry later",
                )
            })?;
        self.created.with_label_values(&[source]).inc();
        tracing::debug!(
            order_id = %event.order_id,
            user_id = event.user_id,
            amount = %event.amount,
            items = event.items.len(),
            source,
            "order created"
        );
        Ok(event)
    }
}

async fn create_order(
    State(orders): State<Orders>,
    JsonBody(order): JsonBody<NewOrder>,
) -> Result<impl IntoResponse, ApiError> {
    let event = orders.place(order, "api").await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "order_id": event.order_id,
            "event_id": event.event_id,
            "status": event.status,
        })),
    ))
}

fn api(orders: Orders) -> Router {
    platform::http::api(
        Router::new()
            .route("/orders", post(create_order))
            .with_state(orders),
        limits::MAX_BODY_BYTES,
    )
}

/// The order service, built: its ports bound (read them back from the value) and its producer
/// made. The API serves from the start; the generator starts with `run_until_stopped`.
pub struct Application {
    rt: Runtime,
    http: platform::http::Server,
    orders: Orders,
    generator_rate: f64,
}

impl Application {
    pub async fn build(
        config: Config,
        shutdown: &CancellationToken,
    ) -> Result<Self, platform::Error> {
        let rt = Runtime::start(
            &config.service,
            events::topology::of(SERVICE).written(),
            shutdown.clone(),
        )
        .await?;
        let created = register_int_counter_vec_with_registry!(
            "orders_created_total",
            "Orders accepted and published, by source.",
            &["source"],
            rt.metrics.registry()
        )
        .expect("valid metric");
        let orders = Orders {
            publisher: rt.publisher(),
            created,
        };
        let http = rt
            .serve_api(config.http_addr, api(orders.clone()), shutdown.clone())
            .await?;
        Ok(Self {
            rt,
            http,
            orders,
            generator_rate: config.generator_rate,
        })
    }

    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub fn ops_addr(&self) -> SocketAddr {
        self.rt.ops_addr()
    }

    /// Where `POST /orders` is served.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) {
        let generator = (self.generator_rate > 0.0).then(|| {
            tokio::spawn(generator::run(
                self.orders.clone(),
                self.generator_rate,
                shutdown.clone(),
            ))
        });
        shutdown.cancelled().await;
        if let Some(task) = generator {
            let _ = task.await;
        }
        self.http.stop().await;
        self.rt.stop().await;
    }
}

pub use generator::random_order;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_rate_is_validated() {
        let base = [("KAFKA_BOOTSTRAP_SERVERS", "k:9092")];
        let ok = Config::from_env(&Env::from_pairs(base)).expect("valid");
        assert_eq!(ok.generator_rate, 0.0);
        let err = Config::from_env(&Env::from_pairs([base[0], ("ORDER_GENERATOR_RATE", "-1")]))
            .unwrap_err();
        assert!(
            err.to_string().starts_with("ORDER_GENERATOR_RATE="),
            "{err}"
        );
    }
}
