//! Stream sequence numbers and global log positions.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A 1-based, gapless position inside one stream; an empty stream is at `Seq(0)`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// The seq of a stream that has no events.
    pub const ZERO: Seq = Seq(0);

    /// The seq `n` events further on.
    pub fn plus(self, n: u64) -> Seq {
        Seq(self.0 + n)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An event's place in the global log: unique and increasing within one append.
///
/// On SQLite positions follow commit order. On PostgreSQL the log is read in commit-safe
/// order `(writing transaction, position)`, so a later commit can carry a smaller position;
/// readers resume "after" an event's position, never compare positions across transactions.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Position(pub u64);

impl Position {
    /// Before the first event of the log.
    pub const START: Position = Position(0);
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
