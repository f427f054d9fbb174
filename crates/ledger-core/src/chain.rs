//! The hash chain of every stream: the canonical encoding of an event, its link hash, and the
//! stored links as the integrity tools read them.
//!
//! `hash(event) = SHA-256(prev_hash || canonical(event))`, where `prev_hash` is the hash of the
//! previous event of the same stream ([`ChainHash::GENESIS`], 32 zero bytes, for seq 1) and
//! `canonical(event)` is the UTF-8 JSON text
//! `{"event_id":…,"stream":…,"seq":…,"type":…,"data":…,"metadata":…,"recorded_at":…}`
//! with exactly these keys in this order and no whitespace. `data` and `metadata` are written
//! by [`write_canonical`]; `recorded_at` by [`canonical_time`].

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::str::FromStr;
use std::sync::Mutex;

use chrono::{DateTime, Datelike, SubsecRound, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use futures::stream::BoxStream;

use crate::{BoxFuture, Envelope, ExpectedSeq, NewEvent, Position, Seq, StoreError, StreamName};

/// A SHA-256 link of a stream's chain, written as 64 lowercase hex digits.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// What the first event of every stream chains to: 32 zero bytes.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    /// The hash from its 32 stored bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<ChainHash> {
        <[u8; 32]>::try_from(bytes).ok().map(ChainHash)
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A chain hash that is not 64 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a chain hash is 64 lowercase hex digits")]
pub struct ParseChainHashError;

impl FromStr for ChainHash {
    type Err = ParseChainHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(ParseChainHashError);
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(ParseChainHashError),
        };
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Ok(ChainHash(out))
    }
}

impl Serialize for ChainHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A recording time as the store keeps it: UTC, whole microseconds.
pub fn recorded_now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A recording time as the canonical encoding writes it: `YYYY-MM-DDTHH:MM:SS.ffffffZ`, UTC,
/// always six fraction digits.
pub fn canonical_time(t: DateTime<Utc>) -> String {
    let mut out = Vec::with_capacity(27);
    write_time(t, &mut out);
    String::from_utf8(out).expect("a time is written in ASCII")
}

/// Writes [`canonical_time`] into `out` (without a format string to parse for every event).
fn write_time(t: DateTime<Utc>, out: &mut Vec<u8>) {
    let (date, time) = (t.date_naive(), t.time());
    let micros = time.nanosecond() % 1_000_000_000 / 1000;
    write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        date.year(),
        date.month(),
        date.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
    .expect("writing to a Vec cannot fail");
}

/// Writes `value` canonically: object keys sorted by code point, no whitespace, strings
/// escaped only where JSON requires (`"`, `\`, and U+0000..U+001F, as `\b \t \n \f \r` or
/// `\u00xx`), numbers by [`write_number`].
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_canonical(&map[key], out);
            }
            out.push(b'}');
        }
    }
}

/// Writes a JSON string with serde_json's escaping (the one [`write_canonical`] documents).
fn write_string(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, s).expect("writing a string to a Vec cannot fail");
}

/// Writes a number: an integer that fits 64 bits (written without fraction or exponent) as
/// its decimal digits; any other number as ECMAScript's `Number.prototype.toString` writes its
/// double (what RFC 8785 uses): `100`, `0.1`, `0.000123`, `1.5e-7`, `1e+300`.
pub fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    if let Some(i) = n.as_i64() {
        out.extend_from_slice(i.to_string().as_bytes());
    } else if let Some(u) = n.as_u64() {
        out.extend_from_slice(u.to_string().as_bytes());
    } else if let Some(f) = n.as_f64() {
        write_double(f, out);
    }
}

