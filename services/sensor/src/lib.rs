//! The sensor service: simulated weather sensors (see [`weather`]) publishing readings to
//! `sensor-readings`, keyed by `sensor_id`, plus an API to inject a reading of one's own
//! (`POST /readings`, to make a sensor hot in a demo) and to see the fleet (`GET /sensors`).

pub mod weather;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use events::{SensorReading, topics};
use platform::config::{ConfigError, Env};
use platform::http::{ApiError, JsonBody};
use platform::kafka::{ClientDefaults, Publisher};
use platform::{Runtime, ServiceConfig};
use prometheus::{IntCounterVec, register_int_counter_vec_with_registry};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use weather::Sensor;

pub const SERVICE: &str = "sensor";

/// Readings published and not yet acknowledged, at most.
const MAX_IN_FLIGHT: usize = 4096;

/// How long the simulator's producer fills a batch, unless `KAFKA_LINGER_MS` says otherwise (the
/// other services keep the platform's 10 ms). librdkafka sends one produce request per partition
/// and batch: at 1,000 readings/s over six partitions, the simulator sent 525 requests a second
/// with 5 ms and 205 with 20 ms. The simulated readings wait for no one (a `POST /readings`
/// answers up to 20 ms later), and the dashboard redraws four times a second. On the local
/// broker, whose cost is per request and per stored batch, this took the sensor bench's reading →
/// client event p99 from 169–178 ms to about 62 ms (`docs/benchmarks.md`, "The sensor path").
pub const DEFAULT_LINGER: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub service: ServiceConfig,
    /// `HTTP_ADDR`: where `POST /readings` and `GET /sensors` are served.
    pub http_addr: SocketAddr,
    /// `SENSOR_COUNT`: how many sensors are simulated (0: none, the API only).
    pub count: u32,
    /// `SENSOR_FIRST_ID`: the first sensor's id; the others follow.
    pub first_id: u32,
    /// `SENSOR_INTERVAL_MS`: how often each sensor reports.
    pub interval: Duration,
    /// `SENSOR_RATE`: readings per second over the whole fleet; when set, it replaces
    /// `SENSOR_INTERVAL_MS` (each sensor then reports every `SENSOR_COUNT / SENSOR_RATE` s).
    pub rate: Option<f64>,
    /// `SENSOR_HOT_SHARE`: the share of sensors whose days cross 30 °C.
    pub hot_share: f64,
    /// `SENSOR_HUMID_SHARE`: the share of sensors near the humidity threshold.
    pub humid_share: f64,
    /// `SENSOR_DAY_SECONDS`: the length of a simulated day.
    pub day: Duration,
    /// `SENSOR_SEED`: makes the simulation repeatable.
    pub seed: Option<u64>,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let share = |var: &str, default: f64| {
            env.checked(var, default, "a share from 0 to 1", |v: &f64| {
                (0.0..=1.0).contains(v)
            })
        };
        let config = Self {
            service: ServiceConfig::from_env_with(
                env,
                SERVICE,
                ClientDefaults {
                    linger: DEFAULT_LINGER,
                    ..ClientDefaults::default()
                },
            )?,
            http_addr: env.addr("HTTP_ADDR", "0.0.0.0:8080")?,
            count: env.checked("SENSOR_COUNT", 20, "from 0 to 100000", |n: &u32| {
                *n <= 100_000
            })?,
            first_id: env.or("SENSOR_FIRST_ID", 1, "a whole number")?,
            interval: env.millis("SENSOR_INTERVAL_MS", Duration::from_secs(1))?,
            rate: env.optional("SENSOR_RATE", "readings per second")?,
            hot_share: share("SENSOR_HOT_SHARE", 0.2)?,
            humid_share: share("SENSOR_HUMID_SHARE", 0.1)?,
            day: Duration::from_secs(env.checked(
                "SENSOR_DAY_SECONDS",
                600,
                "seconds, at least 10",
                |s: &u64| *s >= 10,
            )?),
            seed: env.optional("SENSOR_SEED", "a whole number")?,
        };
        if config.hot_share + config.humid_share > 1.0 {
            return Err(ConfigError::Invalid {
                var: "SENSOR_HUMID_SHARE".into(),
                value: config.humid_share.to_string(),
                expected: "at most 1 - SENSOR_HOT_SHARE".into(),
            });
        }
        if config.interval.is_zero() {
            return Err(ConfigError::Invalid {
                var: "SENSOR_INTERVAL_MS".into(),
                value: "0".into(),
                expected: "a positive number of milliseconds".into(),
            });
        }
        if let Some(rate) = config.rate
            && !(rate > 0.0 && rate <= 1_000_000.0)
        {
            return Err(ConfigError::Invalid {
                var: "SENSOR_RATE".into(),
                value: rate.to_string(),
                expected: "readings per second, above 0 and at most 1000000".into(),
            });
        }
        Ok(config)
    }

    /// Readings per second over the fleet.
    pub fn readings_per_second(&self) -> f64 {
        self.rate
            .unwrap_or_else(|| f64::from(self.count) / self.interval.as_secs_f64())
    }
}

