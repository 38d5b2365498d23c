//! `order_created`, on `orders`, and the request that creates it.

use crate::{Amount, Event};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The bounds an order must stay within; shared by the HTTP API and the consumers.
pub mod limits {
    use crate::Amount;

    pub const MAX_AMOUNT: Amount = Amount::from_cents(100_000_000); // 1,000,000.00
    pub const MAX_ITEMS: usize = 100;
    pub const MAX_QUANTITY: u32 = 1_000;
    pub const MAX_SKU_LEN: usize = 64;
    /// The largest request body the order API reads.
    pub const MAX_BODY_BYTES: usize = 64 * 1024;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineItem {
    pub sku: String,
    pub quantity: u32,
}

/// The body of `POST /orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub user_id: u64,
    pub amount: Amount,
    #[serde(default = "default_currency")]
    pub currency: String,
    pub items: Vec<LineItem>,
}

fn default_currency() -> String {
    "USD".to_owned()
}

/// An order was accepted. Keyed by `order_id` on `orders`, so one order's events stay in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreated {
    pub event_id: Uuid,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub order_id: Uuid,
    pub user_id: u64,
    pub amount: Amount,
    pub currency: String,
    pub items: Vec<LineItem>,
    pub status: String,
}

impl OrderCreated {
    pub const EVENT_TYPE: &'static str = "order_created";

    /// Turns a validated request into the event, with fresh identities.
    pub fn new(order: NewOrder, now: DateTime<Utc>) -> Self {
        Self {
            event_id: Uuid::new_v4(),
            event_type: Self::EVENT_TYPE.to_owned(),
            occurred_at: now,
            order_id: Uuid::new_v4(),
            user_id: order.user_id,
            amount: order.amount,
            currency: order.currency,
            items: order.items,
            status: "created".to_owned(),
        }
    }
}

/// Why an order (or another event) breaks an invariant. The text is shown to API clients and
/// written into dead-letter headers, so it names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    pub field: String,
    pub problem: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

fn validate_order(
    user_id: u64,
    amount: Amount,
    currency: &str,
    items: &[LineItem],
) -> Result<(), ValidationError> {
    if user_id == 0 {
        return Err(ValidationError::new(
            "user_id",
            "must be a positive integer",
        ));
    }
    if amount.cents() <= 0 {
        return Err(ValidationError::new("amount", "must be positive"));
    }
    if amount > limits::MAX_AMOUNT {
        return Err(ValidationError::new(
            "amount",
            format!("must be at most {}", limits::MAX_AMOUNT),
        ));
    }
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ValidationError::new(
            "currency",
            "must be a three-letter ISO 4217 code such as USD",
        ));
    }
    if items.is_empty() {
        return Err(ValidationError::new("items", "must not be empty"));
    }
    if items.len() > limits::MAX_ITEMS {
        return Err(ValidationError::new(
            "items",
            format!("must have at most {} entries", limits::MAX_ITEMS),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        let sku_ok = !item.sku.is_empty()
            && item.sku.len() <= limits::MAX_SKU_LEN
            && item
                .sku
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !sku_ok {
            return Err(ValidationError::new(
                format!("items[{i}].sku"),
                format!(
                    "must be 1 to {} letters, digits, '-' or '_'",
                    limits::MAX_SKU_LEN
                ),
            ));
        }
        if item.quantity == 0 || item.quantity > limits::MAX_QUANTITY {
            return Err(ValidationError::new(
                format!("items[{i}].quantity"),
                format!("must be between 1 and {}", limits::MAX_QUANTITY),
            ));
        }
    }
    Ok(())
}

impl NewOrder {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_order(self.user_id, self.amount, &self.currency, &self.items)
    }
}

impl Event for OrderCreated {
    const EVENT_TYPES: &'static [&'static str] = &[Self::EVENT_TYPE];

    fn validate(&self) -> Result<(), ValidationError> {
        validate_order(self.user_id, self.amount, &self.currency, &self.items)
    }

    fn event_type(&self) -> &str {
        &self.event_type
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> NewOrder {
        NewOrder {
            user_id: 7,
            amount: Amount::from_cents(2500),
            currency: "EUR".into(),
            items: vec![LineItem {
                sku: "SKU-1".into(),
                quantity: 1,
            }],
        }
    }

    #[test]
    fn a_sane_order_is_valid() {
        assert_eq!(order().validate(), Ok(()));
    }

    #[test]
    fn each_rule_names_its_field() {
        type Mutation = Box<dyn Fn(&mut NewOrder)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("user_id", Box::new(|o| o.user_id = 0)),
            ("amount", Box::new(|o| o.amount = Amount::from_cents(0))),
            ("amount", Box::new(|o| o.amount = Amount::from_cents(-100))),
            (
                "amount",
                Box::new(|o| o.amount = Amount::from_cents(limits::MAX_AMOUNT.cents() + 1)),
            ),
            ("currency", Box::new(|o| o.currency = "usd".into())),
            ("items", Box::new(|o| o.items.clear())),
            (
                "items",
                Box::new(|o| o.items = vec![o.items[0].clone(); limits::MAX_ITEMS + 1]),
            ),
            ("items[0].sku", Box::new(|o| o.items[0].sku = String::new())),
            ("items[0].sku", Box::new(|o| o.items[0].sku = "a b".into())),
            ("items[0].quantity", Box::new(|o| o.items[0].quantity = 0)),
            (
                "items[0].quantity",
                Box::new(|o| o.items[0].quantity = limits::MAX_QUANTITY + 1),
            ),
        ];
        for (field, mutate) in cases {
            let mut o = order();
            mutate(&mut o);
            assert_eq!(o.validate().map_err(|e| e.field), Err(field.to_owned()));
        }
    }

    #[test]
    fn unknown_request_fields_are_refused() {
        let body = r#"{"user_id":1,"amount":1,"items":[{"sku":"A","quantity":1}],"coupon":"x"}"#;
        assert!(serde_json::from_str::<NewOrder>(body).is_err());
    }

    #[test]
    fn currency_defaults_to_usd() {
        let body = r#"{"user_id":1,"amount":1,"items":[{"sku":"A","quantity":1}]}"#;
        let o: NewOrder = serde_json::from_str(body).expect("valid");
        assert_eq!(o.currency, "USD");
    }
}