/// ECMAScript's `Number.prototype.toString` of a finite double: the shortest digits that read
/// back as `f`, positional from 1e-6 up to below 1e21, in exponent form (`e+N`, `e-N`)
/// otherwise; zero (either sign) is `0`.
fn write_double(f: f64, out: &mut Vec<u8>) {
    if f == 0.0 {
        out.push(b'0');
        return;
    }
    if f < 0.0 {
        out.push(b'-');
    }
    // Rust's `{:e}` writes the shortest round-tripping digits: `d[.ddd]eN`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` writes an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i64;
    let n = exp
        .parse::<i64>()
        .expect("`{:e}` writes a decimal exponent")
        + 1;
    let text = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let sign = if n > 0 { '+' } else { '-' };
        let rest = if k > 1 {
            format!(".{}", &digits[1..])
        } else {
            String::new()
        };
        format!("{}{rest}e{sign}{}", &digits[..1], (n - 1).abs())
    };
    out.extend_from_slice(text.as_bytes());
}

/// One event's fields as the chain covers them.
#[derive(Clone, Copy, Debug)]
pub struct Link<'a> {
    /// The event id.
    pub event_id: Uuid,
    /// The stream name.
    pub stream: &'a str,
    /// The seq in the stream.
    pub seq: Seq,
    /// The event type.
    pub event_type: &'a str,
    /// The payload.
    pub data: &'a Value,
    /// The metadata.
    pub metadata: &'a Value,
    /// The recording time (whole microseconds).
    pub recorded_at: DateTime<Utc>,
}

impl<'a> Link<'a> {
    /// The link fields of a stored envelope.
    pub fn of(e: &'a Envelope) -> Link<'a> {
        Link {
            event_id: e.event_id,
            stream: e.stream.as_str(),
            seq: e.seq,
            event_type: &e.event_type,
            data: &e.data,
            metadata: &e.metadata,
            recorded_at: e.recorded_at,
        }
    }

    /// The canonical encoding (see the module documentation).
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"event_id\":\"");
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        out.extend_from_slice(self.event_id.hyphenated().encode_lower(&mut id).as_bytes());
        out.extend_from_slice(b"\",\"stream\":");
        write_string(self.stream, &mut out);
        out.extend_from_slice(b",\"seq\":");
        write!(out, "{}", self.seq.0).expect("writing to a Vec cannot fail");
        out.extend_from_slice(b",\"type\":");
        write_string(self.event_type, &mut out);
        out.extend_from_slice(b",\"data\":");
        write_canonical(self.data, &mut out);
        out.extend_from_slice(b",\"metadata\":");
        write_canonical(self.metadata, &mut out);
        out.extend_from_slice(b",\"recorded_at\":\"");
        write_time(self.recorded_at, &mut out);
        out.extend_from_slice(b"\"}");
        out
    }

    /// `SHA-256(prev || canonical)`: the event's link hash.
    pub fn hash(&self, prev: &ChainHash) -> ChainHash {
        let mut digest = Sha256::new();
        digest.update(prev.0);
        digest.update(self.canonical());
        ChainHash(digest.finalize().into())
    }
}

/// A stored event with its stored links (`None` where the store holds no hash).
#[derive(Clone, Debug, PartialEq)]
pub struct ChainedEvent {
    /// The event.
    pub envelope: Envelope,
    /// The hash stored as the previous event's.
    pub prev_hash: Option<ChainHash>,
    /// The event's stored hash.
    pub hash: Option<ChainHash>,
}

/// One event as `ledger export` writes it, one JSON object per line: the envelope with the
/// recording time in its canonical form, and the two links.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedEvent {
    /// Its place in the global log.
    pub position: Position,
    /// The event id.
    pub event_id: Uuid,
    /// The stream.
    pub stream: StreamName,
    /// Its seq in the stream.
    pub seq: Seq,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload.
    pub data: Value,
    /// The metadata.
    pub metadata: Value,
    /// The recording time as [`canonical_time`] writes it.
    pub recorded_at: String,
    /// The previous event's hash ([`ChainHash::GENESIS`] for seq 1).
    pub prev_hash: ChainHash,
    /// This event's hash.
    pub hash: ChainHash,
}