/// What the simulator and the API share.
#[derive(Clone)]
struct Readings {
    publisher: Publisher,
    published: IntCounterVec,
    fleet: Arc<Mutex<Vec<Sensor>>>,
}

impl Readings {
    async fn publish(&self, reading: &SensorReading, source: &str) -> Result<(), ApiError> {
        let payload = serde_json::to_vec(reading).expect("events serialise");
        match self
            .publisher
            .publish(topics::SENSOR_READINGS, &reading.key(), &payload)
            .await
        {
            Ok(_) => {
                self.published.with_label_values(&[source, "ok"]).inc();
                Ok(())
            }
            Err(e) => {
                self.published.with_label_values(&[source, "error"]).inc();
                tracing::warn!(error = %e, sensor_id = reading.sensor_id, "reading not published");
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the reading could not be stored; retry later",
                ))
            }
        }
    }
}

/// A reading posted to the API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewReading {
    sensor_id: u32,
    temperature: f64,
    humidity: f64,
    /// Defaults to now.
    timestamp: Option<DateTime<Utc>>,
}

async fn post_reading(
    State(readings): State<Readings>,
    JsonBody(new): JsonBody<NewReading>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    events::validate_values(new.temperature, new.humidity).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            e.to_string(),
        )
    })?;
    let reading = SensorReading::new(
        new.sensor_id,
        new.temperature,
        new.humidity,
        new.timestamp.unwrap_or_else(Utc::now),
    );
    readings.publish(&reading, "api").await?;
    Ok((StatusCode::ACCEPTED, Json(json!(reading))))
}

async fn list_sensors(State(readings): State<Readings>) -> Json<serde_json::Value> {
    let fleet = readings.fleet.lock().expect("fleet lock");
    Json(json!({ "sensors": *fleet }))
}

/// The sensor service, built: ports bound and producer made. The simulator starts with
/// `run_until_stopped`.
pub struct Application {
    rt: Runtime,
    http: platform::http::Server,
    readings: Readings,
    config: Config,
}

impl Application {
    pub async fn build(
        config: Config,
        shutdown: &CancellationToken,
    ) -> Result<Self, platform::Error> {
        let rt = Runtime::start(
            &config.service,
            events::topology::of(SERVICE).written(),
            shutdown.clone(),
        )
        .await?;
        let published = register_int_counter_vec_with_registry!(
            "sensor_readings_published_total",
            "Readings published, by source (simulator or api) and result.",
            &["source", "result"],
            rt.metrics.registry()
        )
        .expect("valid metric");
        let mut rng = config
            .seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        let fleet = weather::fleet(
            config.first_id,
            config.count,
            config.hot_share,
            config.humid_share,
            &mut rng,
        );
        let readings = Readings {
            publisher: rt.publisher(),
            published,
            fleet: Arc::new(Mutex::new(fleet)),
        };
        let router = platform::http::api(
            Router::new()
                .route("/readings", post(post_reading))
                .route("/sensors", get(list_sensors))
                .with_state(readings.clone()),
            4096,
        );
        let http = rt
            .serve_api(config.http_addr, router, shutdown.clone())
            .await?;
        Ok(Self {
            rt,
            http,
            readings,
            config,
        })
    }

    pub fn ops_addr(&self) -> SocketAddr {
        self.rt.ops_addr()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) {
        let simulator = (self.config.count > 0).then(|| {
            tokio::spawn(simulate(
                self.readings.clone(),
                self.config.clone(),
                shutdown.clone(),
            ))
        });
        shutdown.cancelled().await;
        if let Some(task) = simulator {
            let _ = task.await;
        }
        self.http.stop().await;
        self.rt.stop().await;
    }
}

