//! The inventory service: its own consumer group on `orders`, so it sees every order independently
//! of payment. Keeps stock per SKU, logs each adjustment, serves `GET /stock`, and publishes
//! `inventory_reserved` / `out_of_stock` to `inventory`.
//!
//! Stock is kept per partition of `orders` (a shard, like a warehouse: each starts with
//! `INVENTORY_INITIAL_STOCK` units of every SKU), in a state store (`platform::state`) whose
//! changelog is `inventory-stock-changelog`. A shard moves with its partition, so scaling out
//! never lets two replicas sell the same units, and a restarted or rebalanced member restores
//! its shards before its first record.

pub mod stock;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use events::{InventoryEvent, InventoryStatus, OrderCreated, topics};
use platform::config::{ConfigError, Env};
use platform::kafka::{HandleError, Handler, Publisher, RecordMeta, Rejection};
use platform::state::{Store, Writer};
use platform::{Api, ConsumerService, ServiceConfig};
use prometheus::{IntCounterVec, register_int_counter_vec_with_registry};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use stock::{Ledger, Level};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const SERVICE: &str = "inventory";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub service: ServiceConfig,
    /// `HTTP_ADDR`: where `GET /stock` is served.
    pub http_addr: SocketAddr,
    /// `INVENTORY_INITIAL_STOCK`: units of each SKU in each shard before its first order.
    pub initial_stock: u32,
    /// `INVENTORY_DEDUP_WINDOW`: how many recent orders each shard remembers for idempotent
    /// reservation.
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

/// One entry of a shard: a SKU's level (`sku:<SKU>`) or an order's outcome (`order:<id>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Entry {
    Level(Level),
    Order(InventoryEvent),
}

const SKU: &str = "sku:";
const ORDER: &str = "order:";

impl Ledger for Writer<'_, Entry> {
    fn level(&self, sku: &str) -> Option<Level> {
        match self.get(&format!("{SKU}{sku}")) {
            Some(Entry::Level(l)) => Some(*l),
            _ => None,
        }
    }

    fn set_level(&mut self, sku: &str, level: Level) {
        self.put(&format!("{SKU}{sku}"), Entry::Level(level));
    }

    fn outcome(&self, order_id: Uuid) -> Option<InventoryEvent> {
        match self.get(&format!("{ORDER}{order_id}")) {
            Some(Entry::Order(e)) => Some(e.clone()),
            _ => None,
        }
    }

    fn record(&mut self, event: InventoryEvent) {
        self.put(&format!("{ORDER}{}", event.order_id), Entry::Order(event));
    }
}

#[derive(Clone)]
struct Shards {
    store: Store<Entry>,
    initial: u32,
    window: usize,
    orders_seen: Arc<AtomicU64>,
}

struct Reservations {
    shards: Shards,
    publisher: Publisher,
    outcomes: IntCounterVec,
}

impl Handler for Reservations {
    type Input = OrderCreated;

    fn decode(
        &self,
        _meta: &RecordMeta,
        payload: Option<&[u8]>,
    ) -> Result<OrderCreated, Rejection> {
        events::decode(payload).map_err(Rejection::from)
    }

    async fn handle(&self, order: &OrderCreated, meta: &RecordMeta) -> Result<(), HandleError> {
        let shards = &self.shards;
        let ((event, moved), acks) = shards
            .store
            .write(meta.partition, |w| {
                let result = stock::reserve(w, shards.initial, order, chrono::Utc::now());
                w.evict_to(shards.window, |key| key.starts_with(SKU));
                result
            })
            .map_err(|e| HandleError::Retriable(e.to_string()))?;
        // Memory is ahead of the changelog until this resolves; if it fails, the retry finds the
        // order recorded and writes its entries again.
        acks.await
            .map_err(|e| HandleError::Retriable(e.to_string()))?;
        if moved {
            shards.orders_seen.fetch_add(1, Ordering::Relaxed);
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

    async fn assigned(&self, _topic: &str, partition: i32) -> Result<(), String> {
        self.shards
            .store
            .restore(partition)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn revoked(&self, _topic: &str, partition: i32) {
        self.shards.store.release(partition);
    }
}

/// `GET /stock`: the shards this member holds, their levels, and the units reserved from them.
async fn stock_levels(State(shards): State<Shards>) -> Json<serde_json::Value> {
    let mut partitions = BTreeMap::new();
    let mut reserved: BTreeMap<String, u64> = BTreeMap::new();
    shards.store.read_all(|partition, entries| {
        let mut levels = BTreeMap::new();
        for (key, entry) in entries {
            if let (Some(sku), Entry::Level(l)) = (key.strip_prefix(SKU), entry) {
                levels.insert(sku.to_owned(), l.units);
                *reserved.entry(sku.to_owned()).or_default() +=
                    u64::from(shards.initial - l.units.min(shards.initial));
            }
        }
        partitions.insert(partition.to_string(), levels);
    });
    Json(json!({
        "initial_stock_per_partition": shards.initial,
        "orders_seen": shards.orders_seen.load(Ordering::Relaxed),
        "reserved": reserved,
        "partitions": partitions,
    }))
}

/// Builds the service: binds its ports (read them back from the value), creates its clients and
/// subscribes; nothing is consumed until `run_until_stopped`.
pub async fn build(
    config: Config,
    shutdown: &CancellationToken,
) -> Result<ConsumerService<impl Handler>, platform::Error> {
    let access = events::topology::of(SERVICE);
    ConsumerService::build(&config.service, access, shutdown, |rt| {
        let shards = Shards {
            store: rt.store("inventory-stock", topics::INVENTORY_STOCK_CHANGELOG),
            initial: config.initial_stock,
            window: config.dedup_window,
            orders_seen: Arc::default(),
        };
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
                .with_state(shards.clone()),
            1024,
        );
        let handler = Reservations {
            shards,
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
