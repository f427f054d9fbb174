//! Checking hash chains: a pure walker fed stored events in (stream, seq) order that names
//! every broken link, and the check of a pinned stream head.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use crate::chain::{ChainHash, ChainedEvent, Link, StreamHead};
use crate::{Position, Seq};

/// Mismatched events a stream holds back to pair up swaps; past this, each is reported as a
/// changed payload at once, so memory stays bounded whatever the stream's length.
const SWAP_WINDOW: usize = 16;

/// What is wrong with a link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// The stored hash does not match the event's contents and the previous hash.
    PayloadChanged,
    /// Seqs `first..=last` are absent from the stream.
    EventMissing {
        /// The first absent seq.
        first: Seq,
        /// The last absent seq.
        last: Seq,
    },
    /// The event carries the contents (type, data, metadata) hashed for another seq.
    EventsSwapped {
        /// The seq whose contents this event carries.
        with: Seq,
    },
    /// The stored previous hash is not the hash of the event before (or not the genesis
    /// value for seq 1).
    PointerWrong,
    /// The event has no stored hash.
    HashMissing,
    /// A pinned head's seq now holds an event with another hash: history was rewritten.
    PinnedHeadRewritten {
        /// The pinned hash.
        pinned: ChainHash,
    },
    /// The stream is shorter than a pinned head: history was removed.
    PinnedHeadGone {
        /// The stream's seq now.
        now: Seq,
    },
}

impl Fault {
    /// The fault's stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Fault::PayloadChanged => "payload_changed",
            Fault::EventMissing { .. } => "event_missing",
            Fault::EventsSwapped { .. } => "events_swapped",
            Fault::PointerWrong => "chain_pointer_wrong",
            Fault::HashMissing => "hash_missing",
            Fault::PinnedHeadRewritten { .. } => "pinned_head_rewritten",
            Fault::PinnedHeadGone { .. } => "pinned_head_gone",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::PayloadChanged => {
                f.write_str("payload changed: the stored hash does not match the event")
            }
            Fault::EventMissing { first, last } if first == last => {
                write!(f, "event missing: seq {first} is absent")
            }
            Fault::EventMissing { first, last } => {
                write!(f, "events missing: seqs {first} to {last} are absent")
            }
            Fault::EventsSwapped { with } => {
                write!(f, "events swapped: this event holds what seq {with} held")
            }
            Fault::PointerWrong => {
                f.write_str("chain pointer wrong: prev_hash is not the hash of the event before")
            }
            Fault::HashMissing => f.write_str("hash missing: the event is not chained"),
            Fault::PinnedHeadRewritten { pinned } => {
                write!(f, "pinned head rewritten: the pinned hash was {pinned}")
            }
            Fault::PinnedHeadGone { now } => {
                write!(f, "pinned head gone: the stream now ends at seq {now}")
            }
        }
    }
}

/// A broken link: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Break {
    /// The stream.
    pub stream: String,
    /// The seq of the event at fault (for missing events, the first absent seq).
    pub seq: Seq,
    /// The position of the event at fault, where one is stored.
    pub position: Option<Position>,
    /// What is wrong.
    #[serde(flatten)]
    pub fault: Fault,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} seq {}: {}", self.stream, self.seq, self.fault)
    }
}

/// The stream being walked.
struct Walk {
    stream: String,
    last_seq: Seq,
    /// The stored hash of the last event, when it has one.
    last_hash: Option<ChainHash>,
    /// Events whose hash did not match, held to pair up swaps.
    mismatched: Vec<ChainedEvent>,
}

/// Walks chains: feed it stored events in (stream, seq) order, one stream after another;
/// it answers the breaks it can name so far. Holds at most a few events at a time.
pub struct ChainWalker {
    /// Whether each stream is walked from its first event (otherwise from wherever the read
    /// starts, trusting the first event's stored previous hash).
    from_start: bool,
    walk: Option<Walk>,
    /// Events checked.
    pub events: u64,
    /// Streams checked.
    pub streams: u64,
}

impl ChainWalker {
    /// A walker of whole streams (`from_start`) or of streams read from some position on.
    pub fn new(from_start: bool) -> Self {
        Self {
            from_start,
            walk: None,
            events: 0,
            streams: 0,
        }
    }

