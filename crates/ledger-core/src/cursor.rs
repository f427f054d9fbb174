//! Cursors into the global log for readers outside the process (HTTP consumers): a place in
//! the store's read order that only grows along it, and the filters such a reader may ask for.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Envelope, Position};

/// A place in the global log's read order: after the event it was taken from.
///
/// On PostgreSQL the read order is `(transaction, position)`, so positions alone do not grow
/// along it; a cursor holds both parts and compares as the pair (and its text form, 32
/// lowercase hex digits, compares as text in the same order). Where commits are serial the
/// transaction part is 0. Resume from the last cursor you received, never from a position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogCursor {
    /// The writing transaction of the event (0 where commits are serial).
    pub tx: u64,
    /// The event's position.
    pub position: Position,
}

impl LogCursor {
    /// Before the first event.
    pub const START: LogCursor = LogCursor {
        tx: 0,
        position: Position::START,
    };

    /// The cursor of an event written by transaction `tx` at `position`.
    pub fn new(tx: u64, position: Position) -> Self {
        Self { tx, position }
    }
}

impl fmt::Display for LogCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.tx, self.position.0)
    }
}

/// A cursor's text was not 32 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a cursor is the 32 hex digits a log page handed out")]
pub struct ParseCursorError;

impl FromStr for LogCursor {
    type Err = ParseCursorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseCursorError);
        }
        let tx = u64::from_str_radix(&text[..16], 16).map_err(|_| ParseCursorError)?;
        let position = u64::from_str_radix(&text[16..], 16).map_err(|_| ParseCursorError)?;
        Ok(Self::new(tx, Position(position)))
    }
}

impl Serialize for LogCursor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LogCursor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Which events of the log a cursor reader wants; every list empty means no filter on it, and
/// the lists are ANDed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EventFilter {
    /// Only streams of these categories (the part of the name before the first `-`).
    pub categories: Vec<String>,
    /// Only events of these types.
    pub types: Vec<String>,
    /// Only these streams (by full name).
    pub streams: Vec<String>,
}

impl EventFilter {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Whether an event of `stream` with type `event_type` passes the filter.
    pub fn matches(&self, stream: &str, event_type: &str) -> bool {
        let category = stream.split_once('-').map_or(stream, |(c, _)| c);
        (self.categories.is_empty() || self.categories.iter().any(|c| c == category))
            && (self.types.is_empty() || self.types.iter().any(|t| t == event_type))
            && (self.streams.is_empty() || self.streams.iter().any(|s| s == stream))
    }
}

/// One event of the log with the cursor that resumes after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEvent {
    /// Resume after this event.
    pub cursor: LogCursor,
    /// The event.
    #[serde(flatten)]
    pub envelope: Envelope,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_sorts_as_the_pair() {
        let cursors = [
            LogCursor::START,
            LogCursor::new(0, Position(9)),
            LogCursor::new(1, Position(3)),
            LogCursor::new(1, Position(255)),
            LogCursor::new(7, Position(2)),
            LogCursor::new(u64::MAX, Position(u64::MAX)),
        ];
        for pair in cursors.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[0].to_string() < pair[1].to_string());
        }
        for c in cursors {
            assert_eq!(c.to_string().parse::<LogCursor>(), Ok(c));
            assert_eq!(c.to_string().len(), 32);
        }
        assert_eq!(
            LogCursor::new(2, Position(10)).to_string(),
            "0000000000000002000000000000000a"
        );
    }

    #[test]
    fn bad_text_is_refused() {
        for bad in [
            "",
            "12",
            "g000000000000000000000000000000a",
            "+0000000000000002000000000000000",
        ] {
            assert_eq!(bad.parse::<LogCursor>(), Err(ParseCursorError), "{bad}");
        }
        let upper = "0000000000000002000000000000000A";
        assert_eq!(
            upper.parse::<LogCursor>(),
            Ok(LogCursor::new(2, Position(10)))
        );
    }

    #[test]
    fn filters_and_their_lists() {
        let all = EventFilter::all();
        assert!(all.matches("tenant-a", "X") && all.matches("x", "Y"));
        let f = EventFilter {
            categories: vec!["tenant".into(), "slug".into()],
            types: vec!["A".into()],
            streams: vec![],
        };
        assert!(f.matches("tenant-1", "A") && f.matches("slug-b", "A"));
        assert!(!f.matches("tenant-1", "B") && !f.matches("order-1", "A"));
        let s = EventFilter {
            streams: vec!["tenant-1".into()],
            ..EventFilter::all()
        };
        assert!(s.matches("tenant-1", "Z") && !s.matches("tenant-2", "Z"));
    }
}
