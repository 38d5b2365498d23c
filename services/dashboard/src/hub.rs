//! The Server-Sent Events hub: one owner of the [`View`], which turns each batch of updates into
//! one frame, keeps recent frames for resuming, and hands every frame to every connected client.
//!
//! - **Frames.** A batch of readings and alerts becomes one `update` event, serialised once and
//!   shared by every client (a `Bytes` clone per client, not a copy). Batches are whatever
//!   arrived since the previous frame: one reading at a time when it is quiet, larger frames
//!   under load, so there is no timer to add latency.
//! - **Resume without gaps or duplicates.** Event ids are `<epoch>-<sequence>`, the epoch drawn
//!   at start. A client that reconnects with `Last-Event-ID` gets the frames after it from the
//!   replay ring if they are all still there; otherwise (too old, or another epoch: the service
//!   restarted) a fresh `snapshot`. The snapshot or replay and the registration for live frames
//!   happen under one lock, so nothing falls between them and nothing is sent twice.
//! - **Slow clients are dropped, never buffered without bound.** Each client has a queue of
//!   `DASHBOARD_CLIENT_BUFFER` frames; a client whose queue is full is disconnected. A browser
//!   reconnects by itself and resumes from its last event.

use crate::view::{Limits, View};
use bytes::Bytes;
use events::{SensorAlert, SensorReading};
use prometheus::{Histogram, IntCounter, IntGauge};
use serde_json::json;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// What the consumer hands the hub.
#[derive(Debug, Clone)]
pub enum Update {
    Reading(SensorReading),
    Alert(SensorAlert),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HubConfig {
    pub limits: Limits,
    /// Frames a client may have queued before it is dropped.
    pub client_buffer: usize,
    /// Connected clients at most.
    pub max_clients: usize,
    /// Bytes of recent frames kept for resuming.
    pub replay_bytes: usize,
    /// Readings at or above this temperature are highlighted (the page is told).
    pub hot_temperature: f64,
}

pub struct HubMetrics {
    pub clients: IntGauge,
    pub dropped: IntCounter,
    pub frames: IntCounter,
    pub readings: IntCounter,
    pub sensors: IntGauge,
    pub reading_delay: Histogram,
}

struct Client {
    tx: mpsc::Sender<Bytes>,
}

struct State {
    view: View,
    seq: u64,
    ring: VecDeque<(u64, Bytes)>,
    ring_bytes: usize,
    clients: Vec<Client>,
}

pub struct Hub {
    config: HubConfig,
    epoch: u32,
    state: Mutex<State>,
    metrics: HubMetrics,
}

/// Why a client cannot subscribe.
#[derive(Debug, PartialEq, Eq)]
pub struct TooManyClients(pub usize);

/// One SSE event, as sent.
fn event(id: &str, name: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("id: {id}\nevent: {name}\ndata: {data}\n\n"))
}

/// An SSE comment: keeps idle connections (and proxies) alive, and finds the closed ones.
pub const KEEPALIVE: &[u8] = b": keepalive\n\n";

impl Hub {
    pub fn new(config: HubConfig, metrics: HubMetrics) -> Self {
        Self {
            config,
            epoch: fastrand::u32(1..),
            state: Mutex::new(State {
                view: View::new(config.limits),
                seq: 0,
                ring: VecDeque::new(),
                ring_bytes: 0,
                clients: Vec::new(),
            }),
            metrics,
        }
    }

