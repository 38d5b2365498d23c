//! The Kubernetes artifacts agree with the code: the chart's configuration starts the real binaries,
//! every service has an image and a chart entry, every offline check catches what it is for, and
//! the Makefile fails early and clearly.

use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;
use system_tests::deploy::{CHART, chart_check, deployments, render, tools};
use system_tests::{Broker, Collector, Service, root};

fn service_binaries() -> BTreeSet<String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata json");
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .map(|t| t["name"].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_charts_environment_starts_the_real_binaries() {
    let objects = render(&[]);
    let broker = Broker::start_system();
    let collector = Collector::start().await;
    let postgres = system_tests::Postgres::start("chart_environment_postgres");
    let grace =
        deployments(&objects)[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("grace period");
    for deployment in deployments(&objects) {
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let name = container["name"].as_str().expect("container name");
        let env: Vec<(String, String)> = container["env"]
            .as_array()
            .expect("env list")
            .iter()
            .map(|e| {
                let key = e["name"].as_str().expect("name").to_owned();
                // A secret is referenced, never written: the database URL comes from the
                // CloudNativePG Secret; here, from the test's own PostgreSQL.
                if let Some(secret) = e["valueFrom"]["secretKeyRef"].as_object() {
                    assert_eq!(
                        key, "DATABASE_URL",
                        "{name}: the one secret is the database URL"
                    );
                    assert_eq!(secret["name"], "accounts-db-app");
                    assert_eq!(secret["key"], "uri");
                    return (key, postgres.url.clone());
                }
                let value = e["value"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: {key} has no literal value"));
                // Only the addresses of the broker and the collector differ outside the cluster.
                let value = match key.as_str() {
                    "KAFKA_BOOTSTRAP_SERVERS" => broker.bootstrap.clone(),
                    "OTEL_EXPORTER_OTLP_ENDPOINT" => collector.endpoint.clone(),
                    _ => value.to_owned(),
                };
                (key, value)
            })
            .collect();
        let ops_port = container["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == "ops")
            .and_then(|p| p["containerPort"].as_u64())
            .expect("an ops port");
        let ops_addr = env
            .iter()
            .find(|(k, _)| k == "OPS_ADDR")
            .map(|(_, v)| v.clone())
            .expect("OPS_ADDR");
        assert!(
            ops_addr.ends_with(&format!(":{ops_port}")),
            "{name}: OPS_ADDR {ops_addr} is the probed port {ops_port}"
        );
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap_or(0);
        assert!(
            grace > 20 + pre_stop,
            "{name}: grace period {grace}s covers the 20 s drain and {pre_stop}s preStop"
        );

        let mut service = Service::start_exact("chart_environment", name, &env);
        service.wait_ready().await;
        service.signal("TERM");
        let status = service.wait_exit(Duration::from_secs(30)).await;
        assert!(status.success(), "{name} exits cleanly: {status:?}");
    }
}

#[test]
fn every_service_binary_has_an_image_and_a_chart_entry() {
    let binaries = service_binaries();
    assert!(binaries.contains("payment"), "{binaries:?}");

    let makefile = std::fs::read_to_string(root().join("Makefile")).expect("Makefile");
    let images: BTreeSet<String> = makefile
        .lines()
        .find_map(|l| l.strip_prefix("SERVICES ?="))
        .expect("SERVICES in the Makefile")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        images, binaries,
        "`make images` builds an image for exactly the service binaries"
    );
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("cargo build --release --locked --workspace --bins"),
        "the image build compiles every binary"
    );
    assert!(dockerfile.contains("ARG SERVICE"), "and SERVICE picks one");

    let values: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join(CHART).join("values.yaml")).expect("values"),
    )
    .expect("yaml");
    // Long-running services are Deployments; the load generator is a Job.
    let mut entries: BTreeSet<String> = values["services"]
        .as_object()
        .expect("services")
        .keys()
        .cloned()
        .collect();
    assert!(
        values["loadgen"].is_object(),
        "the chart has a loadgen entry"
    );
    entries.insert("loadgen".into());
    // The console tool runs as a one-off pod (`kubectl run`, printed by NOTES.txt), from its image.
    let mut deployed = binaries.clone();
    assert!(deployed.remove("kafka-console"), "{binaries:?}");
    assert_eq!(
        entries, deployed,
        "the chart has an entry for exactly the service binaries"
    );
    let notes =
        std::fs::read_to_string(root().join(CHART).join("templates/NOTES.txt")).expect("NOTES.txt");
    assert!(
        notes.contains("/kafka-console:")
            && notes.contains("kubectl -n {{ $ns }} run kafka-console"),
        "NOTES.txt says how to run the console tool"
    );

    let objects = render(&[&format!("{CHART}/ci/observability-values.yaml")]);
    let rendered: BTreeSet<String> = objects
        .iter()
        .filter(|o| o["kind"] == "Deployment" || o["kind"] == "Job")
        .map(|d| {
            let image = d["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .expect("image");
            let name = d["metadata"]["labels"]["app.kubernetes.io/name"]
                .as_str()
                .expect("name");
            assert!(
                image.starts_with(&format!("kafka-microservices/{name}:")),
                "{name} runs its own image: {image}"
            );
            name.to_owned()
        })
        .collect();
    assert_eq!(rendered, deployed);
}

#[test]
fn every_offline_check_fails_on_its_broken_fixture() {
    // A control run: the same checks pass on a valid values file, so a failure below is the fixture's.
    let (ok, out) = chart_check(&["--values", &format!("{CHART}/ci/minimal-values.yaml")]);
    assert!(ok, "the checks pass on valid values:\n{out}");

    let fixtures = root().join("tests/fixtures/chart");
    let mut checks = BTreeSet::new();
    for entry in std::fs::read_dir(&fixtures).expect("fixtures") {
        let path = entry.expect("entry").path();
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_owned();
        let check = file.split("--").next().expect("check name").to_owned();
        let (ok, out) = chart_check(&["--values", path.to_str().expect("utf-8"), "--only", &check]);
        assert!(!ok, "{file} must fail the {check} check:\n{out}");
        assert!(
            out.lines().any(|l| l.starts_with(&format!("FAIL {check}"))),
            "{file} fails {check} itself:\n{out}"
        );
        checks.insert(check);
    }
    let (ok, out) = chart_check(&[
        "--values",
        &format!("{CHART}/ci/minimal-values.yaml"),
        "--only",
        "hadolint",
        "--dockerfile",
        "tests/fixtures/Dockerfile.broken",
    ]);
    assert!(
        !ok && out.contains("FAIL hadolint"),
        "the broken Dockerfile fails hadolint:\n{out}"
    );
    checks.insert("hadolint".into());
    let expected: BTreeSet<String> = [
        "lint", "template", "schema", "checkov", "yamllint", "hadolint",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    assert_eq!(checks, expected, "every check has a fixture that breaks it");
}

fn make(args: &[&str], path: &str) -> (bool, String) {
    let out = Command::new("make")
        .args(args)
        .current_dir(root())
        .env("PATH", path)
        .output()
        .expect("run make");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn kind_up_without_the_tools_stops_at_once_and_names_them() {
    let (ok, out) = make(
        &[
            "kind-up",
            "DOCKER=no-docker-here",
            "KIND=no-kind-here",
            "KUBECTL=no-kubectl-here",
            "HELM=no-helm-here",
        ],
        "/usr/bin:/bin",
    );
    assert!(!ok);
    for tool in ["Docker", "kind", "kubectl", "Helm"] {
        assert!(
            out.contains(&format!("  - {tool} ")),
            "names {tool}:\n{out}"
        );
    }
    assert!(
        !out.contains("==> kind cluster"),
        "nothing was started:\n{out}"
    );
}

#[test]
fn make_help_lists_every_target() {
    let (ok, help) = make(&["help"], &std::env::var("PATH").unwrap_or_default());
    assert!(ok, "{help}");
    let makefile = std::fs::read_to_string(root().join("Makefile")).expect("Makefile");
    let targets: Vec<&str> = makefile
        .lines()
        .filter(|l| {
            !l.starts_with('.') && !l.starts_with('\t') && !l.contains(":=") && !l.contains("?=")
        })
        .filter_map(|l| l.split_once(':').map(|(t, _)| t))
        .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .collect();
    for target in [
        "kind-up",
        "kind-down",
        "images",
        "deploy",
        "scale-payment",
        "jaeger",
        "logs",
        "lint",
        "chart-check",
        "test",
        "run",
    ] {
        assert!(targets.contains(&target), "the Makefile has `{target}`");
    }
    for target in targets {
        assert!(
            help.contains(&format!("{target} ")),
            "`make help` lists {target}:\n{help}"
        );
    }
}

#[test]
fn the_tools_are_pinned_and_installed() {
    let out = Command::new(tools().join("helm"))
        .arg("version")
        .arg("--short")
        .output()
        .expect("helm");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("v3.19.0"));
}

#[test]
fn the_chart_creates_the_topics_of_the_topology_table() {
    let values: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join(CHART).join("values.yaml")).expect("values"),
    )
    .expect("yaml");
    let topics = &values["kafka"]["topics"];
    let chart: BTreeSet<(String, i64)> = topics["partitions"]
        .as_object()
        .expect("partitions")
        .iter()
        .map(|(t, n)| (t.clone(), n.as_i64().expect("a count")))
        .collect();
    let compacted: BTreeSet<String> = topics["compacted"]
        .as_array()
        .expect("compacted")
        .iter()
        .map(|t| t.as_str().expect("a name").to_owned())
        .collect();
    let table = system_tests::system_topics();
    let expected: BTreeSet<(String, i64)> = table
        .iter()
        .map(|(t, n, _)| (t.clone(), i64::from(*n)))
        .collect();
    assert_eq!(
        chart, expected,
        "the chart's topics are events::topics::ALL's"
    );
    let expected: BTreeSet<String> = table
        .iter()
        .filter(|(_, _, c)| *c == events::topics::Cleanup::Compact)
        .map(|(t, ..)| t.clone())
        .collect();
    assert_eq!(
        compacted, expected,
        "the chart compacts exactly the changelogs"
    );

    // `make run` creates them from the same table, through the console tool.
    let script =
        std::fs::read_to_string(root().join("scripts/run-local.sh")).expect("run-local.sh");
    assert!(
        script.contains("topics create --all"),
        "make run creates the table's topics"
    );
}

