//! The IoT pipeline's events: readings on `sensor-readings` (keyed by `sensor_id`, from the
//! sensor simulator) and alerts on `sensor-alerts` (keyed by `sensor_id`, from the alerting
//! service). A reading has the seeds' fields (`sensor_id`, `temperature`, `humidity`,
//! `timestamp`) plus an `event_id` and the `event_type` tag every event carries.

use crate::{Event, ValidationError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The range of temperatures (°C) a reading may carry; anything else is a broken sensor.
pub const TEMPERATURE_RANGE: std::ops::RangeInclusive<f64> = -80.0..=80.0;

/// One measurement of one sensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorReading {
    pub event_id: Uuid,
    /// Always `sensor_reading`.
    pub event_type: String,
    pub sensor_id: u32,
    /// °C.
    pub temperature: f64,
    /// Relative humidity, %.
    pub humidity: f64,
    /// When the sensor measured it.
    pub timestamp: DateTime<Utc>,
}

impl SensorReading {
    pub const EVENT_TYPE: &'static str = "sensor_reading";

    pub fn new(sensor_id: u32, temperature: f64, humidity: f64, timestamp: DateTime<Utc>) -> Self {
        Self {
            event_id: Uuid::new_v4(),
            event_type: Self::EVENT_TYPE.to_owned(),
            sensor_id,
            temperature,
            humidity,
            timestamp,
        }
    }

    /// The record key: the sensor id, so one sensor's readings stay in order.
    pub fn key(&self) -> String {
        self.sensor_id.to_string()
    }
}

/// Checks a reading's values, for records and for readings posted to the simulator's API.
pub fn validate_values(temperature: f64, humidity: f64) -> Result<(), ValidationError> {
    if !temperature.is_finite() || !TEMPERATURE_RANGE.contains(&temperature) {
        return Err(ValidationError::new(
            "temperature",
            format!(
                "must be a number of °C from {} to {}",
                TEMPERATURE_RANGE.start(),
                TEMPERATURE_RANGE.end()
            ),
        ));
    }
    if !humidity.is_finite() || !(0.0..=100.0).contains(&humidity) {
        return Err(ValidationError::new(
            "humidity",
            "must be a relative humidity from 0 to 100 %",
        ));
    }
    Ok(())
}

impl Event for SensorReading {
    const EVENT_TYPES: &'static [&'static str] = &[Self::EVENT_TYPE];

    fn validate(&self) -> Result<(), ValidationError> {
        validate_values(self.temperature, self.humidity)
    }

    fn event_type(&self) -> &str {
        &self.event_type
    }
}

/// What an alert watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Temperature,
    Humidity,
}

impl Metric {
    pub const ALL: [Metric; 2] = [Metric::Temperature, Metric::Humidity];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Temperature => "temperature",
            Self::Humidity => "humidity",
        }
    }

    /// The metric's value in a reading.
    pub fn of(self, reading: &SensorReading) -> f64 {
        match self {
            Self::Temperature => reading.temperature,
            Self::Humidity => reading.humidity,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEventType {
    AlertRaised,
    AlertCleared,
}

impl AlertEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlertRaised => "alert_raised",
            Self::AlertCleared => "alert_cleared",
        }
    }
}

/// An alert raised when a sensor crosses a threshold, or cleared when it falls back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorAlert {
    /// Derived from the reading and the transition, so a redelivered reading yields the same id.
    pub event_id: Uuid,
    pub event_type: AlertEventType,
    /// The alert this event belongs to: the `event_id` of its `alert_raised`.
    pub alert_id: Uuid,
    pub sensor_id: u32,
    pub metric: Metric,
    /// The reading's value of `metric`.
    pub value: f64,
    /// The threshold crossed: the raise threshold for `alert_raised`, the clear threshold (raise
    /// threshold minus the hysteresis) for `alert_cleared`.
    pub threshold: f64,
    /// The reading that caused the transition.
    pub reading_id: Uuid,
    /// That reading's `timestamp`.
    pub occurred_at: DateTime<Utc>,
}

impl Event for SensorAlert {
    const EVENT_TYPES: &'static [&'static str] = &["alert_raised", "alert_cleared"];

    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }

    fn event_type(&self) -> &str {
        self.event_type.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;

    #[test]
    fn a_seed_style_reading_decodes_and_broken_values_are_refused() {
        let mut v = serde_json::json!({
            "event_id": "6a1f4cf3-5ad0-4d36-9d4b-1c0d4f3a6a10",
            "event_type": "sensor_reading",
            "sensor_id": 979,
            "temperature": 34.84,
            "humidity": 79.47,
            "timestamp": "2025-10-30T19:02:33Z"
        });
        let r: SensorReading = decode(Some(v.to_string().as_bytes())).expect("valid");
        assert_eq!((r.sensor_id, r.temperature), (979, 34.84));
        v["humidity"] = 140.0.into();
        let err = decode::<SensorReading>(Some(v.to_string().as_bytes())).unwrap_err();
        assert_eq!(err.kind(), "invalid");
        assert!(err.to_string().contains("humidity"), "{err}");
        v["humidity"] = 50.0.into();
        v["sensor_id"] = (-1).into();
        assert_eq!(
            decode::<SensorReading>(Some(v.to_string().as_bytes())).map_err(|e| e.kind()),
            Err("shape")
        );
    }
}
