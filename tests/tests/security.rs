//! Authentication and encryption for real: every service and the console tool
//! log in with their own SCRAM-SHA-512 credentials over TLS to a broker that requires them
//! (`system_tests::secure`), and the system works end to end. A wrong password, plaintext to the
//! TLS port and an unknown CA are each refused, leave the service unready with a `/readyz` reason
//! that names the problem, and show the password nowhere.
//!
//! Which side these prove: the client's. The local broker answers a failed login with an error but
//! does not close the connection, and it enforces no ACLs; Strimzi's Kafka does both in the
//! cluster (README, "Security").

use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;
use system_tests::deploy::{deployments, render};
use system_tests::secure::{MtlsBroker, SecureBroker, User};
use system_tests::service::binary;
use system_tests::{Service, eventually, http, order_body};

/// `name` logging in as `user`, with `extra` settings over the login's.
fn start(
    test: &str,
    name: &str,
    broker: &SecureBroker,
    user: &User,
    extra: &[(&str, &str)],
) -> Service {
    let login = broker.client_env(user);
    let mut env: Vec<(&str, &str)> = login
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.extend_from_slice(extra);
    Service::start_with(test, name, &broker.bootstrap, &env)
}

/// Ready, and its broker check passed: accounts is ready without the broker (its outbox waits),
/// so readiness alone does not show a login.
async fn ready_and_logged_in(service: &Service) {
    service.wait_ready().await;
    eventually(
        &format!("{} to log in", service.name),
        Duration::from_secs(60),
        || async { (service.readyz().await.1["checks"]["broker"] == "ok").then_some(()) },
    )
    .await;
}

