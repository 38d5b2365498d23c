//! `inventory_reserved` and `out_of_stock`, on `inventory`.

use crate::{Event, LineItem, ValidationError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InventoryStatus {
    InventoryReserved,
    OutOfStock,
}

impl InventoryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InventoryReserved => "inventory_reserved",
            Self::OutOfStock => "out_of_stock",
        }
    }
}

/// One SKU that could not be reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortage {
    pub sku: String,
    pub requested: u32,
    pub available: u32,
}

/// The outcome of reserving an order's items. `event_type` is the status itself, as the event
/// names in the issue tracker and the original demos have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEvent {
    pub event_id: Uuid,
    pub event_type: InventoryStatus,
    pub occurred_at: DateTime<Utc>,
    pub order_id: Uuid,
    pub items: Vec<LineItem>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shortages: Vec<Shortage>,
}

impl Event for InventoryEvent {
    const EVENT_TYPES: &'static [&'static str] = &["inventory_reserved", "out_of_stock"];

    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }

    fn event_type(&self) -> &str {
        self.event_type.as_str()
    }
}
