//! Whole events of the global log after a cursor ([`LogReader::read_events`]), for readers
//! outside the process. Commits are serial, so position order is read order and a cursor's
//! transaction part is 0.
//!
//! [`LogReader::read_events`]: ledger_core::LogReader::read_events

use ledger_core::{Envelope, EventFilter, LogCursor, LogEvent, Position, StoreError};

use crate::error::store_err;
use crate::log::{in_categories, log_page};
use crate::read::{decode_row, int, select_envelope};
use crate::store::SqliteStore;

/// The conditions every read of events shares: categories `?3`, types `?4` (each a JSON
/// array, or NULL for any).
macro_rules! kinds {
    () => {
        concat!(
            "(?3 IS NULL OR ",
            in_categories!(3),
            ") AND (?4 IS NULL OR event_type IN (SELECT value FROM json_each(?4)))"
        )
    };
}

/// Events after position `?1`, at most `?2`, filtered by [`kinds!`]: along the positions.
const EVENTS_AFTER: &str = log_page!(select_envelope!(), kinds!());

/// [`EVENTS_AFTER`] of the streams `?5` only (a JSON array): from the `(stream, seq)` index,
/// sorted, so a reader of a few streams does not scan the log.
const STREAM_EVENTS_AFTER: &str = log_page!(
    select_envelope!(),
    kinds!(),
    "stream IN (SELECT value FROM json_each(?5))"
);

/// The events at the positions `?1` (a JSON array), in the order given.
const EVENTS_AT: &str = "SELECT e.event_id, e.stream, e.seq, e.position, e.event_type, e.data, \
     e.metadata, e.recorded_at FROM json_each(?1) AS p JOIN events AS e ON e.position = p.value \
     ORDER BY p.key";

/// Whether an event is at `?1`.
const EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM events WHERE position = ?1)";

/// A list filter as the JSON array the statements bind, `None` (no filter) when it is empty.
fn json_list(values: &[String]) -> Option<String> {
    (!values.is_empty()).then(|| serde_json::to_string(values).expect("strings serialize"))
}

impl SqliteStore {
    /// See [`ledger_core::LogReader::read_events`].
    pub(crate) async fn events_after(
        &self,
        after: LogCursor,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<LogEvent>, StoreError> {
        let statement = if filter.streams.is_empty() {
            EVENTS_AFTER
        } else {
            STREAM_EVENTS_AFTER
        };
        let rows = sqlx::query(statement)
            .bind(int(after.position.0))
            .bind(int(limit as u64))
            .bind(json_list(&filter.categories))
            .bind(json_list(&filter.types))
            .bind(json_list(&filter.streams))
            .fetch_all(&self.inner.reader)
            .await
            .map_err(store_err)?;
        rows.iter()
            .map(|row| {
                let envelope = decode_row(row).map_err(store_err)?;
                Ok(LogEvent {
                    cursor: LogCursor::new(0, envelope.position),
                    envelope,
                })
            })
            .collect()
    }

    /// See [`ledger_core::LogReader::events_at`].
    pub(crate) async fn events_at_positions(
        &self,
        positions: &[Position],
    ) -> Result<Vec<Envelope>, StoreError> {
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let positions: Vec<u64> = positions.iter().map(|p| p.0).collect();
        let rows = sqlx::query(EVENTS_AT)
            .bind(serde_json::to_string(&positions).expect("numbers serialize"))
            .fetch_all(&self.inner.reader)
            .await
            .map_err(store_err)?;
        rows.iter()
            .map(|row| decode_row(row).map_err(store_err))
            .collect()
    }

    /// See [`ledger_core::LogReader::cursor_at`].
    pub(crate) async fn cursor_of(&self, position: Position) -> Result<LogCursor, StoreError> {
        if position == Position::START {
            return Ok(LogCursor::START);
        }
        let known: bool = sqlx::query_scalar(EXISTS)
            .bind(int(position.0))
            .fetch_one(&self.inner.reader)
            .await
            .map_err(store_err)?;
        if known {
            Ok(LogCursor::new(0, position))
        } else {
            Err(StoreError::UnknownPosition(position.0))
        }
    }
}
