//! Paged reads: one stream in seq order, the global log in position order (its filters shared
//! with [`crate::log`]), and row decoding.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::Stream;
use ledger_core::{Envelope, Position, ReadAll, Seq, StoreError, StreamName};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Executor, Row, Sqlite, SqlitePool};
use uuid::Uuid;

use crate::error::store_err;
use crate::log::{in_categories, log_page};
use crate::store::Inner;

/// `SELECT <every envelope column> FROM events`, in the column order [`decode_row`] reads.
macro_rules! select_envelope {
    () => {
        "SELECT event_id, stream, seq, position, event_type, data, metadata, recorded_at FROM events"
    };
}
pub(crate) use select_envelope;

/// The stream's head (0 when it has no events).
pub(crate) const HEAD: &str = "SELECT coalesce(\
     (SELECT seq FROM events WHERE stream = ?1 ORDER BY seq DESC LIMIT 1), 0)";

/// One page of a stream.
const READ_STREAM: &str = concat!(
    select_envelope!(),
    " WHERE stream = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3"
);

/// One page of the global log.
const READ_ALL: &str = log_page!(select_envelope!());

/// One page of the global log, one category (`?3`, a JSON array of it).
const READ_ALL_CATEGORY: &str = log_page!(select_envelope!(), in_categories!(3));

/// One page of the global log, one event type.
const READ_ALL_TYPE: &str = log_page!(select_envelope!(), "event_type = ?3");

/// One page of the global log, one category (`?3`, a JSON array of it) and one event type.
const READ_ALL_CATEGORY_TYPE: &str =
    log_page!(select_envelope!(), in_categories!(3), "event_type = ?4");

/// Whether an event has this position.
const POSITION_EXISTS: &str = "SELECT count(*) FROM events WHERE position = ?1";

/// Decodes a row selected by [`select_envelope!`].
pub(crate) fn decode_row(row: &SqliteRow) -> Result<Envelope, sqlx::Error> {
    fn bad(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
        sqlx::Error::Decode(Box::new(e))
    }
    let event_id = Uuid::from_slice(row.try_get::<&[u8], _>(0)?).map_err(bad)?;
    let stream = StreamName::parse(row.try_get::<String, _>(1)?).map_err(bad)?;
    let seq: i64 = row.try_get(2)?;
    let position: i64 = row.try_get(3)?;
    let event_type: String = row.try_get(4)?;
    let data = serde_json::from_str(row.try_get::<&str, _>(5)?).map_err(bad)?;
    let metadata = serde_json::from_str(row.try_get::<&str, _>(6)?).map_err(bad)?;
    let recorded_at = DateTime::parse_from_rfc3339(row.try_get::<&str, _>(7)?)
        .map_err(bad)?
        .with_timezone(&Utc);
    Ok(Envelope {
        event_id,
        stream,
        seq: Seq(seq as u64),
        position: Position(position as u64),
        event_type,
        data,
        metadata,
        recorded_at,
    })
}

/// Runs `query` (selecting [`select_envelope!`]) and decodes every row.
pub(crate) async fn fetch_envelopes<'c, E>(
    query: Query<'_, Sqlite, SqliteArguments>,
    executor: E,
) -> Result<Vec<Envelope>, StoreError>
where
    E: Executor<'c, Database = Sqlite>,
{
    query
        .try_map(|row: SqliteRow| decode_row(&row))
        .fetch_all(executor)
        .await
        .map_err(store_err)
}

/// The stream's head, from a reader connection.
pub(crate) async fn stream_seq(
    reader: &SqlitePool,
    stream: &StreamName,
) -> Result<Seq, StoreError> {
    let seq: i64 = sqlx::query_scalar(HEAD)
        .bind(stream.as_str())
        .fetch_one(reader)
        .await
        .map_err(store_err)?;
    Ok(Seq(seq as u64))
}

/// A seq or position as SQLite's integer, saturating.
pub(crate) fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The events of `stream` with `seq >= from`, page by page.
pub(crate) fn read_stream(
    inner: Arc<Inner>,
    stream: StreamName,
    from: Seq,
) -> impl Stream<Item = Result<Envelope, StoreError>> + Send + 'static {
    let page = inner.options.read_page_size.max(1);
    async_stream::try_stream! {
        let mut next = int(from.0.max(1));
        loop {
            let query = sqlx::query(READ_STREAM)
                .bind(stream.as_str())
                .bind(next)
                .bind(int(page as u64));
            let rows = query.fetch_all(&inner.reader).await.map_err(store_err)?;
            let done = rows.len() < page;
            // Rows are decoded one at a time as they are handed on, so one page holds raw
            // rows, not decoded JSON, and each envelope is built while the cache is warm.
            for row in rows {
                let envelope = decode_row(&row).map_err(store_err)?;
                next = int(envelope.seq.0).saturating_add(1);
                yield envelope;
            }
            if done {
                break;
            }
        }
    }
}

/// The global log after `query.after`, filtered, page by page in position order (commit order:
/// SQLite has one writer at a time).
pub(crate) fn read_all(
    inner: Arc<Inner>,
    query: ReadAll,
) -> impl Stream<Item = Result<Envelope, StoreError>> + Send + 'static {
    let page = inner.options.read_page_size.max(1);
    async_stream::try_stream! {
        let mut after = int(query.after.0);
        if after != 0 {
            let found: i64 = sqlx::query_scalar(POSITION_EXISTS)
                .bind(after)
                .fetch_one(&inner.reader)
                .await
                .map_err(store_err)?;
            if found == 0 {
                Err(StoreError::UnknownPosition(query.after.0))?;
            }
        }
        // A category never holds `-`, so a filter with one (or an empty one) matches nothing.
        let impossible = query
            .category
            .as_deref()
            .is_some_and(|c| c.is_empty() || c.contains('-'));
        let category = query
            .category
            .as_deref()
            .map(|c| serde_json::to_string(&[c]).expect("strings serialize"));
        let event_type = query.event_type.as_deref();
        let mut done = impossible;
        while !done {
            let base = |sql| sqlx::query(sql).bind(after).bind(int(page as u64));
            let page_query = match (category.as_deref(), event_type) {
                (None, None) => base(READ_ALL),
                (Some(c), None) => base(READ_ALL_CATEGORY).bind(c),
                (None, Some(t)) => base(READ_ALL_TYPE).bind(t),
                (Some(c), Some(t)) => base(READ_ALL_CATEGORY_TYPE).bind(c).bind(t),
            };
            let rows = page_query.fetch_all(&inner.reader).await.map_err(store_err)?;
            done = rows.len() < page;
            for row in rows {
                let envelope = decode_row(&row).map_err(store_err)?;
                after = int(envelope.position.0);
                yield envelope;
            }
        }
    }
}