    /// Checks the next event; returns the breaks found so far.
    pub fn push(&mut self, event: ChainedEvent) -> Vec<Break> {
        let mut breaks = Vec::new();
        let same = self
            .walk
            .as_ref()
            .is_some_and(|w| w.stream == event.envelope.stream.as_str());
        if !same {
            breaks.extend(self.finish_stream());
            self.streams += 1;
            let first = event.envelope.seq;
            let (last_seq, last_hash) = if self.from_start {
                (Seq::ZERO, Some(ChainHash::GENESIS))
            } else {
                (Seq(first.0.saturating_sub(1)), event.prev_hash)
            };
            self.walk = Some(Walk {
                stream: event.envelope.stream.as_str().to_string(),
                last_seq,
                last_hash,
                mismatched: Vec::new(),
            });
        }
        self.events += 1;
        let walk = self.walk.as_mut().expect("a walk was just started");
        let e = &event.envelope;
        let at = |fault| Break {
            stream: e.stream.as_str().to_string(),
            seq: e.seq,
            position: Some(e.position),
            fault,
        };
        let expected_seq = walk.last_seq.plus(1);
        let contiguous = e.seq == expected_seq;
        if e.seq > expected_seq {
            breaks.push(Break {
                seq: expected_seq,
                position: None,
                ..at(Fault::EventMissing {
                    first: expected_seq,
                    last: Seq(e.seq.0 - 1),
                })
            });
        }
        match (event.prev_hash, event.hash) {
            (Some(prev), Some(hash)) => {
                if contiguous && walk.last_hash.is_some_and(|last| last != prev) {
                    breaks.push(at(Fault::PointerWrong));
                }
                if Link::of(e).hash(&prev) != hash {
                    if walk.mismatched.len() < SWAP_WINDOW {
                        walk.mismatched.push(event.clone());
                    } else {
                        breaks.push(at(Fault::PayloadChanged));
                    }
                }
            }
            _ => breaks.push(at(Fault::HashMissing)),
        }
        walk.last_seq = e.seq;
        walk.last_hash = event.hash;
        breaks
    }

    /// Ends the walk: the breaks still held back.
    pub fn finish(&mut self) -> Vec<Break> {
        self.finish_stream()
    }

    /// Ends the current stream: pairs up swapped events, the rest changed.
    fn finish_stream(&mut self) -> Vec<Break> {
        let Some(walk) = self.walk.take() else {
            return Vec::new();
        };
        let held = walk.mismatched;
        let mut swapped_with: Vec<Option<Seq>> = vec![None; held.len()];
        for i in 0..held.len() {
            for j in i + 1..held.len() {
                if swapped_with[i].is_none()
                    && swapped_with[j].is_none()
                    && holds_contents_of(&held[i], &held[j])
                    && holds_contents_of(&held[j], &held[i])
                {
                    swapped_with[i] = Some(held[j].envelope.seq);
                    swapped_with[j] = Some(held[i].envelope.seq);
                }
            }
        }
        held.iter()
            .zip(swapped_with)
            .map(|(e, with)| Break {
                stream: walk.stream.clone(),
                seq: e.envelope.seq,
                position: Some(e.envelope.position),
                fault: with.map_or(Fault::PayloadChanged, |with| Fault::EventsSwapped { with }),
            })
            .collect()
    }
}

/// Whether `event`'s stored hash is the hash of its own place with `other`'s contents (its
/// data, or its type, data and metadata).
fn holds_contents_of(event: &ChainedEvent, other: &ChainedEvent) -> bool {
    let (Some(prev), Some(hash)) = (event.prev_hash, event.hash) else {
        return false;
    };
    let own = Link::of(&event.envelope);
    let theirs = &other.envelope;
    let data_only = Link {
        data: &theirs.data,
        ..own
    };
    let contents = Link {
        event_type: &theirs.event_type,
        data: &theirs.data,
        metadata: &theirs.metadata,
        ..own
    };
    data_only.hash(&prev) == hash || contents.hash(&prev) == hash
}

/// Checks a whole log read in position order (an export being loaded): each event must come
/// after the one before it, continue its stream's chain from seq 1, and hash to its stored
/// hash. Keeps each stream's last seq and hash, so its memory grows with the number of
/// streams, not of events.
#[derive(Default)]
pub struct LogChecker {
    heads: HashMap<String, (Seq, ChainHash)>,
    last_position: Option<Position>,
}