/// The environment variables a service's sources name outside their unit tests: every string
/// literal that is a variable name (capitals, digits and underscores, with an underscore), however
/// it reaches `Env` (`env.or("X", ..)`, or a helper of the service's own).
fn variables_read(dir: &std::path::Path) -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("src dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("source");
        let text = source.split("#[cfg(test)]").next().unwrap_or_default();
        // Between the quotes of each literal: the odd pieces of a split on `"`.
        for name in text.split('"').skip(1).step_by(2) {
            let is_var = name.contains('_')
                && name.starts_with(|c: char| c.is_ascii_uppercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if is_var {
                vars.insert(name.to_owned());
            }
        }
    }
    vars
}

#[test]
fn the_chart_schema_knows_exactly_the_variables_each_service_reads() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(CHART).join("values.schema.json")).expect("schema"),
    )
    .expect("json");
    // Set by the chart itself, or from a Secret.
    let chart_set = ["HTTP_ADDR", "OPS_ADDR", "DATABASE_URL"];
    for (name, entry) in schema["properties"]["services"]["properties"]
        .as_object()
        .expect("services")
    {
        let listed: BTreeSet<String> =
            entry["allOf"][1]["properties"]["env"]["propertyNames"]["anyOf"][0]["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: the schema lists its env keys"))
                .iter()
                .map(|k| k.as_str().expect("key").to_owned())
                .collect();
        let read: BTreeSet<String> =
            variables_read(&root().join("services").join(name).join("src"))
                .into_iter()
                .filter(|v| !chart_set.contains(&v.as_str()))
                .collect();
        assert_eq!(
            listed, read,
            "{name}: the schema's env keys are the ones its code reads"
        );
    }
}

