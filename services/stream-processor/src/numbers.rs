//! The seeds' demo: a number in, its square out, with the running aggregate of its key.
//!
//! Records of one key are handled one after the other, in offset order (the consume loop's
//! promise), so the state of a key remembers the offset of the last record applied to it. A record
//! at or before that offset is a redelivery: the last one is answered again from the state (its
//! output may have been lost with a crash), earlier ones were answered already.

use chrono::{DateTime, Utc};
use events::{Aggregate, NumberProcessed};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace of output ids: `uuid5(NUMBER_EVENTS, "<topic>/<partition>/<offset>")`.
const NUMBER_EVENTS: Uuid = Uuid::from_u128(0x5d1e_8a3b_7c42_4f90_a6d1_2b3c_4d5e_6f70);

/// The state key of a record's key: keyless records aggregate together, per partition.
pub const KEYLESS: &str = "(none)";

/// A key's state: its aggregate, and the last input offset applied to it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KeyState {
    pub aggregate: Aggregate,
    pub last_offset: i64,
}

/// Why an input is not a number.
pub fn parse(payload: Option<&[u8]>) -> Result<f64, String> {
    let text = std::str::from_utf8(payload.unwrap_or_default())
        .map_err(|_| "payload is not UTF-8 text".to_owned())?
        .trim();
    if text.is_empty() {
        return Err("empty record: expected a number".into());
    }
    text.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .ok_or_else(|| format!("`{}` is not a finite number", truncate(text, 64)))
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Where an input record sits.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a str>,
    pub timestamp: DateTime<Utc>,
}

/// What to do with one input.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// New: write this state, then publish this output.
    Apply(KeyState, NumberProcessed),
    /// The last record applied, again: write the state again and republish its output.
    Replay(KeyState, NumberProcessed),
    /// Applied and answered before: nothing to do.
    Done,
}

/// The transform: the square.
pub fn transform(input: f64) -> f64 {
    input * input
}

pub fn step(state: Option<KeyState>, input: f64, source: &Source<'_>) -> Step {
    let output = |aggregate| NumberProcessed {
        event_id: Uuid::new_v5(
            &NUMBER_EVENTS,
            format!("{}/{}/{}", source.topic, source.partition, source.offset).as_bytes(),
        ),
        event_type: NumberProcessed::EVENT_TYPE.to_owned(),
        occurred_at: source.timestamp,
        key: source.key.map(str::to_owned),
        input,
        result: transform(input),
        aggregate,
        source_partition: source.partition,
        source_offset: source.offset,
    };
    match state {
        Some(s) if source.offset == s.last_offset => Step::Replay(s, output(s.aggregate)),
        Some(s) if source.offset < s.last_offset => Step::Done,
        previous => {
            let aggregate = previous.map_or(Aggregate::of(input), |s| s.aggregate.with(input));
            let next = KeyState {
                aggregate,
                last_offset: source.offset,
            };
            Step::Apply(next, output(aggregate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(offset: i64) -> Source<'static> {
        Source {
            topic: "input-topic",
            partition: 1,
            offset,
            key: Some("k"),
            timestamp: DateTime::from_timestamp_millis(1_700_000_000_000).unwrap(),
        }
    }

    fn run(inputs: &[(i64, f64)]) -> (Option<KeyState>, Vec<Step>) {
        let mut state = None;
        let mut steps = Vec::new();
        for (offset, n) in inputs {
            let s = step(state, *n, &source(*offset));
            if let Step::Apply(next, _) | Step::Replay(next, _) = &s {
                state = Some(*next);
            }
            steps.push(s);
        }
        (state, steps)
    }

    #[test]
    fn numbers_parse_as_typed() {
        assert_eq!(parse(Some(b"5")), Ok(5.0));
        assert_eq!(parse(Some(b" -2.5\n")), Ok(-2.5));
        assert_eq!(parse(Some(b"1e3")), Ok(1000.0));
        assert!(parse(Some(b"five")).unwrap_err().contains("`five`"));
        assert!(parse(Some(b"NaN")).is_err());
        assert!(parse(Some(b"inf")).is_err());
        assert!(parse(None).is_err());
        assert!(parse(Some(&[0xff])).is_err());
    }

    #[test]
    fn each_number_is_squared_and_aggregated() {
        let (state, steps) = run(&[(0, 3.0), (4, -1.0), (9, 4.0)]);
        let Step::Apply(_, out) = &steps[2] else {
            panic!("{steps:?}")
        };
        assert_eq!(out.result, 16.0);
        assert_eq!(
            out.aggregate,
            Aggregate {
                count: 3,
                sum: 6.0,
                mean: 2.0,
                min: -1.0,
                max: 4.0
            }
        );
        assert_eq!(state.unwrap().last_offset, 9);
    }

    #[test]
    fn a_redelivery_never_counts_twice_and_answers_identically() {
        let (state, steps) = run(&[(0, 3.0), (1, 5.0)]);
        let Step::Apply(_, last) = &steps[1] else {
            panic!()
        };
        // The crash came after the state of offset 1 was written: 0 and 1 come again.
        assert_eq!(step(state, 3.0, &source(0)), Step::Done);
        assert_eq!(
            step(state, 5.0, &source(1)),
            Step::Replay(state.unwrap(), last.clone())
        );
        assert_eq!(state.unwrap().aggregate.count, 2);
    }

    #[test]
    fn output_ids_follow_the_input_position() {
        let (_, a) = run(&[(7, 1.0)]);
        let (_, b) = run(&[(7, 2.0)]);
        let (_, c) = run(&[(8, 1.0)]);
        let id = |s: &Step| match s {
            Step::Apply(_, o) => o.event_id,
            _ => panic!(),
        };
        assert_eq!(id(&a[0]), id(&b[0]));
        assert_ne!(id(&a[0]), id(&c[0]));
    }
}
