//! The event contracts carried on the Kafka topics.
//!
//! Each topic carries one family of events as JSON objects with an `event_type` tag, an `event_id`
//! (the identity used for de-duplication) and an `occurred_at` timestamp. The field names of the
//! original demos (`order_id`, `user_id`, `amount`, `status`) are kept so their output still reads
//! the same. Everything that reaches a consumer goes through [`decode`], which rejects undecodable or
//! invalid records with a [`DecodeError`] whose text becomes the dead-letter reason.

mod amount;
mod inventory;
mod login;
mod notification;
mod order;
mod payment;
pub mod processor;
mod sensor;

pub use amount::Amount;
pub use inventory::{InventoryEvent, InventoryStatus, Shortage};
pub use login::{LoginEvent, LoginEventType};
pub use notification::NotificationSent;
pub use order::{LineItem, NewOrder, OrderCreated, ValidationError, limits};
pub use payment::{PaymentProcessed, PaymentStatus};
pub use processor::{Aggregate, LoginWindowClosed, NumberProcessed, PaymentWindowClosed};
pub use sensor::{
    AlertEventType, Metric, SensorAlert, SensorReading, TEMPERATURE_RANGE, validate_values,
};

use serde::de::DeserializeOwned;

pub mod topics;
pub mod topology;

/// An event type that knows its `event_type` tag and can check its own invariants.
pub trait Event: DeserializeOwned {
    /// The `event_type` values this type accepts.
    const EVENT_TYPES: &'static [&'static str];

    /// Invariants the JSON shape alone cannot express (a positive amount, a non-empty item list).
    fn validate(&self) -> Result<(), ValidationError>;

    /// The event's `event_type`.
    fn event_type(&self) -> &str;
}

/// Why a record could not be turned into an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record has no payload")]
    Empty,
    #[error("payload is not valid UTF-8 JSON: {0}")]
    Syntax(String),
    #[error("payload has no string field `event_type`")]
    MissingEventType,
    #[error("unknown event_type `{found}` (expected one of: {expected})")]
    UnknownEventType { found: String, expected: String },
    #[error("payload does not match the `{event_type}` schema: {detail}")]
    Shape { event_type: String, detail: String },
    #[error("invalid `{event_type}`: {source}")]
    Invalid {
        event_type: String,
        source: ValidationError,
    },
}

impl DecodeError {
    /// A short, low-cardinality name for metrics labels and the dead-letter `dlq.error.kind` header.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Syntax(_) => "syntax",
            Self::MissingEventType => "missing_event_type",
            Self::UnknownEventType { .. } => "unknown_event_type",
            Self::Shape { .. } => "shape",
            Self::Invalid { .. } => "invalid",
        }
    }
}

/// The `event_type` of a payload, other fields ignored.
#[derive(serde::Deserialize)]
struct Tag<'a> {
    #[serde(borrow)]
    event_type: Option<std::borrow::Cow<'a, str>>,
}

/// Decodes and validates one record payload.
pub fn decode<E: Event>(payload: Option<&[u8]>) -> Result<E, DecodeError> {
    let payload = payload
        .filter(|p| !p.is_empty())
        .ok_or(DecodeError::Empty)?;
    // A well-formed event of an expected type, the common case, in one pass. Anything else is
    // parsed again below, tag first, so that the error says what is wrong exactly as before.
    if let Ok(event) = serde_json::from_slice::<E>(payload)
        && E::EVENT_TYPES.contains(&event.event_type())
    {
        return match event.validate() {
            Ok(()) => Ok(event),
            Err(source) => Err(DecodeError::Invalid {
                event_type: event.event_type().to_owned(),
                source,
            }),
        };
    }
    // The tag first, borrowed from the payload (no value tree is built), then the typed event.
    let tag: Tag<'_> = serde_json::from_slice(payload).map_err(|e| match e.classify() {
        // Valid JSON that is not an object with a string `event_type` (an array, a number…).
        serde_json::error::Category::Data => DecodeError::MissingEventType,
        _ => DecodeError::Syntax(e.to_string()),
    })?;
    let event_type = tag.event_type.ok_or(DecodeError::MissingEventType)?;
    if !E::EVENT_TYPES.contains(&event_type.as_ref()) {
        return Err(DecodeError::UnknownEventType {
            found: event_type.into_owned(),
            expected: E::EVENT_TYPES.join(", "),
        });
    }
    let event: E = serde_json::from_slice(payload).map_err(|e| DecodeError::Shape {
        event_type: event_type.to_string(),
        detail: e.to_string(),
    })?;
    let event_type = event_type.into_owned();
    event
        .validate()
        .map_err(|source| DecodeError::Invalid { event_type, source })?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order_json() -> serde_json::Value {
        serde_json::json!({
            "event_id": "6a1f4cf3-5ad0-4d36-9d4b-1c0d4f3a6a10",
            "event_type": "order_created",
            "occurred_at": "2026-11-21T10:00:00Z",
            "order_id": "0b8f4c8e-7c55-4a43-8d4c-6a3a3b2f7f01",
            "user_id": 18,
            "amount": 120.5,
            "currency": "USD",
            "items": [{"sku": "SKU-1", "quantity": 2}],
            "status": "created"
        })
    }

    fn decode_value(v: &serde_json::Value) -> Result<OrderCreated, DecodeError> {
        decode(Some(v.to_string().as_bytes()))
    }

    #[test]
    fn a_valid_order_decodes() {
        let order = decode_value(&order_json()).expect("valid order");
        assert_eq!(order.user_id, 18);
        assert_eq!(order.amount, Amount::from_cents(12050));
        assert_eq!(order.items[0].quantity, 2);
    }

    #[test]
    fn every_kind_of_bad_record_is_named() {
        assert_eq!(decode::<OrderCreated>(None), Err(DecodeError::Empty));
        assert_eq!(decode::<OrderCreated>(Some(b"")), Err(DecodeError::Empty));
        assert_eq!(
            decode::<OrderCreated>(Some(b"{\"order_id\": ")).map_err(|e| e.kind()),
            Err("syntax")
        );
        assert_eq!(
            decode::<OrderCreated>(Some(&[0xff, 0xfe, 0x00])).map_err(|e| e.kind()),
            Err("syntax")
        );

        let mut no_type = order_json();
        no_type.as_object_mut().map(|o| o.remove("event_type"));
        assert_eq!(decode_value(&no_type), Err(DecodeError::MissingEventType));

        let mut unknown = order_json();
        unknown["event_type"] = "order_shipped".into();
        assert_eq!(
            decode_value(&unknown).map_err(|e| e.kind()),
            Err("unknown_event_type")
        );

        let mut wrong_type = order_json();
        wrong_type["user_id"] = "eighteen".into();
        assert_eq!(
            decode_value(&wrong_type).map_err(|e| e.kind()),
            Err("shape")
        );

        let mut negative = order_json();
        negative["amount"] = (-5.0).into();
        let err = decode_value(&negative).expect_err("negative amount");
        assert_eq!(err.kind(), "invalid");
        assert!(err.to_string().contains("amount"), "{err}");
    }
}
