//! Stock per SKU and the all-or-nothing reservation of an order's items. Reserving is idempotent:
//! an order seen again (redelivery) gets its first result back and moves no stock.

use chrono::{DateTime, Utc};
use events::{InventoryEvent, InventoryStatus, OrderCreated, Shortage};
use platform::idempotency::Window;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Namespace for inventory event ids: `event_id = uuid5(INVENTORY_EVENTS, order_id)`.
const INVENTORY_EVENTS: Uuid = Uuid::from_u128(0x3a7e_91c4_5b2d_4e6f_8a0b_1c2d_3e4f_5a6b);

pub struct Stock {
    initial: u32,
    levels: BTreeMap<String, u32>,
    reserved: Window<Uuid, InventoryEvent>,
    orders_seen: u64,
}

impl Stock {
    /// Every SKU starts with `initial` units the first time it is ordered.
    pub fn new(initial: u32, window: usize) -> Self {
        Self {
            initial,
            levels: BTreeMap::new(),
            reserved: Window::new(window),
            orders_seen: 0,
        }
    }

    /// Reserves all of the order's items, or none of them. Returns the event and whether stock moved.
    pub fn reserve(&mut self, order: &OrderCreated, now: DateTime<Utc>) -> (InventoryEvent, bool) {
        if let Some(first) = self.reserved.get(&order.order_id) {
            return (first.clone(), false);
        }
        self.orders_seen += 1;
        // An order may list a SKU twice; reserve the sum.
        let mut wanted: BTreeMap<&str, u32> = BTreeMap::new();
        for item in &order.items {
            *wanted.entry(item.sku.as_str()).or_default() += item.quantity;
        }
        let shortages: Vec<Shortage> = wanted
            .iter()
            .filter_map(|(sku, &requested)| {
                let available = self.levels.get(*sku).copied().unwrap_or(self.initial);
                (available < requested).then(|| Shortage {
                    sku: (*sku).to_owned(),
                    requested,
                    available,
                })
            })
            .collect();
        let status = if shortages.is_empty() {
            for (sku, requested) in &wanted {
                let level = self.levels.entry((*sku).to_owned()).or_insert(self.initial);
                *level -= requested;
            }
            InventoryStatus::InventoryReserved
        } else {
            InventoryStatus::OutOfStock
        };
        let event = InventoryEvent {
            event_id: Uuid::new_v5(&INVENTORY_EVENTS, order.order_id.as_bytes()),
            event_type: status,
            occurred_at: now,
            order_id: order.order_id,
            items: order.items.clone(),
            shortages,
        };
        (self.reserved.remember(order.order_id, event).clone(), true)
    }

    pub fn levels(&self) -> &BTreeMap<String, u32> {
        &self.levels
    }

    pub fn orders_seen(&self) -> u64 {
        self.orders_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::{Amount, LineItem, NewOrder};

    fn order(items: &[(&str, u32)]) -> OrderCreated {
        OrderCreated::new(
            NewOrder {
                user_id: 1,
                amount: Amount::from_cents(100),
                currency: "USD".into(),
                items: items
                    .iter()
                    .map(|(s, q)| LineItem {
                        sku: (*s).into(),
                        quantity: *q,
                    })
                    .collect(),
            },
            Utc::now(),
        )
    }

    #[test]
    fn reservation_is_all_or_nothing() {
        let mut stock = Stock::new(5, 100);
        let (e, moved) = stock.reserve(&order(&[("A", 3), ("B", 1)]), Utc::now());
        assert_eq!(
            (e.event_type, moved),
            (InventoryStatus::InventoryReserved, true)
        );
        let (e, _) = stock.reserve(&order(&[("A", 3), ("B", 1)]), Utc::now());
        assert_eq!(e.event_type, InventoryStatus::OutOfStock);
        assert_eq!(
            e.shortages,
            vec![Shortage {
                sku: "A".into(),
                requested: 3,
                available: 2
            }]
        );
        assert_eq!(stock.levels().get("A"), Some(&2));
        assert_eq!(stock.levels().get("B"), Some(&4));
    }

    #[test]
    fn a_redelivered_order_moves_no_stock() {
        let mut stock = Stock::new(5, 100);
        let o = order(&[("A", 2)]);
        let (first, _) = stock.reserve(&o, Utc::now());
        let (again, moved) = stock.reserve(&o, Utc::now());
        assert!(!moved);
        assert_eq!(first, again);
        assert_eq!(stock.levels().get("A"), Some(&3));
        assert_eq!(stock.orders_seen(), 1);
    }

    #[test]
    fn repeated_skus_in_one_order_are_summed() {
        let mut stock = Stock::new(3, 100);
        let (e, _) = stock.reserve(&order(&[("A", 2), ("A", 2)]), Utc::now());
        assert_eq!(e.event_type, InventoryStatus::OutOfStock);
        assert_eq!(e.shortages[0].requested, 4);
    }
}
