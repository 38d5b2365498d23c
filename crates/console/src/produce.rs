//! `produce`: one record per line, acknowledged by the broker, each in a trace of its own.

use crate::format::{LineFormat, header};
use crate::{Connection, Error};
use futures::StreamExt;
use opentelemetry::trace::TraceContextExt;
use platform::kafka::{Published, Publisher};
use platform::metrics::Metrics;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, OwnedHeaders};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use tracing::Instrument;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The topic to write to.
    #[arg(short, long)]
    pub topic: String,
    /// Read the lines from this file instead of stdin.
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// The key of every record.
    #[arg(short, long)]
    pub key: Option<String>,
    /// Each line is key<SEP>value (kcat's -K).
    #[arg(short = 'K', long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// A header on every record, name=value (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE")]
    pub headers: Vec<String>,
    /// Each line starts with its own headers, name=value[,name=value…], and a tab.
    #[arg(long)]
    pub line_headers: bool,
    /// Refuse lines whose value is not JSON (they are reported and skipped).
    #[arg(long)]
    pub json: bool,
}

/// Records written at once when reading from a pipe or a file; their order is kept.
const PIPELINE: usize = 512;

pub async fn run(connection: &Connection, args: Args) -> Result<i32, Error> {
    let headers = args
        .headers
        .iter()
        .map(|h| header(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Usage(format!("--header: {e}")))?;
    let format = LineFormat {
        key: args.key.clone(),
        key_separator: args.key_separator.clone(),
        headers,
        line_headers: args.line_headers,
        json: args.json,
    };
    let reader = connection.reader()?;
    connection.check_reachable(&reader)?;
    let exists = reader
        .fetch_metadata(Some(&args.topic), connection.timeout)?
        .topics()
        .iter()
        .any(|t| t.name() == args.topic && t.error().is_none() && !t.partitions().is_empty());
    if !exists {
        return Err(Error::Usage(format!(
            "topic `{}` does not exist (create it: kafka-console topics create {0})",
            args.topic
        )));
    }
    let publisher = Publisher::new(&connection.config, Metrics::new())
        .map_err(|e| Error::Usage(e.to_string()))?;
    let interactive = args.file.is_none() && std::io::stdin().is_terminal();
    let input: Box<dyn BufRead + Send> = match &args.file {
        Some(path) => Box::new(std::io::BufReader::new(std::fs::File::open(path)?)),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let producer = Producer {
        publisher,
        topic: args.topic.clone(),
        format,
    };
    let (sent, refused) = if interactive {
        producer.interactive(input).await?
    } else {
        producer.pipe(input).await?
    };
    producer.publisher.flush().await;
    eprintln!(
        "{sent} record(s) written to {}{}",
        args.topic,
        if refused > 0 {
            format!(", {refused} line(s) refused")
        } else {
            String::new()
        }
    );
    Ok(i32::from(refused > 0))
}

struct Producer {
    publisher: Publisher,
    topic: String,
    format: LineFormat,
}

/// What became of one line.
enum Outcome {
    Sent(Published, String),
    Refused(String),
}

impl Producer {
    /// Writes one line in a span of its own (the root of its trace), and returns the trace id.
    async fn send(&self, number: usize, line: &str) -> Outcome {
        let parsed = match self.format.parse(line) {
            Ok(parsed) => parsed,
            Err(err) => return Outcome::Refused(format!("line {number}: {err}")),
        };
        let span = tracing::info_span!(
            "produce",
            otel.name = "kafka-console produce",
            line = number
        );
        let trace_id = platform::telemetry::context(&span)
            .span()
            .span_context()
            .trace_id()
            .to_string();
        let mut headers = OwnedHeaders::new();
        for (k, v) in &parsed.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let result = self
            .publisher
            .publish_with(
                &self.topic,
                parsed.key.as_deref(),
                parsed.value.as_bytes(),
                headers,
            )
            .instrument(span)
            .await;
        match result {
            Ok(p) => Outcome::Sent(p, trace_id),
            Err(err) => Outcome::Refused(format!("line {number}: {err}")),
        }
    }

    /// A prompt, and each record's place and trace once it is acknowledged.
    async fn interactive(&self, input: Box<dyn BufRead + Send>) -> Result<(usize, usize), Error> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<String>>(1);
        let (ask, mut asked) = tokio::sync::mpsc::channel::<()>(1);
        std::thread::spawn(move || {
            let mut lines = input.lines();
            while asked.blocking_recv().is_some() {
                let Some(line) = lines.next() else { return };
                if tx.blocking_send(line).is_err() {
                    return;
                }
            }
        });
        eprintln!("Type a record per line for `{}`; Ctrl-D ends.", self.topic);
        let (mut sent, mut refused) = (0, 0);
        for number in 1.. {
            eprint!("> ");
            std::io::stderr().flush()?;
            if ask.send(()).await.is_err() {
                break;
            }
            let Some(line) = rx.recv().await else { break };
            match self.send(number, &line?).await {
                Outcome::Sent(p, trace) => {
                    sent += 1;
                    eprintln!(
                        "  ✓ {}[{}]@{}  trace {trace}",
                        self.topic, p.partition, p.offset
                    );
                }
                Outcome::Refused(reason) => {
                    refused += 1;
                    eprintln!("  ✗ {reason}");
                }
            }
        }
        eprintln!();
        Ok((sent, refused))
    }

    /// Many records in flight at once, written in line order.
    async fn pipe(&self, input: Box<dyn BufRead + Send>) -> Result<(usize, usize), Error> {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<String>>(PIPELINE);
        std::thread::spawn(move || {
            for line in input.lines() {
                if tx.blocking_send(line).is_err() {
                    return;
                }
            }
        });
        let lines = tokio_stream_from(rx);
        let mut outcomes = lines
            .enumerate()
            .map(|(i, line)| async move {
                match line {
                    Ok(line) => self.send(i + 1, &line).await,
                    Err(err) => Outcome::Refused(format!("line {}: {err}", i + 1)),
                }
            })
            .buffered(PIPELINE);
        let (mut sent, mut refused) = (0, 0);
        while let Some(outcome) = outcomes.next().await {
            match outcome {
                Outcome::Sent(..) => sent += 1,
                Outcome::Refused(reason) => {
                    refused += 1;
                    eprintln!("{reason}");
                }
            }
        }
        Ok((sent, refused))
    }
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
