//! The global log read page by page by readers that keep their own checkpoint
//! ([`LogReader`]): raw events, their payload still JSON text, filtered by category.
//!
//! SQLite has one writer at a time, so position order is commit order: a page holds every
//! event committed after its start, the horizon is always `u64::MAX` and positions compare as
//! numbers. The page statements share their filters with [`crate::read::read_all`].
//!
//! A page comes back as one row, a JSON array of its events that SQLite builds and serde
//! reads: handing rows over one by one costs sqlx more than that (measured: a page of the log
//! is read in about 60% of the time). A page too large for one SQLite string (a billion
//! bytes) is read row by row instead.

use chrono::{DateTime, Utc};
use ledger_core::{
    BoxFuture, Envelope, EventFilter, LogCursor, LogEvent, LogFilter, LogPage, LogReader, Position,
    RawEvent, Seq, StoreError,
};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::error::{is_too_big, store_err};
use crate::read::int;
use crate::store::SqliteStore;

/// A page of the log: `$select` (up to its `FROM events`) after position `?1`, in position
/// order, at most `?2` rows, with each further condition (`AND`ed).
macro_rules! log_page {
    ($select:expr $(, $condition:expr)*) => {
        concat!(
            $select,
            " WHERE position > ?1",
            $(" AND ", $condition,)*
            " ORDER BY position LIMIT ?2"
        )
    };
}
pub(crate) use log_page;

/// The condition that keeps events of some categories: parameter `?$n` is a JSON array of
/// category names, compared with the part of the stream's name before its first `-` (never
/// LIKE: `_` is a wildcard there).
macro_rules! in_categories {
    ($n:literal) => {
        concat!(
            "substr(stream, 1, instr(stream, '-') - 1) IN (SELECT value FROM json_each(?",
            $n,
            "))"
        )
    };
}
pub(crate) use in_categories;

/// `SELECT` of a raw event, in the column order [`raw_event`] reads.
macro_rules! select_raw {
    () => {
        "SELECT position, stream, seq, event_type, data, metadata, recorded_at FROM events"
    };
}

/// A page of the whole log.
const READ_PAGE: &str = log_page!(select_raw!());

/// A page of the log, some categories (`?3`).
const READ_PAGE_CATEGORIES: &str = log_page!(select_raw!(), in_categories!(3));

/// A page as one JSON array of `[position, stream, seq, event_type, data, metadata,
/// recorded_at]` arrays.
macro_rules! as_json {
    ($page:expr) => {
        concat!(
            "SELECT json_group_array(json_array(position, stream, seq, event_type, data, metadata, \
             recorded_at)) FROM (",
            $page,
            ")"
        )
    };
}

/// [`READ_PAGE`] as one JSON text.
const READ_PAGE_JSON: &str = as_json!(log_page!(select_raw!()));

/// [`READ_PAGE_CATEGORIES`] as one JSON text.
const READ_PAGE_CATEGORIES_JSON: &str = as_json!(log_page!(select_raw!(), in_categories!(3)));

/// Whether the event at `?2` exists and none after `?1` up to it passes the filter.
const COVERS: &str = "SELECT EXISTS (SELECT 1 FROM events WHERE position = ?2) \
     AND NOT EXISTS (SELECT 1 FROM events WHERE position > ?1 AND position <= ?2)";

/// [`COVERS`] for some categories (`?3`).
const COVERS_CATEGORIES: &str = concat!(
    "SELECT EXISTS (SELECT 1 FROM events WHERE position = ?2) \
     AND NOT EXISTS (SELECT 1 FROM events WHERE position > ?1 AND position <= ?2 AND ",
    in_categories!(3),
    ")"
);

/// The events after `?1`.
const COUNT_AFTER: &str = "SELECT count(*) FROM events WHERE position > ?1";

/// The events after `?1` in some categories (`?2`).
const COUNT_AFTER_CATEGORIES: &str = concat!(
    "SELECT count(*) FROM events WHERE position > ?1 AND ",
    in_categories!(2)
);