impl LogChecker {
    /// A checker of a log that starts empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next event; the fault when it does not follow.
    pub fn check(&mut self, event: &ChainedEvent) -> Result<(), String> {
        let e = &event.envelope;
        if let Some(last) = self.last_position.filter(|last| e.position <= *last) {
            return Err(format!(
                "position {} does not come after position {last}",
                e.position
            ));
        }
        let (Some(prev), Some(hash)) = (event.prev_hash, event.hash) else {
            return Err(Fault::HashMissing.to_string());
        };
        let (last_seq, last_hash) = self
            .heads
            .get(e.stream.as_str())
            .copied()
            .unwrap_or((Seq::ZERO, ChainHash::GENESIS));
        if e.seq != last_seq.plus(1) {
            return Err(format!(
                "{} seq {} does not follow seq {last_seq} (an import needs every stream whole, \
                 in order)",
                e.stream, e.seq
            ));
        }
        let fault = if prev != last_hash {
            Some(Fault::PointerWrong)
        } else if Link::of(e).hash(&prev) != hash {
            Some(Fault::PayloadChanged)
        } else {
            None
        };
        if let Some(fault) = fault {
            return Err(format!("{} seq {}: {fault}", e.stream, e.seq));
        }
        self.heads
            .insert(e.stream.as_str().to_string(), (e.seq, hash));
        self.last_position = Some(e.position);
        Ok(())
    }
}

/// Checks pinned heads during a walk of their streams: each pin must meet an event at its seq
/// with its hash. Keeps only the pins and their streams' last seqs.
#[derive(Default)]
pub struct PinChecker {
    pins: HashMap<String, StreamHead>,
    last: HashMap<String, Seq>,
    checked: usize,
}

impl PinChecker {
    /// A checker of `pins`.
    pub fn new(pins: impl IntoIterator<Item = StreamHead>) -> Self {
        Self {
            pins: pins
                .into_iter()
                .map(|p| (p.stream.as_str().to_string(), p))
                .collect(),
            ..Self::default()
        }
    }

    /// Checks the next event of the walk: the break when it sits at its stream's pinned seq
    /// with another hash.
    pub fn see(&mut self, event: &ChainedEvent) -> Option<Break> {
        let e = &event.envelope;
        let pin = self.pins.get(e.stream.as_str())?;
        self.last.insert(e.stream.as_str().to_string(), e.seq);
        if e.seq != pin.seq {
            return None;
        }
        let pin = self.pins.remove(e.stream.as_str())?;
        self.checked += 1;
        check_pin(&pin, Some(event), e.seq)
    }

    /// Ends the walk: a break for each pin whose stream now ends before the pinned seq; the
    /// number of pins checked.
    pub fn finish(self) -> (Vec<Break>, usize) {
        let gone: Vec<Break> = self
            .pins
            .values()
            .filter_map(|pin| {
                let now = self
                    .last
                    .get(pin.stream.as_str())
                    .copied()
                    .unwrap_or(Seq::ZERO);
                check_pin(pin, None, now)
            })
            .collect();
        let checked = self.checked + gone.len();
        (gone, checked)
    }
}

