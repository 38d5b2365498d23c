//! Who reads and writes what: for each service, its consumer group, the topics it reads, the
//! topics it writes, and the changelogs of its state stores (written, and read back on restore).
//! Defined once; the services take their subscriptions from here, and the per-service Kafka
//! permissions (the ACLs) are made from it. A test holds every service's sources to its row: a
//! service that names a topic its row does not give it fails that test.
//!
//! Every topic read that has a dead-letter topic (see [`topics`](crate::topics)) is also written
//! to, through its `<topic>.dlq`: [`Access::dead_letters`] lists them.

use crate::topics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub service: &'static str,
    /// The consumer group (a consuming service's default; `KAFKA_CONSUMER_GROUP` replaces it).
    pub group: Option<&'static str>,
    pub reads: &'static [&'static str],
    pub writes: &'static [&'static str],
    /// Changelogs of its state stores: written, and read from their start on restore.
    pub stores: &'static [&'static str],
}

impl Access {
    /// The topics read whose consumers dead-letter, named by `dead_letter` (the platform's
    /// `dead_letter_topic`). Only a group's consume loop dead-letters; a reader outside any
    /// group has none.
    pub fn dead_letters(&self, dead_letter: impl Fn(&str) -> String) -> Vec<String> {
        if self.group.is_none() {
            return Vec::new();
        }
        self.reads
            .iter()
            .filter(|t| topics::get(t).is_some_and(|t| t.dead_letters))
            .map(|t| dead_letter(t))
            .collect()
    }

    /// What it writes to besides dead letters: outputs and changelogs.
    pub fn outputs(&self) -> Vec<&'static str> {
        self.writes.iter().chain(self.stores).copied().collect()
    }

    /// The topics a producing service writes, as `platform::Runtime::start` takes them.
    pub fn written(&self) -> Vec<String> {
        self.writes.iter().map(|t| (*t).to_owned()).collect()
    }

    /// The group its readers name ([`reader_group`]), when it reads anything: its state restores
    /// and rebuilds read through readers, and a service without a group reads only through them.
    pub fn readers(&self) -> Option<String> {
        (!(self.reads.is_empty() && self.stores.is_empty())).then(|| reader_group(self.service))
    }

    /// A consuming service's group, the topics it reads and its [`outputs`](Self::outputs): what
    /// `platform::ConsumerService` subscribes to and waits for. Panics for a service without a
    /// group.
    pub fn consumer(&self) -> (&'static str, &'static [&'static str], Vec<&'static str>) {
        let group = self
            .group
            .unwrap_or_else(|| panic!("`{}` consumes nothing", self.service));
        (group, self.reads, self.outputs())
    }
}

const fn producer(service: &'static str, writes: &'static [&'static str]) -> Access {
    Access {
        service,
        group: None,
        reads: &[],
        writes,
        stores: &[],
    }
}

/// The services and what each may touch.
pub const SERVICES: &[Access] = &[
    producer("order", &[topics::ORDERS]),
    Access {
        service: "payment",
        group: Some("payment"),
        reads: &[topics::ORDERS],
        writes: &[topics::PAYMENTS],
        stores: &[],
    },
    Access {
        service: "notification",
        group: Some("notification"),
        reads: &[topics::PAYMENTS],
        writes: &[topics::NOTIFICATIONS],
        stores: &[topics::NOTIFICATION_SENT_CHANGELOG],
    },
    Access {
        service: "inventory",
        group: Some("inventory"),
        reads: &[topics::ORDERS],
        writes: &[topics::INVENTORY],
        stores: &[topics::INVENTORY_STOCK_CHANGELOG],
    },
    Access {
        service: "stream-processor",
        group: Some("stream-processor"),
        reads: &[
            topics::INPUT,
            topics::PAYMENTS,
            topics::PAYMENTS_BY_USER,
            topics::LOGIN_EVENTS,
        ],
        writes: &[
            topics::OUTPUT,
            topics::PAYMENTS_BY_USER,
            topics::PAYMENT_WINDOWS,
            topics::LOGIN_WINDOWS,
        ],
        stores: &[
            topics::AGGREGATES_CHANGELOG,
            topics::WINDOWS_CHANGELOG,
            topics::LOGIN_WINDOWS_CHANGELOG,
        ],
    },
    producer("accounts", &[topics::LOGIN_EVENTS]),
    producer("sensor", &[topics::SENSOR_READINGS]),
    Access {
        service: "alerting",
        group: Some("alerting"),
        reads: &[topics::SENSOR_READINGS],
        writes: &[topics::SENSOR_ALERTS],
        stores: &[topics::ALERTING_STATE_CHANGELOG],
    },
    Access {
        service: "dashboard",
        group: Some("dashboard"),
        reads: &[topics::SENSOR_READINGS, topics::SENSOR_ALERTS],
        writes: &[],
        stores: &[],
    },
    // The load generator (a Job): places orders through the order API, and times them by reading
    // `notifications` from assigned partitions, outside any group.
    Access {
        service: "loadgen",
        group: None,
        reads: &[topics::NOTIFICATIONS],
        writes: &[],
        stores: &[],
    },
];

/// The group a service's readers name: consumers outside any group (state restore, the dashboard's
/// alert list, the load generator, the console tool) that read assigned partitions. librdkafka
/// assigns partitions only to a consumer with a group; a reader never joins it or commits, so on a
/// secured cluster it needs only `Describe` on it (to find its coordinator).
pub fn reader_group(service: &str) -> String {
    format!("{service}-reader")
}

/// A service's row. Panics for a name that has none: every service has one (a test checks).
pub fn of(service: &str) -> &'static Access {
    SERVICES
        .iter()
        .find(|a| a.service == service)
        .unwrap_or_else(|| panic!("`{service}` has no row in events::topology::SERVICES"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_named_is_in_the_topic_table_and_every_consumer_has_a_group() {
        for a in SERVICES {
            for t in a.reads.iter().chain(a.writes).chain(a.stores) {
                assert!(topics::get(t).is_some(), "{}: unknown topic {t}", a.service);
            }
            for s in a.stores {
                assert_eq!(
                    topics::get(s).map(|t| t.cleanup),
                    Some(topics::Cleanup::Compact),
                    "{}: {s} is a changelog",
                    a.service
                );
            }
            // A reader outside any group is a tool that reads from assigned partitions.
            if a.group.is_some() {
                assert!(!a.reads.is_empty(), "{}", a.service);
            }
        }
        assert!(
            of("loadgen")
                .dead_letters(|t| format!("{t}.dlq"))
                .is_empty()
        );
        let dlq = of("payment").dead_letters(|t| format!("{t}.dlq"));
        assert_eq!(dlq, vec!["orders.dlq"]);
    }
}
