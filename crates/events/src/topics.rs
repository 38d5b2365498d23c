//! Every topic of the system, defined once: its name, partitions and cleanup policy, and whether
//! it has a dead-letter topic. The services take their names from here; `make run`, the test
//! harness and the console tool (`kafka-console topics create --all`) create them from [`ALL`];
//! a test checks the chart's KafkaTopics against it.

pub const ORDERS: &str = "orders";
pub const PAYMENTS: &str = "payments";
pub const INVENTORY: &str = "inventory";
pub const NOTIFICATIONS: &str = "notifications";
/// Registrations and logins, keyed by username (the seeds' Demo 2: 3 partitions).
pub const LOGIN_EVENTS: &str = "login-events";
/// The seeds' demo topics: numbers typed at a prompt in, results out.
pub const INPUT: &str = "input-topic";
pub const OUTPUT: &str = "output-topic";
/// `payments` re-keyed by `user_id`, so one user's payments meet in one partition.
pub const PAYMENTS_BY_USER: &str = "stream-processor-payments-by-user-repartition";
/// One record per user per closed one-minute window.
pub const PAYMENT_WINDOWS: &str = "payment-windows";
/// One record per username per closed one-minute window of login attempts.
pub const LOGIN_WINDOWS: &str = "login-windows";
/// The IoT pipeline: readings from the sensor simulator and the alerts raised on them, both keyed
/// by `sensor_id`.
pub const SENSOR_READINGS: &str = "sensor-readings";
pub const SENSOR_ALERTS: &str = "sensor-alerts";
/// Changelogs of the state stores (`platform::state`): as many partitions as the input.
pub const NOTIFICATION_SENT_CHANGELOG: &str = "notification-sent-changelog";
pub const INVENTORY_STOCK_CHANGELOG: &str = "inventory-stock-changelog";
pub const AGGREGATES_CHANGELOG: &str = "stream-processor-aggregates-changelog";
pub const WINDOWS_CHANGELOG: &str = "stream-processor-windows-changelog";
pub const LOGIN_WINDOWS_CHANGELOG: &str = "stream-processor-login-windows-changelog";
pub const ALERTING_STATE_CHANGELOG: &str = "alerting-state-changelog";

/// How a topic gives up old records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Kept for the retention period.
    Delete,
    /// The latest record of each key is kept (changelogs).
    Compact,
}

impl Cleanup {
    /// The `cleanup.policy` topic config.
    pub fn policy(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Compact => "compact",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topic {
    pub name: &'static str,
    pub partitions: i32,
    pub cleanup: Cleanup,
    /// Whether its consumers dead-letter to `<name>.dlq` (one partition).
    pub dead_letters: bool,
}

const fn topic(name: &'static str, partitions: i32, dead_letters: bool) -> Topic {
    Topic {
        name,
        partitions,
        cleanup: Cleanup::Delete,
        dead_letters,
    }
}

/// A changelog of a store over `input`: compacted, partitioned like it.
const fn changelog(name: &'static str, input: Topic) -> Topic {
    Topic {
        name,
        partitions: input.partitions,
        cleanup: Cleanup::Compact,
        dead_letters: false,
    }
}

const ORDERS_T: Topic = topic(ORDERS, 6, true);
const PAYMENTS_T: Topic = topic(PAYMENTS, 6, true);
const INPUT_T: Topic = topic(INPUT, 3, true);
const PAYMENTS_BY_USER_T: Topic = topic(PAYMENTS_BY_USER, 6, true);
const LOGIN_EVENTS_T: Topic = topic(LOGIN_EVENTS, 3, true);
const SENSOR_READINGS_T: Topic = topic(SENSOR_READINGS, 6, true);

/// The system's topics. Dead-letter topics are implied by `dead_letters`; see [`with_dead_letters`].
pub const ALL: &[Topic] = &[
    ORDERS_T,
    PAYMENTS_T,
    topic(INVENTORY, 3, false),
    topic(NOTIFICATIONS, 6, false),
    LOGIN_EVENTS_T,
    topic(LOGIN_WINDOWS, 3, false),
    INPUT_T,
    topic(OUTPUT, 3, false),
    PAYMENTS_BY_USER_T,
    topic(PAYMENT_WINDOWS, 6, false),
    SENSOR_READINGS_T,
    topic(SENSOR_ALERTS, 3, true),
    changelog(NOTIFICATION_SENT_CHANGELOG, PAYMENTS_T),
    changelog(INVENTORY_STOCK_CHANGELOG, ORDERS_T),
    changelog(AGGREGATES_CHANGELOG, INPUT_T),
    changelog(WINDOWS_CHANGELOG, PAYMENTS_BY_USER_T),
    changelog(LOGIN_WINDOWS_CHANGELOG, LOGIN_EVENTS_T),
    changelog(ALERTING_STATE_CHANGELOG, SENSOR_READINGS_T),
];

/// Every topic to create: [`ALL`] and, for each that has one, its dead-letter topic, named by
/// `dead_letter` (`platform::kafka::dead_letter_topic`).
pub fn with_dead_letters(dead_letter: impl Fn(&str) -> String) -> Vec<(String, i32, Cleanup)> {
    ALL.iter()
        .flat_map(|t| {
            let dlq = t
                .dead_letters
                .then(|| (dead_letter(t.name), 1, Cleanup::Delete));
            std::iter::once((t.name.to_owned(), t.partitions, t.cleanup)).chain(dlq)
        })
        .collect()
}

/// A topic of [`ALL`] by name.
pub fn get(name: &str) -> Option<&'static Topic> {
    ALL.iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_changelogs_match_their_inputs() {
        let all = with_dead_letters(|t| format!("{t}.dlq"));
        let mut names: Vec<&str> = all.iter().map(|(n, ..)| n.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a topic is listed twice");
        for (changelog, input) in [
            (NOTIFICATION_SENT_CHANGELOG, PAYMENTS),
            (INVENTORY_STOCK_CHANGELOG, ORDERS),
            (AGGREGATES_CHANGELOG, INPUT),
            (WINDOWS_CHANGELOG, PAYMENTS_BY_USER),
            (LOGIN_WINDOWS_CHANGELOG, LOGIN_EVENTS),
            (ALERTING_STATE_CHANGELOG, SENSOR_READINGS),
        ] {
            let (c, i) = (get(changelog).unwrap(), get(input).unwrap());
            assert_eq!(c.partitions, i.partitions, "{changelog} vs {input}");
            assert_eq!(c.cleanup, Cleanup::Compact);
        }
    }
}
