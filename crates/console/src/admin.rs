//! `topics` and `groups`.

use crate::{Connection, Error, Reader};
use events::topics::Cleanup;
use platform::kafka::reader;
use platform::kafka::reader::watermarks;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;

#[derive(Debug, clap::Subcommand)]
pub enum Topics {
    /// Every topic, with its partition count.
    List,
    /// A topic's partitions: leader, replicas, and low and high watermarks.
    Describe { topic: String },
    /// Create a topic, or with --all every topic of the system (dead-letter topics and compacted
    /// changelogs included). A topic that exists already is left as it is.
    Create {
        /// The topic (omit with --all).
        #[arg(required_unless_present = "all")]
        topic: Option<String>,
        #[arg(short, long, default_value_t = 3)]
        partitions: i32,
        #[arg(short, long, default_value_t = 1)]
        replication_factor: i32,
        /// A topic config, name=value (repeatable), such as cleanup.policy=compact.
        #[arg(short, long = "config", value_name = "NAME=VALUE")]
        configs: Vec<String>,
        /// Every topic of the system, as `crates/events/src/topics.rs` defines them.
        #[arg(long, conflicts_with = "topic")]
        all: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum Groups {
    /// Every consumer group, its state and member count.
    List,
    /// A group's members and what they hold, and its committed offset and lag per partition.
    Describe { group: String },
}

/// A topic to create: name, partitions, configs.
type Wanted = (String, i32, Vec<(String, String)>);

pub async fn topics(connection: &Connection, reader: &Reader, cmd: Topics) -> Result<i32, Error> {
    match cmd {
        Topics::List => {
            let md = reader.fetch_metadata(None, connection.timeout)?;
            let mut topics: Vec<(&str, usize)> = md
                .topics()
                .iter()
                .filter(|t| !t.name().starts_with("__"))
                .map(|t| (t.name(), t.partitions().len()))
                .collect();
            topics.sort_unstable();
            let width = topics.iter().map(|(n, _)| n.len()).max().unwrap_or(5);
            println!("{:width$}  PARTITIONS", "TOPIC");
            for (name, partitions) in topics {
                println!("{name:width$}  {partitions}");
            }
            Ok(0)
        }
        Topics::Describe { topic } => describe_topic(connection, reader, &topic),
        Topics::Create {
            topic,
            partitions,
            replication_factor,
            configs,
            all,
        } => {
            let configs: Vec<(String, String)> = configs
                .iter()
                .map(|c| crate::format::header(c))
                .collect::<Result<_, _>>()
                .map_err(|e| Error::Usage(format!("--config: {e}")))?;
            let wanted: Vec<Wanted> = if all {
                events::topics::with_dead_letters(platform::kafka::dead_letter_topic)
                    .into_iter()
                    .map(|(name, partitions, cleanup)| {
                        let mut c = configs.clone();
                        if cleanup == Cleanup::Compact {
                            c.push(("cleanup.policy".into(), cleanup.policy().into()));
                        }
                        (name, partitions, c)
                    })
                    .collect()
            } else {
                vec![(topic.expect("clap requires it"), partitions, configs)]
            };
            create(connection, replication_factor, &wanted).await
        }
    }
}

fn describe_topic(connection: &Connection, reader: &Reader, topic: &str) -> Result<i32, Error> {
    let md = reader.fetch_metadata(Some(topic), connection.timeout)?;
    let Some(t) = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
    else {
        return Err(Error::Usage(format!("topic `{topic}` does not exist")));
    };
    println!("topic {topic}: {} partition(s)", t.partitions().len());
    println!("PARTITION  LEADER  REPLICAS  ISR  LOW  HIGH  RECORDS");
    let mut partitions: Vec<_> = t.partitions().iter().collect();
    partitions.sort_by_key(|p| p.id());
    let ids: Vec<i32> = partitions.iter().map(|p| p.id()).collect();
    let marks = watermarks(&connection.client_config(), topic, &ids, connection.timeout)?;
    for p in partitions {
        let (low, high) = marks[&p.id()];
        let list = |ids: &[i32]| {
            ids.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        println!(
            "{:<9}  {:<6}  {:<8}  {:<3}  {low:<3}  {high:<4}  {}",
            p.id(),
            p.leader(),
            list(p.replicas()),
            list(p.isr()),
            high - low
        );
    }
    Ok(0)
}

async fn create(
    connection: &Connection,
    replication: i32,
    wanted: &[Wanted],
) -> Result<i32, Error> {
    let admin: AdminClient<DefaultClientContext> = connection.client_config().create()?;
    let new: Vec<NewTopic<'_>> = wanted
        .iter()
        .map(|(name, partitions, configs)| {
            configs.iter().fold(
                NewTopic::new(name, *partitions, TopicReplication::Fixed(replication)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(connection.timeout));
    let results = admin.create_topics(&new, &options).await?;
    let mut failed = 0;
    for result in results {
        match result {
            Ok(name) => println!("created {name}"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => println!("exists  {name}"),
            Err((name, code)) => {
                failed += 1;
                eprintln!("failed  {name}: {code}");
            }
        }
    }
    Ok(i32::from(failed > 0))
}

/// One member of a group, as the broker describes it.
struct Member {
    client_id: String,
    host: String,
    assignment: Vec<(String, Vec<i32>)>,
}

pub fn groups(connection: &Connection, reader: &Reader, cmd: &Groups) -> Result<i32, Error> {
    match cmd {
        Groups::List => {
            let list = reader.fetch_group_list(None, connection.timeout)?;
            let mut groups: Vec<_> = list
                .groups()
                .iter()
                .map(|g| (g.name().to_owned(), g.state().to_owned(), g.members().len()))
                .collect();
            groups.sort();
            let width = groups.iter().map(|g| g.0.len()).max().unwrap_or(5);
            println!("{:width$}  {:<18}  MEMBERS", "GROUP", "STATE");
            for (name, state, members) in groups {
                println!("{name:width$}  {state:<18}  {members}");
            }
            Ok(0)
        }
        Groups::Describe { group } => describe_group(connection, reader, group),
    }
}

fn describe_group(connection: &Connection, reader: &Reader, group: &str) -> Result<i32, Error> {
    let list = reader.fetch_group_list(Some(group), connection.timeout)?;
    let Some(g) = list.groups().iter().find(|g| g.name() == group) else {
        return Err(Error::Usage(format!("group `{group}` is unknown")));
    };
    let members: Vec<Member> = g
        .members()
        .iter()
        .map(|m| Member {
            client_id: m.client_id().to_owned(),
            host: m.client_host().to_owned(),
            assignment: m.assignment().map(parse_assignment).unwrap_or_default(),
        })
        .collect();
    println!("group {group}: {} ({} member(s))", g.state(), members.len());
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for m in &members {
        let held: Vec<String> = m
            .assignment
            .iter()
            .map(|(t, ps)| {
                for p in ps {
                    owner.insert((t.clone(), *p), m.client_id.clone());
                }
                format!("{t}{ps:?}")
            })
            .collect();
        println!("  member {} ({}): {}", m.client_id, m.host, held.join(" "));
    }
    // Committed offsets, read as the group (without joining it), for every partition of every
    // topic the group holds or has offsets on.
    let md = reader.fetch_metadata(None, connection.timeout)?;
    let mut tpl = TopicPartitionList::new();
    for t in md.topics().iter().filter(|t| !t.name().starts_with("__")) {
        for p in t.partitions() {
            tpl.add_partition(t.name(), p.id());
        }
    }
    let mut as_group = connection.client_config();
    as_group.set("group.id", group);
    let probe = reader::reader(&as_group)?;
    let committed = probe.committed_offsets(tpl, connection.timeout)?;
    println!("TOPIC  PARTITION  COMMITTED  HIGH  LAG  OWNER");
    let mut total = 0;
    let mut highs: BTreeMap<String, std::collections::HashMap<i32, (i64, i64)>> = BTreeMap::new();
    for e in committed.elements() {
        let key = (e.topic().to_owned(), e.partition());
        let Offset::Offset(at) = e.offset() else {
            if !owner.contains_key(&key) {
                continue;
            }
            println!("{}  {}  -  -  -  {}", e.topic(), e.partition(), owner[&key]);
            continue;
        };
        if !highs.contains_key(e.topic()) {
            let ids: Vec<i32> = committed
                .elements_for_topic(e.topic())
                .iter()
                .map(|e| e.partition())
                .collect();
            let marks = watermarks(
                &connection.client_config(),
                e.topic(),
                &ids,
                connection.timeout,
            )?;
            highs.insert(e.topic().to_owned(), marks);
        }
        let high = highs[e.topic()][&e.partition()].1;
        let lag = (high - at).max(0);
        total += lag;
        println!(
            "{}  {}  {at}  {high}  {lag}  {}",
            e.topic(),
            e.partition(),
            owner.get(&key).map_or("-", String::as_str)
        );
    }
    println!("total lag: {total}");
    Ok(0)
}

/// The consumer protocol's member assignment: version (i16), then topics, each a name (i16
/// length and bytes) and partitions (i32 count and i32s), then user data.
fn parse_assignment(bytes: &[u8]) -> Vec<(String, Vec<i32>)> {
    let mut at = 2usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = bytes.get(at..at + n)?;
        at += n;
        Some(s)
    };
    let mut out = Vec::new();
    let mut parse = || -> Option<()> {
        let topics = i32::from_be_bytes(take(4)?.try_into().ok()?);
        for _ in 0..topics.max(0) {
            let len = i16::from_be_bytes(take(2)?.try_into().ok()?);
            let name = String::from_utf8_lossy(take(usize::try_from(len).ok()?)?).into_owned();
            let count = i32::from_be_bytes(take(4)?.try_into().ok()?);
            let mut partitions = Vec::new();
            for _ in 0..count.max(0) {
                partitions.push(i32::from_be_bytes(take(4)?.try_into().ok()?));
            }
            out.push((name, partitions));
        }
        Some(())
    };
    let _ = parse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_assignment_is_read() {
        let mut b = vec![0u8, 1];
        b.extend(1i32.to_be_bytes());
        b.extend(6i16.to_be_bytes());
        b.extend(b"orders");
        b.extend(2i32.to_be_bytes());
        b.extend(0i32.to_be_bytes());
        b.extend(3i32.to_be_bytes());
        b.extend(0i32.to_be_bytes()); // user data
        assert_eq!(
            parse_assignment(&b),
            vec![("orders".to_owned(), vec![0, 3])]
        );
        assert!(
            parse_assignment(&[0, 1, 0]).is_empty(),
            "a short buffer is no assignment"
        );
    }
}
