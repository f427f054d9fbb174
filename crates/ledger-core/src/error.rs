//! The store's error type.

use serde::Serialize;
use uuid::Uuid;

use crate::{Envelope, ExpectedSeq, Seq, StreamName};

/// An append refused because the stream was not where the writer expected it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conflict {
    /// The stream appended to.
    pub stream: StreamName,
    /// What the writer expected.
    pub expected: ExpectedSeq,
    /// The stream's seq when the append was refused.
    pub current_seq: Seq,
    /// Events after the writer's expected seq (oldest first, at most `Limits::max_missed_events`),
    /// so the writer can fold them and decide again without another read.
    pub missed: Vec<Envelope>,
    /// True when more events were missed than `missed` holds.
    pub missed_truncated: bool,
}

/// Most missed events a conflict shows a client (the HTTP 409 body, the CLI's stderr).
pub const MAX_REPORTED_MISSED: usize = 20;

impl Conflict {
    /// The missed events a client is shown (oldest first, at most [`MAX_REPORTED_MISSED`]) and
    /// whether the writer missed more than that.
    pub fn reported_missed(&self) -> (&[Envelope], bool) {
        let shown = &self.missed[..self.missed.len().min(MAX_REPORTED_MISSED)];
        (
            shown,
            self.missed_truncated || shown.len() < self.missed.len(),
        )
    }
}

