//! The global log in its gap-free read order, `(tx_id, position)` below the horizon: the SQL
//! both global readers share (`read_all`'s stream and [`LogReader`]'s pages), and
//! [`LogReader`] for readers that keep their own checkpoint (the projection engine).
//!
//! Positions are never compared as numbers: an event's place in the read order is its
//! writing transaction, then its position. A category filter is a prefix test on the stream
//! name (`stream ^@ ANY('{a-,b-}')`), which costs less per row than cutting the name
//! at its first `-`; a category that holds a `-` matches no stream, as the category of a name
//! never does.

use chrono::{DateTime, Utc};
use ledger_core::{
    BoxFuture, Envelope, EventFilter, LogCursor, LogEvent, LogFilter, LogPage, LogReader, Position,
    RawEvent, Seq, StoreError,
};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::error::from_sqlx;
use crate::store::PgStore;
use crate::tx::{begin, end_read_only};

/// The `application_name` a read model's batch transaction takes for its duration: it writes
/// projection tables only, never events (see [`horizon_of`]).
macro_rules! apply_application {
    () => {
        "ledger-apply"
    };
}
pub(crate) use apply_application;

/// The horizon of snapshot `$snapshot` (an `xid8`): its oldest running transaction that may
/// append events to this database, or its xmax when none runs. Every transaction below the
/// horizon that appended here has ended. Two kinds of running transaction never append, so a
/// read does not wait for them: those of other databases, and the read models' batches, which
/// name themselves [`apply_application!`] (`application_name`, set before they write anything).
/// A running transaction counts as one of these only when `pg_stat_activity` shows it so; one
/// it does not show is waited for.
macro_rules! horizon_of {
    ($snapshot:literal) => {
        concat!(
            "(SELECT coalesce(min(x), pg_snapshot_xmax(",
            $snapshot,
            ")) FROM pg_snapshot_xip(",
            $snapshot,
            ") AS x WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity AS a \
             WHERE a.backend_xid::text::bigint = x::text::bigint % 4294967296 \
             AND (a.application_name = '",
            apply_application!(),
            "' OR a.datid IS DISTINCT FROM \
             (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database()))))"
        )
    };
}

/// A page of the global log: the columns `$columns` of the events after the event at
/// position `$1` (0: from the start) in `(tx_id, position)` order, from transactions below
/// the horizon `$2`, only streams starting with one of the prefixes `$3` (NULL: any stream)
/// and only type `$4` (NULL: any type), at most `$5` events.
macro_rules! log_page {
    ($columns:literal) => {
        concat!(
            "SELECT ",
            $columns,
            " FROM events \
             WHERE (tx_id, position) > \
                   (coalesce((SELECT c.tx_id FROM events AS c WHERE c.position = $1), \
                    '0'::xid8), $1) \
               AND tx_id < $2::bigint::text::xid8 \
               AND ($3::text[] IS NULL OR stream ^@ ANY($3::text[])) \
               AND ($4::text IS NULL OR event_type = $4::text) \
             ORDER BY events.tx_id, events.position LIMIT $5"
        )
    };
}

pub(crate) use log_page;

/// Where a global read starts: the current snapshot's horizon (see [`horizon_of`]), its
/// first unassigned transaction (every one below it has started), and whether position `$1`
/// is in the log.
pub(crate) const START_SQL: &str = concat!(
    "SELECT ",
    horizon_of!("s"),
    "::text::bigint, pg_snapshot_xmax(s)::text::bigint, \
     EXISTS (SELECT 1 FROM events WHERE position = $1) FROM pg_current_snapshot() AS s"
);

/// The current snapshot's horizon (see [`horizon_of`]).
pub(crate) const HORIZON_SQL: &str = concat!(
    "SELECT ",
    horizon_of!("s"),
    "::text::bigint FROM pg_current_snapshot() AS s"
);

/// Opens the transaction a page of the log is read in: it must come from the
/// `(tx_id, position)` index in order, whatever the planner's statistics say. Right after a
/// bulk append they still describe a small table, and the planner would sort every remaining
/// event for each query instead. JIT compilation is off: it would cost each page a few
/// milliseconds for a query that runs once per page.
pub(crate) const BEGIN_IN_LOG_ORDER: &str = "BEGIN READ ONLY; SET LOCAL enable_sort = off; \
     SET LOCAL enable_bitmapscan = off; SET LOCAL jit = off";

