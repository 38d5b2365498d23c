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
    let tools = ["loadgen"]; // a load generator and a reader of `notifications`, not a service
    for entry in std::fs::read_dir(root().join("services")).expect("services") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8");
        if tools.contains(&name.as_str()) {
            continue;
        }
        assert!(
            events::topology::SERVICES.iter().any(|a| a.service == name),
            "services/{name} has no row in events::topology::SERVICES"
        );
    }
}
