//! What was sent: the customer message, the `notification_sent` record, and the recent history.
//! Which payment events were already notified is kept in the service's state store (see
//! `lib.rs`), so it survives restarts.

use chrono::{DateTime, Utc};
use events::{NotificationSent, PaymentProcessed, PaymentStatus};
use std::collections::VecDeque;
use uuid::Uuid;

/// Namespace for notification event ids: `event_id = uuid5(NOTIFICATION_EVENTS, payment event_id)`.
const NOTIFICATION_EVENTS: Uuid = Uuid::from_u128(0x9c4b_7e21_0d3f_4a58_b6e2_5f10_7a3c_9d8e);

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

/// The notification of `payment`, first sent at `sent_at`: everything else in it derives from the
/// payment event, so a redelivery rebuilds the identical record from the time alone.
pub fn notification(payment: &PaymentProcessed, sent_at: DateTime<Utc>) -> NotificationSent {
    NotificationSent {
        event_id: Uuid::new_v5(&NOTIFICATION_EVENTS, payment.event_id.as_bytes()),
        event_type: NotificationSent::EVENT_TYPE.to_owned(),
        occurred_at: sent_at,
        order_id: payment.order_id,
        user_id: payment.user_id,
        payment_event_id: payment.event_id,
        status: payment.status,
        channel: "email".to_owned(),
        message: message_for(payment),
        order_created_at: payment.order_created_at,
    }
}

/// The recent notifications, for `GET /notifications`, and the counters beside them.
pub struct Outbox {
    history: VecDeque<NotificationSent>,
    history_len: usize,
    sent_total: u64,
    duplicates: u64,
}

impl Outbox {
    pub fn new(history_len: usize) -> Self {
        Self {
            history: VecDeque::with_capacity(history_len.min(4096)),
            history_len,
            sent_total: 0,
            duplicates: 0,
        }
    }

    /// Records a notification just sent.
    pub fn sent(&mut self, n: NotificationSent) {
        if self.history.len() == self.history_len {
            self.history.pop_front();
        }
        self.history.push_back(n);
        self.sent_total += 1;
    }

    /// Counts a payment event seen again and not notified twice.
    pub fn duplicate(&mut self) {
        self.duplicates += 1;
    }

    /// The newest first, optionally only one order's.
    pub fn recent(&self, order_id: Option<Uuid>, limit: usize) -> Vec<&NotificationSent> {
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
    fn a_redelivery_rebuilds_the_identical_record_from_the_first_send_time() {
        let p = payment(PaymentStatus::PaymentSuccessful);
        let first = Utc::now() - chrono::Duration::seconds(30);
        assert_eq!(notification(&p, first), notification(&p, first));
        assert_eq!(notification(&p, first).occurred_at, first);
        assert_ne!(notification(&p, first).event_id, p.event_id);
    }

    #[test]
    fn messages_read_like_the_original_demo() {
        let p = payment(PaymentStatus::PaymentSuccessful);
        assert!(message_for(&p).ends_with("Email sent to customer confirming successful order."));
        assert!(message_for(&p).starts_with("Payment Successful for Order"));
    }

    #[test]
    fn history_is_bounded_and_filterable() {
        let mut outbox = Outbox::new(3);
        let payments: Vec<_> = (0..5)
            .map(|_| payment(PaymentStatus::PaymentFailed))
            .collect();
        for p in &payments {
            outbox.sent(notification(p, Utc::now()));
        }
        assert_eq!(outbox.sent_total(), 5);
        assert_eq!(outbox.recent(None, 100).len(), 3);
        assert_eq!(outbox.recent(None, 100)[0].order_id, payments[4].order_id);
        assert_eq!(outbox.recent(Some(payments[3].order_id), 10).len(), 1);
        assert!(outbox.recent(Some(payments[0].order_id), 10).is_empty());
    }
}
