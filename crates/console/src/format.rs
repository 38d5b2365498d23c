//! The pure parts of the tool: an input line into a record, a record into an output line.

use std::fmt::Write as _;

/// What `produce` makes of one input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub value: String,
}

/// How `produce` reads a line.
#[derive(Debug, Clone, Default)]
pub struct LineFormat {
    /// `-k`: the key of every record (unless the line has its own).
    pub key: Option<String>,
    /// `-K`: each line is `key<SEP>value`.
    pub key_separator: Option<String>,
    /// `-H`: headers of every record.
    pub headers: Vec<(String, String)>,
    /// `--line-headers`: each line starts with `name=value[,name=value…]` and a tab.
    pub line_headers: bool,
    /// `--json`: the value must be JSON.
    pub json: bool,
}

/// Why a line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("no `{0}` between key and value")]
    NoKeySeparator(String),
    #[error("no tab after the line's headers")]
    NoHeaderEnd,
    #[error("header `{0}` is not name=value")]
    Header(String),
    #[error("value is not JSON: {0}")]
    Json(String),
}

/// Splits `name=value`.
pub fn header(text: &str) -> Result<(String, String), LineError> {
    let (k, v) = text
        .split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| LineError::Header(text.to_owned()))?;
    Ok((k.to_owned(), v.to_owned()))
}

impl LineFormat {
    pub fn parse(&self, line: &str) -> Result<Line, LineError> {
        let mut rest = line;
        let mut headers = self.headers.clone();
        if self.line_headers {
            let (h, r) = rest.split_once('\t').ok_or(LineError::NoHeaderEnd)?;
            for pair in h.split(',').filter(|p| !p.is_empty()) {
                headers.push(header(pair)?);
            }
            rest = r;
        }
        let mut key = self.key.clone();
        if let Some(sep) = &self.key_separator {
            let (k, r) = rest
                .split_once(sep.as_str())
                .ok_or_else(|| LineError::NoKeySeparator(sep.clone()))?;
            key = Some(k.to_owned());
            rest = r;
        }
        if self.json {
            serde_json::from_str::<serde_json::Value>(rest)
                .map_err(|e| LineError::Json(e.to_string()))?;
        }
        Ok(Line {
            key,
            headers,
            value: rest.to_owned(),
        })
    }
}

/// A consumed record, as the format string sees it.
#[derive(Debug, Clone, Default)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

/// The `--format` string: `%t` topic, `%p` partition, `%o` offset, `%T` timestamp (ms),
/// `%k` key, `%s` value, `%h` headers (`name=value,…`), `%S` value size, `%%` a percent sign,
/// `\n` and `\t`. With `pretty`, a JSON value is indented.
pub fn render(format: &str, record: &Record<'_>, pretty: bool) -> String {
    fn text(b: Option<&[u8]>) -> String {
        b.map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('t') => out.push_str(record.topic),
                Some('p') => write!(out, "{}", record.partition).expect("string"),
                Some('o') => write!(out, "{}", record.offset).expect("string"),
                Some('T') => {
                    if let Some(ts) = record.timestamp {
                        write!(out, "{ts}").expect("string");
                    }
                }
                Some('k') => out.push_str(&text(record.key)),
                Some('s') => out.push_str(&value(record.value, pretty)),
                Some('S') => {
                    write!(out, "{}", record.value.map_or(0, <[u8]>::len)).expect("string");
                }
                Some('h') => {
                    let headers: Vec<String> = record
                        .headers
                        .iter()
                        .map(|(k, v)| format!("{k}={}", text(*v)))
                        .collect();
                    out.push_str(&headers.join(","));
                }
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            },
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

fn value(bytes: Option<&[u8]>, pretty: bool) -> String {
    let Some(bytes) = bytes else {
        return String::new();
    };
    if pretty && let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) {
        return serde_json::to_string_pretty(&v).expect("json");
    }
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_line_is_its_value() {
        let line = LineFormat::default().parse("42").unwrap();
        assert_eq!(
            line,
            Line {
                key: None,
                headers: vec![],
                value: "42".into()
            }
        );
    }

    #[test]
    fn keys_and_headers_come_from_the_line_or_the_flags() {
        let f = LineFormat {
            key: Some("default".into()),
            key_separator: Some(":".into()),
            headers: vec![("source".into(), "cli".into())],
            line_headers: true,
            json: false,
        };
        let line = f.parse("tenant=a,trace=x\tuser-7:{\"n\": 1}").unwrap();
        assert_eq!(line.key.as_deref(), Some("user-7"));
        assert_eq!(
            line.headers,
            vec![
                ("source".to_owned(), "cli".to_owned()),
                ("tenant".to_owned(), "a".to_owned()),
                ("trace".to_owned(), "x".to_owned())
            ]
        );
        assert_eq!(line.value, "{\"n\": 1}");
        assert_eq!(
            f.parse("no-tab user:1"),
            Err(LineError::NoHeaderEnd),
            "a line without its headers is refused"
        );
        assert_eq!(
            f.parse("\tno separator"),
            Err(LineError::NoKeySeparator(":".into()))
        );
        assert_eq!(f.parse("=x\tk:v"), Err(LineError::Header("=x".into())));
    }

    #[test]
    fn json_is_checked_on_request() {
        let f = LineFormat {
            json: true,
            ..LineFormat::default()
        };
        assert!(f.parse("{\"a\": 1}").is_ok());
        assert!(matches!(f.parse("{\"a\": "), Err(LineError::Json(_))));
    }

    #[test]
    fn the_format_string_names_every_part_of_a_record() {
        let r = Record {
            topic: "orders",
            partition: 2,
            offset: 17,
            timestamp: Some(1_700_000_000_000),
            key: Some(b"k1"),
            value: Some(b"{\"a\":1}"),
            headers: vec![("traceparent", Some(b"00-ab".as_slice())), ("x", None)],
        };
        assert_eq!(
            render("%t[%p]@%o %T %k=%s (%S B) %h 100%%\\n", &r, false),
            "orders[2]@17 1700000000000 k1={\"a\":1} (7 B) traceparent=00-ab,x= 100%\n"
        );
        assert_eq!(render("%s", &r, true), "{\n  \"a\": 1\n}");
        assert_eq!(
            render("%q \\q", &r, false),
            "%q \\q",
            "unknown escapes stay"
        );
    }
}
