//! `consume`: a topic's records, printed through the format string.

use crate::format::{Record, render};
use crate::{Connection, Error, Reader};
use platform::kafka::reader;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The topic to read.
    #[arg(short, long)]
    pub topic: String,
    /// Where to start: beginning, end, an offset (in every partition, kept within what it holds),
    /// or a time, @<ms since the epoch> or @<RFC 3339>. In a group: beginning or end, for
    /// partitions it has no offset for.
    #[arg(long, default_value = "beginning")]
    pub from: String,
    /// Read as a member of this consumer group, committing what was printed.
    #[arg(short, long)]
    pub group: Option<String>,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(short, long)]
    pub follow: bool,
    /// Stop after this many records.
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
    /// Indent JSON values.
    #[arg(long)]
    pub pretty: bool,
    /// Output format: %t topic, %p partition, %o offset, %T timestamp (ms), %k key, %s value,
    /// %h headers, %S value size, \n, \t.
    #[arg(long, default_value = "%s\\n")]
    pub format: String,
}

/// Where a member without a group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Beginning,
    End,
    Offset(i64),
    /// Milliseconds since the epoch.
    Time(i64),
}

impl Start {
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = || {
            Error::Usage(format!(
                "--from `{text}`: expected beginning, end, an offset, @<ms> or @<RFC 3339 time>"
            ))
        };
        match text {
            "beginning" | "earliest" => Ok(Self::Beginning),
            "end" | "latest" => Ok(Self::End),
            t if t.starts_with('@') => {
                let t = &t[1..];
                t.parse::<i64>()
                    .ok()
                    .or_else(|| {
                        chrono::DateTime::parse_from_rfc3339(t)
                            .ok()
                            .map(|d| d.timestamp_millis())
                    })
                    .map(Self::Time)
                    .ok_or_else(bad)
            }
            t => t
                .parse::<i64>()
                .ok()
                .filter(|o| *o >= 0)
                .map(Self::Offset)
                .ok_or_else(bad),
        }
    }
}

pub fn run(connection: &Connection, args: &Args) -> Result<i32, Error> {
    let start = Start::parse(&args.from)?;
    let mut config = connection.client_config();
    if let Some(group) = &args.group {
        let reset = match start {
            Start::Beginning => "earliest",
            Start::End => "latest",
            _ => {
                return Err(Error::Usage(
                    "--from with a group is beginning or end; offsets and times are for reading without one"
                        .into(),
                ));
            }
        };
        config
            .set("group.id", group)
            .set("auto.offset.reset", reset)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "true");
    }
    let consumer = reader::reader(&config)?;
    connection.check_reachable(&consumer)?;
    let md = consumer.fetch_metadata(Some(&args.topic), connection.timeout)?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == args.topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(Error::Usage(format!(
            "topic `{}` does not exist",
            args.topic
        )));
    }
    if args.group.is_some() {
        consumer.subscribe(&[&args.topic])?;
    } else {
        consumer.assign(&positions(connection, &consumer, args, start, &partitions)?)?;
    }
    let since = match start {
        Start::Time(ms) => Some(ms),
        _ => None,
    };
    print_records(&consumer, args, &partitions, since)
}

/// Where each partition starts, as offsets inside what it holds: the end is the high watermark
/// (the fetches report it); a given offset is kept between the low and high watermark; a time is
/// resolved by the broker's time index, and a time after the last record is the end.
fn positions(
    connection: &Connection,
    consumer: &Reader,
    args: &Args,
    start: Start,
    partitions: &[i32],
) -> Result<TopicPartitionList, Error> {
    let topic = args.topic.as_str();
    let mut tpl = TopicPartitionList::new();
    if start == Start::Beginning {
        for &p in partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        return Ok(tpl);
    }
    let marks = reader::watermarks(
        &connection.client_config(),
        topic,
        partitions,
        connection.timeout,
    )?;
    let by_time = match start {
        Start::Time(ms) => {
            let mut query = TopicPartitionList::new();
            for &p in partitions {
                query.add_partition_offset(topic, p, Offset::Offset(ms))?;
            }
            Some(consumer.offsets_for_times(query, connection.timeout)?)
        }
        _ => None,
    };
    for &p in partitions {
        let (low, high) = marks[&p];
        let offset = match start {
            Start::End => high,
            Start::Offset(o) => o.clamp(low, high),
            _ => match by_time
                .as_ref()
                .and_then(|t| t.find_partition(topic, p))
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) => o.clamp(low, high),
                _ => high,
            },
        };
        tpl.add_partition_offset(topic, p, Offset::Offset(offset))?;
    }
    Ok(tpl)
}

fn print_records(
    consumer: &Reader,
    args: &Args,
    partitions: &[i32],
    since: Option<i64>,
) -> Result<i32, Error> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let mut at_end: HashSet<i32> = HashSet::new();
    let mut idle_since = Instant::now();
    loop {
        if args.count.is_some_and(|n| printed >= n) {
            break;
        }
        // Without --follow, stop once every partition has reached its end. In a group, only the
        // partitions assigned count; a group still joining has none yet.
        if !args.follow {
            let assigned: Vec<i32> = if args.group.is_some() {
                consumer
                    .assignment()
                    .map(|a| a.elements().iter().map(|e| e.partition()).collect())
                    .unwrap_or_default()
            } else {
                partitions.to_vec()
            };
            if !assigned.is_empty() && assigned.iter().all(|p| at_end.contains(p)) {
                break;
            }
        }
        let Some(result) = consumer.poll(Duration::from_millis(100)) else {
            if printed > 0 || idle_since.elapsed() > Duration::from_secs(1) {
                out.flush()?;
            }
            continue;
        };
        match result {
            Err(KafkaError::PartitionEOF(p)) => {
                at_end.insert(p);
                out.flush()?;
            }
            Err(err) => return Err(err.into()),
            Ok(m) => {
                at_end.remove(&m.partition());
                idle_since = Instant::now();
                // The broker's time index finds the first record at or after the time; records
                // stamped earlier than it after that one (timestamps set by producers need not
                // grow) are left out too, so the output is exactly what was stamped since.
                if let (Some(since), Some(ts)) = (since, m.timestamp().to_millis())
                    && ts < since
                {
                    continue;
                }
                let headers = m
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key, h.value)).collect())
                    .unwrap_or_default();
                let record = Record {
                    topic: m.topic(),
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis(),
                    key: m.key(),
                    value: m.payload(),
                    headers,
                };
                out.write_all(render(&args.format, &record, args.pretty).as_bytes())?;
                if args.follow {
                    out.flush()?;
                }
                printed += 1;
            }
        }
    }
    out.flush()?;
    if args.group.is_some() {
        // The offsets of what was printed, before leaving.
        let _ = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions_parse() {
        assert_eq!(Start::parse("beginning").unwrap(), Start::Beginning);
        assert_eq!(Start::parse("end").unwrap(), Start::End);
        assert_eq!(Start::parse("42").unwrap(), Start::Offset(42));
        assert_eq!(
            Start::parse("@1700000000000").unwrap(),
            Start::Time(1_700_000_000_000)
        );
        assert_eq!(
            Start::parse("@2023-11-14T22:13:20Z").unwrap(),
            Start::Time(1_700_000_000_000)
        );
        assert!(Start::parse("-3").is_err());
        assert!(Start::parse("yesterday").is_err());
    }
}
