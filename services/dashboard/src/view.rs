//! What the dashboard knows: the latest reading of each sensor, per-second aggregates of the
//! fleet over a sliding window (what the charts draw), and the alerts, open and cleared. Pure:
//! the hub feeds it and serialises it; the page keeps the same view from the same updates.

use chrono::{DateTime, Utc};
use events::{AlertEventType, Metric, SensorAlert, SensorReading};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The charts' window, in seconds of reading time.
    pub window_seconds: i64,
    /// Alerts kept (the oldest cleared ones go first).
    pub alert_history: usize,
    /// Sensors kept (the one heard from least recently goes first).
    pub max_sensors: usize,
}

/// One second of readings, over the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bucket {
    /// Seconds since the epoch.
    pub t: i64,
    pub n: u32,
    pub t_min: f64,
    pub t_max: f64,
    pub t_sum: f64,
    pub h_min: f64,
    pub h_max: f64,
    pub h_sum: f64,
}

impl Bucket {
    fn new(t: i64) -> Self {
        Self {
            t,
            n: 0,
            t_min: f64::INFINITY,
            t_max: f64::NEG_INFINITY,
            t_sum: 0.0,
            h_min: f64::INFINITY,
            h_max: f64::NEG_INFINITY,
            h_sum: 0.0,
        }
    }

    fn add(&mut self, r: &SensorReading) {
        self.n += 1;
        self.t_min = self.t_min.min(r.temperature);
        self.t_max = self.t_max.max(r.temperature);
        self.t_sum += r.temperature;
        self.h_min = self.h_min.min(r.humidity);
        self.h_max = self.h_max.max(r.humidity);
        self.h_sum += r.humidity;
    }
}

/// An alert as the dashboard lists it: raised, and cleared once its `alert_cleared` arrives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEntry {
    pub alert_id: Uuid,
    pub sensor_id: u32,
    pub metric: Metric,
    /// When it was raised, the value and threshold (absent when only the clear is known: the
    /// raise fell out of the topic's history).
    pub raised_at: Option<DateTime<Utc>>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub cleared_at: Option<DateTime<Utc>>,
    pub cleared_value: Option<f64>,
}

impl AlertEntry {
    pub fn is_open(&self) -> bool {
        self.cleared_at.is_none()
    }

    /// When it last changed.
    fn last_change(&self) -> Option<DateTime<Utc>> {
        self.cleared_at.or(self.raised_at)
    }
}

pub struct View {
    limits: Limits,
    latest: HashMap<u32, SensorReading>,
    buckets: BTreeMap<i64, Bucket>,
    alerts: HashMap<Uuid, AlertEntry>,
    /// Alert ids in the order first seen (eviction order).
    alert_order: VecDeque<Uuid>,
}

impl View {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            latest: HashMap::new(),
            buckets: BTreeMap::new(),
            alerts: HashMap::new(),
            alert_order: VecDeque::new(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes a reading: the sensor's latest unless a newer one is known, and one more sample of
    /// its second unless that second has left the window.
    pub fn reading(&mut self, r: &SensorReading) {
        let newer = self
            .latest
            .get(&r.sensor_id)
            .is_none_or(|l| l.timestamp <= r.timestamp);
        if newer {
            if !self.latest.contains_key(&r.sensor_id)
                && self.latest.len() >= self.limits.max_sensors
            {
                self.forget_stalest_sensor();
            }
            self.latest.insert(r.sensor_id, r.clone());
        }
        let second = r.timestamp.timestamp();
        let newest = self.buckets.keys().next_back().copied().unwrap_or(second);
        if second <= newest - self.limits.window_seconds {
            return;
        }
        self.buckets
            .entry(second)
            .or_insert_with(|| Bucket::new(second))
            .add(r);
        let start = second.max(newest) - self.limits.window_seconds;
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() > start {
                break;
            }
            entry.remove();
        }
    }