/// The filter's categories as the JSON array [`in_categories!`] binds; `None` for every event.
fn categories(filter: &LogFilter) -> Option<String> {
    if filter.categories.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&filter.categories).expect("strings serialize"))
    }
}

/// One event of a page read as JSON.
type JsonEvent = (u64, String, u64, String, String, String, String);

/// Reads a page as one JSON text; `None` when it is too large for one.
async fn page_as_json(
    store: &SqliteStore,
    after: i64,
    limit: i64,
    categories: Option<&str>,
) -> Result<Option<Vec<RawEvent>>, StoreError> {
    let query = match categories {
        None => sqlx::query_scalar(READ_PAGE_JSON).bind(after).bind(limit),
        Some(c) => sqlx::query_scalar(READ_PAGE_CATEGORIES_JSON)
            .bind(after)
            .bind(limit)
            .bind(c),
    };
    let text: String = match query.fetch_one(&store.inner.reader).await {
        Ok(text) => text,
        Err(e) if is_too_big(&e) => return Ok(None),
        Err(e) => return Err(store_err(e)),
    };
    let parsed: Vec<JsonEvent> = serde_json::from_str(&text)
        .map_err(|e| StoreError::backend_with("a page of the log does not decode", e))?;
    let mut events: Vec<RawEvent> = parsed
        .into_iter()
        .map(
            |(position, stream, seq, event_type, data, metadata, recorded_at)| {
                Ok(RawEvent {
                    position: Position(position),
                    stream,
                    seq: Seq(seq),
                    event_type,
                    data,
                    metadata,
                    recorded_at: recorded_time(&recorded_at)?,
                })
            },
        )
        .collect::<Result<_, StoreError>>()?;
    // The aggregate takes the subquery's rows in its order; this only makes sure.
    if !events.is_sorted_by_key(|e| e.position) {
        events.sort_unstable_by_key(|e| e.position);
    }
    Ok(Some(events))
}

/// Reads a page row by row.
async fn page_by_rows(
    store: &SqliteStore,
    after: i64,
    limit: i64,
    categories: Option<&str>,
) -> Result<Vec<RawEvent>, StoreError> {
    let query = match categories {
        None => sqlx::query(READ_PAGE).bind(after).bind(limit),
        Some(c) => sqlx::query(READ_PAGE_CATEGORIES)
            .bind(after)
            .bind(limit)
            .bind(c),
    };
    query
        .try_map(raw_event)
        .fetch_all(&store.inner.reader)
        .await
        .map_err(store_err)
}

/// Decodes a row of [`select_raw!`].
fn raw_event(row: SqliteRow) -> Result<RawEvent, sqlx::Error> {
    let position: i64 = row.try_get(0)?;
    let seq: i64 = row.try_get(2)?;
    Ok(RawEvent {
        position: Position(position as u64),
        stream: row.try_get(1)?,
        seq: Seq(seq as u64),
        event_type: row.try_get(3)?,
        data: row.try_get(4)?,
        metadata: row.try_get(5)?,
        recorded_at: recorded_time(row.try_get::<&str, _>(6)?)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
    })
}

/// A stored `recorded_at` (RFC 3339 text).
fn recorded_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::backend_with("a recorded_at does not decode", e))
}

/// The largest position in the log (0 when it is empty).
const LAST_POSITION: &str = "SELECT coalesce(max(position), 0) FROM events";