fn assert_no_secret(service: &Service, password: &str) {
    let logs = std::fs::read_to_string(service.log_path()).expect("log file");
    assert!(
        !logs.contains(password),
        "{} logged its password: {}",
        service.name,
        service.log_path().display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_logs_in_with_its_own_credentials_over_tls() {
    let test = "security_scram";
    let users: Vec<User> = events::topology::SERVICES
        .iter()
        .map(|a| User::new(a.service))
        .chain([User::new("kafka-console")])
        .collect();
    let user = |name: &str| users.iter().find(|u| u.name == name).expect("a user");
    let broker = SecureBroker::start(test, &users).await;
    let accounts_db = system_tests::Postgres::start("security_scram_accounts");

    // The password by file for one service, by variable for the rest.
    let password_file = system_tests::log_dir(test).join("payment.password");
    std::fs::write(&password_file, format!("{}\n", user("payment").password)).expect("write");
    let password_file = password_file.to_string_lossy().into_owned();
    let mut services = Vec::new();
    for access in events::topology::SERVICES {
        let name = access.service;
        let extra: Vec<(&str, &str)> = match name {
            "loadgen" => continue, // a command (see below)
            "payment" => vec![
                ("KAFKA_SASL_PASSWORD", ""),
                ("KAFKA_SASL_PASSWORD_FILE", &password_file),
                ("PAYMENT_GATEWAY_LATENCY_MS", "1"),
            ],
            "accounts" => vec![("DATABASE_URL", &accounts_db.url)],
            "sensor" => vec![("SENSOR_COUNT", "3"), ("SENSOR_INTERVAL_MS", "500")],
            _ => vec![],
        };
        services.push(start(test, name, &broker, user(name), &extra));
    }
    for s in &services {
        ready_and_logged_in(s).await;
        let started = s.logged("kafka clients configured");
        assert_eq!(
            started[0]["security"],
            format!("sasl_ssl (SCRAM-SHA-512 as {})", s.name),
            "{}",
            s.name
        );
    }
    let by_name = |name: &str| services.iter().find(|s| s.name == name).expect("service");

    // Order → payment → notification, through the TLS port with every hop logged in.
    let order_id = system_tests::place_order(
        &by_name("order").url("http", "/orders").await,
        &order_body(7, 1250),
        None,
    )
    .await;
    let notifications = by_name("notification")
        .url("http", &format!("/notifications?order_id={order_id}"))
        .await;
    eventually(
        "the order's notification",
        Duration::from_secs(60),
        || async {
            let body: Value = http()
                .get(&notifications)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (body["notifications"].as_array()?.len() == 1).then_some(())
        },
    )
    .await;

    // Sensor → alerting → dashboard: a hot reading raises an alert the dashboard lists.
    let res = http()
        .post(by_name("sensor").url("http", "/readings").await)
        .json(&json!({"sensor_id": 900, "temperature": 36.5, "humidity": 40.0}))
        .send()
        .await
        .expect("POST /readings");
    assert_eq!(res.status(), 202);
    let alerts = by_name("dashboard").url("http", "/api/alerts").await;
    eventually(
        "the dashboard to list the alert",
        Duration::from_secs(60),
        || async {
            let body: Value = http().get(&alerts).send().await.ok()?.json().await.ok()?;
            body["alerts"]
                .as_array()?
                .iter()
                .any(|a| a["sensor_id"] == 900)
                .then_some(())
        },
    )
    .await;

    // The console tool, as its own user, reads the notification back.
    let mut console = Command::new(binary("kafka-console"));
    console.env_clear();
    for (k, v) in broker.client_env(user("kafka-console")) {
        console.env(k, v);
    }
    let out = console
        .args([
            "consume",
            "-t",
            events::topics::NOTIFICATIONS,
            "--format",
            "%s\\n",
        ])
        .output()
        .expect("kafka-console");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&order_id),
        "kafka-console over SASL_SSL: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The load generator is not run here: it finds the ends of `notifications` with ListOffsets,
    // which tansu 0.6.0's PostgreSQL storage cannot answer on PostgreSQL 15 (its query needs 16's
    // syntax), so that broker closes the connection. Its settings are the platform's `Security`,
    // unit-tested, and its KafkaUser is checked in `tests/tests/deployment.rs`.

    for (s, u) in services.iter().map(|s| (s, user(&s.name))) {
        assert_no_secret(s, &u.password);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_password_plaintext_and_an_unknown_ca_are_refused_and_named() {
    let test = "security_refused";
    let payment = User::new("payment");
    let broker = SecureBroker::start(test, std::slice::from_ref(&payment)).await;
    let other_ca = system_tests::secure::Pki::generate(&system_tests::log_dir(test), "other-pki");
    let wrong = User {
        name: "payment".into(),
        password: "not-the-password-4711".into(),
    };
    let other_ca = other_ca.ca.to_string_lossy().into_owned();
    // What goes wrong, who logs in, the settings that differ, what `/readyz` must name.
    type Case<'a> = (&'a str, &'a User, Vec<(&'a str, &'a str)>, &'a str);
    let cases: [Case; 3] = [
        ("a wrong password", &wrong, vec![], "Authentication"),
        (
            "plaintext to the TLS port",
            &payment,
            vec![
                ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
                ("KAFKA_SSL_CA_LOCATION", ""),
            ],
            "KAFKA_SECURITY_PROTOCOL",
        ),
        (
            "a CA that did not sign the broker's certificate",
            &payment,
            vec![("KAFKA_SSL_CA_LOCATION", &other_ca)],
            "certificate verify failed",
        ),
    ];
    let mut started = Vec::new();
    for (what, user, extra, _) in &cases {
        started.push((*what, start(test, "payment", &broker, user, extra)));
    }
    for ((what, service), (.., names)) in started.iter().zip(&cases) {
        let reason = eventually(
            &format!("{what}: a /readyz reason naming it"),
            Duration::from_secs(60),
            || async {
                let (status, body) = service.readyz().await;
                let reason = body["checks"]["broker"].as_str()?.to_owned();
                (status == 503 && reason.contains(names)).then_some(reason)
            },
        )
        .await;
        for secret in [&payment.password, &wrong.password] {
            assert!(!reason.contains(secret.as_str()), "{what}: {reason}");
        }
        assert_no_secret(service, &payment.password);
        assert_no_secret(service, &wrong.password);
        // Never ready: the group gate stays closed too.
        let (status, body) = service.readyz().await;
        assert_eq!(status, 503, "{what}: {body}");
        assert_ne!(body["checks"]["group"], "ok", "{what}: {body}");
    }
}

/// Where a Deployment mounts the file at `path`: the name of the Secret behind it.
fn secret_of(pod: &Value, path: &str) -> String {
    let container = &pod["containers"][0];
    let mount = container["volumeMounts"]
        .as_array()
        .expect("volume mounts")
        .iter()
        .find(|m| path.starts_with(m["mountPath"].as_str().unwrap_or("-")))
        .unwrap_or_else(|| panic!("{}: nothing mounted at {path}", container["name"]));
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mount's volume");
    volume["secret"]["secretName"]
        .as_str()
        .expect("a Secret")
        .to_owned()
}

/// The chart's Deployments, run: each one's environment starts its real
/// binary against `bootstrap`, with the files the chart mounts made by `file` (given the
/// Deployment's name, the variable, the mounted path and the Secret behind it), and each
/// becomes ready and logged in.
async fn run_the_charts_deployments(
    test: &str,
    deployments: &[&Value],
    bootstrap: &str,
    file: impl Fn(&str, &str, &str, &str) -> String,
) {
    let postgres = system_tests::Postgres::start(&format!("{test}_postgres"));
    let mut services = Vec::new();
    for deployment in deployments {
        let user = deployment["metadata"]["name"].as_str().expect("name");
        let pod = &deployment["spec"]["template"]["spec"];
        let name = pod["containers"][0]["name"]
            .as_str()
            .expect("container name");
        let mut env = Vec::new();
        for e in pod["containers"][0]["env"].as_array().expect("env") {
            let key = e["name"].as_str().expect("name").to_owned();
            if e["valueFrom"]["secretKeyRef"].is_object() {
                assert_eq!(key, "DATABASE_URL", "{name}: the one secret variable");
                env.push((key, postgres.url.clone()));
                continue;
            }
            let value = e["value"].as_str().expect("a literal value").to_owned();
            let value = match key.as_str() {
                "KAFKA_BOOTSTRAP_SERVERS" => bootstrap.to_owned(),
                k if k.ends_with("_FILE") || k.ends_with("_LOCATION") => {
                    file(user, k, &value, &secret_of(pod, &value))
                }
                "KAFKA_SASL_USERNAME" => {
                    assert_eq!(value, user, "{name}: logs in as its KafkaUser");
                    value
                }
                "OTEL_EXPORTER_OTLP_ENDPOINT" => "http://127.0.0.1:9".to_owned(),
                k if k.ends_with("_ADDR") => "127.0.0.1:0".to_owned(),
                _ => value,
            };
            env.push((key, value));
        }
        env.push(("OTEL_SDK_DISABLED".into(), "true".into()));
        services.push(Service::start_exact(test, name, &env));
    }
    for s in &services {
        ready_and_logged_in(s).await;
    }
}

/// The chart in `scram` mode, rendered and run: the mounted files are the test broker's CA and
/// each user's password, and every binary logs in as the KafkaUser the chart names.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_charts_scram_environment_logs_in() {
    let test = "security_chart_scram";
    let objects = render(&["charts/kafka-microservices/ci/scram-values.yaml"]);
    let deployments = deployments(&objects);
    let users: Vec<User> = deployments
        .iter()
        .map(|d| User::new(d["metadata"]["name"].as_str().expect("name")))
        .collect();
    let broker = SecureBroker::start(test, &users).await;
    let dir = system_tests::log_dir(test);
    run_the_charts_deployments(
        test,
        &deployments,
        &broker.bootstrap,
        |user, var, _, secret| match var {
            "KAFKA_SSL_CA_LOCATION" => {
                assert_eq!(secret, "events-cluster-ca-cert");
                broker.pki.ca.to_string_lossy().into_owned()
            }
            "KAFKA_SASL_PASSWORD_FILE" => {
                assert_eq!(secret, user, "{user}: its KafkaUser's Secret");
                let password = &users
                    .iter()
                    .find(|u| u.name == user)
                    .expect("user")
                    .password;
                let file = dir.join(format!("{user}.password"));
                std::fs::write(&file, password).expect("password file");
                file.to_string_lossy().into_owned()
            }
            other => panic!("{user}: an unexpected file variable {other}"),
        },
    )
    .await;
}

/// The chart in `mtls` mode, rendered and run against a broker that requires a client
/// certificate: the mounted files are each user's certificate and key (from the test's clients
/// CA) and the cluster CA, and every binary connects. A client without a certificate is refused,
/// and `/readyz` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_charts_mtls_environment_connects_with_client_certificates() {
    let test = "security_chart_mtls";
    let broker = MtlsBroker::start(test);
    let issued = std::sync::Mutex::new(std::collections::HashMap::new());
    let objects = render(&["charts/kafka-microservices/ci/mtls-values.yaml"]);
    let deployments = deployments(&objects);
    run_the_charts_deployments(
        test,
        &deployments,
        &broker.bootstrap,
        |user, var, _, secret| {
            if var == "KAFKA_SSL_CA_LOCATION" {
                assert_eq!(secret, "events-cluster-ca-cert");
                return broker.cluster_ca.ca.to_string_lossy().into_owned();
            }
            assert_eq!(secret, user, "{user}: its KafkaUser's Secret");
            let mut issued = issued.lock().expect("issued");
            let (cert, key) = issued
                .entry(user.to_owned())
                .or_insert_with(|| broker.clients_ca.issue(user))
                .clone();
            match var {
                "KAFKA_SSL_CERTIFICATE_LOCATION" => cert.to_string_lossy().into_owned(),
                "KAFKA_SSL_KEY_LOCATION" => key.to_string_lossy().into_owned(),
                other => panic!("{user}: an unexpected file variable {other}"),
            }
        },
    )
    .await;
    // stunnel checked each one's certificate: the subject is its KafkaUser.
    let accepted =
        std::fs::read_to_string(system_tests::log_dir(test).join("stunnel.err")).expect("log");
    for user in issued.lock().expect("issued").keys() {
        assert!(
            accepted.contains(&format!("Certificate accepted at depth=0: CN={user}\n")),
            "{user}'s certificate was not presented"
        );
    }
    assert_eq!(issued.lock().expect("issued").len(), deployments.len());

    // Without a client certificate, the TLS handshake is refused.
    let ca = broker.cluster_ca.ca.to_string_lossy().into_owned();
    let anonymous = Service::start_with(
        test,
        "payment",
        &broker.bootstrap,
        &[
            ("KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("KAFKA_SSL_CA_LOCATION", &ca),
        ],
    );
    let reason = eventually(
        "a client without a certificate to be refused and named",
        Duration::from_secs(60),
        || async {
            let (status, body) = anonymous.readyz().await;
            let reason = body["checks"]["broker"].as_str()?.to_owned();
            (status == 503 && reason.contains("certificate required")).then_some(reason)
        },
    )
    .await;
    assert!(reason.contains("last client error"), "{reason}");
}
