//! Stock per SKU and the all-or-nothing reservation of an order's items, over a [`Ledger`]: the
//! service's state store in production, a map in the unit tests.
//!
//! Reserving is idempotent: an order seen again (redelivery) gets its first result back and moves
//! no stock. An order is recorded after the levels it moved, in the same changelog partition;
//! the producer keeps that order and leaves no gaps, so a crash can lose at most the tail of the
//! last reservation: its levels written and the order not. Each level names the last order that
//! moved it, which recognises that case when the order comes again.

use chrono::{DateTime, Utc};
use events::{InventoryEvent, InventoryStatus, OrderCreated, Shortage};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Namespace for inventory event ids: `event_id = uuid5(INVENTORY_EVENTS, order_id)`.
const INVENTORY_EVENTS: Uuid = Uuid::from_u128(0x3a7e_91c4_5b2d_4e6f_8a0b_1c2d_3e4f_5a6b);

/// A SKU's units left, and the last order that moved them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Level {
    pub units: u32,
    pub last_order: Uuid,
}

/// Where stock levels and reservation outcomes are kept.
pub trait Ledger {
    fn level(&self, sku: &str) -> Option<Level>;
    fn set_level(&mut self, sku: &str, level: Level);
    fn outcome(&self, order_id: Uuid) -> Option<InventoryEvent>;
    /// Records an order's outcome, after its levels.
    fn record(&mut self, event: InventoryEvent);
}

/// The event id of `order`'s reservation outcome.
pub fn event_id(order_id: Uuid) -> Uuid {
    Uuid::new_v5(&INVENTORY_EVENTS, order_id.as_bytes())
}

/// Reserves all of the order's items, or none of them, where SKUs start with `initial` units.
/// Returns the event and whether stock moved now.
pub fn reserve(
    ledger: &mut impl Ledger,
    initial: u32,
    order: &OrderCreated,
    now: DateTime<Utc>,
) -> (InventoryEvent, bool) {
    if let Some(first) = ledger.outcome(order.order_id) {
        // Recorded again: the write that recorded it may be the one a retry repeats.
        ledger.record(first.clone());
        return (first, false);
    }
    // An order may list a SKU twice; reserve the sum.
    let mut wanted: BTreeMap<&str, u32> = BTreeMap::new();
    for item in &order.items {
        *wanted.entry(item.sku.as_str()).or_default() += item.quantity;
    }
    let event = |event_type, shortages| InventoryEvent {
        event_id: event_id(order.order_id),
        event_type,
        occurred_at: now,
        order_id: order.order_id,
        items: order.items.clone(),
        shortages,
    };
    // Levels already moved by this order, its outcome lost with a crash: it was reserved.
    if wanted.keys().any(|sku| {
        ledger
            .level(sku)
            .is_some_and(|l| l.last_order == order.order_id)
    }) {
        let e = event(InventoryStatus::InventoryReserved, Vec::new());
        ledger.record(e.clone());
        return (e, false);
    }
    let units = |ledger: &dyn Ledger, sku: &str| ledger.level(sku).map_or(initial, |l| l.units);
    let shortages: Vec<Shortage> = wanted
        .iter()
        .filter_map(|(sku, &requested)| {
            let available = units(ledger, sku);
            (available < requested).then(|| Shortage {
                sku: (*sku).to_owned(),
                requested,
                available,
            })
        })
        .collect();
    let status = if shortages.is_empty() {
        for (sku, requested) in &wanted {
            let left = units(ledger, sku) - requested;
            ledger.set_level(
                sku,
                Level {
                    units: left,
                    last_order: order.order_id,
                },
            );
        }
        InventoryStatus::InventoryReserved
    } else {
        InventoryStatus::OutOfStock
    };
    let e = event(status, shortages);
    ledger.record(e.clone());
    (e, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::{Amount, LineItem, NewOrder};
    use std::collections::HashMap;

    #[derive(Default)]
    struct Map {
        levels: BTreeMap<String, Level>,
        outcomes: HashMap<Uuid, InventoryEvent>,
    }

    impl Ledger for Map {
        fn level(&self, sku: &str) -> Option<Level> {
            self.levels.get(sku).copied()
        }
        fn set_level(&mut self, sku: &str, level: Level) {
            self.levels.insert(sku.to_owned(), level);
        }
        fn outcome(&self, order_id: Uuid) -> Option<InventoryEvent> {
            self.outcomes.get(&order_id).cloned()
        }
        fn record(&mut self, event: InventoryEvent) {
            self.outcomes.insert(event.order_id, event);
        }
    }

    impl Map {
        fn units(&self, sku: &str) -> Option<u32> {
            self.levels.get(sku).map(|l| l.units)
        }
    }

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
        let mut m = Map::default();
        let (e, moved) = reserve(&mut m, 5, &order(&[("A", 3), ("B", 1)]), Utc::now());
        assert_eq!(
            (e.event_type, moved),
            (InventoryStatus::InventoryReserved, true)
        );
        let (e, _) = reserve(&mut m, 5, &order(&[("A", 3), ("B", 1)]), Utc::now());
        assert_eq!(e.event_type, InventoryStatus::OutOfStock);
        assert_eq!(
            e.shortages,
            vec![Shortage {
                sku: "A".into(),
                requested: 3,
                available: 2
            }]
        );
        assert_eq!(m.units("A"), Some(2));
        assert_eq!(m.units("B"), Some(4));
    }

    #[test]
    fn a_redelivered_order_moves_no_stock() {
        let mut m = Map::default();
        let o = order(&[("A", 2)]);
        let (first, _) = reserve(&mut m, 5, &o, Utc::now());
        let (again, moved) = reserve(&mut m, 5, &o, Utc::now());
        assert!(!moved);
        assert_eq!(first, again);
        assert_eq!(m.units("A"), Some(3));
    }

    #[test]
    fn an_order_whose_outcome_was_lost_after_its_levels_is_not_reserved_twice() {
        let mut m = Map::default();
        let o = order(&[("A", 2), ("B", 1)]);
        reserve(&mut m, 5, &o, Utc::now());
        // The crash lost the outcome record, the tail of the write.
        m.outcomes.clear();
        let (e, moved) = reserve(&mut m, 5, &o, Utc::now());
        assert!(!moved);
        assert_eq!(e.event_type, InventoryStatus::InventoryReserved);
        assert_eq!((m.units("A"), m.units("B")), (Some(3), Some(4)));
        assert!(
            m.outcomes.contains_key(&o.order_id),
            "the outcome is recorded again"
        );
    }

    #[test]
    fn repeated_skus_in_one_order_are_summed() {
        let mut m = Map::default();
        let (e, _) = reserve(&mut m, 3, &order(&[("A", 2), ("A", 2)]), Utc::now());
        assert_eq!(e.event_type, InventoryStatus::OutOfStock);
        assert_eq!(e.shortages[0].requested, 4);
    }
}