/// A page for a [`LogReader`] (parameters as in [`log_page`]; `$4` is always NULL).
const READ_PAGE_SQL: &str =
    log_page!("stream, seq, position, event_type, data::text, metadata::text, recorded_at");

/// The first transaction id not yet assigned: once the horizon reaches it, every transaction
/// running now has ended.
const LOG_MARK_SQL: &str = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint";

/// Whether a reader of the prefixes `$3` (NULL: every stream) at checkpoint `$1` (0: before
/// everything) has seen everything up to the event at `$2`: that event exists, every
/// transaction up to its own has ended (so none can still add an event before it), the
/// checkpoint is an event (or 0), and no event of the prefixes lies after the checkpoint and
/// at or before it.
const COVERS_SQL: &str = concat!(
    "SELECT EXISTS (SELECT 1 FROM events AS p, pg_current_snapshot() AS s, \
     (SELECT CASE WHEN $1::bigint = 0 THEN '0'::xid8 \
      ELSE (SELECT e.tx_id FROM events AS e WHERE e.position = $1::bigint) END AS tx_id) AS c \
     WHERE p.position = $2::bigint AND c.tx_id IS NOT NULL AND p.tx_id < ",
    horizon_of!("s"),
    " AND NOT EXISTS (SELECT 1 FROM events AS e \
       WHERE (e.tx_id, e.position) > (c.tx_id, $1) \
         AND (e.tx_id, e.position) <= (p.tx_id, p.position) \
         AND ($3::text[] IS NULL OR e.stream ^@ ANY($3::text[]))))"
);

/// Whether position `$1` is an event (or 0), and how many events of the prefixes `$2` (NULL:
/// every stream) come after it in read order.
const COUNT_AFTER_SQL: &str = "SELECT $1::bigint = 0 \
     OR EXISTS (SELECT 1 FROM events WHERE position = $1::bigint), \
     (SELECT count(*) FROM events \
      WHERE (tx_id, position) > \
            (coalesce((SELECT c.tx_id FROM events AS c WHERE c.position = $1), '0'::xid8), $1) \
        AND ($2::text[] IS NULL OR stream ^@ ANY($2::text[])))";

/// The stream-name prefixes of `categories` (`<category>-`), `None` for every stream when
/// `categories` is empty; a category holding a `-` matches no stream and gives no prefix.
pub(crate) fn prefixes<'a>(categories: impl IntoIterator<Item = &'a str>) -> Option<Vec<String>> {
    let mut any = false;
    let prefixes = categories
        .into_iter()
        .inspect(|_| any = true)
        .filter(|c| !c.contains('-'))
        .map(|c| format!("{c}-"))
        .collect();
    any.then_some(prefixes)
}

/// The prefixes of a filter (see [`prefixes`]).
fn filter_prefixes(filter: &LogFilter) -> Option<Vec<String>> {
    prefixes(filter.categories.iter().map(String::as_str))
}

