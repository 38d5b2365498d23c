//! The accounts service against a real PostgreSQL and a real broker: the seed's rules, register
//! and login and lockout, each event in `events` and on `login-events` once per `event_id`, the
//! outbox across a broker outage and a restart before relaying, a database outage, and a
//! password that never shows up in a log line, a span or an event.

use events::topics;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use system_tests::proxy::Proxy;
use system_tests::topics::read_all;
use system_tests::{Broker, Collector, Postgres, Service, eventually};

const PASSWORD: &str = "Zebra!Quartz42";

async fn post(service: &Service, path: &str, body: &Value) -> (u16, Value) {
    let res = system_tests::http()
        .post(service.url("http", path).await)
        .json(body)
        .send()
        .await
        .expect("POST");
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

fn creds(username: &str, password: &str) -> Value {
    json!({"username": username, "password": password})
}

fn start(test: &str, broker: &Broker, pg: &Postgres, env: &[(&str, &str)]) -> Service {
    let mut all = vec![("DATABASE_URL", pg.url.as_str())];
    all.extend_from_slice(env);
    Service::start(test, "accounts", broker, &all)
}

/// `(event_id, event_type)` of the `events` table, in commit order.
async fn table_events(pg: &Postgres) -> Vec<(String, String, String)> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect(&pg.url)
        .await
        .expect("connect");
    let rows: Vec<(uuid::Uuid, String, String)> =
        sqlx::query_as("SELECT event_id, event_type, username FROM events ORDER BY occurred_at")
            .fetch_all(&pool)
            .await
            .expect("events");
    rows.into_iter()
        .map(|(id, t, u)| (id.to_string(), t, u))
        .collect()
}