    fn id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.epoch)
    }

    /// Reads the view under the hub's lock.
    pub fn read<R>(&self, f: impl FnOnce(&View) -> R) -> R {
        f(&self.state.lock().expect("hub lock").view)
    }

    /// Applies a batch to the view and broadcasts what it changed as one frame.
    pub fn apply(&self, batch: impl IntoIterator<Item = Update>) {
        let now = chrono::Utc::now();
        let mut st = self.state.lock().expect("hub lock");
        let mut readings = Vec::new();
        let mut alerts = Vec::new();
        for update in batch {
            match update {
                Update::Reading(r) => {
                    st.view.reading(&r);
                    let delay = (now - r.timestamp).num_microseconds().unwrap_or(0);
                    self.metrics
                        .reading_delay
                        .observe(delay.max(0) as f64 / 1e6);
                    readings.push(r);
                }
                Update::Alert(a) => {
                    if st.view.alert(&a) {
                        alerts.push(a);
                    }
                }
            }
        }
        self.metrics.readings.inc_by(readings.len() as u64);
        self.metrics.sensors.set(st.view.sensor_count() as i64);
        if readings.is_empty() && alerts.is_empty() {
            return;
        }
        st.seq += 1;
        let seq = st.seq;
        let frame = event(
            &self.id(seq),
            "update",
            &json!({ "readings": readings, "alerts": alerts }),
        );
        self.metrics.frames.inc();
        st.ring_bytes += frame.len();
        st.ring.push_back((seq, frame.clone()));
        while st.ring_bytes > self.config.replay_bytes && st.ring.len() > 1 {
            let (_, old) = st.ring.pop_front().expect("ring not empty");
            st.ring_bytes -= old.len();
        }
        self.send_all(&mut st, &frame);
    }

    /// Sends a keepalive comment to every client (and drops the closed and the stuck ones).
    pub fn keepalive(&self) {
        let mut st = self.state.lock().expect("hub lock");
        self.send_all(&mut st, &Bytes::from_static(KEEPALIVE));
    }

    /// Ends every client's stream after what it has queued (at shutdown).
    pub fn close_all(&self) {
        let mut st = self.state.lock().expect("hub lock");
        st.clients.clear();
        self.metrics.clients.set(0);
    }

    fn send_all(&self, st: &mut State, frame: &Bytes) {
        let before = st.clients.len();
        let mut dropped = 0;
        st.clients.retain(|c| match c.tx.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                dropped += 1;
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if dropped > 0 {
            self.metrics.dropped.inc_by(dropped);
            tracing::warn!(
                clients = dropped,
                buffer = self.config.client_buffer,
                "dropped event-stream clients that fell behind"
            );
        }
        if st.clients.len() != before {
            self.metrics.clients.set(st.clients.len() as i64);
        }
    }

    /// Registers a client. Returns what it must be sent first (a snapshot, or the frames after
    /// `last_event_id`) and the queue of live frames after those.
    pub fn subscribe(
        &self,
        last_event_id: Option<&str>,
    ) -> Result<(Vec<Bytes>, mpsc::Receiver<Bytes>), TooManyClients> {
        let mut st = self.state.lock().expect("hub lock");
        st.clients.retain(|c| !c.tx.is_closed());
        if st.clients.len() >= self.config.max_clients {
            return Err(TooManyClients(self.config.max_clients));
        }
        let resume_from = last_event_id
            .and_then(|id| id.split_once('-'))
            .filter(|(epoch, _)| epoch.parse() == Ok(self.epoch))
            .and_then(|(_, seq)| seq.parse::<u64>().ok())
            .filter(|seq| *seq <= st.seq);
        let first = match resume_from {
            Some(seq) if seq == st.seq => Vec::new(),
            Some(seq) if st.ring.front().is_some_and(|(first, _)| *first <= seq + 1) => st
                .ring
                .iter()
                .filter(|(s, _)| *s > seq)
                .map(|(_, f)| f.clone())
                .collect(),
            _ => vec![self.snapshot(&st)],
        };
        let (tx, rx) = mpsc::channel(self.config.client_buffer);
        st.clients.push(Client { tx });
        self.metrics.clients.set(st.clients.len() as i64);
        Ok((first, rx))
    }

    fn snapshot(&self, st: &State) -> Bytes {
        let view = &st.view;
        let series: Vec<serde_json::Value> = view
            .buckets()
            .map(|b| {
                json!([
                    b.t, b.n, b.t_min, b.t_max, b.t_sum, b.h_min, b.h_max, b.h_sum
                ])
            })
            .collect();
        event(
            &self.id(st.seq),
            "snapshot",
            &json!({
                "hot_temperature": self.config.hot_temperature,
                "window_seconds": view.limits().window_seconds,
                "alert_history": view.limits().alert_history,
                "sensors": view.sensors(),
                "series": series,
                "alerts": view.alerts(),
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};

    fn hub(client_buffer: usize, replay_bytes: usize) -> Hub {
        let metrics = HubMetrics {
            clients: IntGauge::new("c", "c").unwrap(),
            dropped: IntCounter::new("d", "d").unwrap(),
            frames: IntCounter::new("f", "f").unwrap(),
            readings: IntCounter::new("r", "r").unwrap(),
            sensors: IntGauge::new("s", "s").unwrap(),
            reading_delay: Histogram::with_opts(HistogramOpts::new("l", "l")).unwrap(),
        };
        Hub::new(
            HubConfig {
                limits: Limits {
                    window_seconds: 300,
                    alert_history: 10,
                    max_sensors: 100,
                },
                client_buffer,
                max_clients: 2,
                replay_bytes,
                hot_temperature: 30.0,
            },
            metrics,
        )
    }

    fn reading(sensor: u32) -> Update {
        Update::Reading(SensorReading::new(
            sensor,
            20.0 + sensor as f64,
            50.0,
            Utc::now(),
        ))
    }

    fn text(frame: &Bytes) -> String {
        String::from_utf8(frame.to_vec()).unwrap()
    }

    /// The `id:` of a frame.
    fn id_of(frame: &Bytes) -> String {
        text(frame)
            .lines()
            .find_map(|l| l.strip_prefix("id: ").map(str::to_owned))
            .unwrap()
    }

    fn sensors_in(frames: &[Bytes]) -> Vec<u64> {
        frames
            .iter()
            .flat_map(|f| {
                let t = text(f);
                let data = t.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                let v: serde_json::Value = serde_json::from_str(data).unwrap();
                v["readings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["sensor_id"].as_u64().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn a_new_client_gets_a_snapshot_then_every_frame_once() {
        let hub = hub(16, 1 << 20);
        hub.apply([reading(1)]);
        let (first, mut rx) = hub.subscribe(None).unwrap();
        assert_eq!(first.len(), 1);
        assert!(text(&first[0]).contains("event: snapshot"));
        assert!(text(&first[0]).contains("\"sensor_id\":1"));
        hub.apply([reading(2), reading(3)]);
        let live = rx.try_recv().unwrap();
        assert_eq!(sensors_in(&[live]), vec![2, 3]);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn last_event_id_resumes_without_gaps_or_duplicates() {
        let hub = hub(16, 1 << 20);
        let (_, mut rx) = hub.subscribe(None).unwrap();
        hub.apply([reading(1)]);
        let seen = rx.try_recv().unwrap();
        drop(rx);
        hub.apply([reading(2)]);
        hub.apply([reading(3)]);
        let (replay, mut rx) = hub.subscribe(Some(&id_of(&seen))).unwrap();
        assert_eq!(sensors_in(&replay), vec![2, 3]);
        hub.apply([reading(4)]);
        assert_eq!(sensors_in(&[rx.try_recv().unwrap()]), vec![4]);
        // Up to date: nothing to replay.
        drop(rx);
        let (replay, _rx) = hub.subscribe(Some(&format!("{}-4", hub.epoch))).unwrap();
        assert!(replay.is_empty(), "up to date: nothing to replay");
    }

    #[test]
    fn an_id_too_old_or_of_another_epoch_gets_a_snapshot() {
        let hub = hub(16, 1);
        hub.apply([reading(1)]);
        hub.apply([reading(2)]);
        hub.apply([reading(3)]);
        let (first, _rx) = hub.subscribe(Some(&format!("{}-1", hub.epoch))).unwrap();
        assert!(
            text(&first[0]).contains("event: snapshot"),
            "frame 2 is gone"
        );
        drop(_rx);
        let other_epoch = format!("{}-3", hub.epoch.wrapping_add(1));
        let (first, _rx) = hub.subscribe(Some(&other_epoch)).unwrap();
        assert!(text(&first[0]).contains("event: snapshot"), "another epoch");
    }

    #[test]
    fn a_client_that_does_not_read_is_dropped_when_its_buffer_is_full() {
        let hub = hub(2, 1 << 20);
        let (_, stuck) = hub.subscribe(None).unwrap();
        let (_, mut reading_client) = hub.subscribe(None).unwrap();
        assert_eq!(hub.subscribe(None).unwrap_err(), TooManyClients(2));
        for i in 0..5 {
            hub.apply([reading(i)]);
            while reading_client.try_recv().is_ok() {}
        }
        assert_eq!(hub.metrics.dropped.get(), 1);
        assert_eq!(hub.metrics.clients.get(), 1);
        // The stuck client's queue holds what it had: the sender is gone, so it ends there.
        let mut stuck = stuck;
        let mut queued = 0;
        while stuck.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, 2);
        assert!(stuck.is_closed());
        // Its slot is free again.
        assert!(hub.subscribe(None).is_ok());
    }
}
