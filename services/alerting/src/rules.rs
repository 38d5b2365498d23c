//! The alert rules, pure: a sensor's state and a reading in, the new state and the alert events
//! out. No I/O, so every case (crossing, staying hot, hovering, recovering, redelivery) is a unit
//! test.
//!
//! A metric's alert is raised when a reading reaches its threshold and cleared when a reading
//! falls below the threshold minus the hysteresis: a sensor hovering around the threshold raises
//! once and stays raised until it really cools down.
//!
//! # Redelivery
//!
//! The state changes only when an alert is raised or cleared, and it records the input offset of
//! the reading that changed it and the events that reading published. A reading at an earlier
//! offset of the same partition was applied before (one sensor's readings are handled in order)
//! and its events acknowledged: it yields nothing. The reading at that very offset yields its
//! events again, identical, since they may not have been published before a crash. A later
//! reading is evaluated; readings that changed nothing the first time change nothing again,
//! because they saw the same state.

use chrono::{DateTime, Utc};
use events::{AlertEventType, Metric, SensorAlert, SensorReading};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// One metric's threshold and hysteresis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// Raise at or above this value.
    pub raise: f64,
    /// Clear below `raise - hysteresis`.
    pub hysteresis: f64,
}

impl Threshold {
    pub fn clear_below(&self) -> f64 {
        self.raise - self.hysteresis
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    pub temperature: Threshold,
    pub humidity: Threshold,
}

impl Default for Rules {
    /// The seeds' 30 °C, with 1 °C of hysteresis; humidity at 80 %, clearing below 75 %.
    fn default() -> Self {
        Self {
            temperature: Threshold {
                raise: 30.0,
                hysteresis: 1.0,
            },
            humidity: Threshold {
                raise: 80.0,
                hysteresis: 5.0,
            },
        }
    }
}

/// An alert that is raised and not cleared yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAlert {
    pub alert_id: Uuid,
    pub raised_at: DateTime<Utc>,
    /// The value that raised it.
    pub value: f64,
}

/// The last change of a sensor's state: the input offset of the reading that made it, and the
/// events that reading published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastChange {
    pub offset: i64,
    pub events: Vec<SensorAlert>,
}

/// What the alerting service keeps per sensor (in its state store).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SensorState {
    pub open: BTreeMap<Metric, OpenAlert>,
    pub last_change: Option<LastChange>,
}

/// What a reading does to a sensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// No alert raised or cleared; the state stays as it is.
    Unchanged,
    /// Alerts raised or cleared: the new state, and the events to publish.
    Changed(SensorState, Vec<SensorAlert>),
    /// The reading that made the last change, delivered again: its events, to publish again.
    Redelivered(Vec<SensorAlert>),
}

/// An event's id, derived from the reading and the transition: the same reading always yields
/// the same ids.
fn event_id(reading: Uuid, kind: AlertEventType, metric: Metric) -> Uuid {
    let name = format!("{reading}/{}/{}", kind.as_str(), metric.as_str());
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
}

impl Rules {
    pub fn threshold(&self, metric: Metric) -> Threshold {
        match metric {
            Metric::Temperature => self.temperature,
            Metric::Humidity => self.humidity,
        }
    }

