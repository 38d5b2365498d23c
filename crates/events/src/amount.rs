//! Money as whole cents, written on the wire as a JSON number with at most two decimals
//! (`120.5`, as in the original demo), so no binary-float rounding ever reaches a decision.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

impl Amount {
    pub const fn from_cents(cents: i64) -> Self {
        Self(cents)
    }

    pub const fn cents(self) -> i64 {
        self.0
    }

    /// Parses a decimal number given as a float, refusing more than two decimals and values that
    /// do not fit in cents.
    pub fn from_decimal(value: f64) -> Result<Self, String> {
        if !value.is_finite() {
            return Err("amount must be a finite number".into());
        }
        let cents = (value * 100.0).round();
        if (cents - value * 100.0).abs() > 1e-6 {
            return Err(format!("amount {value} has more than two decimals"));
        }
        if cents.abs() > 9.0e15 {
            return Err(format!("amount {value} is out of range"));
        }
        #[allow(clippy::cast_possible_truncation)] // range checked above
        Ok(Self(cents as i64))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        write!(f, "{sign}{}.{:02}", self.0.abs() / 100, self.0.abs() % 100)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Cents / 100 is exact enough for every value from_decimal accepts to round-trip.
        #[allow(clippy::cast_precision_loss)]
        serializer.serialize_f64(self.0 as f64 / 100.0)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(deserializer)?;
        Self::from_decimal(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_round_trip_exactly() {
        for (text, cents) in [
            ("120.5", 12050),
            ("0.01", 1),
            ("19.99", 1999),
            ("1000000", 100_000_000),
        ] {
            let amount: Amount = serde_json::from_str(text).expect(text);
            assert_eq!(amount.cents(), cents);
            let back: Amount =
                serde_json::from_str(&serde_json::to_string(&amount).expect("ser")).expect("de");
            assert_eq!(back, amount);
        }
    }

    #[test]
    fn sub_cent_and_non_numbers_are_refused() {
        assert!(serde_json::from_str::<Amount>("0.001").is_err());
        assert!(serde_json::from_str::<Amount>("\"12\"").is_err());
        assert!(serde_json::from_str::<Amount>("1e300").is_err());
    }

    #[test]
    fn displays_with_two_decimals() {
        assert_eq!(Amount::from_cents(12050).to_string(), "120.50");
        assert_eq!(Amount::from_cents(-7).to_string(), "-0.07");
    }
}
