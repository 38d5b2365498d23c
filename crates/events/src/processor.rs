//! The stream processor's outputs: `number_processed` on `output-topic` (the seeds' numbers demo)
//! `payment_window_closed` on `payment-windows` (payments per user per minute) and
//! `login_window_closed` on `login-windows` (login attempts per username per minute).

use crate::{Amount, Event, ValidationError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A running aggregate of the numbers seen for one key.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub count: u64,
    pub sum: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl Aggregate {
    /// The aggregate of one number.
    pub fn of(value: f64) -> Self {
        Self {
            count: 1,
            sum: value,
            mean: value,
            min: value,
            max: value,
        }
    }

    /// The aggregate with `value` added.
    #[must_use]
    pub fn with(self, value: f64) -> Self {
        let count = self.count + 1;
        let sum = self.sum + value;
        Self {
            count,
            sum,
            #[allow(clippy::cast_precision_loss)] // counts stay far below 2^52
            mean: sum / count as f64,
            min: self.min.min(value),
            max: self.max.max(value),
        }
    }
}

/// One number from `input-topic`, transformed, with the running aggregate of its key after it.
/// `event_id` is derived from the input record's position, so a redelivered input yields the
/// identical output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumberProcessed {
    pub event_id: Uuid,
    pub event_type: String,
    /// The input record's timestamp.
    pub occurred_at: DateTime<Utc>,
    /// The input record's key (`null` for a keyless record).
    pub key: Option<String>,
    pub input: f64,
    /// The transform: the square of the input.
    pub result: f64,
    pub aggregate: Aggregate,
    pub source_partition: i32,
    pub source_offset: i64,
}

impl NumberProcessed {
    pub const EVENT_TYPE: &'static str = "number_processed";
}

impl Event for NumberProcessed {
    const EVENT_TYPES: &'static [&'static str] = &[Self::EVENT_TYPE];

    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }

    fn event_type(&self) -> &str {
        &self.event_type
    }
}

/// One user's payments in one closed one-minute window (by the payments' `occurred_at`).
/// `event_id` is derived from the user and the window, so a window closed again after a restart
/// yields the identical record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentWindowClosed {
    pub event_id: Uuid,
    pub event_type: String,
    /// The window's end.
    pub occurred_at: DateTime<Utc>,
    pub user_id: u64,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub payments: u64,
    pub declined: u64,
    pub amount: Amount,
    /// At least the configured number of declined payments in the window: the pattern of a stolen
    /// card being tested.
    pub suspected_card_testing: bool,
}

impl PaymentWindowClosed {
    pub const EVENT_TYPE: &'static str = "payment_window_closed";
}

impl Event for PaymentWindowClosed {
    const EVENT_TYPES: &'static [&'static str] = &[Self::EVENT_TYPE];

    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }

    fn event_type(&self) -> &str {
        &self.event_type
    }
}

/// One username's login attempts in one closed one-minute window (by the events' `occurred_at`).
/// `event_id` is derived from the username and the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginWindowClosed {
    pub event_id: Uuid,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub username: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// `login_succeeded`, `incorrect_password` and `unknown_user` events.
    pub attempts: u64,
    /// `incorrect_password` and `unknown_user` events.
    pub failed: u64,
    /// At least the configured number of failures in the window.
    pub suspected_brute_force: bool,
}

impl LoginWindowClosed {
    pub const EVENT_TYPE: &'static str = "login_window_closed";
}

impl Event for LoginWindowClosed {
    const EVENT_TYPES: &'static [&'static str] = &[Self::EVENT_TYPE];

    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }

    fn event_type(&self) -> &str {
        &self.event_type
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aggregate_follows_its_numbers() {
        let a = [4.0, -2.0, 10.0]
            .into_iter()
            .skip(1)
            .fold(Aggregate::of(4.0), Aggregate::with);
        assert_eq!(
            a,
            Aggregate {
                count: 3,
                sum: 12.0,
                mean: 4.0,
                min: -2.0,
                max: 10.0
            }
        );
    }
}