/// The events on `login-events`, de-duplicated by `event_id` (checking duplicates are identical).
async fn topic_events(bootstrap: &str) -> BTreeMap<String, Value> {
    let mut by_id = BTreeMap::new();
    for r in read_all(bootstrap, topics::LOGIN_EVENTS).await {
        let v = r.json();
        let id = v["event_id"].as_str().expect("event_id").to_owned();
        assert_eq!(
            r.key.as_deref(),
            v["username"].as_str(),
            "keyed by username"
        );
        if let Some(first) = by_id.insert(id, v.clone()) {
            assert_eq!(first, v, "a republished event is the same event");
        }
    }
    by_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_rule_is_named_and_bad_requests_get_a_json_reason() {
    let broker = Broker::start_system();
    let pg = Postgres::start("accounts_rules");
    let accounts = start("accounts_rules", &broker, &pg, &[]);
    accounts.wait_ready().await;
    for (username, password, rules) in [
        ("abc", "Secr3t!pass", vec!["username/length"]),
        ("abcdefghijklmnop", "Secr3t!pass", vec!["username/length"]),
        ("bad name", "Secr3t!pass", vec!["username/charset"]),
        ("carol", "S3t!a", vec!["password/length"]),
        ("carol", "secr3t!pass", vec!["password/uppercase"]),
        ("carol", "SECR3T!PASS", vec!["password/lowercase"]),
        ("carol", "Secret!pass", vec!["password/digit"]),
        ("carol", "Secr3tpass", vec!["password/special"]),
        (
            "x",
            "x",
            vec![
                "username/length",
                "password/length",
                "password/uppercase",
                "password/digit",
                "password/special",
            ],
        ),
    ] {
        let (status, body) = post(&accounts, "/register", &creds(username, password)).await;
        assert_eq!(status, 422, "{username}/{password}: {body}");
        assert_eq!(body["error"], "validation_failed");
        let named: Vec<String> = body["violations"]
            .as_array()
            .expect("violations")
            .iter()
            .map(|v| {
                format!(
                    "{}/{}",
                    v["field"].as_str().unwrap(),
                    v["rule"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(named, rules, "{body}");
        assert!(
            !body.to_string().contains(password),
            "no password in the answer: {body}"
        );
    }
    let (status, _) = post(&accounts, "/register", &creds("carol", "Secr3t!pass")).await;
    assert_eq!(status, 201);
    let (status, body) = post(&accounts, "/register", &creds("carol", "0ther!Pass")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("username_taken"))
    );
    let (status, body) = post(&accounts, "/register", &json!({"username": "dave1"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("invalid_shape"))
    );
    let res = system_tests::http()
        .post(accounts.url("http", "/login").await)
        .header("content-type", "application/json")
        .body(format!(
            "{{\"username\": \"carol\", \"password\": \"{PASSWORD}"
        ))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status().as_u16(), 400);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"], "malformed_json");
    assert!(!body.to_string().contains(PASSWORD), "{body}");
    let page = system_tests::http()
        .get(accounts.url("http", "/").await)
        .send()
        .await
        .expect("GET /");
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("<form id=\"register\"") && html.contains("<form id=\"login\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logins_lockouts_and_events_land_in_the_table_and_on_the_topic_without_the_password() {
    let test = "accounts_flow";
    let broker = Broker::start_system();
    let pg = Postgres::start(test);
    let collector = Collector::start().await;
    let accounts = start(
        test,
        &broker,
        &pg,
        &[
            ("ACCOUNTS_LOCKOUT_THRESHOLD", "3"),
            ("ACCOUNTS_LOCKOUT_MS", "3000"),
            ("RUST_LOG", "debug,h2=info,tower=info,hyper=info,sqlx=debug"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint),
        ],
    );
    accounts.wait_ready().await;
    let (status, _) = post(&accounts, "/register", &creds("alice", PASSWORD)).await;
    assert_eq!(status, 201);
    let (status, body) = post(&accounts, "/login", &creds("alice", PASSWORD)).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("logged_in")));
    // An unknown user and a wrong password get the same answer.
    let unknown = post(&accounts, "/login", &creds("mallory", PASSWORD)).await;
    let wrong = post(&accounts, "/login", &creds("alice", "Wrong!Pass1")).await;
    assert_eq!(unknown, wrong);
    assert_eq!(unknown.0, 401);
    let metrics = accounts.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "accounts_password_verifications_total{against=\"dummy\"} 1"),
        "the unknown user's password was verified against the dummy hash:\n{metrics}"
    );
    // Two more failures: the third in a row locks the account; even the right password is refused.
    post(&accounts, "/login", &creds("alice", "Wrong!Pass2")).await;
    let (status, body) = post(&accounts, "/login", &creds("alice", "Wrong!Pass3")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (423, Some("account_locked")),
        "{body}"
    );
    let (status, _) = post(&accounts, "/login", &creds("alice", PASSWORD)).await;
    assert_eq!(status, 423);
    // The lock expires by itself.
    eventually("the lock to expire", Duration::from_secs(15), || async {
        let (status, _) = post(&accounts, "/login", &creds("alice", PASSWORD)).await;
        (status == 200).then_some(())
    })
    .await;

    let expected = [
        "new_user_created",
        "login_succeeded",
        "unknown_user",
        "incorrect_password",
        "incorrect_password",
        "incorrect_password",
        "account_locked",
        "login_succeeded",
    ];
    let table = table_events(&pg).await;
    let types: Vec<&str> = table.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(types, expected);
    let topic = eventually(
        "every event on login-events",
        Duration::from_secs(20),
        || async {
            let t = topic_events(&broker.bootstrap).await;
            (t.len() >= table.len()).then_some(t)
        },
    )
    .await;
    let table_ids: HashSet<&str> = table.iter().map(|(id, ..)| id.as_str()).collect();
    let topic_ids: HashSet<&str> = topic.keys().map(String::as_str).collect();
    assert_eq!(
        table_ids, topic_ids,
        "the same events, once each by event_id"
    );
    // In order per key: alice's events on the topic come in the order they were committed.
    let alice: Vec<String> = read_all(&broker.bootstrap, topics::LOGIN_EVENTS)
        .await
        .iter()
        .filter(|r| r.key.as_deref() == Some("alice"))
        .map(|r| {
            r.json()["event_type"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let alice_expected: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|t| *t != "unknown_user")
        .collect();
    assert_eq!(alice, alice_expected);
    // The relay continued each request's trace.
    let spans = eventually("the relay's spans", Duration::from_secs(10), || async {
        let spans = collector.spans();
        spans
            .iter()
            .any(|s| s.name == "login-events publish")
            .then_some(spans)
    })
    .await;
    let register_trace = spans
        .iter()
        .find(|s| s.name == "POST /register")
        .map(|s| s.trace_id.clone())
        .expect("the register span");
    assert!(
        spans
            .iter()
            .any(|s| s.name == "login-events publish" && s.trace_id == register_trace),
        "new_user_created was published in the registration's trace"
    );

    // The password: in no log line (DEBUG included), no span attribute, no event, no row.
    let logs = std::fs::read_to_string(accounts.log_path()).expect("log");
    assert!(logs.len() > 1000, "the log was captured");
    assert!(!logs.contains(PASSWORD), "the password is in the log");
    for s in &spans {
        for (k, v) in &s.attributes {
            assert!(
                !v.contains(PASSWORD),
                "span {} attribute {k} holds the password",
                s.name
            );
        }
    }
    for e in topic.values() {
        assert!(!e.to_string().contains(PASSWORD));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_committed_while_the_broker_is_down_arrive_once_it_is_back() {
    let test = "accounts_broker_outage";
    let (port, front) = (
        system_tests::broker::free_port(),
        system_tests::broker::free_port(),
    );
    // Clients reach the broker only through a proxy the test can cut: the broker itself keeps
    // running (the local broker keeps its records in memory), as a real Kafka's data outlives
    // an outage.
    let proxy = Proxy::start(
        format!("127.0.0.1:{front}").parse().expect("addr"),
        format!("127.0.0.1:{port}").parse().expect("addr"),
    )
    .await;
    let broker = Broker::start_advertising(port, front);
    broker.create_system_topics();
    let pg = Postgres::start(test);
    let accounts = start(test, &broker, &pg, &[]);
    accounts.wait_ready().await;
    post(&accounts, "/register", &creds("before1", PASSWORD)).await;
    eventually("the first event", Duration::from_secs(20), || async {
        (topic_events(&broker.bootstrap).await.len() == 1).then_some(())
    })
    .await;
    proxy.cut();
    // The broker is unreachable: registrations still succeed, and the service stays ready (its
    // events wait in the outbox), while /readyz shows the broker's state.
    for i in 0..5 {
        let (status, body) = post(
            &accounts,
            "/register",
            &creds(&format!("during{i}"), PASSWORD),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    eventually(
        "/readyz to show the broker gone, and stay 200",
        Duration::from_secs(20),
        || async {
            let (status, body) = accounts.readyz().await;
            assert_eq!(status, 200, "{body}");
            (body["checks"]["broker"] != "ok").then_some(())
        },
    )
    .await;
    assert!(
        accounts.metric("accounts_outbox_pending").await >= 5.0,
        "the events wait in the outbox"
    );
    proxy.restore();
    let events = eventually("all six events", Duration::from_secs(60), || async {
        let t = topic_events(&broker.bootstrap).await;
        (t.len() >= 6).then_some(t)
    })
    .await;
    let table: HashSet<String> = table_events(&pg)
        .await
        .into_iter()
        .map(|(id, ..)| id)
        .collect();
    let topic: HashSet<String> = events.keys().cloned().collect();
    assert_eq!(
        table, topic,
        "every committed event arrived, none with a different event_id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_between_commit_and_relay_loses_nothing() {
    let test = "accounts_restart";
    let broker = Broker::start_system();
    let pg = Postgres::start(test);
    // Committed, never relayed: this process has no relay.
    let first = start(test, &broker, &pg, &[("ACCOUNTS_RELAY_ENABLED", "false")]);
    first.wait_ready().await;
    for i in 0..4 {
        post(&first, "/register", &creds(&format!("early{i}"), PASSWORD)).await;
    }
    post(&first, "/login", &creds("early0", "Wrong!Pass1")).await;
    assert!(topic_events(&broker.bootstrap).await.is_empty());
    first.signal("KILL");
    let second = start(test, &broker, &pg, &[]);
    second.wait_ready().await;
    let table: HashSet<String> = table_events(&pg)
        .await
        .into_iter()
        .map(|(id, ..)| id)
        .collect();
    assert_eq!(table.len(), 5);
    let events = eventually("the outbox relayed", Duration::from_secs(30), || async {
        let t = topic_events(&broker.bootstrap).await;
        (t.len() >= 5).then_some(t)
    })
    .await;
    assert_eq!(events.keys().cloned().collect::<HashSet<_>>(), table);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_is_503_and_loses_nothing() {
    let test = "accounts_db_outage";
    let broker = Broker::start_system();
    let pg = Postgres::start(test);
    let accounts = start(test, &broker, &pg, &[]);
    accounts.wait_ready().await;
    post(&accounts, "/register", &creds("before", PASSWORD)).await;
    pg.stop();
    let (status, body) = post(&accounts, "/register", &creds("during", PASSWORD)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    let (status, body) = post(&accounts, "/login", &creds("before", PASSWORD)).await;
    assert_eq!(status, 503, "{body}");
    eventually(
        "/readyz to name the database",
        Duration::from_secs(15),
        || async {
            let (status, body) = accounts.readyz().await;
            (status == 503
                && body["checks"]["database"]
                    .as_str()
                    .is_some_and(|r| r != "ok"))
            .then_some(())
        },
    )
    .await;
    pg.resume();
    accounts.wait_ready().await;
    let (status, _) = post(&accounts, "/login", &creds("before", PASSWORD)).await;
    assert_eq!(
        status, 200,
        "the user registered before the outage is there"
    );
    let (status, _) = post(&accounts, "/register", &creds("during", PASSWORD)).await;
    assert_eq!(status, 201, "the refused registration changed nothing");
}
