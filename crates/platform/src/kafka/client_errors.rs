//! The last error a Kafka client reported, kept so that readiness and the console tool can name the
//! problem (a failed login, a refused certificate, a plaintext client at a TLS port) instead of
//! only "broker unreachable"; and the warnings those errors become, without the repeats.

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the repeats of one kind of client error are counted instead of logged.
const REPEATS_WINDOW: Duration = Duration::from_secs(30);

/// A client's error warnings, one line per kind of error (its librdkafka code) per
/// [`REPEATS_WINDOW`]. While a broker stays away, or a login keeps failing, the client reports
/// the same error on every reconnection attempt; the repeats are counted, and the next line of that
/// kind says how many there were (`repeated`).
#[derive(Clone, Default)]
pub(crate) struct Warnings {
    /// Kind → when it was last logged, and how many of it came since.
    kinds: Arc<Mutex<HashMap<String, (Instant, u64)>>>,
}

impl Warnings {
    pub(crate) fn warn(&self, error: &KafkaError, reason: &str) {
        let kind = format!("{:?}", error.rdkafka_error_code());
        if let Some(repeated) = self.admit(kind, Instant::now()) {
            tracing::warn!(error = %error, reason, repeated, "kafka client error");
        }
    }

    /// `Some(repeats since the last line)` when an error of `kind` at `now` gets a line.
    fn admit(&self, kind: String, now: Instant) -> Option<u64> {
        let mut kinds = self.kinds.lock().expect("warnings lock");
        match kinds.get_mut(&kind) {
            Some((logged, repeats)) if now.duration_since(*logged) < REPEATS_WINDOW => {
                *repeats += 1;
                None
            }
            Some((logged, repeats)) => {
                *logged = now;
                Some(std::mem::take(repeats))
            }
            None => {
                kinds.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
}

/// Shared by a client's context and whoever reports on it.
#[derive(Clone, Default)]
pub struct ClientErrors {
    last: Arc<Mutex<Option<String>>>,
    warnings: Warnings,
}

impl ClientErrors {
    /// An error callback: a warning (see [`Warnings`]), and kept as the last error.
    pub(crate) fn warn(&self, error: &KafkaError, reason: &str) {
        self.warnings.warn(error, reason);
        self.record(error, reason);
    }

    pub(crate) fn record(&self, error: &KafkaError, reason: &str) {
        // "all brokers are down" follows the error that says why; keep the why.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            return;
        }
        *self.last.lock().expect("client errors lock") = Some(format!("{error}: {reason}"));
    }

    /// A connection failure from the client's log (`FAIL`): a connection the broker closed
    /// before it answered is not an error callback, and is most often a plaintext client
    /// talking to a TLS listener, which the message alone does not say.
    pub(crate) fn record_failure(&self, message: &str) {
        // librdkafka retires its bootstrap connection once it knows the broker's own: not a fault.
        if message.contains("_DESTROY_BROKER") {
            return;
        }
        let mut text = message.to_owned();
        if message.contains("Disconnected") && message.contains("APIVERSION_QUERY") {
            text.push_str(
                " — the broker closed the connection before its first answer: a TLS listener \
                 reached without TLS? (KAFKA_SECURITY_PROTOCOL ssl or sasl_ssl)",
            );
        }
        *self.last.lock().expect("client errors lock") = Some(text);
    }

    /// Logs a librdkafka log line as rdkafka's default does, and keeps connection failures.
    pub(crate) fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if fac == "FAIL" {
            self.record_failure(message);
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "librdkafka: {fac} {message}");
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", "librdkafka: {fac} {message}");
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", "librdkafka: {fac} {message}");
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}");
            }
        }
    }

    /// The last error since the last [`clear`](Self::clear).
    pub fn last(&self) -> Option<String> {
        self.last.lock().expect("client errors lock").clone()
    }

    pub fn clear(&self) {
        self.last.lock().expect("client errors lock").take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_error_that_says_why() {
        let errors = ClientErrors::default();
        errors.record(
            &KafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: invalid-proof",
        );
        errors.record(
            &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        errors.record_failure("b/bootstrap: Decommissioning this broker (_DESTROY_BROKER)");
        let last = errors.last().expect("an error");
        assert!(last.contains("invalid-proof"), "{last}");

        errors.record_failure(
            "sasl_plaintext://k:9093/bootstrap: Disconnected: connection reset by peer (after 1ms \
             in state APIVERSION_QUERY)",
        );
        let last = errors.last().expect("an error");
        assert!(last.contains("KAFKA_SECURITY_PROTOCOL"), "{last}");
        errors.clear();
        assert_eq!(errors.last(), None);
    }

    #[test]
    fn repeats_of_an_error_are_counted_not_logged() {
        let warnings = Warnings::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(warnings.admit("Transport".into(), at(0)), Some(0));
        assert_eq!(warnings.admit("Transport".into(), at(1)), None);
        assert_eq!(warnings.admit("Transport".into(), at(29)), None);
        // Another kind is not held back by the first.
        assert_eq!(warnings.admit("Authentication".into(), at(29)), Some(0));
        // After the window, the next one is logged with the count of those held back.
        assert_eq!(warnings.admit("Transport".into(), at(30)), Some(2));
        assert_eq!(warnings.admit("Transport".into(), at(31)), None);
        assert_eq!(warnings.admit("Transport".into(), at(61)), Some(1));
        assert_eq!(warnings.admit("Authentication".into(), at(61)), Some(0));
    }
}