/// Checks a pinned head against the stored event at its seq (`None` when the stream is now
/// shorter, ending at `now`): history may have been extended, never rewritten.
pub fn check_pin(pin: &StreamHead, stored: Option<&ChainedEvent>, now: Seq) -> Option<Break> {
    let at = |fault, position| Break {
        stream: pin.stream.as_str().to_string(),
        seq: pin.seq,
        position,
        fault,
    };
    match stored {
        None => Some(at(Fault::PinnedHeadGone { now }, None)),
        Some(e) if e.hash != Some(pin.hash) => Some(at(
            Fault::PinnedHeadRewritten { pinned: pin.hash },
            Some(e.envelope.position),
        )),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::chain_links;
    use crate::{Envelope, StreamName};
    use chrono::{TimeZone, Utc};
    use serde_json::json;
    use uuid::Uuid;

    /// A well-chained stream of `n` events.
    fn stream(name: &str, n: u64, first_position: u64) -> Vec<ChainedEvent> {
        let envelopes: Vec<Envelope> = (1..=n)
            .map(|seq| Envelope {
                event_id: Uuid::from_u128(u128::from(first_position + seq)),
                stream: StreamName::parse(name).unwrap(),
                seq: Seq(seq),
                position: Position(first_position + seq),
                event_type: format!("Type{seq}"),
                data: json!({"n": seq}),
                metadata: json!({"actor": "a"}),
                recorded_at: Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, seq as u32).unwrap(),
            })
            .collect();
        let links = chain_links(ChainHash::GENESIS, envelopes.iter().map(Link::of));
        envelopes
            .into_iter()
            .zip(links)
            .map(|(envelope, (prev, hash))| ChainedEvent {
                envelope,
                prev_hash: Some(prev),
                hash: Some(hash),
            })
            .collect()
    }

    fn walk(events: Vec<ChainedEvent>, from_start: bool) -> (Vec<Break>, ChainWalker) {
        let mut w = ChainWalker::new(from_start);
        let mut breaks: Vec<Break> = events.into_iter().flat_map(|e| w.push(e)).collect();
        breaks.extend(w.finish());
        (breaks, w)
    }

    fn faults(breaks: &[Break]) -> Vec<(String, u64, &'static str)> {
        breaks
            .iter()
            .map(|b| (b.stream.clone(), b.seq.0, b.fault.code()))
            .collect()
    }

    #[test]
    fn intact_chains_pass() {
        let mut events = stream("a-1", 5, 0);
        events.extend(stream("b-1", 3, 5));
        let (breaks, w) = walk(events, true);
        assert!(breaks.is_empty(), "{breaks:?}");
        assert_eq!((w.events, w.streams), (8, 2));
    }

    #[test]
    fn a_changed_payload_is_named() {
        let mut events = stream("a-1", 5, 0);
        events[2].envelope.data = json!({"n": 33});
        let (breaks, _) = walk(events, true);
        assert_eq!(faults(&breaks), [("a-1".into(), 3, "payload_changed")]);
    }

    #[test]
    fn a_changed_time_is_named() {
        let mut events = stream("a-1", 3, 0);
        events[1].envelope.recorded_at += chrono::Duration::seconds(1);
        let (breaks, _) = walk(events, true);
        assert_eq!(faults(&breaks), [("a-1".into(), 2, "payload_changed")]);
    }

    #[test]
    fn a_missing_event_is_named() {
        let mut events = stream("a-1", 5, 0);
        events.remove(2);
        let (breaks, _) = walk(events.clone(), true);
        assert_eq!(faults(&breaks), [("a-1".into(), 3, "event_missing")]);
        assert_eq!(
            breaks[0].to_string(),
            "a-1 seq 3: event missing: seq 3 is absent"
        );
        events.remove(0);
        let (breaks, _) = walk(events, true);
        assert_eq!(
            faults(&breaks),
            [
                ("a-1".into(), 1, "event_missing"),
                ("a-1".into(), 3, "event_missing")
            ]
        );
    }

    #[test]
    fn swapped_payloads_are_named_as_a_pair() {
        let mut events = stream("a-1", 5, 0);
        let (d1, d4) = (
            events[1].envelope.data.clone(),
            events[3].envelope.data.clone(),
        );
        events[1].envelope.data = d4;
        events[3].envelope.data = d1;
        let (breaks, _) = walk(events.clone(), true);
        assert_eq!(
            faults(&breaks),
            [
                ("a-1".into(), 2, "events_swapped"),
                ("a-1".into(), 4, "events_swapped")
            ]
        );
        assert_eq!(breaks[0].fault, Fault::EventsSwapped { with: Seq(4) });
        // Whole contents swapped (type, data, metadata) are a swap too.
        let (a, b) = (events[0].envelope.clone(), events[2].envelope.clone());
        events[0].envelope = Envelope {
            event_type: b.event_type.clone(),
            data: b.data.clone(),
            ..a.clone()
        };
        events[2].envelope = Envelope {
            event_type: a.event_type,
            data: a.data,
            ..b
        };
        let (breaks, _) = walk(events, true);
        assert_eq!(breaks.len(), 4, "{breaks:?}");
        assert_eq!(breaks[0].fault, Fault::EventsSwapped { with: Seq(3) });
    }

    #[test]
    fn a_wrong_pointer_is_named() {
        let mut events = stream("a-1", 4, 0);
        // Rewritten whole and rehashed on a made-up previous hash.
        let fake = ChainHash([9; 32]);
        events[2].prev_hash = Some(fake);
        events[2].hash = Some(Link::of(&events[2].envelope).hash(&fake));
        let (breaks, _) = walk(events.clone(), true);
        // Seq 3 no longer points at seq 2, and seq 4 no longer at the rewritten seq 3.
        assert_eq!(
            faults(&breaks),
            [
                ("a-1".into(), 3, "chain_pointer_wrong"),
                ("a-1".into(), 4, "chain_pointer_wrong")
            ]
        );
        // The first event must chain to the genesis value.
        let mut first = stream("a-1", 1, 0);
        first[0].prev_hash = Some(fake);
        first[0].hash = Some(Link::of(&first[0].envelope).hash(&fake));
        let (breaks, _) = walk(first, true);
        assert_eq!(faults(&breaks), [("a-1".into(), 1, "chain_pointer_wrong")]);
    }

    #[test]
    fn a_missing_hash_is_named() {
        let mut events = stream("a-1", 3, 0);
        events[1].hash = None;
        let (breaks, _) = walk(events, true);
        assert_eq!(faults(&breaks), [("a-1".into(), 2, "hash_missing")]);
    }

    #[test]
    fn a_walk_from_a_position_trusts_the_first_previous_hash() {
        let events: Vec<_> = stream("a-1", 6, 0).into_iter().skip(3).collect();
        let (breaks, _) = walk(events.clone(), false);
        assert!(breaks.is_empty(), "{breaks:?}");
        let (breaks, _) = walk(events, true);
        assert_eq!(faults(&breaks), [("a-1".into(), 1, "event_missing")]);
    }

    #[test]
    fn many_mismatches_stay_bounded_and_are_all_named() {
        let mut events = stream("a-1", 40, 0);
        for e in &mut events {
            e.envelope.data = json!("changed");
        }
        let (breaks, _) = walk(events, true);
        assert_eq!(breaks.len(), 40);
        assert!(breaks.iter().all(|b| b.fault == Fault::PayloadChanged));
    }

    #[test]
    fn a_log_in_position_order_is_checked_line_by_line() {
        let a = stream("a-1", 3, 0);
        let b = stream("b-1", 2, 3);
        // Interleaved; a position is not hashed, so the log can be renumbered.
        let mut log = [&a[0], &b[0], &a[1], &b[1], &a[2]].map(Clone::clone);
        for (i, e) in log.iter_mut().enumerate() {
            e.envelope.position = Position(i as u64 + 1);
        }
        let mut checker = LogChecker::new();
        for e in &log {
            checker.check(e).unwrap();
        }
        let mut checker = LogChecker::new();
        checker.check(&a[0]).unwrap();
        let err = checker.check(&a[2]).unwrap_err();
        assert!(err.contains("a-1 seq 3 does not follow seq 1"), "{err}");
        let mut changed = a[1].clone();
        changed.envelope.data = json!("x");
        let err = checker.check(&changed).unwrap_err();
        assert!(err.starts_with("a-1 seq 2: payload changed"), "{err}");
        let mut checker = LogChecker::new();
        checker.check(&log[1]).unwrap();
        let err = checker.check(&log[0]).unwrap_err();
        assert!(err.contains("does not come after"), "{err}");
    }

    #[test]
    fn pins_are_checked_during_a_walk() {
        let events = stream("a-1", 4, 0);
        let pin = |seq: usize, hash| StreamHead {
            stream: StreamName::parse("a-1").unwrap(),
            seq: Seq(seq as u64),
            hash,
            position: Position::START,
        };
        let other = StreamHead {
            stream: StreamName::parse("b-1").unwrap(),
            ..pin(1, ChainHash::GENESIS)
        };
        let mut pins = PinChecker::new([pin(3, events[2].hash.unwrap()), other]);
        let found: Vec<Break> = events.iter().filter_map(|e| pins.see(e)).collect();
        assert_eq!(found, []);
        let (gone, checked) = pins.finish();
        assert_eq!(checked, 2);
        assert_eq!(faults(&gone), [("b-1".into(), 1, "pinned_head_gone")]);
        let mut pins = PinChecker::new([pin(2, ChainHash([5; 32])), pin(9, ChainHash::GENESIS)]);
        let found: Vec<Break> = events.iter().filter_map(|e| pins.see(e)).collect();
        // One pin per stream: the later one in the list is kept.
        assert_eq!(found, []);
        let (gone, _) = pins.finish();
        assert_eq!(gone[0].fault, Fault::PinnedHeadGone { now: Seq(4) });
        let mut pins = PinChecker::new([pin(2, ChainHash([5; 32]))]);
        let found: Vec<Break> = events.iter().filter_map(|e| pins.see(e)).collect();
        assert_eq!(faults(&found), [("a-1".into(), 2, "pinned_head_rewritten")]);
    }

    #[test]
    fn pins_hold_while_history_is_only_extended() {
        let events = stream("a-1", 4, 0);
        let pin = StreamHead {
            stream: StreamName::parse("a-1").unwrap(),
            seq: Seq(3),
            hash: events[2].hash.unwrap(),
            position: Position(3),
        };
        assert_eq!(check_pin(&pin, Some(&events[2]), Seq(4)), None);
        let mut rewritten = events[2].clone();
        rewritten.hash = Some(ChainHash([7; 32]));
        let broken = check_pin(&pin, Some(&rewritten), Seq(4)).unwrap();
        assert_eq!(broken.fault.code(), "pinned_head_rewritten");
        let gone = check_pin(&pin, None, Seq(2)).unwrap();
        assert_eq!(gone.fault, Fault::PinnedHeadGone { now: Seq(2) });
        assert_eq!(
            serde_json::to_value(&gone).unwrap(),
            json!({"stream": "a-1", "seq": 3, "position": null, "fault": "pinned_head_gone", "now": 2})
        );
    }
}
