//! What was sent: the de-duplication window and the recent history.

use chrono::{DateTime, Utc};
use events::{PaymentProcessed, PaymentStatus};
use platform::idempotency::Window;
use serde::Serialize;
use std::collections::VecDeque;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    pub payment_event_id: Uuid,
    pub order_id: Uuid,
    pub user_id: u64,
    pub status: PaymentStatus,
    pub message: String,
    pub sent_at: DateTime<Utc>,
}

/// The customer message, worded as the original demo's.
pub fn message_for(payment: &PaymentProcessed) -> String {
    match payment.status {
        PaymentStatus::PaymentSuccessful => format!(
            "Payment Successful for Order {} (User {}). Email sent to customer confirming successful order.",
            payment.order_id, payment.user_id
        ),
        PaymentStatus::PaymentFailed => format!(
            "Payment Failed for Order {} (User {}): {}. Email sent to customer asking to update the payment method.",
            payment.order_id,
            payment.user_id,
            payment.reason.as_deref().unwrap_or("declined")
        ),
    }
}

pub struct Outbox {
    seen: Window<Uuid, ()>,
    history: VecDeque<Notification>,
    history_len: usize,
    sent_total: u64,
    duplicates: u64,
}

impl Outbox {
    pub fn new(dedup_window: usize, history_len: usize) -> Self {
        Self {
            seen: Window::new(dedup_window),
            history: VecDeque::with_capacity(history_len.min(4096)),
            history_len,
            sent_total: 0,
            duplicates: 0,
        }
    }

    /// Sends the notification for `payment` unless its event was already notified.
    pub fn send(&mut self, payment: &PaymentProcessed, now: DateTime<Utc>) -> Option<Notification> {
        if self.seen.get(&payment.event_id).is_some() {
            self.duplicates += 1;
            return None;
        }
        self.seen.remember(payment.event_id, ());
        let n = Notification {
            payment_event_id: payment.event_id,
            order_id: payment.order_id,
            user_id: payment.user_id,
            status: payment.status,
            message: message_for(payment),
            sent_at: now,
        };
        if self.history.len() == self.history_len {
            self.history.pop_front();
        }
        self.history.push_back(n.clone());
        self.sent_total += 1;
        Some(n)
    }

    /// The newest first, optionally only one order's.
    pub fn recent(&self, order_id: Option<Uuid>, limit: usize) -> Vec<&Notification> {
        self.history
            .iter()
            .rev()
            .filter(|n| order_id.is_none_or(|id| n.order_id == id))
            .take(limit)
            .collect()
    }

    pub fn sent_total(&self) -> u64 {
        self.sent_total
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::Amount;

    fn payment(status: PaymentStatus) -> PaymentProcessed {
        PaymentProcessed {
            event_id: Uuid::new_v4(),
            event_type: PaymentProcessed::EVENT_TYPE.into(),
            occurred_at: Utc::now(),
            order_id: Uuid::new_v4(),
            user_id: 18,
            amount: Amount::from_cents(12050),
            currency: "USD".into(),
            status,
            reason: None,
            order_created_at: Utc::now(),
        }
    }

    #[test]
    fn a_payment_event_is_notified_once() {
        let mut outbox = Outbox::new(10, 10);
        let p = payment(PaymentStatus::PaymentSuccessful);
        assert!(outbox.send(&p, Utc::now()).is_some());
        assert!(outbox.send(&p, Utc::now()).is_none());
        assert_eq!((outbox.sent_total(), outbox.duplicates()), (1, 1));
    }

    #[test]
    fn messages_read_like_the_original_demo() {
        let p = payment(PaymentStatus::PaymentSuccessful);
        assert!(message_for(&p).ends_with("Email sent to customer confirming successful order."));
        assert!(message_for(&p).starts_with("Payment Successful for Order"));
    }

    #[test]
    fn history_is_bounded_and_filterable() {
        let mut outbox = Outbox::new(100, 3);
        let payments: Vec<_> = (0..5)
            .map(|_| payment(PaymentStatus::PaymentFailed))
            .collect();
        for p in &payments {
            outbox.send(p, Utc::now());
        }
        assert_eq!(outbox.recent(None, 100).len(), 3);
        assert_eq!(outbox.recent(None, 100)[0].order_id, payments[4].order_id);
        assert_eq!(outbox.recent(Some(payments[3].order_id), 10).len(), 1);
        assert!(outbox.recent(Some(payments[0].order_id), 10).is_empty());
    }
}
