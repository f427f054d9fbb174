//! What a writer believes a stream's seq is before it appends.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Seq;

/// The writer's expectation of the stream's current seq, checked atomically with the append.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpectedSeq {
    /// The stream must not exist yet (seq 0).
    NoStream,
    /// The stream must have at least one event.
    Exists,
    /// The stream must be exactly at this seq (`Exact(Seq(0))` is the same as `NoStream`).
    Exact(Seq),
    /// No expectation: an explicit opt-out of optimistic concurrency.
    Any,
}

impl ExpectedSeq {
    /// Whether a stream currently at `current` satisfies this expectation.
    pub fn admits(self, current: Seq) -> bool {
        match self {
            ExpectedSeq::NoStream => current == Seq::ZERO,
            ExpectedSeq::Exists => current > Seq::ZERO,
            ExpectedSeq::Exact(n) => current == n,
            ExpectedSeq::Any => true,
        }
    }

    /// The seq after which a conflicting writer missed events (0 for `no_stream`/`exists`/`any`).
    pub fn missed_after(self) -> Seq {
        match self {
            ExpectedSeq::Exact(n) => n,
            _ => Seq::ZERO,
        }
    }
}

impl fmt::Display for ExpectedSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedSeq::NoStream => f.write_str("no_stream"),
            ExpectedSeq::Exists => f.write_str("exists"),
            ExpectedSeq::Exact(n) => n.fmt(f),
            ExpectedSeq::Any => f.write_str("any"),
        }
    }
}

/// Why a text is not an expected seq.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected seq must be a number, `no_stream`, `exists` or `any`, not {0:?}")]
pub struct ParseExpectedSeqError(pub String);

impl FromStr for ExpectedSeq {
    type Err = ParseExpectedSeqError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "no_stream" | "no-stream" => Ok(ExpectedSeq::NoStream),
            "exists" => Ok(ExpectedSeq::Exists),
            "any" => Ok(ExpectedSeq::Any),
            n => n
                .parse::<u64>()
                .map(|n| ExpectedSeq::Exact(Seq(n)))
                .map_err(|_| ParseExpectedSeqError(s.to_string())),
        }
    }
}

impl Serialize for ExpectedSeq {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ExpectedSeq::Exact(n) => s.serialize_u64(n.0),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for ExpectedSeq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ExpectedSeq;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer, \"no_stream\", \"exists\" or \"any\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ExpectedSeq, E> {
                Ok(ExpectedSeq::Exact(Seq(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ExpectedSeq, E> {
                u64::try_from(v)
                    .map(|v| ExpectedSeq::Exact(Seq(v)))
                    .map_err(|_| E::custom("expected seq must not be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ExpectedSeq, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, want) in [
            ("no_stream", ExpectedSeq::NoStream),
            ("no-stream", ExpectedSeq::NoStream),
            ("exists", ExpectedSeq::Exists),
            ("any", ExpectedSeq::Any),
            ("7", ExpectedSeq::Exact(Seq(7))),
        ] {
            assert_eq!(text.parse::<ExpectedSeq>().unwrap(), want);
        }
        for bad in ["", "-1", "seven", "1.5", "Any"] {
            assert!(bad.parse::<ExpectedSeq>().is_err(), "{bad}");
        }
        assert_eq!(ExpectedSeq::NoStream.to_string(), "no_stream");
    }

    #[test]
    fn json_round_trip() {
        for e in [
            ExpectedSeq::NoStream,
            ExpectedSeq::Exists,
            ExpectedSeq::Any,
            ExpectedSeq::Exact(Seq(3)),
        ] {
            let j = serde_json::to_string(&e).unwrap();
            assert_eq!(serde_json::from_str::<ExpectedSeq>(&j).unwrap(), e);
        }
        assert_eq!(
            serde_json::to_string(&ExpectedSeq::Exact(Seq(3))).unwrap(),
            "3"
        );
        assert!(serde_json::from_str::<ExpectedSeq>("-2").is_err());
        assert!(serde_json::from_str::<ExpectedSeq>("true").is_err());
    }

    #[test]
    fn admits() {
        use ExpectedSeq::*;
        let cases = [
            (NoStream, 0, true),
            (NoStream, 1, false),
            (Exists, 0, false),
            (Exists, 4, true),
            (Exact(Seq(0)), 0, true),
            (Exact(Seq(2)), 2, true),
            (Exact(Seq(2)), 3, false),
            (Exact(Seq(2)), 1, false),
            (Any, 0, true),
            (Any, 9, true),
        ];
        for (e, cur, want) in cases {
            assert_eq!(e.admits(Seq(cur)), want, "{e:?} at {cur}");
        }
    }
}
