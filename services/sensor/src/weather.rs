//! Weather that drifts: each sensor's temperature follows a daily cycle around its own baseline
//! and wanders toward it as a mean-reverting random walk (an Ornstein–Uhlenbeck process), so
//! consecutive readings are close and trends last, the way a real thermometer's do. Humidity
//! moves against temperature (warm air reads drier) with its own wander.
//!
//! A share of the sensors is "hot": their baseline sits just under 30 °C, so the daily cycle
//! carries them over the threshold and back, and alerts are raised and cleared in every demo.
//! Another share is "humid", near the humidity threshold.

use serde::Serialize;
use std::f64::consts::TAU;

/// How fast a value returns toward its target (per second).
const REVERSION: f64 = 0.08;
/// The random walk's strength (°C or % per √second).
const TEMPERATURE_NOISE: f64 = 0.35;
const HUMIDITY_NOISE: f64 = 0.8;
/// Half the day-night swing.
const DAILY_SWING: f64 = 2.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Climate {
    Mild,
    Hot,
    Humid,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sensor {
    pub sensor_id: u32,
    pub climate: Climate,
    pub temperature: f64,
    pub humidity: f64,
    #[serde(skip)]
    base_temperature: f64,
    #[serde(skip)]
    base_humidity: f64,
    /// Where in the day this sensor's cycle is (its longitude, so to speak), in turns.
    #[serde(skip)]
    phase: f64,
}

/// A standard normal sample (Box–Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = rng.f64().max(f64::MIN_POSITIVE);
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

impl Sensor {
    pub fn new(sensor_id: u32, climate: Climate, rng: &mut fastrand::Rng) -> Self {
        let (base_temperature, base_humidity) = match climate {
            Climate::Mild => (17.0 + 8.0 * rng.f64(), 40.0 + 25.0 * rng.f64()),
            // The daily swing (±2.5 °C) takes these from 26–28.5 °C up to 31–33.5 °C.
            Climate::Hot => (28.5 + 2.5 * rng.f64(), 35.0 + 15.0 * rng.f64()),
            Climate::Humid => (18.0 + 5.0 * rng.f64(), 77.0 + 5.0 * rng.f64()),
        };
        Self {
            sensor_id,
            climate,
            temperature: base_temperature,
            humidity: base_humidity,
            base_temperature,
            base_humidity,
            phase: rng.f64(),
        }
    }

    /// The value the sensor tends to at `day_fraction` (0 = midnight) of the simulated day.
    fn targets(&self, day_fraction: f64) -> (f64, f64) {
        // Warmest mid-afternoon (0.6 of the day), coldest before dawn.
        let cycle = (TAU * (day_fraction + self.phase * 0.1 - 0.35)).sin();
        let temperature = self.base_temperature + DAILY_SWING * cycle;
        let humidity = self.base_humidity - 1.5 * (temperature - self.base_temperature);
        (temperature, humidity)
    }

    /// Moves the sensor on by `dt` seconds, at `day_fraction` of the simulated day.
    pub fn step(&mut self, dt: f64, day_fraction: f64, rng: &mut fastrand::Rng) {
        let dt = dt.clamp(0.0, 60.0);
        let (t_target, h_target) = self.targets(day_fraction);
        let pull = 1.0 - (-REVERSION * dt).exp();
        self.temperature +=
            (t_target - self.temperature) * pull + TEMPERATURE_NOISE * dt.sqrt() * normal(rng);
        self.humidity +=
            (h_target - self.humidity) * pull + HUMIDITY_NOISE * dt.sqrt() * normal(rng);
        self.temperature = self.temperature.clamp(-40.0, 60.0);
        self.humidity = self.humidity.clamp(1.0, 100.0);
    }

    /// The current values, rounded as a sensor reports them (0.01).
    pub fn reported(&self) -> (f64, f64) {
        let round = |v: f64| (v * 100.0).round() / 100.0;
        (round(self.temperature), round(self.humidity))
    }
}

/// `count` sensors numbered from `first_id`: the first `hot_share` of them hot, the next
/// `humid_share` humid, the rest mild (shuffled by `rng`, so hot sensors are spread).
pub fn fleet(
    first_id: u32,
    count: u32,
    hot_share: f64,
    humid_share: f64,
    rng: &mut fastrand::Rng,
) -> Vec<Sensor> {
    let hot = (f64::from(count) * hot_share).round() as u32;
    let humid = (f64::from(count) * humid_share).round() as u32;
    let mut climates: Vec<Climate> = (0..count)
        .map(|i| {
            if i < hot {
                Climate::Hot
            } else if i < hot + humid {
                Climate::Humid
            } else {
                Climate::Mild
            }
        })
        .collect();
    rng.shuffle(&mut climates);
    climates
        .into_iter()
        .zip(first_id..)
        .map(|(c, id)| Sensor::new(id, c, rng))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps a sensor once a second through `days` simulated days of `day_seconds`; returns its
    /// reported temperatures.
    fn trace(
        sensor: &mut Sensor,
        day_seconds: u32,
        days: u32,
        rng: &mut fastrand::Rng,
    ) -> Vec<f64> {
        (0..day_seconds * days)
            .map(|s| {
                sensor.step(
                    1.0,
                    f64::from(s % day_seconds) / f64::from(day_seconds),
                    rng,
                );
                sensor.reported().0
            })
            .collect()
    }

    #[test]
    fn readings_drift_instead_of_jumping() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut s = Sensor::new(1, Climate::Mild, &mut rng);
        let temps = trace(&mut s, 600, 2, &mut rng);
        let steps: Vec<f64> = temps.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
        let mean_step = steps.iter().sum::<f64>() / steps.len() as f64;
        let spread = temps.iter().cloned().fold(f64::MIN, f64::max)
            - temps.iter().cloned().fold(f64::MAX, f64::min);
        // Independent noise of the same spread would move about a third of the spread per step.
        assert!(mean_step < 0.5, "mean step {mean_step}");
        assert!(spread > 3.0, "the daily cycle shows: spread {spread}");
    }

    #[test]
    fn hot_sensors_cross_30_and_come_back_mild_ones_stay_below() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..20 {
            let mut hot = Sensor::new(1, Climate::Hot, &mut rng);
            let temps = trace(&mut hot, 600, 2, &mut rng);
            assert!(
                temps.iter().any(|t| *t >= 30.0),
                "a hot sensor reaches 30 °C"
            );
            assert!(
                temps.iter().any(|t| *t < 29.0),
                "and falls back below the hysteresis"
            );
            let mut mild = Sensor::new(2, Climate::Mild, &mut rng);
            let temps = trace(&mut mild, 600, 2, &mut rng);
            assert!(temps.iter().all(|t| *t < 30.0), "{temps:?}");
        }
    }

    #[test]
    fn the_fleet_has_the_configured_shares_and_valid_values() {
        let mut rng = fastrand::Rng::with_seed(5);
        let fleet = fleet(100, 50, 0.2, 0.1, &mut rng);
        assert_eq!(fleet.len(), 50);
        assert_eq!(fleet[0].sensor_id, 100);
        let count = |c| fleet.iter().filter(|s| s.climate == c).count();
        assert_eq!((count(Climate::Hot), count(Climate::Humid)), (10, 5));
        for s in &fleet {
            let (t, h) = s.reported();
            assert_eq!(events::validate_values(t, h), Ok(()));
        }
    }
}