/// A position or count as a SQL `bigint`.
pub(crate) fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Decodes a row of [`READ_PAGE_SQL`]. The column types are those of the statement (text,
/// bigint, bigint, text, text, text, timestamptz), so the per-value type check of `try_get` is skipped; the
/// values are still decoded and validated.
fn raw_event(row: &PgRow) -> Result<RawEvent, sqlx::Error> {
    let stream: String = row.try_get_unchecked(0)?;
    let seq: i64 = row.try_get_unchecked(1)?;
    let position: i64 = row.try_get_unchecked(2)?;
    let event_type: String = row.try_get_unchecked(3)?;
    let data: String = row.try_get_unchecked(4)?;
    let metadata: String = row.try_get_unchecked(5)?;
    let recorded_at: DateTime<Utc> = row.try_get_unchecked(6)?;
    Ok(RawEvent {
        position: Position(position.max(0) as u64),
        stream,
        seq: Seq(seq.max(0) as u64),
        event_type,
        data,
        metadata,
        recorded_at,
    })
}

/// The largest position in the log (0 when it is empty).
const LAST_POSITION: &str = "SELECT coalesce(max(position), 0) FROM events";

impl LogReader for PgStore {
    fn read_page<'a>(
        &'a self,
        after: Position,
        filter: &'a LogFilter,
        limit: usize,
    ) -> BoxFuture<'a, Result<LogPage, StoreError>> {
        Box::pin(async move {
            let cursor =
                i64::try_from(after.0).map_err(|_| StoreError::UnknownPosition(after.0))?;
            let mut tx = begin(&self.pool, Some(BEGIN_IN_LOG_ORDER)).await?;
            let (horizon, _, known): (i64, i64, bool) = sqlx::query_as(START_SQL)
                .bind(cursor)
                .fetch_one(&mut *tx)
                .await
                .map_err(from_sqlx)?;
            if after != Position::START && !known {
                return Err(StoreError::UnknownPosition(after.0));
            }
            let events = if limit == 0 {
                Vec::new()
            } else {
                sqlx::query(READ_PAGE_SQL)
                    .bind(cursor)
                    .bind(horizon)
                    .bind(filter_prefixes(filter))
                    .bind(None::<&str>)
                    .bind(int(limit as u64))
                    .try_map(|row: PgRow| raw_event(&row))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(from_sqlx)?
            };
            end_read_only(tx);
            Ok(LogPage {
                events,
                horizon: horizon.max(0) as u64,
            })
        })
    }

    fn log_mark(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let mark: i64 = sqlx::query_scalar(LOG_MARK_SQL)
                .fetch_one(&self.pool)
                .await
                .map_err(from_sqlx)?;
            Ok(mark.max(0) as u64)
        })
    }

    fn covers<'a>(
        &'a self,
        checkpoint: Position,
        position: Position,
        filter: &'a LogFilter,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let (Ok(checkpoint), Ok(position)) =
                (i64::try_from(checkpoint.0), i64::try_from(position.0))
            else {
                return Ok(false);
            };
            if position == 0 {
                return Ok(false);
            }
            sqlx::query_scalar(COVERS_SQL)
                .bind(checkpoint)
                .bind(position)
                .bind(filter_prefixes(filter))
                .fetch_one(&self.pool)
                .await
                .map_err(from_sqlx)
        })
    }

    fn count_after<'a>(
        &'a self,
        position: Position,
        filter: &'a LogFilter,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let unknown = || StoreError::UnknownPosition(position.0);
            let cursor = i64::try_from(position.0).map_err(|_| unknown())?;
            let (known, n): (bool, i64) = sqlx::query_as(COUNT_AFTER_SQL)
                .bind(cursor)
                .bind(filter_prefixes(filter))
                .fetch_one(&self.pool)
                .await
                .map_err(from_sqlx)?;
            if !known {
                return Err(unknown());
            }
            Ok(n.max(0) as u64)
        })
    }

    fn last_position(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
        Box::pin(async move {
            let last: i64 = sqlx::query_scalar(LAST_POSITION)
                .fetch_one(&self.pool)
                .await
                .map_err(from_sqlx)?;
            Ok(Position(last.max(0) as u64))
        })
    }

    fn read_events<'a>(
        &'a self,
        after: LogCursor,
        filter: &'a EventFilter,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<LogEvent>, StoreError>> {
        Box::pin(self.events_after(after, filter, limit))
    }

    fn cursor_at(&self, position: Position) -> BoxFuture<'_, Result<LogCursor, StoreError>> {
        Box::pin(self.cursor_of(position))
    }

    fn events_at<'a>(
        &'a self,
        positions: &'a [Position],
    ) -> BoxFuture<'a, Result<Vec<Envelope>, StoreError>> {
        Box::pin(self.events_at_positions(positions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_become_stream_prefixes() {
        assert_eq!(prefixes([]), None);
        assert_eq!(
            prefixes(["a", "bc"]),
            Some(vec!["a-".to_string(), "bc-".to_string()])
        );
        assert_eq!(prefixes(["a-b"]), Some(vec![]));
        assert_eq!(filter_prefixes(&LogFilter::all()), None);
    }

    #[test]
    fn pages_share_one_query_shape() {
        assert!(READ_PAGE_SQL.starts_with(
            "SELECT stream, seq, position, event_type, data::text, metadata::text, recorded_at"
        ));
        assert!(READ_PAGE_SQL.ends_with("ORDER BY events.tx_id, events.position LIMIT $5"));
        assert!(COVERS_SQL.contains("pg_snapshot_xip(s)"));
    }
}