/// An exported line that cannot be loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// The event has no stored hash (its chain was never filled in).
    #[error("event {seq} of {stream} has no hash: run `ledger migrate` on the source first")]
    Unchained {
        /// The stream.
        stream: String,
        /// The seq.
        seq: Seq,
    },
    /// The recording time is not `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    #[error("recorded_at {0:?} is not a UTC time with six fraction digits")]
    BadTime(String),
}

impl ExportedEvent {
    /// The exported form of a stored event.
    pub fn of(e: ChainedEvent) -> Result<ExportedEvent, ExportError> {
        let (Some(prev_hash), Some(hash)) = (e.prev_hash, e.hash) else {
            return Err(ExportError::Unchained {
                stream: e.envelope.stream.as_str().to_string(),
                seq: e.envelope.seq,
            });
        };
        let v = e.envelope;
        Ok(ExportedEvent {
            position: v.position,
            event_id: v.event_id,
            stream: v.stream,
            seq: v.seq,
            event_type: v.event_type,
            data: v.data,
            metadata: v.metadata,
            recorded_at: canonical_time(v.recorded_at),
            prev_hash,
            hash,
        })
    }

    /// The stored event it describes.
    pub fn into_chained(self) -> Result<ChainedEvent, ExportError> {
        let recorded_at = DateTime::parse_from_rfc3339(&self.recorded_at)
            .ok()
            .map(|t| t.with_timezone(&Utc))
            .filter(|t| canonical_time(*t) == self.recorded_at)
            .ok_or_else(|| ExportError::BadTime(self.recorded_at.clone()))?;
        Ok(ChainedEvent {
            envelope: Envelope {
                event_id: self.event_id,
                stream: self.stream,
                seq: self.seq,
                position: self.position,
                event_type: self.event_type,
                data: self.data,
                metadata: self.metadata,
                recorded_at,
            },
            prev_hash: Some(self.prev_hash),
            hash: Some(self.hash),
        })
    }
}

/// The last event of a stream: its seq and hash, which an auditor can pin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHead {
    /// The stream.
    pub stream: StreamName,
    /// Its last seq.
    pub seq: Seq,
    /// The last event's hash.
    pub hash: ChainHash,
    /// The last event's position in the log (may be left out of a pinned head).
    #[serde(default)]
    pub position: Position,
}

/// Where a stream's chain ends: its last seq and the hash its next event chains to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainHead {
    /// The last seq (0 for an empty stream).
    pub seq: Seq,
    /// The last event's hash ([`ChainHash::GENESIS`] for an empty stream).
    pub hash: ChainHash,
}

impl ChainHead {
    /// The head of a stream with no events.
    pub const EMPTY: ChainHead = ChainHead {
        seq: Seq::ZERO,
        hash: ChainHash::GENESIS,
    };

    /// The head of a stream whose last event is at `seq` with the stored `hash`; `None` when
    /// that event has no hash (see [`ChainHead::unchained`]).
    pub fn stored(seq: i64, hash: Option<&[u8]>) -> Option<ChainHead> {
        Some(ChainHead {
            seq: Seq(u64::try_from(seq).ok()?),
            hash: ChainHash::from_slice(hash?)?,
        })
    }

    /// What an append to `stream` says when the stream's last event has no hash.
    pub fn unchained(stream: &StreamName) -> String {
        format!(
            "the last event of {stream} has no hash: run `ledger migrate` to fill in the chains"
        )
    }

    /// Each of `events`' (previous hash, hash) when appended to `stream` after this head,
    /// recorded at `recorded_at`.
    pub fn links(
        &self,
        stream: &StreamName,
        events: &[NewEvent],
        recorded_at: DateTime<Utc>,
    ) -> Vec<(ChainHash, ChainHash)> {
        chain_links(
            self.hash,
            events.iter().enumerate().map(|(i, e)| Link {
                event_id: e.event_id,
                stream: stream.as_str(),
                seq: self.seq.plus(i as u64 + 1),
                event_type: &e.event_type,
                data: &e.data,
                metadata: &e.metadata,
                recorded_at,
            }),
        )
    }
}

