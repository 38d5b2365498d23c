//! The console tool as users run it, a process against the real broker: topics created from the
//! topology table, records produced with keys and headers and read back in every start mode,
//! the format string, a group's lag, the trace that follows a hand-produced number through the
//! stream processor, and a clear error when no broker answers.

use events::topics;
use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use system_tests::topics::{Writer, read_all};
use system_tests::{Broker, Service, eventually};

fn console(broker: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(system_tests::service::binary("kafka-console"))
        .env_clear()
        .env("KAFKA_BOOTSTRAP_SERVERS", broker)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kafka-console");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("kafka-console output")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "kafka-console failed: {}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_round_trip_with_keys_headers_and_every_start_mode() {
    let broker = Broker::start_empty();
    let b = broker.bootstrap.as_str();

    // Every topic of the table, created once; a second run leaves them as they are.
    let created = ok(console(b, &["topics", "create", "--all"], None));
    let expected = system_tests::system_topics();
    assert_eq!(
        created.matches("created ").count(),
        expected.len(),
        "{created}"
    );
    let again = ok(console(b, &["topics", "create", "--all"], None));
    assert_eq!(again.matches("exists ").count(), expected.len(), "{again}");
    let list = ok(console(b, &["topics", "list"], None));
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["notification-sent-changelog", "6"]),
        "{list}"
    );
    ok(console(
        b,
        &["topics", "create", "demo", "--partitions", "2"],
        None,
    ));

    // Lines with their own headers and keys; with --json, a line that is not JSON is refused and
    // reported, and the others are written.
    let lines =
        "src=a,n=1\tk1:{\"v\":1}\nsrc=b\tk2:{\"v\":2}\nsrc=c\tk1:not json\nsrc=d\tk3:{\"v\":3}\n";
    let out = console(
        b,
        &[
            "produce",
            "-t",
            "demo",
            "-K",
            ":",
            "--line-headers",
            "--json",
            "-H",
            "via=test",
        ],
        Some(lines),
    );
    assert_eq!(out.status.code(), Some(1), "a refused line fails the run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3: value is not JSON"), "{err}");
    assert!(
        err.contains("3 record(s) written to demo, 1 line(s) refused"),
        "{err}"
    );

    let all = ok(console(
        b,
        &["consume", "-t", "demo", "--format", "%k|%h|%s|%p|%o\\n"],
        None,
    ));
    let rows: Vec<Vec<&str>> = all.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 3, "{all}");
    let seen: HashSet<(&str, &str)> = rows.iter().map(|r| (r[0], r[2])).collect();
    assert_eq!(
        seen,
        HashSet::from([
            ("k1", "{\"v\":1}"),
            ("k2", "{\"v\":2}"),
            ("k3", "{\"v\":3}")
        ])
    );
    let k1 = rows.iter().find(|r| r[0] == "k1").expect("k1");
    assert!(
        k1[1].starts_with("via=test,src=a,n=1,traceparent=00-"),
        "{}",
        k1[1]
    );

    // From an offset: in every partition, what is at or after it.
    let from_1 = ok(console(
        b,
        &[
            "consume", "-t", "demo", "--from", "1", "--format", "%p:%o\\n",
        ],
        None,
    ));
    let records = read_all(b, "demo").await;
    let expected: HashSet<String> = records
        .iter()
        .filter(|r| r.offset >= 1)
        .map(|r| format!("{}:{}", r.partition, r.offset))
        .collect();
    assert_eq!(
        from_1.lines().map(str::to_owned).collect::<HashSet<_>>(),
        expected
    );
    // From the end: nothing that is there already.
    assert_eq!(
        ok(console(
            b,
            &["consume", "-t", "demo", "--from", "end"],
            None
        )),
        ""
    );
    // From a time: the records stamped at or after it.
    let writer = Writer::new(b);
    let t = 1_900_000_000_000i64;
    writer.write_at("demo", "old", b"before", t - 60_000).await;
    writer.write_at("demo", "new", b"after", t + 1).await;
    let since = ok(console(
        b,
        &[
            "consume",
            "-t",
            "demo",
            "--from",
            &format!("@{t}"),
            "--format",
            "%s %T\\n",
        ],
        None,
    ));
    assert_eq!(since, format!("after {}\n", t + 1));
    let pretty = ok(console(
        b,
        &[
            "consume",
            "-t",
            "demo",
            "-n",
            "1",
            "--from",
            "@2030-03-17T17:46:40Z",
            "--pretty",
        ],
        None,
    ));
    assert_eq!(
        pretty, "after\n",
        "RFC 3339 times work, and --pretty leaves non-JSON as it is"
    );

    // As a group: what was read is committed, and `groups describe` shows it with the lag.
    let read = ok(console(
        b,
        &["consume", "-t", "demo", "-g", "console-test", "-n", "2"],
        None,
    ));
    assert_eq!(read.lines().count(), 2);
    let describe = ok(console(b, &["groups", "describe", "console-test"], None));
    let committed: i64 = describe
        .lines()
        .filter(|l| l.starts_with("demo "))
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<i64>().ok())
        .sum();
    let total: i64 = records.len() as i64 + 2;
    let lag: i64 = describe
        .lines()
        .find_map(|l| l.strip_prefix("total lag: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("total lag");
    assert!(committed >= 2, "{describe}");
    assert_eq!(
        committed + lag,
        total,
        "committed + lag is every record:\n{describe}"
    );
    let topic = ok(console(b, &["topics", "describe", "demo"], None));
    let high: i64 = topic
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().nth(5)?.parse::<i64>().ok())
        .sum();
    assert_eq!(
        high, total,
        "high watermarks add up to the records written:\n{topic}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_number_typed_into_the_console_comes_out_of_the_processor_in_the_same_trace() {
    let broker = Broker::start_system();
    let processor = Service::start("console_trace", "stream-processor", &broker, &[]);
    processor.wait_ready().await;
    let b = broker.bootstrap.as_str();
    ok(console(
        b,
        &["produce", "-t", topics::INPUT, "-k", "demo"],
        Some("12\n"),
    ));
    let out = eventually("the result", Duration::from_secs(30), || async {
        let out = read_all(b, topics::OUTPUT).await;
        out.into_iter().next()
    })
    .await;
    assert_eq!(out.json()["result"], 144.0);
    let input = read_all(b, topics::INPUT).await;
    let trace = |tp: Option<String>| {
        tp.expect("traceparent")
            .split('-')
            .nth(1)
            .map(str::to_owned)
    };
    assert_eq!(
        trace(out.header("traceparent")),
        trace(input[0].header("traceparent")),
        "the output continues the trace the console started"
    );
    let printed = ok(console(
        b,
        &["consume", "-t", topics::OUTPUT, "--format", "%k %s\\n"],
        None,
    ));
    assert!(printed.starts_with("demo {"), "{printed}");
}

#[test]
fn an_unreachable_broker_is_a_clear_error() {
    let out = console("127.0.0.1:1", &["--timeout", "2", "topics", "list"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: no broker answered at 127.0.0.1:1 within 2 s"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one sentence, no log noise: {err}");
}