    fn forget_stalest_sensor(&mut self) {
        if let Some(id) = self
            .latest
            .values()
            .min_by_key(|r| r.timestamp)
            .map(|r| r.sensor_id)
        {
            self.latest.remove(&id);
        }
    }

    /// Takes an alert event; returns whether it changed anything (false for one already
    /// applied, which is how redelivered and re-read events are recognised).
    pub fn alert(&mut self, a: &SensorAlert) -> bool {
        let existing = self.alerts.get_mut(&a.alert_id);
        match (a.event_type, existing) {
            (AlertEventType::AlertRaised, Some(entry)) => {
                if entry.raised_at.is_some() {
                    return false;
                }
                entry.raised_at = Some(a.occurred_at);
                entry.value = Some(a.value);
                entry.threshold = Some(a.threshold);
                true
            }
            (AlertEventType::AlertCleared, Some(entry)) => {
                if entry.cleared_at.is_some() {
                    return false;
                }
                entry.cleared_at = Some(a.occurred_at);
                entry.cleared_value = Some(a.value);
                true
            }
            (event_type, None) => {
                let raised = event_type == AlertEventType::AlertRaised;
                let entry = AlertEntry {
                    alert_id: a.alert_id,
                    sensor_id: a.sensor_id,
                    metric: a.metric,
                    raised_at: raised.then_some(a.occurred_at),
                    value: raised.then_some(a.value),
                    threshold: raised.then_some(a.threshold),
                    cleared_at: (!raised).then_some(a.occurred_at),
                    cleared_value: (!raised).then_some(a.value),
                };
                self.alerts.insert(a.alert_id, entry);
                self.alert_order.push_back(a.alert_id);
                self.trim_alerts();
                true
            }
        }
    }

    fn trim_alerts(&mut self) {
        while self.alerts.len() > self.limits.alert_history {
            // The oldest cleared alert, or the oldest of all when every one is open.
            let victim = self
                .alert_order
                .iter()
                .position(|id| self.alerts.get(id).is_some_and(|e| !e.is_open()))
                .unwrap_or(0);
            if let Some(id) = self.alert_order.remove(victim) {
                self.alerts.remove(&id);
            }
        }
    }

    /// The latest reading of every sensor, by sensor id.
    pub fn sensors(&self) -> Vec<&SensorReading> {
        let mut sensors: Vec<&SensorReading> = self.latest.values().collect();
        sensors.sort_unstable_by_key(|r| r.sensor_id);
        sensors
    }

    pub fn sensor_count(&self) -> usize {
        self.latest.len()
    }

    pub fn sensor(&self, id: u32) -> Option<&SensorReading> {
        self.latest.get(&id)
    }

    pub fn buckets(&self) -> impl Iterator<Item = &Bucket> {
        self.buckets.values()
    }

    /// Alerts, open ones first, then the most recently changed.
    pub fn alerts(&self) -> Vec<&AlertEntry> {
        let mut alerts: Vec<&AlertEntry> = self.alerts.values().collect();
        alerts.sort_by(|a, b| {
            b.is_open()
                .cmp(&a.is_open())
                .then(b.last_change().cmp(&a.last_change()))
                .then(a.sensor_id.cmp(&b.sensor_id))
        });
        alerts
    }