    /// Applies the reading at input `offset` to `state`.
    pub fn apply(&self, state: &SensorState, reading: &SensorReading, offset: i64) -> Outcome {
        if let Some(last) = &state.last_change {
            if offset < last.offset {
                return Outcome::Unchanged;
            }
            if offset == last.offset {
                return Outcome::Redelivered(last.events.clone());
            }
        }
        let mut next = state.clone();
        let mut events = Vec::new();
        for metric in Metric::ALL {
            let value = metric.of(reading);
            let threshold = self.threshold(metric);
            let transition = match state.open.get(&metric) {
                None if value >= threshold.raise => {
                    let id = event_id(reading.event_id, AlertEventType::AlertRaised, metric);
                    next.open.insert(
                        metric,
                        OpenAlert {
                            alert_id: id,
                            raised_at: reading.timestamp,
                            value,
                        },
                    );
                    Some((AlertEventType::AlertRaised, id, id, threshold.raise))
                }
                Some(open) if value < threshold.clear_below() => {
                    next.open.remove(&metric);
                    let id = event_id(reading.event_id, AlertEventType::AlertCleared, metric);
                    Some((
                        AlertEventType::AlertCleared,
                        id,
                        open.alert_id,
                        threshold.clear_below(),
                    ))
                }
                _ => None,
            };
            if let Some((event_type, event_id, alert_id, threshold)) = transition {
                events.push(SensorAlert {
                    event_id,
                    event_type,
                    alert_id,
                    sensor_id: reading.sensor_id,
                    metric,
                    value,
                    threshold,
                    reading_id: reading.event_id,
                    occurred_at: reading.timestamp,
                });
            }
        }
        if events.is_empty() {
            return Outcome::Unchanged;
        }
        next.last_change = Some(LastChange {
            offset,
            events: events.clone(),
        });
        Outcome::Changed(next, events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn reading(temperature: f64, humidity: f64, second: u32) -> SensorReading {
        SensorReading::new(
            7,
            temperature,
            humidity,
            Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, second).unwrap(),
        )
    }

    /// Feeds temperatures (humidity 50 %) from offset 0 on; returns the events per reading.
    fn run(state: &mut SensorState, temperatures: &[f64]) -> Vec<Vec<AlertEventType>> {
        let rules = Rules::default();
        let base = state.last_change.as_ref().map_or(0, |l| l.offset + 1);
        temperatures
            .iter()
            .enumerate()
            .map(
                |(i, t)| match rules.apply(state, &reading(*t, 50.0, i as u32), base + i as i64) {
                    Outcome::Changed(next, events) => {
                        *state = next;
                        events.iter().map(|e| e.event_type).collect()
                    }
                    Outcome::Unchanged => vec![],
                    Outcome::Redelivered(_) => panic!("a new offset is never a redelivery"),
                },
            )
            .collect()
    }

    use AlertEventType::{AlertCleared as C, AlertRaised as R};

    #[test]
    fn crossing_raises_once_and_staying_hot_raises_nothing_more() {
        let mut state = SensorState::default();
        let events = run(&mut state, &[25.0, 29.9, 30.0, 34.0, 36.5, 31.0]);
        assert_eq!(
            events,
            vec![vec![], vec![], vec![R], vec![], vec![], vec![]]
        );
        assert!(state.open.contains_key(&Metric::Temperature));
    }

    #[test]
    fn hovering_at_the_threshold_does_not_flap() {
        let mut state = SensorState::default();
        let events = run(&mut state, &[30.1, 29.5, 30.2, 29.1, 30.0, 29.0, 30.4]);
        assert_eq!(events.concat(), vec![R], "{events:?}");
    }

    #[test]
    fn recovering_below_the_hysteresis_clears_the_same_alert_and_a_new_crossing_raises_anew() {
        let mut state = SensorState::default();
        let rules = Rules::default();
        let hot = reading(32.0, 50.0, 0);
        let Outcome::Changed(s1, raised) = rules.apply(&state, &hot, 10) else {
            panic!("raised")
        };
        let Outcome::Changed(s2, cleared) = rules.apply(&s1, &reading(28.9, 50.0, 1), 11) else {
            panic!("cleared")
        };
        assert_eq!(cleared[0].event_type, C);
        assert_eq!(cleared[0].alert_id, raised[0].alert_id);
        assert_eq!(cleared[0].threshold, 29.0);
        assert_eq!(raised[0].alert_id, raised[0].event_id);
        assert!(s2.open.is_empty());
        state = s2;
        let again = run(&mut state, &[31.0]);
        assert_eq!(again, vec![vec![R]]);
        assert_ne!(
            state.open[&Metric::Temperature].alert_id,
            raised[0].alert_id,
            "a new crossing is a new alert"
        );
    }

    #[test]
    fn humidity_has_its_own_alert_beside_temperature() {
        let rules = Rules::default();
        let Outcome::Changed(s, events) =
            rules.apply(&SensorState::default(), &reading(31.0, 85.0, 0), 0)
        else {
            panic!("both raised")
        };
        let kinds: Vec<_> = events.iter().map(|e| (e.event_type, e.metric)).collect();
        assert_eq!(kinds, vec![(R, Metric::Temperature), (R, Metric::Humidity)]);
        assert_ne!(events[0].event_id, events[1].event_id);
        let Outcome::Changed(_, events) = rules.apply(&s, &reading(31.0, 74.0, 1), 1) else {
            panic!("humidity cleared")
        };
        assert_eq!(
            events
                .iter()
                .map(|e| (e.event_type, e.metric))
                .collect::<Vec<_>>(),
            vec![(C, Metric::Humidity)]
        );
    }

    #[test]
    fn redelivery_republishes_the_identical_events_and_never_a_second_alert() {
        let rules = Rules::default();
        let before = SensorState::default();
        let warm = reading(25.0, 50.0, 0);
        let hot = reading(33.0, 50.0, 1);
        let still_hot = reading(34.0, 50.0, 2);
        assert_eq!(rules.apply(&before, &warm, 100), Outcome::Unchanged);
        let Outcome::Changed(after, raised) = rules.apply(&before, &hot, 101) else {
            panic!("raised")
        };
        assert_eq!(rules.apply(&after, &still_hot, 102), Outcome::Unchanged);
        // A crash, and everything from offset 100 is delivered again to the restored state.
        assert_eq!(rules.apply(&after, &warm, 100), Outcome::Unchanged);
        assert_eq!(
            rules.apply(&after, &hot, 101),
            Outcome::Redelivered(raised.clone())
        );
        assert_eq!(rules.apply(&after, &still_hot, 102), Outcome::Unchanged);
        // Had the state change itself been lost, the same reading yields the same ids again.
        assert_eq!(
            rules.apply(&before, &hot, 101),
            Outcome::Changed(after, raised)
        );
    }

    #[test]
    fn the_state_survives_its_json_form() {
        let rules = Rules::default();
        let Outcome::Changed(state, _) =
            rules.apply(&SensorState::default(), &reading(40.0, 90.0, 0), 3)
        else {
            panic!("raised")
        };
        let json = serde_json::to_string(&state).expect("serialise");
        let back: SensorState = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, state);
    }
}