/// How often the simulator wakes to publish what is due.
const TICK: Duration = Duration::from_millis(10);

/// Publishes the fleet's readings at the configured rate, round robin over the sensors, each
/// moved on by the time since its previous reading. At most [`MAX_IN_FLIGHT`] readings wait for
/// their acknowledgement; past that the simulator waits, and falls behind rather than queueing.
async fn simulate(readings: Readings, config: Config, shutdown: CancellationToken) {
    let rate = config.readings_per_second();
    let count = config.count as usize;
    let mut rng = config
        .seed
        .map_or_else(fastrand::Rng::new, |s| fastrand::Rng::with_seed(s ^ 0x5eed));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let started = Instant::now();
    let day = config.day.as_secs_f64();
    let mut last_step = vec![started; count];
    let mut next = 0usize;
    let mut emitted: u64 = 0;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(
        sensors = count,
        readings_per_second = rate,
        hot_share = config.hot_share,
        "sensor simulator started"
    );
    'run: loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        // After a stall (the broker away), carry on from now instead of bursting to catch up.
        if due.saturating_sub(emitted) as f64 > rate.max(1.0) {
            emitted = due.saturating_sub(rate.max(1.0) as u64);
        }
        while emitted < due {
            let permit = tokio::select! {
                () = shutdown.cancelled() => break 'run,
                p = in_flight.clone().acquire_owned() => p.expect("semaphore open"),
            };
            let now = Instant::now();
            let day_fraction = (now - started).as_secs_f64() % day / day;
            let reading = {
                let mut fleet = readings.fleet.lock().expect("fleet lock");
                let sensor = &mut fleet[next];
                sensor.step(
                    (now - last_step[next]).as_secs_f64(),
                    day_fraction,
                    &mut rng,
                );
                last_step[next] = now;
                let (temperature, humidity) = sensor.reported();
                SensorReading::new(sensor.sensor_id, temperature, humidity, Utc::now())
            };
            next = (next + 1) % count;
            emitted += 1;
            let readings = readings.clone();
            tokio::spawn(async move {
                // A failure is counted and logged by `publish`; the next reading follows anyway.
                let _ = readings.publish(&reading, "simulator").await;
                drop(permit);
            });
        }
    }
    // Everything spawned finishes (or fails) before the producer is flushed.
    let _ = in_flight.acquire_many(MAX_IN_FLIGHT as u32).await;
    tracing::info!(readings = emitted, "sensor simulator stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_rate_comes_from_the_interval_unless_set() {
        let base = ("KAFKA_BOOTSTRAP_SERVERS", "k:9092");
        let c = Config::from_env(&Env::from_pairs([base])).expect("defaults");
        assert_eq!(c.readings_per_second(), 20.0);
        let c = Config::from_env(&Env::from_pairs([
            base,
            ("SENSOR_COUNT", "1000"),
            ("SENSOR_INTERVAL_MS", "250"),
        ]))
        .expect("valid");
        assert_eq!(c.readings_per_second(), 4000.0);
        let c =
            Config::from_env(&Env::from_pairs([base, ("SENSOR_RATE", "50000")])).expect("valid");
        assert_eq!(c.readings_per_second(), 50_000.0);
        for (var, value) in [
            ("SENSOR_RATE", "0"),
            ("SENSOR_HOT_SHARE", "1.5"),
            ("SENSOR_INTERVAL_MS", "0"),
            ("SENSOR_DAY_SECONDS", "1"),
        ] {
            let err = Config::from_env(&Env::from_pairs([base, (var, value)])).unwrap_err();
            assert!(err.to_string().starts_with(var), "{var}: {err}");
        }
    }

    #[test]
    fn the_simulator_lingers_longer_unless_told() {
        let base = ("KAFKA_BOOTSTRAP_SERVERS", "k:9092");
        let c = Config::from_env(&Env::from_pairs([base])).expect("defaults");
        assert_eq!(c.service.kafka.linger, DEFAULT_LINGER);
        assert_eq!(
            c.service.kafka.producer_config().get("linger.ms"),
            Some("20")
        );
        let c = Config::from_env(&Env::from_pairs([base, ("KAFKA_LINGER_MS", "1")])).expect("set");
        assert_eq!(c.service.kafka.linger, Duration::from_millis(1));
        assert_eq!(
            c.service.kafka.producer_config().get("linger.ms"),
            Some("1")
        );
    }
}