    pub fn open_alerts(&self) -> usize {
        self.alerts.values().filter(|a| a.is_open()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn limits() -> Limits {
        Limits {
            window_seconds: 60,
            alert_history: 3,
            max_sensors: 100,
        }
    }

    fn at(second: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + second, 0).unwrap()
    }

    fn reading(id: u32, t: f64, second: i64) -> SensorReading {
        SensorReading::new(id, t, 50.0, at(second))
    }

    fn alert(kind: AlertEventType, alert_id: Uuid, sensor: u32, second: i64) -> SensorAlert {
        SensorAlert {
            event_id: if kind == AlertEventType::AlertRaised {
                alert_id
            } else {
                Uuid::new_v4()
            },
            event_type: kind,
            alert_id,
            sensor_id: sensor,
            metric: Metric::Temperature,
            value: 31.0,
            threshold: 30.0,
            reading_id: Uuid::new_v4(),
            occurred_at: at(second),
        }
    }

    #[test]
    fn the_latest_reading_wins_by_time_not_by_arrival() {
        let mut v = View::new(limits());
        v.reading(&reading(1, 20.0, 10));
        v.reading(&reading(1, 25.0, 5));
        assert_eq!(v.sensor(1).unwrap().temperature, 20.0);
        v.reading(&reading(1, 26.0, 11));
        assert_eq!(v.sensor(1).unwrap().temperature, 26.0);
    }

    #[test]
    fn buckets_aggregate_each_second_and_slide() {
        let mut v = View::new(limits());
        v.reading(&reading(1, 20.0, 0));
        v.reading(&reading(2, 30.0, 0));
        v.reading(&reading(1, 22.0, 1));
        let b: Vec<Bucket> = v.buckets().copied().collect();
        assert_eq!(b.len(), 2);
        assert_eq!(
            (b[0].n, b[0].t_min, b[0].t_max, b[0].t_sum),
            (2, 20.0, 30.0, 50.0)
        );
        v.reading(&reading(1, 21.0, 70));
        let seconds: Vec<i64> = v.buckets().map(|b| b.t - 1_800_000_000).collect();
        assert_eq!(seconds, vec![70], "seconds 0 and 1 left the 60 s window");
        v.reading(&reading(2, 21.0, 5));
        assert_eq!(
            v.buckets().count(),
            1,
            "a reading older than the window is not charted"
        );
    }

    #[test]
    fn alerts_raise_clear_and_ignore_what_was_applied_already() {
        let mut v = View::new(limits());
        let id = Uuid::new_v4();
        let raised = alert(AlertEventType::AlertRaised, id, 4, 1);
        let cleared = alert(AlertEventType::AlertCleared, id, 4, 9);
        assert!(v.alert(&raised));
        assert!(!v.alert(&raised), "a redelivered raise");
        assert_eq!(v.open_alerts(), 1);
        assert!(v.alert(&cleared));
        assert!(!v.alert(&cleared));
        assert!(!v.alert(&raised), "re-read from the topic's start");
        assert_eq!(v.open_alerts(), 0);
        let a = v.alerts()[0];
        assert_eq!((a.raised_at, a.cleared_at), (Some(at(1)), Some(at(9))));
    }

    #[test]
    fn alert_history_drops_cleared_alerts_first() {
        let mut v = View::new(limits());
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        v.alert(&alert(AlertEventType::AlertRaised, ids[0], 1, 0));
        v.alert(&alert(AlertEventType::AlertRaised, ids[1], 2, 1));
        v.alert(&alert(AlertEventType::AlertCleared, ids[1], 2, 2));
        v.alert(&alert(AlertEventType::AlertRaised, ids[2], 3, 3));
        v.alert(&alert(AlertEventType::AlertRaised, ids[3], 4, 4));
        let kept: Vec<u32> = v.alerts().iter().map(|a| a.sensor_id).collect();
        assert_eq!(
            kept,
            vec![4, 3, 1],
            "the cleared alert of sensor 2 went first"
        );
    }

    #[test]
    fn sensors_are_bounded() {
        let mut v = View::new(Limits {
            max_sensors: 2,
            ..limits()
        });
        v.reading(&reading(1, 20.0, 3));
        v.reading(&reading(2, 20.0, 1));
        v.reading(&reading(3, 20.0, 4));
        let ids: Vec<u32> = v.sensors().iter().map(|r| r.sensor_id).collect();
        assert_eq!(
            ids,
            vec![1, 3],
            "sensor 2, heard from least recently, is forgotten"
        );
    }
}
