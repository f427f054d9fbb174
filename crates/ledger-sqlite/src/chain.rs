//! The hash chains: reading events with their links (walks, exports, heads), loading an
//! exported log, and filling in the chains of events written before they existed.

use std::sync::Arc;

use futures::TryStreamExt;
use ledger_core::chain::{ChainScope, ChainStream, ChainedEvent, Link, StreamHead};
use ledger_core::{ChainHash, Position, Seq, StoreError, StreamName};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row, SqliteConnection, SqlitePool};

use crate::append::time_text;
use crate::error::store_err;
use crate::read::{decode_row, int};
use crate::store::Inner;

/// The envelope's columns (as [`decode_row`] reads them) and the two links.
macro_rules! select_chained {
    () => {
        "SELECT event_id, stream, seq, position, event_type, data, metadata, recorded_at, \
         prev_hash, hash FROM events"
    };
}

/// Every event after position `?1`, in (stream, seq) order.
const CHAINS_SQL: &str = concat!(
    select_chained!(),
    " WHERE position > ?1 ORDER BY stream, seq"
);

/// The events of stream `?2` after position `?1`, in seq order.
const STREAM_CHAIN_SQL: &str = concat!(
    select_chained!(),
    " WHERE stream = ?2 AND position > ?1 ORDER BY seq"
);

/// Every event after position `?1`, in position order.
const LOG_SQL: &str = concat!(select_chained!(), " WHERE position > ?1 ORDER BY position");

/// The event at seq `?2` of stream `?1`.
const AT_SQL: &str = concat!(select_chained!(), " WHERE stream = ?1 AND seq = ?2");

/// The last event of stream `?1`.
const HEAD_SQL: &str =
    "SELECT seq, hash, position FROM events WHERE stream = ?1 ORDER BY seq DESC LIMIT 1";

/// Whether the log has any event.
const ANY_EVENT_SQL: &str = "SELECT EXISTS (SELECT 1 FROM events)";

/// The start of an import's insert, before its rows.
const IMPORT_START: &str = "INSERT INTO events \
     (position, event_id, stream, seq, event_type, data, metadata, recorded_at, prev_hash, hash) \
     VALUES ";

/// Parameters per imported row.
const IMPORT_PARAMS: usize = 10;

/// Whether some event still lacks its links.
const ANY_UNCHAINED_SQL: &str = "SELECT EXISTS (SELECT 1 FROM events WHERE hash IS NULL)";

/// Up to `?3` events without links after (stream `?1`, seq `?2`), in (stream, seq) order.
const UNCHAINED_SQL: &str = concat!(
    select_chained!(),
    " WHERE hash IS NULL AND (stream, seq) > (?1, ?2) ORDER BY stream, seq LIMIT ?3"
);

/// The stored hash at seq `?2` of stream `?1`.
const HASH_AT_SQL: &str = "SELECT hash FROM events WHERE stream = ?1 AND seq = ?2";

/// Fills in the links of the event at position `?3`.
const FILL_SQL: &str = "UPDATE events SET prev_hash = ?1, hash = ?2 WHERE position = ?3";

/// Rows an import writes per statement.
const CHUNK: usize = 100;

/// Rows a fill reads per query.
const FILL_PAGE: i64 = 1000;

/// Decodes a row selected by `select_chained!`.
fn chained(row: &SqliteRow) -> Result<ChainedEvent, sqlx::Error> {
    let link = |i: usize| -> Result<Option<ChainHash>, sqlx::Error> {
        Ok(row
            .try_get::<Option<&[u8]>, _>(i)?
            .and_then(ChainHash::from_slice))
    };
    Ok(ChainedEvent {
        envelope: decode_row(row)?,
        prev_hash: link(8)?,
        hash: link(9)?,
    })
}

/// Streams the events of `scope` in (stream, seq) order: one query, rows decoded as they come.
pub(crate) fn chains(inner: Arc<Inner>, scope: ChainScope) -> ChainStream {
    Box::pin(async_stream::try_stream! {
        let after = int(scope.after.0);
        let query = match &scope.stream {
            Some(stream) => sqlx::query(STREAM_CHAIN_SQL)
                .bind(after)
                .bind(stream.as_str().to_string()),
            None => sqlx::query(CHAINS_SQL).bind(after),
        };
        let mut rows = query.fetch(&inner.reader);
        while let Some(row) = rows.try_next().await.map_err(store_err)? {
            yield chained(&row).map_err(store_err)?;
        }
    })
}

/// Streams the log after `after` in position order.
pub(crate) fn log(inner: Arc<Inner>, after: Position) -> ChainStream {
    Box::pin(async_stream::try_stream! {
        let mut rows = sqlx::query(LOG_SQL).bind(int(after.0)).fetch(&inner.reader);
        while let Some(row) = rows.try_next().await.map_err(store_err)? {
            yield chained(&row).map_err(store_err)?;
        }
    })
}

/// The last event of `stream`.
pub(crate) async fn head(
    reader: &SqlitePool,
    stream: StreamName,
) -> Result<Option<StreamHead>, StoreError> {
    let row: Option<(i64, Option<Vec<u8>>, i64)> = sqlx::query_as(HEAD_SQL)
        .bind(stream.as_str())
        .fetch_optional(reader)
        .await
        .map_err(store_err)?;
    let Some((seq, hash, position)) = row else {
        return Ok(None);
    };
    let hash = hash
        .as_deref()
        .and_then(ChainHash::from_slice)
        .ok_or_else(|| StoreError::backend(format!("the last event of {stream} has no hash")))?;
    Ok(Some(StreamHead {
        stream,
        seq: Seq(seq as u64),
        hash,
        position: Position(position as u64),
    }))
}

