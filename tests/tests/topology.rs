//! The topology table (`events::topology`) against the code: every service has a row, and a
//! service's sources name only the topics its row gives it. A service that starts reading or
//! writing a topic without it in its row (and so without a permission on a secured cluster) fails
//! here.

use std::collections::{BTreeMap, BTreeSet};
use system_tests::root;

/// `NAME` → `"topic"` for every `pub const NAME: &str = "topic";` of `events::topics`.
fn topic_constants() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(root().join("crates/events/src/topics.rs")).expect("topics");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| {
            let (name, rest) = l.split_once(": &str = \"")?;
            Some((name.to_owned(), rest.split('"').next()?.to_owned()))
        })
        .collect()
}

/// The topics a service's sources name (`topics::NAME`), unit tests left out.
fn topics_named(service: &str, constants: &BTreeMap<String, String>) -> BTreeSet<String> {
    let dir = root().join("services").join(service).join("src");
    let mut named = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        let source = std::fs::read_to_string(&path).expect("source");
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        for (at, _) in code.match_indices("topics::") {
            let ident: String = code[at + "topics::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if let Some(topic) = constants.get(&ident) {
                named.insert(topic.clone());
            }
        }
    }
    named
}

#[test]
fn every_service_names_only_the_topics_its_row_gives_it() {
    let constants = topic_constants();
    assert!(
        constants.len() > 10,
        "read the topic constants: {constants:?}"
    );
    for access in events::topology::SERVICES {
        let allowed: BTreeSet<String> = access
            .reads
            .iter()
            .chain(access.writes)
            .chain(access.stores)
            .map(|t| (*t).to_owned())
            .collect();
        let named = topics_named(access.service, &constants);
        let extra: Vec<&String> = named.difference(&allowed).collect();
        assert!(
            extra.is_empty(),
            "{} names {extra:?}, which its row in events::topology does not give it",
            access.service
        );
    }
}

#[test]
fn every_service_that_talks_to_kafka_has_a_row() {
    for entry in std::fs::read_dir(root().join("services")).expect("services") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8");
        assert!(
            events::topology::SERVICES.iter().any(|a| a.service == name),
            "services/{name} has no row in events::topology::SERVICES"
        );
    }
}

/// The table as the chart reads it: per service, its group, its readers' group, the topics it reads
/// (its inputs and its changelogs, read back on restore) and the topics it writes (its outputs,
/// changelogs and dead-letter topics). The KafkaUsers' ACLs are rendered from exactly this.
fn chart_topology() -> serde_json::Value {
    let services: serde_json::Map<String, serde_json::Value> = events::topology::SERVICES
        .iter()
        .map(|a| {
            let read: Vec<&str> = a.reads.iter().chain(a.stores).copied().collect();
            let mut write: Vec<String> = a.outputs().iter().map(|t| (*t).to_owned()).collect();
            write.extend(a.dead_letters(platform::kafka::dead_letter_topic));
            (
                a.service.to_owned(),
                serde_json::json!({
                    "group": a.group,
                    "readerGroup": a.readers(),
                    "read": read,
                    "write": write,
                }),
            )
        })
        .collect();
    serde_json::json!({
        "comment": "Generated from crates/events/src/topology.rs by `make topology`; do not edit. \
                    templates/kafkausers.yaml renders each service's ACLs from it.",
        "services": services,
    })
}

#[test]
fn the_charts_copy_of_the_table_is_current() {
    let path = root().join("charts/kafka-microservices/files/topology.json");
    let generated = format!(
        "{}\n",
        serde_json::to_string_pretty(&chart_topology()).expect("json")
    );
    if std::env::var_os("UPDATE_TOPOLOGY").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, &generated).expect("write topology.json");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not the table's; run `make topology`",
        path.display()
    );
}

#[test]
fn the_readme_lists_what_each_kafka_user_may_do() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let section = readme
        .split("**What each KafkaUser may do**")
        .nth(1)
        .expect("the README's table of KafkaUsers");
    for access in events::topology::SERVICES {
        let row = section
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", access.service)))
            .unwrap_or_else(|| panic!("the README's table has no row for {}", access.service));
        let group = access.group.map_or("—".to_owned(), |g| format!("`{g}`"));
        assert!(row.contains(&format!("| {group} |")), "{row}");
        for topic in access.writes.iter().chain(access.reads) {
            assert!(row.contains(&format!("`{topic}`")), "{row} lacks {topic}");
        }
    }
}