/// The last known (seq, hash) of recently written streams, so that an append can chain its
/// events without reading the head first. Bounded: two generations of at most `capacity / 2`
/// entries each; a full generation becomes the old one and the oldest is dropped.
///
/// An entry may be stale (another process appended); the append's conditional insert refuses
/// a stale head, and the store reads the head and tries again.
pub struct HeadCache {
    capacity: usize,
    maps: Mutex<[HashMap<String, ChainHead>; 2]>,
}

impl HeadCache {
    /// A cache of at most `capacity` streams.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(2),
            maps: Mutex::new([HashMap::new(), HashMap::new()]),
        }
    }

    /// The cached head of `stream`.
    pub fn get(&self, stream: &str) -> Option<ChainHead> {
        let mut maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&head) = maps[0].get(stream) {
            return Some(head);
        }
        let head = maps[1].remove(stream)?;
        self.insert(&mut maps, stream.to_string(), head);
        Some(head)
    }

    /// The head an append to `stream` expecting `expected` can chain to without reading it:
    /// the cached one, or the empty head when the expectation says the stream is empty (if it
    /// is not, the conditional insert refuses and the store reads the head).
    pub fn assume(&self, stream: &str, expected: ExpectedSeq) -> Option<ChainHead> {
        self.get(stream).or(match expected {
            ExpectedSeq::NoStream | ExpectedSeq::Exact(Seq::ZERO) => Some(ChainHead::EMPTY),
            _ => None,
        })
    }

    /// Records that `stream` now ends at `head`.
    pub fn put(&self, stream: &str, head: ChainHead) {
        let mut maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = maps[0].get_mut(stream) {
            if entry.seq < head.seq {
                *entry = head;
            }
            return;
        }
        maps[1].remove(stream);
        self.insert(&mut maps, stream.to_string(), head);
    }

    /// Forgets `stream` (its head moved in a way this process did not see committed).
    pub fn forget(&self, stream: &str) {
        let mut maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        maps[0].remove(stream);
        maps[1].remove(stream);
    }

    /// Inserts into the young generation, rotating it out when full.
    fn insert(&self, maps: &mut [HashMap<String, ChainHead>; 2], stream: String, head: ChainHead) {
        if maps[0].len() >= self.capacity / 2 {
            maps[1] = std::mem::take(&mut maps[0]);
        }
        maps[0].insert(stream, head);
    }
}

impl fmt::Debug for HeadCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// Which chains a walk reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainScope {
    /// Only this stream (every stream when `None`).
    pub stream: Option<StreamName>,
    /// Only events after this position (`Position::START` for whole chains).
    pub after: Position,
}

/// Stored events with their links, read page by page with bounded memory.
pub type ChainStream = BoxStream<'static, Result<ChainedEvent, StoreError>>;

/// The hash chains as integrity tools read them, and the loading of an exported log.
pub trait ChainLog: Send + Sync {
    /// Stored events with their links in (stream, seq) order, within `scope`.
    fn chains(&self, scope: ChainScope) -> ChainStream;

    /// Stored events with their links in position order, after `after` (an export).
    fn chained_log(&self, after: Position) -> ChainStream;

    /// The last event of `stream` (`None` for an empty stream).
    fn stream_head(
        &self,
        stream: StreamName,
    ) -> BoxFuture<'_, Result<Option<StreamHead>, StoreError>>;

    /// The stored event at `seq` of `stream`.
    fn chained_at(
        &self,
        stream: StreamName,
        seq: Seq,
    ) -> BoxFuture<'_, Result<Option<ChainedEvent>, StoreError>>;

    /// Loads exported events (checked by the caller) into an empty log in one transaction,
    /// keeping their ids, positions, seqs, times and hashes; the number loaded. Refuses a log
    /// that is not empty; an error from `events` rolls everything back.
    fn import(&self, events: ChainStream) -> BoxFuture<'_, Result<u64, StoreError>>;
}