/// Everything a store operation can fail with; each variant has a stable [`code`](Self::code).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream was not at the expected seq.
    #[error("conflict on {}: expected {}, stream is at {}", .0.stream, .0.expected, .0.current_seq)]
    Conflict(Box<Conflict>),
    /// An event id was appended before with other content or at another place.
    #[error("event id {event_id} was already used for a different event")]
    EventIdReused {
        /// The reused id.
        event_id: Uuid,
    },
    /// A stream name does not match `category-id`.
    #[error("invalid stream name {name:?}: {reason}")]
    InvalidStreamName {
        /// The refused name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An append with no events.
    #[error("an append needs at least one event")]
    EmptyBatch,
    /// An event whose data plus metadata is over the size limit.
    #[error(
        "event {index} of the batch is {size} bytes of data and metadata; the limit is {limit}"
    )]
    EventTooLarge {
        /// Its index in the batch (0-based).
        index: usize,
        /// Serialized size of data plus metadata.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Metadata that is not a JSON object.
    #[error("event {index} of the batch has metadata that is not a JSON object")]
    InvalidMetadata {
        /// Its index in the batch (0-based).
        index: usize,
    },
    /// Any other malformed input (empty event type, one stream twice in a multi-stream append, ...).
    #[error("{0}")]
    InvalidInput(String),
    /// A read resumed after a position that is not in the log.
    #[error("position {0} is not in the log")]
    UnknownPosition(u64),
    /// The database schema is not the version this ledger needs.
    #[error("{}", schema_message(*.found, *.needed, None))]
    SchemaMismatch {
        /// The database's schema version (0 for an empty database).
        found: i64,
        /// The version this ledger needs.
        needed: i64,
    },
    /// The subject's data key was destroyed (an erased tenant): nothing personal can be
    /// written for it any more.
    #[error("{subject} was erased at {erased_at}; its personal fields can no longer be written")]
    Erased {
        /// Whose key is gone (a tenant id).
        subject: String,
        /// When the key was destroyed.
        erased_at: chrono::DateTime<chrono::Utc>,
    },
    /// The database cannot be reached or is overloaded; retrying later may succeed.
    #[error("the database is unavailable: {message}")]
    Unavailable {
        /// What failed, for logs.
        message: String,
        /// The driver's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// An unexpected database failure; the text is for logs, not for clients.
    #[error("database error: {message}")]
    Backend {
        /// What failed, for logs.
        message: String,
        /// The driver's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
}

/// The cause of an [`StoreError::Unavailable`] or [`StoreError::Backend`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a schema mismatch says. `migrate` is the complete command that migrates this very
/// database, when the caller knows it (the CLI does: it knows the URL); without it the message
/// says what to do without naming a command that could point at another database.
pub fn schema_message(found: i64, needed: i64, migrate: Option<&str>) -> String {
    if found >= needed {
        return format!(
            "database schema is at {found}, this ledger needs {needed}: the database was migrated by a newer ledger; upgrade this one"
        );
    }
    match migrate {
        Some(command) => {
            format!("database schema is at {found}, this ledger needs {needed}: run `{command}`")
        }
        None => format!(
            "database schema is at {found}, this ledger needs {needed}: apply the ledger's migrations to this database first"
        ),
    }
}

impl StoreError {
    /// `Unavailable` with a message and no cause.
    pub fn unavailable(message: impl Into<String>) -> Self {
        StoreError::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// `Unavailable` with a message and the error that caused it.
    pub fn unavailable_with(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// `Backend` with a message and no cause.
    pub fn backend(message: impl Into<String>) -> Self {
        StoreError::Backend {
            message: message.into(),
            source: None,
        }
    }

    /// `Backend` with a message and the error that caused it.
    pub fn backend_with(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Backend {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A stable snake_case code for this error, used by the CLI and HTTP API.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Conflict(_) => "conflict",
            StoreError::EventIdReused { .. } => "event_id_reused",
            StoreError::InvalidStreamName { .. } => "invalid_stream_name",
            StoreError::EmptyBatch => "empty_batch",
            StoreError::EventTooLarge { .. } => "event_too_large",
            StoreError::InvalidMetadata { .. } => "invalid_metadata",
            StoreError::InvalidInput(_) => "invalid_input",
            StoreError::UnknownPosition(_) => "unknown_position",
            StoreError::SchemaMismatch { .. } => "schema_mismatch",
            StoreError::Erased { .. } => "tenant_erased",
            StoreError::Unavailable { .. } => "unavailable",
            StoreError::Backend { .. } => "internal",
        }
    }

    /// True for errors caused by the caller's input (as opposed to conflicts or the database).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            StoreError::EventIdReused { .. }
                | StoreError::InvalidStreamName { .. }
                | StoreError::EmptyBatch
                | StoreError::EventTooLarge { .. }
                | StoreError::InvalidMetadata { .. }
                | StoreError::InvalidInput(_)
                | StoreError::UnknownPosition(_)
        )
    }

    /// The conflict, when this is one.
    pub fn as_conflict(&self) -> Option<&Conflict> {
        match self {
            StoreError::Conflict(c) => Some(c),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_reports_at_most_twenty_missed_events() {
        let stream = StreamName::parse("order-1").unwrap();
        let event = |seq: u64| Envelope {
            event_id: Uuid::now_v7(),
            stream: stream.clone(),
            seq: Seq(seq),
            position: crate::Position(seq),
            event_type: "Noted".into(),
            data: serde_json::json!({}),
            metadata: serde_json::json!({}),
            recorded_at: chrono::Utc::now(),
        };
        let conflict = |n: u64, truncated: bool| Conflict {
            stream: stream.clone(),
            expected: ExpectedSeq::Exact(Seq(0)),
            current_seq: Seq(n),
            missed: (1..=n).map(event).collect(),
            missed_truncated: truncated,
        };
        let few = conflict(3, false);
        assert_eq!(few.reported_missed().0.len(), 3);
        assert!(!few.reported_missed().1);
        let many = conflict(32, false);
        let (shown, more) = many.reported_missed();
        assert_eq!((shown.len(), more), (MAX_REPORTED_MISSED, true));
        assert_eq!(shown[0].seq, Seq(1));
        assert!(conflict(2, true).reported_missed().1);
    }

    #[test]
    fn schema_messages_say_what_to_do() {
        let behind = StoreError::SchemaMismatch {
            found: 1,
            needed: 2,
        };
        assert_eq!(
            behind.to_string(),
            "database schema is at 1, this ledger needs 2: apply the ledger's migrations to this database first"
        );
        assert_eq!(
            schema_message(0, 2, Some("ledger migrate --database-url sqlite://x.db")),
            "database schema is at 0, this ledger needs 2: run `ledger migrate --database-url sqlite://x.db`"
        );
        let ahead = StoreError::SchemaMismatch {
            found: 3,
            needed: 2,
        };
        assert!(ahead.to_string().contains("upgrade this one"));
        assert_eq!(ahead.code(), "schema_mismatch");
    }

    #[test]
    fn database_errors_keep_their_cause() {
        use std::error::Error;
        let cause = std::io::Error::other("connection reset by peer");
        let err = StoreError::unavailable_with("the connection failed", cause);
        assert_eq!(
            err.to_string(),
            "the database is unavailable: the connection failed"
        );
        let source = err.source().expect("the cause");
        assert_eq!(source.to_string(), "connection reset by peer");
        assert_eq!(err.code(), "unavailable");
        let plain = StoreError::backend("a checkpoint does not decode");
        assert!(plain.source().is_none());
        assert_eq!(plain.code(), "internal");
    }
}
