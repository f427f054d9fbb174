//! Recognising idempotent retries and building conflicts, shared by every backend.

use crate::{AppendResult, Conflict, Envelope, ExpectedSeq, NewEvent, Seq, StoreError, StreamName};

/// Decides what a refused append was, given the stored events that carry the batch's ids.
///
/// `existing` are the envelopes whose `event_id` is one of `events`' ids, in any order.
/// Returns `None` when none exists (a genuine conflict), the original result when every event
/// is stored in this stream, in this order, at consecutive seqs, with the same type and data
/// (metadata is per request and not compared), and `event_id_reused` otherwise.
pub fn match_replay(
    stream: &StreamName,
    events: &[NewEvent],
    existing: &[Envelope],
) -> Option<Result<AppendResult, StoreError>> {
    let first = events.first()?;
    if existing.is_empty() {
        return None;
    }
    let find = |id| existing.iter().find(|e| e.event_id == id);
    let reused = |id| Some(Err(StoreError::EventIdReused { event_id: id }));
    let Some(head) = find(first.event_id) else {
        return reused(existing[0].event_id);
    };
    let mut last = head;
    for (i, event) in events.iter().enumerate() {
        let Some(stored) = find(event.event_id) else {
            return reused(existing[0].event_id);
        };
        let same = stored.stream == *stream
            && stored.seq == head.seq.plus(i as u64)
            && stored.event_type == event.event_type
            && stored.data == event.data;
        if !same {
            return reused(event.event_id);
        }
        last = stored;
    }
    Some(Ok(AppendResult {
        stream: stream.clone(),
        first_seq: head.seq,
        last_seq: last.seq,
        position: last.position,
        replayed: true,
    }))
}

impl Conflict {
    /// A conflict error; `missed` may hold one event more than `limit` to signal truncation.
    pub fn error(
        stream: &StreamName,
        expected: ExpectedSeq,
        current_seq: Seq,
        mut missed: Vec<Envelope>,
        limit: usize,
    ) -> StoreError {
        let missed_truncated = missed.len() > limit;
        missed.truncate(limit);
        StoreError::Conflict(Box::new(Conflict {
            stream: stream.clone(),
            expected,
            current_seq,
            missed,
            missed_truncated,
        }))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::Position;

    fn stored(stream: &StreamName, seq: u64, e: &NewEvent) -> Envelope {
        Envelope {
            event_id: e.event_id,
            stream: stream.clone(),
            seq: Seq(seq),
            position: Position(100 + seq),
            event_type: e.event_type.clone(),
            data: e.data.clone(),
            metadata: json!({"request_id": "first"}),
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn no_stored_ids_is_not_a_replay() {
        let s = StreamName::parse("t-1").unwrap();
        assert!(match_replay(&s, &[NewEvent::new("A", json!({}))], &[]).is_none());
    }

    #[test]
    fn same_events_replay_the_original_result() {
        let s = StreamName::parse("t-1").unwrap();
        let a = NewEvent::new("A", json!({"x": 1}));
        let b = NewEvent::new("B", json!({"y": 2}));
        let existing = vec![stored(&s, 5, &b), stored(&s, 4, &a)];
        let r = match_replay(&s, &[a, b], &existing).unwrap().unwrap();
        assert_eq!(
            (r.first_seq, r.last_seq, r.position),
            (Seq(4), Seq(5), Position(105))
        );
        assert!(r.replayed);
    }

    #[test]
    fn other_content_order_stream_or_subset_is_reuse() {
        let s = StreamName::parse("t-1").unwrap();
        let other = StreamName::parse("t-2").unwrap();
        let a = NewEvent::new("A", json!({"x": 1}));
        let b = NewEvent::new("B", json!({"y": 2}));
        let reuse = |r: Option<Result<AppendResult, StoreError>>| {
            assert_eq!(r.unwrap().unwrap_err().code(), "event_id_reused")
        };
        let changed = NewEvent {
            data: json!({"x": 2}),
            ..a.clone()
        };
        reuse(match_replay(&s, &[changed], &[stored(&s, 1, &a)]));
        let renamed = NewEvent {
            event_type: "Z".into(),
            ..a.clone()
        };
        reuse(match_replay(&s, &[renamed], &[stored(&s, 1, &a)]));
        reuse(match_replay(
            &s,
            std::slice::from_ref(&a),
            &[stored(&other, 1, &a)],
        ));
        let swapped = vec![stored(&s, 1, &b), stored(&s, 2, &a)];
        reuse(match_replay(&s, &[a.clone(), b.clone()], &swapped));
        let fresh = NewEvent::new("C", json!({}));
        reuse(match_replay(&s, &[a.clone(), fresh], &[stored(&s, 1, &a)]));
    }

    #[test]
    fn conflict_truncates_missed() {
        let s = StreamName::parse("t-1").unwrap();
        let e = NewEvent::new("A", json!({}));
        let missed = (1..=4).map(|i| stored(&s, i, &e)).collect();
        let err = Conflict::error(&s, ExpectedSeq::Exact(Seq(0)), Seq(4), missed, 3);
        let c = err.as_conflict().unwrap();
        assert_eq!(
            (c.missed.len(), c.missed_truncated, c.current_seq),
            (3, true, Seq(4))
        );
    }
}
