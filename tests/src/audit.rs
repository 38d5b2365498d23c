//! The delivery audit every fault test ends with, from the output topics themselves: every valid
//! order has exactly one distinct payment outcome and exactly one notification; duplicates of
//! identical events (redeliveries) are counted and reported, never hidden.

use crate::topics::{Record, read_all};
use events::{NotificationSent, PaymentProcessed, topics};
use std::collections::{HashMap, HashSet};
use std::fmt;

#[derive(Debug, Default)]
pub struct Report {
    pub orders: usize,
    pub payment_records: usize,
    pub duplicate_payment_records: usize,
    pub notification_records: usize,
    pub duplicate_notification_records: usize,
    pub failures: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} orders: {} payment records ({} duplicates of identical outcomes), {} notification records ({} duplicates)",
            self.orders,
            self.payment_records,
            self.duplicate_payment_records,
            self.notification_records,
            self.duplicate_notification_records
        )
    }
}

impl Report {
    /// Panics with every violation listed.
    pub fn assert_exactly_once(&self) {
        assert!(
            self.failures.is_empty(),
            "{self}\n{} violations:\n{}",
            self.failures.len(),
            self.failures
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    records: &[Record],
    what: &str,
    injected: &HashSet<String>,
    failures: &mut Vec<String>,
) -> Vec<T> {
    records
        .iter()
        .filter(|r| r.key.as_ref().is_none_or(|k| !injected.contains(k)))
        .filter_map(|r| {
            match serde_json::from_slice::<T>(r.payload.as_deref().unwrap_or_default()) {
                Ok(v) => Some(v),
                Err(e) => {
                    failures.push(format!(
                        "{what} record at {}:{} does not decode: {e}",
                        r.partition, r.offset
                    ));
                    None
                }
            }
        })
        .collect()
}

/// Audits `payments` and `notifications` against the orders that were accepted.
pub async fn audit(bootstrap: &str, accepted: &HashSet<String>) -> Report {
    audit_ignoring(bootstrap, accepted, &HashSet::new()).await
}

/// Like [`audit`], leaving out records a test wrote itself (by key), such as injected poison.
pub async fn audit_ignoring(
    bootstrap: &str,
    accepted: &HashSet<String>,
    injected: &HashSet<String>,
) -> Report {
    let mut report = Report {
        orders: accepted.len(),
        ..Report::default()
    };
    let mut failures = Vec::new();

    let payments: Vec<PaymentProcessed> = parse(
        &read_all(bootstrap, topics::PAYMENTS).await,
        "payment",
        injected,
        &mut failures,
    );
    report.payment_records = payments.len();
    let mut outcomes: HashMap<String, HashSet<(String, String, Option<String>)>> = HashMap::new();
    for p in &payments {
        outcomes.entry(p.order_id.to_string()).or_default().insert((
            p.event_id.to_string(),
            p.status.as_str().to_owned(),
            p.reason.clone(),
        ));
    }
    report.duplicate_payment_records = payments.len() - outcomes.len();

    let notifications: Vec<NotificationSent> = parse(
        &read_all(bootstrap, topics::NOTIFICATIONS).await,
        "notification",
        injected,
        &mut failures,
    );
    report.notification_records = notifications.len();
    let mut notified: HashMap<String, HashSet<String>> = HashMap::new();
    for n in &notifications {
        notified
            .entry(n.order_id.to_string())
            .or_default()
            .insert(serde_json::to_string(n).expect("json"));
    }
    report.duplicate_notification_records = notifications.len() - notified.len();

    for order in accepted {
        match outcomes.get(order).map(HashSet::len) {
            Some(1) => {}
            Some(n) => failures.push(format!("order {order} has {n} different payment outcomes")),
            None => failures.push(format!("order {order} has no payment outcome")),
        }
        match notified.get(order).map(HashSet::len) {
            Some(1) => {}
            Some(n) => failures.push(format!("order {order} has {n} different notifications")),
            None => failures.push(format!("order {order} was never notified")),
        }
    }
    for order in outcomes.keys().filter(|o| !accepted.contains(*o)) {
        failures.push(format!(
            "payment outcome for an order never accepted: {order}"
        ));
    }
    report.failures = failures;
    println!("delivery audit: {report}");
    report
}