/// `(resource type, name, operation)` for every ACL a KafkaUser is given.
fn acls(user: &Value) -> BTreeSet<(String, String, String)> {
    let mut set = BTreeSet::new();
    for acl in user["spec"]["authorization"]["acls"]
        .as_array()
        .expect("acls")
    {
        let r = &acl["resource"];
        assert!(
            acl["type"].is_null() || acl["type"] == "allow",
            "only allow rules: {acl}"
        );
        assert!(
            r["patternType"].is_null() || r["patternType"] == "literal",
            "no prefix rules: {acl}"
        );
        for op in acl["operations"].as_array().expect("operations") {
            set.insert((
                r["type"].as_str().expect("type").to_owned(),
                r["name"].as_str().unwrap_or("").to_owned(),
                op.as_str().expect("operation").to_owned(),
            ));
        }
    }
    set
}

#[test]
fn each_kafka_user_may_do_exactly_what_its_row_in_the_topology_table_gives_it() {
    for (mode, authentication) in [("scram", "scram-sha-512"), ("mtls", "tls")] {
        let objects = render(&[&format!("{CHART}/ci/{mode}-values.yaml")]);
        let users: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "KafkaUser")
            .collect();
        for access in events::topology::SERVICES {
            let user = users
                .iter()
                .find(|u| u["metadata"]["name"] == access.service)
                .unwrap_or_else(|| panic!("{mode}: no KafkaUser for {}", access.service));
            assert_eq!(user["spec"]["authentication"]["type"], authentication);
            assert_eq!(user["metadata"]["labels"]["strimzi.io/cluster"], "events");
            let topic = |t: &str, op: &str| ("topic".to_owned(), t.to_owned(), op.to_owned());
            let mut expected = BTreeSet::new();
            for t in access.reads.iter().chain(access.stores) {
                expected.insert(topic(t, "Read"));
                expected.insert(topic(t, "Describe"));
            }
            let dead_letters = access.dead_letters(platform::kafka::dead_letter_topic);
            let written = access.outputs().into_iter().map(str::to_owned);
            for t in written.chain(dead_letters) {
                expected.insert(topic(&t, "Write"));
                expected.insert(topic(&t, "Describe"));
            }
            if let Some(group) = access.group {
                expected.insert(("group".into(), group.into(), "Read".into()));
            }
            if let Some(readers) = access.readers() {
                expected.insert(("group".into(), readers, "Describe".into()));
            }
            assert_eq!(acls(user), expected, "{mode}: {}'s ACLs", access.service);
        }
        // The console tool's user reads and writes any topic; it creates, deletes and alters
        // nothing.
        let console = users
            .iter()
            .find(|u| u["metadata"]["name"] == "kafka-console")
            .expect("a console user");
        let ops: BTreeSet<String> = acls(console).into_iter().map(|(.., op)| op).collect();
        for forbidden in ["Create", "Delete", "Alter", "AlterConfigs", "All"] {
            assert!(!ops.contains(forbidden), "console may not {forbidden}");
        }
        assert_eq!(
            users.len(),
            events::topology::SERVICES.len() + 1,
            "{mode}: one user per service, the load generator and the console"
        );
    }
    let plaintext = render(&[]);
    assert!(!plaintext.iter().any(|o| o["kind"] == "KafkaUser"));
}

