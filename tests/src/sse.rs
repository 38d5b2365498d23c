//! A minimal Server-Sent Events client for tests and benchmarks: HTTP/1.0 (so the body is the
//! bare event stream, not chunked), one event at a time.

use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One event: its `event:` name, `id:` and `data:` (one data line, as the dashboard sends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub id: String,
    pub data: String,
}

pub struct SseClient {
    lines: tokio::io::Lines<BufReader<TcpStream>>,
}

impl SseClient {
    /// Opens `path` on `addr` (optionally resuming after `last_event_id`) and reads past the
    /// response head, which must be a 200 with `text/event-stream`; panics otherwise.
    pub async fn connect(addr: SocketAddr, path: &str, last_event_id: Option<&str>) -> Self {
        Self::try_connect(addr, path, last_event_id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`SseClient::connect`], with what went wrong as an error instead of a panic.
    pub async fn try_connect(
        addr: SocketAddr,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<Self, String> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |e: std::io::Error| format!("{what}: {e}")
        };
        let mut stream = TcpStream::connect(addr).await.map_err(io("connect"))?;
        let resume = last_event_id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        stream
            .write_all(
                format!("GET {path} HTTP/1.0\r\nAccept: text/event-stream\r\n{resume}\r\n")
                    .as_bytes(),
            )
            .await
            .map_err(io("request"))?;
        let mut lines = BufReader::with_capacity(256 * 1024, stream).lines();
        let status = lines
            .next_line()
            .await
            .map_err(io("read"))?
            .ok_or("no status line")?;
        if !status.contains(" 200 ") {
            return Err(status);
        }
        let mut event_stream = false;
        while let Some(line) = lines.next_line().await.map_err(io("read"))? {
            if line.is_empty() {
                break;
            }
            event_stream |= line.eq_ignore_ascii_case("content-type: text/event-stream");
        }
        if !event_stream {
            return Err("not an event stream".into());
        }
        Ok(Self { lines })
    }

    /// The next event, or `None` when the stream ends. Comments (keepalives) are skipped.
    pub async fn next(&mut self) -> Option<Event> {
        let mut event = Event {
            name: "message".into(),
            id: String::new(),
            data: String::new(),
        };
        let mut any = false;
        while let Some(line) = self.lines.next_line().await.ok()? {
            if line.is_empty() {
                if any {
                    return Some(event);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            any = true;
            if let Some(v) = line.strip_prefix("event: ") {
                v.clone_into(&mut event.name);
            } else if let Some(v) = line.strip_prefix("id: ") {
                v.clone_into(&mut event.id);
            } else if let Some(v) = line.strip_prefix("data: ") {
                v.clone_into(&mut event.data);
            }
        }
        None
    }
}