/// Chains a batch of events after `prev`: each event's (prev_hash, hash).
pub fn chain_links<'a>(
    prev: ChainHash,
    links: impl IntoIterator<Item = Link<'a>>,
) -> Vec<(ChainHash, ChainHash)> {
    let mut prev = prev;
    links
        .into_iter()
        .map(|link| {
            let hash = link.hash(&prev);
            let pair = (prev, hash);
            prev = hash;
            pair
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        let mut out = Vec::new();
        write_canonical(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn objects_sort_their_keys_and_drop_whitespace() {
        let v = json!({"b": 1, "a": {"z": [1, 2, {"y": null, "x": true}], "é": "x", "B": false}});
        assert_eq!(
            canon(&v),
            r#"{"a":{"B":false,"z":[1,2,{"x":true,"y":null}],"é":"x"},"b":1}"#
        );
    }

    #[test]
    fn strings_escape_only_what_json_requires() {
        let v = json!("q\"b\\n\nt\tc\u{1}d\u{7f}é✓\u{1F600}");
        assert_eq!(
            canon(&v),
            "\"q\\\"b\\\\n\\nt\\tc\\u0001d\u{7f}é✓\u{1F600}\""
        );
    }

    #[test]
    fn numbers_have_one_form() {
        let cases: &[(&str, &str)] = &[
            ("0", "0"),
            ("-7", "-7"),
            ("18446744073709551615", "18446744073709551615"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("100.0", "100"),
            ("-0.0", "0"),
            ("-2.5", "-2.5"),
            ("1e16", "10000000000000000"),
            ("1e20", "100000000000000000000"),
            ("1e21", "1e+21"),
            ("1.5", "1.5"),
            ("0.1", "0.1"),
            ("12.34", "12.34"),
            ("0.000123", "0.000123"),
            ("0.000001", "0.000001"),
            ("1.5e-7", "1.5e-7"),
            ("1e-7", "1e-7"),
            ("1e300", "1e+300"),
            ("-1.25e21", "-1.25e+21"),
            ("5e-324", "5e-324"),
            ("18446744073709551616", "18446744073709552000"),
        ];
        for (input, want) in cases {
            let v: Value = serde_json::from_str(input).unwrap();
            let got = canon(&v);
            assert_eq!(&got, want, "{input}");
            // The canonical text reads back to the same canonical text.
            let again: Value = serde_json::from_str(&got).unwrap();
            assert_eq!(canon(&again), got, "{input}");
        }
    }

    #[test]
    fn times_have_six_fraction_digits() {
        let t = Utc.with_ymd_and_hms(2026, 12, 2, 4, 5, 6).unwrap();
        assert_eq!(canonical_time(t), "2026-12-02T04:05:06.000000Z");
        let t = t + chrono::Duration::nanoseconds(1_234_567);
        assert_eq!(canonical_time(t), "2026-12-02T04:05:06.001234Z");
        assert_eq!(recorded_now().timestamp_subsec_nanos() % 1000, 0);
    }

    fn link<'a>(data: &'a Value, meta: &'a Value) -> Link<'a> {
        Link {
            event_id: Uuid::parse_str("0190a5b4-0000-7000-8000-000000000001").unwrap(),
            stream: "tenant-1",
            seq: Seq(1),
            event_type: "TenantRegistered",
            data,
            metadata: meta,
            recorded_at: Utc.with_ymd_and_hms(2026, 12, 2, 4, 5, 6).unwrap(),
        }
    }

    #[test]
    fn the_canonical_encoding_is_the_documented_text() {
        let data = json!({"slug": "acme", "name": "Acme"});
        let meta = json!({"actor": "admin"});
        let text = String::from_utf8(link(&data, &meta).canonical()).unwrap();
        assert_eq!(
            text,
            r#"{"event_id":"0190a5b4-0000-7000-8000-000000000001","stream":"tenant-1","seq":1,"type":"TenantRegistered","data":{"name":"Acme","slug":"acme"},"metadata":{"actor":"admin"},"recorded_at":"2026-12-02T04:05:06.000000Z"}"#
        );
    }

    #[test]
    fn a_hash_covers_the_previous_hash_and_every_field() {
        let data = json!({"slug": "acme"});
        let meta = json!({});
        let base = link(&data, &meta);
        let h = base.hash(&ChainHash::GENESIS);
        let mut digest = Sha256::new();
        digest.update([0u8; 32]);
        digest.update(base.canonical());
        assert_eq!(h.0, <[u8; 32]>::from(digest.finalize()));
        assert_ne!(h, base.hash(&h), "the previous hash counts");
        let other = json!({"slug": "acmf"});
        let variants = [
            Link {
                seq: Seq(2),
                ..base
            },
            Link {
                stream: "tenant-2",
                ..base
            },
            Link {
                event_type: "X",
                ..base
            },
            Link {
                data: &other,
                ..base
            },
            Link {
                metadata: &other,
                ..base
            },
            Link {
                recorded_at: base.recorded_at + chrono::Duration::microseconds(1),
                ..base
            },
            Link {
                event_id: Uuid::nil(),
                ..base
            },
        ];
        for v in variants {
            assert_ne!(v.hash(&ChainHash::GENESIS), h, "{v:?}");
        }
    }

    #[test]
    fn hashes_print_and_parse_as_hex() {
        let h = ChainHash([0xab; 32]);
        let text = h.to_string();
        assert_eq!(text, "ab".repeat(32));
        assert_eq!(text.parse::<ChainHash>(), Ok(h));
        assert!("AB".repeat(32).parse::<ChainHash>().is_err());
        assert!("ab".repeat(31).parse::<ChainHash>().is_err());
        assert_eq!(serde_json::to_value(h).unwrap(), json!(text));
        assert_eq!(ChainHash::from_slice(&[1; 32]), Some(ChainHash([1; 32])));
        assert_eq!(ChainHash::from_slice(&[1; 31]), None);
    }

    #[test]
    fn chain_links_chain_each_event_to_the_one_before() {
        let data = json!({});
        let a = link(&data, &data);
        let b = Link { seq: Seq(2), ..a };
        let pairs = chain_links(ChainHash::GENESIS, [a, b]);
        assert_eq!(pairs[0].0, ChainHash::GENESIS);
        assert_eq!(pairs[0].1, a.hash(&ChainHash::GENESIS));
        assert_eq!(pairs[1].0, pairs[0].1);
        assert_eq!(pairs[1].1, b.hash(&pairs[0].1));
    }

    #[test]
    fn the_head_cache_is_bounded_and_keeps_recent_streams() {
        let cache = HeadCache::new(4);
        let at = |seq| ChainHead {
            seq: Seq(seq),
            hash: ChainHash([1; 32]),
        };
        cache.put("a", at(1));
        cache.put("b", at(1));
        cache.put("c", at(1));
        // `a` and `b` moved to the old generation; reading `a` brings it back.
        assert_eq!(cache.get("a"), Some(at(1)));
        cache.put("d", at(1));
        cache.put("e", at(1));
        assert_eq!(cache.get("b"), None, "dropped with the oldest generation");
        cache.put("e", at(3));
        cache.put("e", at(2));
        assert_eq!(cache.get("e"), Some(at(3)), "a head never moves back");
        cache.forget("e");
        assert_eq!(cache.get("e"), None);
        // An unknown stream expected empty is assumed empty; other expectations need a read.
        assert_eq!(
            cache.assume("e", ExpectedSeq::NoStream),
            Some(ChainHead::EMPTY)
        );
        assert_eq!(
            cache.assume("e", ExpectedSeq::Exact(Seq(0))),
            Some(ChainHead::EMPTY)
        );
        assert_eq!(cache.assume("e", ExpectedSeq::Exact(Seq(2))), None);
        assert_eq!(cache.assume("e", ExpectedSeq::Any), None);
        assert_eq!(cache.assume("a", ExpectedSeq::NoStream), Some(at(1)));
    }
}
