//! Whole events of the global log after a cursor ([`LogReader::read_events`]), for readers
//! outside the process: the same gap-free `(tx_id, position)` order as every global read, and
//! each event's cursor is that pair.
//!
//! [`LogReader::read_events`]: ledger_core::LogReader::read_events

use ledger_core::{Envelope, EventFilter, LogCursor, LogEvent, Position, StoreError};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::error::from_sqlx;
use crate::log::{BEGIN_IN_LOG_ORDER, HORIZON_SQL, int, prefixes};
use crate::read::{EnvelopeRow, envelope};
use crate::store::PgStore;
use crate::tx::{begin, end_read_only};

/// The events after the cursor (`$1` transaction, `$2` position) from transactions below the
/// horizon `$3`, of the stream prefixes `$4`, the types `$5` and the streams `$6` (each NULL:
/// any), at most `$7`, with each one's transaction.
macro_rules! events_after {
    () => {
        "SELECT event_id, stream, seq, position, event_type, data, metadata, recorded_at, \
         tx_id::text::bigint FROM events \
         WHERE (tx_id, position) > ($1::bigint::text::xid8, $2::bigint) \
           AND tx_id < $3::bigint::text::xid8 \
           AND ($4::text[] IS NULL OR stream ^@ ANY($4::text[])) \
           AND ($5::text[] IS NULL OR event_type = ANY($5::text[])) \
           AND ($6::text[] IS NULL OR stream = ANY($6::text[])) \
         ORDER BY tx_id, position LIMIT $7"
    };
}

/// [`events_after!`], read along the `(tx_id, position)` index (in a transaction opened with
/// [`BEGIN_IN_LOG_ORDER`]).
const EVENTS_AFTER: &str = events_after!();

/// Opens the transaction of a read of a few streams: from the `(stream, seq)` index, sorted.
const BEGIN_FOR_STREAMS: &str = "BEGIN READ ONLY";

/// The transaction of the event at `$1`.
const CURSOR_AT: &str = "SELECT tx_id::text::bigint FROM events WHERE position = $1";

/// The events at the positions `$1`, in the order given.
const EVENTS_AT: &str = "SELECT e.event_id, e.stream, e.seq, e.position, e.event_type, e.data, \
     e.metadata, e.recorded_at FROM unnest($1::bigint[]) WITH ORDINALITY AS p(position, n) \
     JOIN events AS e ON e.position = p.position ORDER BY p.n";

/// A list filter as a SQL array, `None` (no filter) when it is empty.
fn list(values: &[String]) -> Option<&[String]> {
    (!values.is_empty()).then_some(values)
}

/// Decodes a row of [`EVENTS_AFTER`].
fn log_event(row: &PgRow) -> Result<LogEvent, StoreError> {
    let decoded: Result<(EnvelopeRow, i64), sqlx::Error> = (|| {
        let envelope_row = (
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(4)?,
            row.try_get(5)?,
            row.try_get(6)?,
            row.try_get(7)?,
        );
        Ok((envelope_row, row.try_get(8)?))
    })();
    let (envelope_row, tx) = decoded.map_err(from_sqlx)?;
    let envelope = envelope(envelope_row)?;
    Ok(LogEvent {
        cursor: LogCursor::new(tx.max(0) as u64, envelope.position),
        envelope,
    })
}

impl PgStore {
    /// See [`ledger_core::LogReader::read_events`].
    pub(crate) async fn events_after(
        &self,
        after: LogCursor,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<LogEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let opening = if filter.streams.is_empty() {
            BEGIN_IN_LOG_ORDER
        } else {
            BEGIN_FOR_STREAMS
        };
        let mut tx = begin(&self.pool, Some(opening)).await?;
        let horizon: i64 = sqlx::query_scalar(HORIZON_SQL)
            .fetch_one(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        let rows = sqlx::query(EVENTS_AFTER)
            .bind(int(after.tx))
            .bind(int(after.position.0))
            .bind(horizon)
            .bind(prefixes(filter.categories.iter().map(String::as_str)))
            .bind(list(&filter.types))
            .bind(list(&filter.streams))
            .bind(int(limit as u64))
            .fetch_all(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        end_read_only(tx);
        rows.iter().map(log_event).collect()
    }

    /// See [`ledger_core::LogReader::events_at`].
    pub(crate) async fn events_at_positions(
        &self,
        positions: &[Position],
    ) -> Result<Vec<Envelope>, StoreError> {
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let positions: Vec<i64> = positions.iter().map(|p| int(p.0)).collect();
        let rows: Vec<EnvelopeRow> = sqlx::query_as(EVENTS_AT)
            .bind(positions)
            .fetch_all(&self.pool)
            .await
            .map_err(from_sqlx)?;
        rows.into_iter().map(envelope).collect()
    }

    /// See [`ledger_core::LogReader::cursor_at`].
    pub(crate) async fn cursor_of(&self, position: Position) -> Result<LogCursor, StoreError> {
        if position == Position::START {
            return Ok(LogCursor::START);
        }
        let tx: Option<i64> = sqlx::query_scalar(CURSOR_AT)
            .bind(int(position.0))
            .fetch_optional(&self.pool)
            .await
            .map_err(from_sqlx)?;
        tx.map(|tx| LogCursor::new(tx.max(0) as u64, position))
            .ok_or(StoreError::UnknownPosition(position.0))
    }
}
