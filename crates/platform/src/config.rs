//! Typed configuration from environment variables, validated once at start.
//!
//! Every lookup names its variable and what it expects, so a bad deployment stops with one line
//! such as `config error: PAYMENT_FAILURE_RATE="abc" is invalid; expected a number from 0 to 1`.
//! Lookups go through [`Env`], a snapshot of the variables, so tests build one from pairs instead
//! of mutating the process environment.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{var} is not set; expected {expected}")]
    Missing { var: String, expected: String },
    #[error("{var}={value:?} is invalid; expected {expected}")]
    Invalid {
        var: String,
        value: String,
        expected: String,
    },
}

/// A snapshot of environment variables.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The raw value; an empty value counts as unset, as Kubernetes and shells often produce one.
    pub fn raw(&self, var: &str) -> Option<&str> {
        self.vars
            .get(var)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub fn required<T: FromStr>(&self, var: &str, expected: &str) -> Result<T, ConfigError> {
        let value = self.raw(var).ok_or_else(|| ConfigError::Missing {
            var: var.into(),
            expected: expected.into(),
        })?;
        parse(var, value, expected)
    }

    pub fn optional<T: FromStr>(
        &self,
        var: &str,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        self.raw(var)
            .map(|value| parse(var, value, expected))
            .transpose()
    }

    pub fn or<T: FromStr>(&self, var: &str, default: T, expected: &str) -> Result<T, ConfigError> {
        Ok(self.optional(var, expected)?.unwrap_or(default))
    }

    /// A value that must also satisfy `check` (a range, a non-empty list).
    pub fn checked<T: FromStr + Display>(
        &self,
        var: &str,
        default: T,
        expected: &str,
        check: impl Fn(&T) -> bool,
    ) -> Result<T, ConfigError> {
        let value = self.or(var, default, expected)?;
        if check(&value) {
            Ok(value)
        } else {
            Err(ConfigError::Invalid {
                var: var.into(),
                value: value.to_string(),
                expected: expected.into(),
            })
        }
    }

    /// A duration given in whole milliseconds.
    pub fn millis(&self, var: &str, default: Duration) -> Result<Duration, ConfigError> {
        let ms: u64 = self.or(var, duration_ms(default), "a whole number of milliseconds")?;
        Ok(Duration::from_millis(ms))
    }

    /// A listen address such as `0.0.0.0:8080`.
    pub fn addr(&self, var: &str, default: &str) -> Result<SocketAddr, ConfigError> {
        let expected = "a socket address such as 0.0.0.0:8080";
        match self.raw(var) {
            Some(value) => parse(var, value, expected),
            None => parse(var, default, expected),
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn parse<T: FromStr>(var: &str, value: &str, expected: &str) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::Invalid {
        var: var.into(),
        value: value.into(),
        expected: expected.into(),
    })
}

/// Unwraps a loaded configuration or ends the process with one line naming the variable.
/// Exit code 78 is `EX_CONFIG` from sysexits.h.
pub fn or_exit<T>(result: Result<T, ConfigError>) -> T {
    result.unwrap_or_else(|err| {
        eprintln!("config error: {err}");
        std::process::exit(78)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_malformed_values_name_the_variable() {
        let env = Env::from_pairs([("RATE", "abc"), ("EMPTY", "  ")]);
        let err = env.required::<u32>("COUNT", "a whole number").unwrap_err();
        assert_eq!(err.to_string(), "COUNT is not set; expected a whole number");
        let err = env.or::<f64>("RATE", 0.5, "a number").unwrap_err();
        assert_eq!(
            err.to_string(),
            "RATE=\"abc\" is invalid; expected a number"
        );
        assert_eq!(env.or::<u32>("EMPTY", 3, "a whole number"), Ok(3));
    }

    #[test]
    fn checked_values_enforce_their_range() {
        let env = Env::from_pairs([("RATE", "1.5")]);
        let err = env
            .checked("RATE", 0.0, "a number from 0 to 1", |r: &f64| {
                (0.0..=1.0).contains(r)
            })
            .unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
    }

    #[test]
    fn durations_and_addresses_parse() {
        let env = Env::from_pairs([("T_MS", "250"), ("ADDR", "127.0.0.1:0")]);
        assert_eq!(
            env.millis("T_MS", Duration::ZERO),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(env.addr("ADDR", "0.0.0.0:1").map(|a| a.port()), Ok(0));
        assert_eq!(
            env.addr("OTHER", "0.0.0.0:9090").map(|a| a.port()),
            Ok(9090)
        );
        assert!(
            Env::from_pairs([("ADDR", "nowhere")])
                .addr("ADDR", "0.0.0.0:1")
                .is_err()
        );
    }
}