#[test]
fn no_security_mode_renders_a_secret_value() {
    for values in [
        vec![],
        vec![format!("{CHART}/ci/scram-values.yaml")],
        vec![format!("{CHART}/ci/mtls-values.yaml")],
    ] {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let objects = render(&values);
        assert!(
            !objects.iter().any(|o| o["kind"] == "Secret"),
            "{values:?}: the chart writes no Secret"
        );
        for o in &objects {
            let pod = if o["kind"] == "Job" || o["kind"] == "Deployment" {
                &o["spec"]["template"]["spec"]
            } else {
                continue;
            };
            for e in pod["containers"][0]["env"].as_array().expect("env") {
                let name = e["name"].as_str().expect("name");
                let secretive = ["PASSWORD", "SECRET", "DATABASE_URL", "KEY"]
                    .iter()
                    .any(|s| name.contains(s));
                let a_path = name.ends_with("_FILE") || name.ends_with("_LOCATION");
                if secretive && !a_path {
                    assert!(
                        e["value"].is_null() && e["valueFrom"]["secretKeyRef"].is_object(),
                        "{values:?}: {name} is a literal in {}",
                        o["metadata"]["name"]
                    );
                }
            }
        }
    }
    // A secret put in the librdkafka pass-through is refused by the chart.
    let out = Command::new(tools().join("helm"))
        .current_dir(root())
        .args(["template", "app", CHART])
        .args([
            "--set",
            "kafka.extraConfig=linger.ms=5\\,sasl.password=hunter2",
        ])
        .output()
        .expect("helm");
    assert!(
        !out.status.success(),
        "a password in kafka.extraConfig renders"
    );
}
