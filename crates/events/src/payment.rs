//! `payment_processed`, on `payments`.

use crate::{Amount, Event, ValidationError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    PaymentSuccessful,
    PaymentFailed,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PaymentSuccessful => "payment_successful",
            Self::PaymentFailed => "payment_failed",
        }
    }
}

/// The payment gateway's decision for one order. `event_id` is derived from the order, so a
/// redelivered order yields the same event and downstream de-duplication can recognise it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentProcessed {
    pub event_id: Uuid,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub order_id: Uuid,
    pub user_id: u64,
    pub amount: Amount,
    pub currency: String,
    pub status: PaymentStatus,
    /// Why a payment failed; absent when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the order was created, carried along for end-to-end latency.
    pub order_created_at: DateTime<Utc>,
}

impl PaymentProcessed {
    pub const EVENT_TYPE: &'static str = "payment_processed";
}

impl Event for PaymentProcessed {
    const EVENT_TYPES: &'static [&'static str] = &[Self::EVENT_TYPE];

    fn validate(&self) -> Result<(), ValidationError> {
        if self.amount.cents() <= 0 {
            return Err(ValidationError::new("amount", "must be positive"));
        }
        Ok(())
    }

    fn event_type(&self) -> &str {
        &self.event_type
    }
}