impl LogReader for SqliteStore {
    fn read_page<'a>(
        &'a self,
        after: Position,
        filter: &'a LogFilter,
        limit: usize,
    ) -> BoxFuture<'a, Result<LogPage, StoreError>> {
        Box::pin(async move {
            let (after, limit) = (int(after.0), int(limit as u64));
            let categories = categories(filter);
            let events = match page_as_json(self, after, limit, categories.as_deref()).await? {
                Some(events) => events,
                None => page_by_rows(self, after, limit, categories.as_deref()).await?,
            };
            // One writer at a time: what is committed is final, in position order.
            Ok(LogPage {
                events,
                horizon: u64::MAX,
            })
        })
    }

    fn log_mark(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async { Ok(0) })
    }

    fn covers<'a>(
        &'a self,
        checkpoint: Position,
        position: Position,
        filter: &'a LogFilter,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            if position == Position::START {
                return Ok(false);
            }
            let (checkpoint, position) = (int(checkpoint.0), int(position.0));
            let query = match categories(filter) {
                None => sqlx::query_scalar(COVERS).bind(checkpoint).bind(position),
                Some(c) => sqlx::query_scalar(COVERS_CATEGORIES)
                    .bind(checkpoint)
                    .bind(position)
                    .bind(c),
            };
            query.fetch_one(&self.inner.reader).await.map_err(store_err)
        })
    }

    fn count_after<'a>(
        &'a self,
        position: Position,
        filter: &'a LogFilter,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let query = match categories(filter) {
                None => sqlx::query_scalar(COUNT_AFTER).bind(int(position.0)),
                Some(c) => sqlx::query_scalar(COUNT_AFTER_CATEGORIES)
                    .bind(int(position.0))
                    .bind(c),
            };
            let n: i64 = query
                .fetch_one(&self.inner.reader)
                .await
                .map_err(store_err)?;
            Ok(n.max(0) as u64)
        })
    }

    fn last_position(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
        Box::pin(async move {
            let last: i64 = sqlx::query_scalar(LAST_POSITION)
                .fetch_one(&self.inner.reader)
                .await
                .map_err(store_err)?;
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
    use ledger_core::{EventStore, ExpectedSeq, NewEvent, StoreOptions, StreamName};
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn pages_read_as_json_and_row_by_row_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let store = SqliteStore::open(path.to_str().unwrap(), StoreOptions::default())
            .await
            .unwrap();
        for (stream, data) in [
            (
                "a-1",
                json!({ "text": "quotes \" and \\ and \n and é and \u{1}" }),
            ),
            ("b-1", json!([1, 2.5, null, { "deep": [true] }])),
            ("a-2", json!("just a string")),
        ] {
            let event = NewEvent::new("T", data);
            let stream = StreamName::parse(stream).unwrap();
            store
                .append(stream, ExpectedSeq::Any, vec![event])
                .await
                .unwrap();
        }
        for categories in [None, Some(r#"["a"]"#), Some(r#"["zz"]"#)] {
            for (after, limit) in [(0, 10), (1, 1), (3, 5)] {
                let json = page_as_json(&store, after, limit, categories).await;
                let rows = page_by_rows(&store, after, limit, categories).await;
                assert_eq!(json.unwrap().unwrap(), rows.unwrap());
            }
        }
        let all = page_by_rows(&store, 0, 10, None).await.unwrap();
        assert_eq!(all.len(), 3);
        let data: serde_json::Value = serde_json::from_str(&all[0].data).unwrap();
        assert_eq!(data["text"], "quotes \" and \\ and \n and é and \u{1}");
    }

    #[test]
    fn pages_share_their_filters() {
        assert_eq!(
            READ_PAGE,
            "SELECT position, stream, seq, event_type, data, metadata, recorded_at FROM events \
             WHERE position > ?1 ORDER BY position LIMIT ?2"
        );
        assert_eq!(
            READ_PAGE_CATEGORIES,
            "SELECT position, stream, seq, event_type, data, metadata, recorded_at FROM events WHERE position > ?1 \
             AND substr(stream, 1, instr(stream, '-') - 1) IN (SELECT value FROM json_each(?3)) \
             ORDER BY position LIMIT ?2"
        );
        assert_eq!(categories(&LogFilter::all()), None);
        assert_eq!(
            categories(&LogFilter::categories(["b", "a"])).as_deref(),
            Some(r#"["a","b"]"#)
        );
    }
}
