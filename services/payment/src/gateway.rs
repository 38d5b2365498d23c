//! The simulated payment gateway. Its decision is a pure function of the order, so the same order
//! always gets the same outcome, however often it is delivered and whichever replica handles it.

use chrono::{DateTime, Utc};
use events::{Amount, OrderCreated, PaymentProcessed, PaymentStatus};
use uuid::Uuid;

/// Namespace for payment event ids: `event_id = uuid5(PAYMENT_EVENTS, order_id)`.
const PAYMENT_EVENTS: Uuid = Uuid::from_u128(0x6f1c_2b8a_4d3e_4f50_9a61_7b2c_3d4e_5f60);
/// Namespace for the gateway's per-order draw, kept apart from the event id.
const GATEWAY_DRAW: Uuid = Uuid::from_u128(0x0d9e_8f7a_6b5c_4d3e_2f1a_0b9c_8d7e_6f5a);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gateway {
    /// Share of orders the simulated issuer declines, from 0 to 1.
    pub failure_rate: f64,
    /// Orders above this amount are always declined.
    pub limit: Amount,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub status: PaymentStatus,
    pub reason: Option<String>,
}

impl Gateway {
    pub fn decide(&self, order: &OrderCreated) -> Decision {
        if order.amount > self.limit {
            return Decision {
                status: PaymentStatus::PaymentFailed,
                reason: Some(format!(
                    "amount {} exceeds the single-payment limit of {}",
                    order.amount, self.limit
                )),
            };
        }
        if draw(order.order_id) < self.failure_rate {
            return Decision {
                status: PaymentStatus::PaymentFailed,
                reason: Some("card declined by the issuer (simulated)".to_owned()),
            };
        }
        Decision {
            status: PaymentStatus::PaymentSuccessful,
            reason: None,
        }
    }

    /// The outcome event for `order`: identical `event_id`, status and reason on every redelivery.
    pub fn process(&self, order: &OrderCreated, now: DateTime<Utc>) -> PaymentProcessed {
        let decision = self.decide(order);
        PaymentProcessed {
            event_id: payment_event_id(order.order_id),
            event_type: PaymentProcessed::EVENT_TYPE.to_owned(),
            occurred_at: now,
            order_id: order.order_id,
            user_id: order.user_id,
            amount: order.amount,
            currency: order.currency.clone(),
            status: decision.status,
            reason: decision.reason,
            order_created_at: order.occurred_at,
        }
    }
}

pub fn payment_event_id(order_id: Uuid) -> Uuid {
    Uuid::new_v5(&PAYMENT_EVENTS, order_id.as_bytes())
}

/// A uniform number in [0, 1) fixed by the order id.
fn draw(order_id: Uuid) -> f64 {
    let bytes = Uuid::new_v5(&GATEWAY_DRAW, order_id.as_bytes()).into_bytes();
    let n = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
    // The top 53 bits fill an f64 mantissa exactly.
    #[allow(clippy::cast_precision_loss)]
    let x = (n >> 11) as f64 / (1u64 << 53) as f64;
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::LineItem;

    fn order(cents: i64) -> OrderCreated {
        OrderCreated::new(
            events::NewOrder {
                user_id: 1,
                amount: Amount::from_cents(cents),
                currency: "USD".into(),
                items: vec![LineItem {
                    sku: "A".into(),
                    quantity: 1,
                }],
            },
            Utc::now(),
        )
    }

    const GATEWAY: Gateway = Gateway {
        failure_rate: 0.2,
        limit: Amount::from_cents(100_000),
    };

    #[test]
    fn the_same_order_always_gets_the_same_outcome() {
        for _ in 0..200 {
            let o = order(1_000);
            let a = GATEWAY.process(&o, Utc::now());
            let b = GATEWAY.process(&o, Utc::now());
            assert_eq!(
                (a.event_id, a.status, &a.reason),
                (b.event_id, b.status, &b.reason)
            );
        }
    }

    #[test]
    fn the_failure_rate_is_honoured() {
        let failed = (0..10_000)
            .filter(|_| GATEWAY.decide(&order(1_000)).status == PaymentStatus::PaymentFailed)
            .count();
        assert!(
            (1_700..=2_300).contains(&failed),
            "{failed} of 10000 failed at rate 0.2"
        );
        let none = Gateway {
            failure_rate: 0.0,
            ..GATEWAY
        };
        assert!(
            (0..1_000)
                .all(|_| none.decide(&order(1_000)).status == PaymentStatus::PaymentSuccessful)
        );
    }

    #[test]
    fn amounts_over_the_limit_are_declined_with_a_reason() {
        let d = Gateway {
            failure_rate: 0.0,
            ..GATEWAY
        }
        .decide(&order(100_001));
        assert_eq!(d.status, PaymentStatus::PaymentFailed);
        assert!(d.reason.as_deref().unwrap_or_default().contains("limit"));
    }
}
