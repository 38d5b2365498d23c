//! `notification_sent`, on `notifications`: the record that a customer was told, for audit and for
//! measuring the flow end to end.

use crate::{Event, PaymentStatus, ValidationError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Sent once per payment event; `event_id` is derived from the payment event, so a redelivered
/// payment republishes the identical record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationSent {
    pub event_id: Uuid,
    pub event_type: String,
    /// When the customer message was sent.
    pub occurred_at: DateTime<Utc>,
    pub order_id: Uuid,
    pub user_id: u64,
    pub payment_event_id: Uuid,
    pub status: PaymentStatus,
    pub channel: String,
    pub message: String,
    /// When the order was created, carried along for end-to-end latency.
    pub order_created_at: DateTime<Utc>,
}

impl NotificationSent {
    pub const EVENT_TYPE: &'static str = "notification_sent";
}

impl Event for NotificationSent {
    const EVENT_TYPES: &'static [&'static str] = &[Self::EVENT_TYPE];

    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }

    fn event_type(&self) -> &str {
        &self.event_type
    }
}