/// The event at `seq` of `stream`.
pub(crate) async fn at(
    reader: &SqlitePool,
    stream: StreamName,
    seq: Seq,
) -> Result<Option<ChainedEvent>, StoreError> {
    let row = sqlx::query(AT_SQL)
        .bind(stream.as_str())
        .bind(int(seq.0))
        .fetch_optional(reader)
        .await
        .map_err(store_err)?;
    row.as_ref().map(chained).transpose().map_err(store_err)
}

/// Loads `events` into the empty log in one transaction on the writer connection `conn`.
pub(crate) async fn import(
    conn: &mut SqliteConnection,
    mut events: ChainStream,
) -> Result<u64, StoreError> {
    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE")
        .await
        .map_err(store_err)?;
    let any: bool = sqlx::query_scalar(ANY_EVENT_SQL)
        .fetch_one(&mut *tx)
        .await
        .map_err(store_err)?;
    if any {
        return Err(StoreError::InvalidInput(
            "the target log is not empty: an import loads into an empty database".into(),
        ));
    }
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut loaded = 0u64;
    while let Some(event) = events.try_next().await? {
        chunk.push(event);
        if chunk.len() == CHUNK {
            loaded += insert_rows(&mut tx, std::mem::take(&mut chunk)).await?;
        }
    }
    loaded += insert_rows(&mut tx, chunk).await?;
    tx.commit().await.map_err(store_err)?;
    Ok(loaded)
}

/// Inserts exported rows as they were.
async fn insert_rows(
    conn: &mut SqliteConnection,
    rows: Vec<ChainedEvent>,
) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut sql = String::from(IMPORT_START);
    for i in 0..rows.len() {
        let p = i * IMPORT_PARAMS;
        if i > 0 {
            sql.push_str(", ");
        }
        let params: Vec<String> = (1..=IMPORT_PARAMS).map(|k| format!("?{}", p + k)).collect();
        sql.push('(');
        sql.push_str(&params.join(", "));
        sql.push(')');
    }
    let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(false);
    let n = rows.len() as u64;
    for e in rows {
        let (Some(prev), Some(hash)) = (e.prev_hash, e.hash) else {
            return Err(StoreError::InvalidInput(format!(
                "event {} of {} has no hash",
                e.envelope.seq, e.envelope.stream
            )));
        };
        let v = e.envelope;
        query = query
            .bind(int(v.position.0))
            .bind(v.event_id)
            .bind(v.stream.as_str().to_string())
            .bind(int(v.seq.0))
            .bind(v.event_type)
            .bind(v.data.to_string())
            .bind(v.metadata.to_string())
            .bind(time_text(v.recorded_at))
            .bind(prev.0.to_vec())
            .bind(hash.0.to_vec());
    }
    query.execute(&mut *conn).await.map_err(store_err)?;
    Ok(n)
}

/// Fills in the links of events written before the chains existed, stream by stream in seq
/// order, inside the caller's (migration's) transaction; the number filled.
pub(crate) async fn fill(conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    let any: bool = sqlx::query_scalar(ANY_UNCHAINED_SQL)
        .fetch_one(&mut *conn)
        .await
        .map_err(store_err)?;
    if !any {
        return Ok(0);
    }
    let mut after = (String::new(), 0i64);
    let mut last: Option<(String, Seq, ChainHash)> = None;
    let mut filled = 0u64;
    loop {
        let rows = sqlx::query(UNCHAINED_SQL)
            .bind(&after.0)
            .bind(after.1)
            .bind(FILL_PAGE)
            .fetch_all(&mut *conn)
            .await
            .map_err(store_err)?;
        if rows.is_empty() {
            return Ok(filled);
        }
        for row in &rows {
            let e = chained(row).map_err(store_err)?.envelope;
            let prev = match &last {
                Some((s, seq, hash)) if s == e.stream.as_str() && seq.plus(1) == e.seq => *hash,
                _ if e.seq == Seq(1) => ChainHash::GENESIS,
                _ => stored_hash(conn, &e.stream, Seq(e.seq.0 - 1)).await?,
            };
            let hash = Link::of(&e).hash(&prev);
            sqlx::query(FILL_SQL)
                .bind(prev.0.to_vec())
                .bind(hash.0.to_vec())
                .bind(int(e.position.0))
                .execute(&mut *conn)
                .await
                .map_err(store_err)?;
            filled += 1;
            after = (e.stream.as_str().to_string(), int(e.seq.0));
            last = Some((e.stream.as_str().to_string(), e.seq, hash));
        }
    }
}

/// The stored hash at `seq` of `stream`, which a fill chains to.
async fn stored_hash(
    conn: &mut SqliteConnection,
    stream: &StreamName,
    seq: Seq,
) -> Result<ChainHash, StoreError> {
    let hash: Option<Option<Vec<u8>>> = sqlx::query_scalar(HASH_AT_SQL)
        .bind(stream.as_str())
        .bind(int(seq.0))
        .fetch_optional(conn)
        .await
        .map_err(store_err)?;
    hash.flatten()
        .as_deref()
        .and_then(ChainHash::from_slice)
        .ok_or_else(|| {
            StoreError::backend(format!(
                "cannot chain {stream}: seq {seq} is missing or has no hash"
            ))
        })
}

/// The baseline of a chain walk: the same rows in the same order with one plain SELECT,
/// decoded but neither checked nor hashed; the count.
pub(crate) async fn raw_scan(reader: &SqlitePool) -> Result<u64, StoreError> {
    let mut rows = sqlx::query(CHAINS_SQL).bind(0i64).fetch(reader);
    let mut count = 0u64;
    while let Some(row) = rows.try_next().await.map_err(store_err)? {
        std::hint::black_box(decode_row(&row).map_err(store_err)?);
        count += 1;
    }
    Ok(count)
}
