//! Input limits and the validation every backend runs before it touches the database.

use std::collections::HashSet;
use std::io;

use crate::{NewEvent, StoreError, StreamAppend};

/// Input limits of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest serialized data + metadata of one event, in bytes (default 1 MiB).
    pub max_event_bytes: usize,
    /// Most events one append may carry (default 10,000).
    pub max_batch_events: usize,
    /// Most missed events a conflict carries (default 32).
    pub max_missed_events: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_event_bytes: 1024 * 1024,
            max_batch_events: 10_000,
            max_missed_events: 32,
        }
    }
}

/// Longest event type, in bytes.
const MAX_TYPE_LEN: usize = 200;

/// Checks one stream's batch against the limits: not empty, types well-formed, metadata an
/// object, data + metadata within the size limit.
pub fn validate_batch(events: &[NewEvent], limits: &Limits) -> Result<(), StoreError> {
    if events.is_empty() {
        return Err(StoreError::EmptyBatch);
    }
    if events.len() > limits.max_batch_events {
        return Err(StoreError::InvalidInput(format!(
            "an append may carry at most {} events, this one has {}",
            limits.max_batch_events,
            events.len()
        )));
    }
    let mut ids = HashSet::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        let t = &event.event_type;
        if t.is_empty() || t.len() > MAX_TYPE_LEN || t.chars().any(char::is_control) {
            return Err(StoreError::InvalidInput(format!(
                "event {index} of the batch needs a type of 1 to {MAX_TYPE_LEN} printable characters"
            )));
        }
        if !event.metadata.is_object() {
            return Err(StoreError::InvalidMetadata { index });
        }
        let size = json_len(&event.data) + json_len(&event.metadata);
        if size > limits.max_event_bytes {
            return Err(StoreError::EventTooLarge {
                index,
                size,
                limit: limits.max_event_bytes,
            });
        }
        if !ids.insert(event.event_id) {
            return Err(StoreError::InvalidInput(format!(
                "event {index} of the batch repeats event id {}",
                event.event_id
            )));
        }
    }
    Ok(())
}

/// Checks a multi-stream append: at least one stream, no stream twice, each batch valid.
pub fn validate_appends(appends: &[StreamAppend], limits: &Limits) -> Result<(), StoreError> {
    if appends.is_empty() {
        return Err(StoreError::EmptyBatch);
    }
    let mut streams = HashSet::with_capacity(appends.len());
    let mut ids = HashSet::new();
    for a in appends {
        if !streams.insert(a.stream.as_str()) {
            return Err(StoreError::InvalidInput(format!(
                "stream {} appears twice in one multi-stream append",
                a.stream
            )));
        }
        validate_batch(&a.events, limits)?;
        for e in &a.events {
            if !ids.insert(e.event_id) {
                return Err(StoreError::InvalidInput(format!(
                    "event id {} appears twice in one multi-stream append",
                    e.event_id
                )));
            }
        }
    }
    Ok(())
}

/// Serialized length of a JSON value, without allocating the text.
fn json_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    serde_json::to_writer(&mut c, value).expect("serializing a JSON value cannot fail");
    c.0
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{ExpectedSeq, StreamName};

    fn ev() -> NewEvent {
        NewEvent::new("Noted", json!({"a": 1}))
    }

    #[test]
    fn accepts_a_normal_batch() {
        validate_batch(&[ev(), ev()], &Limits::default()).unwrap();
    }

    #[test]
    fn refuses_each_limit() {
        let l = Limits::default();
        assert_eq!(validate_batch(&[], &l).unwrap_err().code(), "empty_batch");
        let bad_meta = ev().with_metadata(json!([1]));
        assert_eq!(
            validate_batch(&[ev(), bad_meta], &l).unwrap_err().code(),
            "invalid_metadata"
        );
        let big = NewEvent::new("Big", json!("x".repeat(1024 * 1024)));
        let err = validate_batch(&[big], &l).unwrap_err();
        assert!(matches!(
            err,
            StoreError::EventTooLarge {
                index: 0,
                limit: 1048576,
                ..
            }
        ));
        let small = Limits {
            max_event_bytes: 10,
            ..l
        };
        assert_eq!(validate_batch(&[ev()], &small).unwrap(), ());
        let meta_big = ev().with_metadata(json!({"k": "0123456789"}));
        assert_eq!(
            validate_batch(&[meta_big], &small).unwrap_err().code(),
            "event_too_large"
        );
        let mut empty_type = ev();
        empty_type.event_type.clear();
        assert_eq!(
            validate_batch(&[empty_type], &l).unwrap_err().code(),
            "invalid_input"
        );
        let e = ev();
        assert_eq!(
            validate_batch(&[e.clone(), e], &l).unwrap_err().code(),
            "invalid_input"
        );
    }

    #[test]
    fn multi_stream_refuses_repeats() {
        let l = Limits::default();
        let s = StreamName::parse("a-1").unwrap();
        let one = StreamAppend::new(s.clone(), ExpectedSeq::Any, vec![ev()]);
        let two = StreamAppend::new(s, ExpectedSeq::Any, vec![ev()]);
        assert_eq!(
            validate_appends(&[one, two], &l).unwrap_err().code(),
            "invalid_input"
        );
        assert_eq!(validate_appends(&[], &l).unwrap_err().code(), "empty_batch");
    }
}
