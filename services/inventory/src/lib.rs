//! The inventory service: its own consumer group on `orders`, so it sees every order independently
//! of payment. Keeps stock per SKU, logs each adjustment, serves `GET /stock`, and publishes
//! `inventory_reserved` / `out_of_stock` to `inventory`.
//!
//! Stock lives in memory: a restarted replica starts from `INVENTORY_INITIAL_STOCK` again.

pub mod stock;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use events::{InventoryStatus, OrderCreated, topics};
use platform::config::{ConfigError, Env};
use platform::kafka::{HandleError, Handler, Publisher, RecordMeta, Rejection};
use platform::{Api, ConsumerService, ServiceConfig, Subscription};
use prometheus::{IntCounterVec, register_int_counter_vec_with_registry};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use stock::Stock;
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "inventory";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub service: ServiceConfig,
    /// `HTTP_ADDR`: where `GET /stock` is served.
    pub http_addr: SocketAddr,
    /// `INVENTORY_INITIAL_STOCK`: units of each SKU before its first order.
    pub initial_stock: u32,
    /// `INVENTORY_DEDUP_WINDOW`: how many recent orders are remembered for idempotent reservation.
    pub dedup_window: usize,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceConfig::from_env(env, SERVICE)?,
            http_addr: env.addr("HTTP_ADDR", "0.0.0.0:8080")?,
            initial_stock: env.or("INVENTORY_INITIAL_STOCK", 1_000, "a whole number of units")?,
            dedup_window: env.checked(
                "INVENTORY_DEDUP_WINDOW",
                100_000,
                "a positive whole number",
                |n: &usize| *n > 0,
            )?,
        })
    }
}

struct Reservations {
    stock: Arc<Mutex<Stock>>,
    publisher: Publisher,
    outcomes: IntCounterVec,
}

impl Handler for Reservations {
    type Input = OrderCreated;

    fn decode(&self, payload: Option<&[u8]>) -> Result<OrderCreated, Rejection> {
        events::decode(payload).map_err(|e| Rejection {
            kind: e.kind(),
            reason: e.to_string(),
        })
    }

    async fn handle(&self, order: &OrderCreated, _meta: &RecordMeta) -> Result<(), HandleError> {
        let (event, moved) = self
            .stock
            .lock()
            .expect("stock lock")
            .reserve(order, chrono::Utc::now());
        if moved {
            self.outcomes
                .with_label_values(&[event.event_type.as_str()])
                .inc();
            match event.event_type {
                InventoryStatus::InventoryReserved => {
                    tracing::debug!(order_id = %order.order_id, items = ?order.items, "stock reserved");
                }
                InventoryStatus::OutOfStock => {
                    tracing::warn!(order_id = %order.order_id, shortages = ?event.shortages, "out of stock");
                }
            }
        }
        // Published on every delivery: if the first publish was lost with a crash, this is its retry.
        let payload = serde_json::to_vec(&event).expect("events serialise");
        self.publisher
            .publish(topics::INVENTORY, &order.order_id.to_string(), &payload)
            .await
            .map_err(|e| HandleError::Retriable(e.to_string()))?;
        Ok(())
    }
}

async fn stock_levels(State(stock): State<Arc<Mutex<Stock>>>) -> Json<serde_json::Value> {
    let stock = stock.lock().expect("stock lock");
    Json(json!({
        "orders_seen": stock.orders_seen(),
        "stock": stock.levels(),
    }))
}

/// Builds the service: binds its ports (read them back from the value), creates its clients and
/// subscribes; nothing is consumed until `run_until_stopped`.
pub async fn build(
    config: Config,
    shutdown: &CancellationToken,
) -> Result<ConsumerService<impl Handler>, platform::Error> {
    let subscription = Subscription {
        group: "inventory",
        topic: topics::ORDERS,
        writes: &[topics::INVENTORY],
    };
    ConsumerService::build(&config.service, subscription, shutdown, |rt| {
        let stock = Arc::new(Mutex::new(Stock::new(
            config.initial_stock,
            config.dedup_window,
        )));
        let outcomes = register_int_counter_vec_with_registry!(
            "inventory_reservations_total",
            "Orders reserved or out of stock.",
            &["outcome"],
            rt.metrics.registry()
        )
        .expect("valid metric");
        let router = platform::http::api(
            Router::new()
                .route("/stock", get(stock_levels))
                .with_state(stock.clone()),
            1024,
        );
        let handler = Reservations {
            stock,
            publisher: rt.publisher(),
            outcomes,
        };
        (
            handler,
            Some(Api {
                addr: config.http_addr,
                router,
            }),
        )
    })
    .await
}
