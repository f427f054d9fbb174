//! The hash chains: reading events with their links (walks, exports, heads), loading an
//! exported log, and filling in the chains of events written before they existed.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use ledger_core::chain::{ChainScope, ChainStream, ChainedEvent, Link, StreamHead};
use ledger_core::{ChainHash, Position, Seq, StoreError, StreamName};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::from_sqlx;
use crate::read::envelope;

/// The envelope's columns and the two links.
macro_rules! select_chained {
    () => {
        "SELECT event_id, stream, seq, position, event_type, data, metadata, recorded_at, \
         prev_hash, hash FROM events"
    };
}

/// Every event after position `$1`, in (stream, seq) order.
const CHAINS_SQL: &str = concat!(
    select_chained!(),
    " WHERE position > $1 ORDER BY stream, seq"
);

/// The events of stream `$2` after position `$1`, in seq order.
const STREAM_CHAIN_SQL: &str = concat!(
    select_chained!(),
    " WHERE stream = $2::text AND position > $1 ORDER BY seq"
);

/// Every event after position `$1`, in position order.
const LOG_SQL: &str = concat!(select_chained!(), " WHERE position > $1 ORDER BY position");

/// The event at seq `$2` of stream `$1`.
const AT_SQL: &str = concat!(select_chained!(), " WHERE stream = $1::text AND seq = $2");

/// The last event of stream `$1`.
const HEAD_SQL: &str =
    "SELECT seq, hash, position FROM events WHERE stream = $1::text ORDER BY seq DESC LIMIT 1";

/// Whether the log has any event.
const ANY_EVENT_SQL: &str = "SELECT EXISTS (SELECT 1 FROM events)";

/// Loads exported rows as they were, positions included.
const IMPORT_SQL: &str = "INSERT INTO events \
     (position, event_id, stream, seq, event_type, data, metadata, recorded_at, prev_hash, hash) \
     OVERRIDING SYSTEM VALUE \
     SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], \
     $6::jsonb[], $7::jsonb[], $8::timestamptz[], $9::bytea[], $10::bytea[])";

/// Moves the position sequence past the loaded rows.
const IMPORT_SEQUENCE_SQL: &str = "SELECT setval(pg_get_serial_sequence('events', 'position'), \
     (SELECT max(position) FROM events))";

/// Whether some event still lacks its links.
const ANY_UNCHAINED_SQL: &str = "SELECT EXISTS (SELECT 1 FROM events WHERE hash IS NULL)";

/// Up to `$3` events without links after (stream `$1`, seq `$2`), in (stream, seq) order.
const UNCHAINED_SQL: &str = concat!(
    select_chained!(),
    " WHERE hash IS NULL AND (stream, seq) > ($1::text, $2) ORDER BY stream, seq LIMIT $3"
);

/// The stored hash at seq `$2` of stream `$1`.
const HASH_AT_SQL: &str = "SELECT hash FROM events WHERE stream = $1::text AND seq = $2";

/// Fills in links: positions `$1`, previous hashes `$2`, hashes `$3`.
const FILL_SQL: &str = "UPDATE events SET prev_hash = u.prev_hash, hash = u.hash \
     FROM UNNEST($1::bigint[], $2::bytea[], $3::bytea[]) AS u(position, prev_hash, hash) \
     WHERE events.position = u.position";

/// Rows an import or a fill writes per statement.
const CHUNK: usize = 1000;

/// The selected columns.
type ChainedRow = (
    Uuid,
    String,
    i64,
    i64,
    String,
    Value,
    Value,
    DateTime<Utc>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

/// Decodes a selected row.
fn chained(row: ChainedRow) -> Result<ChainedEvent, StoreError> {
    let (id, stream, seq, position, ty, data, metadata, at, prev, hash) = row;
    let link = |bytes: Option<Vec<u8>>| bytes.as_deref().and_then(ChainHash::from_slice);
    Ok(ChainedEvent {
        envelope: envelope((id, stream, seq, position, ty, data, metadata, at))?,
        prev_hash: link(prev),
        hash: link(hash),
    })
}

/// A position as the column's integer.
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Streams the events of `scope` in (stream, seq) order: one query, rows decoded as they come.
pub(crate) fn chains(pool: PgPool, scope: ChainScope) -> ChainStream {
    Box::pin(async_stream::try_stream! {
        let after = int(scope.after.0);
        let query = match &scope.stream {
            Some(stream) => sqlx::query_as::<_, ChainedRow>(STREAM_CHAIN_SQL)
                .bind(after)
                .bind(stream.as_str().to_string()),
            None => sqlx::query_as::<_, ChainedRow>(CHAINS_SQL).bind(after),
        };
        let mut rows = query.fetch(&pool);
        while let Some(row) = rows.try_next().await.map_err(from_sqlx)? {
            yield chained(row)?;
        }
    })
}

/// Streams the log after `after` in position order.
pub(crate) fn log(pool: PgPool, after: Position) -> ChainStream {
    Box::pin(async_stream::try_stream! {
        let mut rows = sqlx::query_as::<_, ChainedRow>(LOG_SQL).bind(int(after.0)).fetch(&pool);
        while let Some(row) = rows.try_next().await.map_err(from_sqlx)? {
            yield chained(row)?;
        }
    })
}

/// The last event of `stream`.
pub(crate) async fn head(
    pool: &PgPool,
    stream: StreamName,
) -> Result<Option<StreamHead>, StoreError> {
    let row: Option<(i64, Option<Vec<u8>>, i64)> = sqlx::query_as(HEAD_SQL)
        .bind(stream.as_str())
        .fetch_optional(pool)
        .await
        .map_err(from_sqlx)?;
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
    pool: &PgPool,
    stream: StreamName,
    seq: Seq,
) -> Result<Option<ChainedEvent>, StoreError> {
    let row: Option<ChainedRow> = sqlx::query_as(AT_SQL)
        .bind(stream.as_str())
        .bind(int(seq.0))
        .fetch_optional(pool)
        .await
        .map_err(from_sqlx)?;
    row.map(chained).transpose()
}

/// Loads `events` into the empty log in one transaction.
pub(crate) async fn import(pool: &PgPool, mut events: ChainStream) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await.map_err(from_sqlx)?;
    let any: bool = sqlx::query_scalar(ANY_EVENT_SQL)
        .fetch_one(&mut *tx)
        .await
        .map_err(from_sqlx)?;
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
    if loaded > 0 {
        sqlx::query(IMPORT_SEQUENCE_SQL)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
    }
    tx.commit().await.map_err(from_sqlx)?;
    Ok(loaded)
}

/// Inserts exported rows as they were.
async fn insert_rows(conn: &mut PgConnection, rows: Vec<ChainedEvent>) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let n = rows.len() as u64;
    let mut cols = ImportColumns::default();
    for e in rows {
        let (Some(prev), Some(hash)) = (e.prev_hash, e.hash) else {
            return Err(StoreError::InvalidInput(format!(
                "event {} of {} has no hash",
                e.envelope.seq, e.envelope.stream
            )));
        };
        let v = e.envelope;
        cols.positions.push(int(v.position.0));
        cols.ids.push(v.event_id);
        cols.streams.push(v.stream.as_str().to_string());
        cols.seqs.push(int(v.seq.0));
        cols.types.push(v.event_type);
        cols.data.push(v.data);
        cols.metadata.push(v.metadata);
        cols.times.push(v.recorded_at);
        cols.prevs.push(prev.0.to_vec());
        cols.hashes.push(hash.0.to_vec());
    }
    sqlx::query(IMPORT_SQL)
        .bind(cols.positions)
        .bind(cols.ids)
        .bind(cols.streams)
        .bind(cols.seqs)
        .bind(cols.types)
        .bind(cols.data)
        .bind(cols.metadata)
        .bind(cols.times)
        .bind(cols.prevs)
        .bind(cols.hashes)
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(n)
}

/// The columns of a chunk of imported rows, as arrays.
#[derive(Default)]
struct ImportColumns {
    positions: Vec<i64>,
    ids: Vec<Uuid>,
    streams: Vec<String>,
    seqs: Vec<i64>,
    types: Vec<String>,
    data: Vec<Value>,
    metadata: Vec<Value>,
    times: Vec<DateTime<Utc>>,
    prevs: Vec<Vec<u8>>,
    hashes: Vec<Vec<u8>>,
}

/// Fills in the links of events written before the chains existed, stream by stream in seq
/// order, a chunk per transaction (so an interrupted fill resumes where it stopped); the
/// number filled.
pub(crate) async fn fill(conn: &mut PgConnection) -> Result<u64, StoreError> {
    let any: bool = sqlx::query_scalar(ANY_UNCHAINED_SQL)
        .fetch_one(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    if !any {
        return Ok(0);
    }
    let mut after = (String::new(), 0i64);
    let mut last: Option<(String, Seq, ChainHash)> = None;
    let mut filled = 0u64;
    loop {
        let rows: Vec<ChainedRow> = sqlx::query_as(UNCHAINED_SQL)
            .bind(&after.0)
            .bind(after.1)
            .bind(CHUNK as i64)
            .fetch_all(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        let Some(end) = rows.last() else {
            return Ok(filled);
        };
        after = (end.1.clone(), end.2);
        let mut tx = sqlx::Connection::begin(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        let (mut positions, mut prevs, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
        for row in rows {
            let e = chained(row)?.envelope;
            let prev = match &last {
                Some((s, seq, hash)) if s == e.stream.as_str() && seq.plus(1) == e.seq => *hash,
                _ if e.seq == Seq(1) => ChainHash::GENESIS,
                _ => stored_hash(&mut tx, &e.stream, Seq(e.seq.0 - 1)).await?,
            };
            let hash = Link::of(&e).hash(&prev);
            positions.push(int(e.position.0));
            prevs.push(prev.0.to_vec());
            hashes.push(hash.0.to_vec());
            last = Some((e.stream.as_str().to_string(), e.seq, hash));
        }
        filled += positions.len() as u64;
        sqlx::query(FILL_SQL)
            .bind(positions)
            .bind(prevs)
            .bind(hashes)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        tx.commit().await.map_err(from_sqlx)?;
    }
}

/// The stored hash at `seq` of `stream`, which a fill chains to.
async fn stored_hash(
    conn: &mut PgConnection,
    stream: &StreamName,
    seq: Seq,
) -> Result<ChainHash, StoreError> {
    let hash: Option<Option<Vec<u8>>> = sqlx::query_scalar(HASH_AT_SQL)
        .bind(stream.as_str())
        .bind(int(seq.0))
        .fetch_optional(conn)
        .await
        .map_err(from_sqlx)?;
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
pub(crate) async fn raw_scan(pool: &PgPool) -> Result<u64, StoreError> {
    let mut rows = sqlx::query_as::<_, ChainedRow>(CHAINS_SQL)
        .bind(0i64)
        .fetch(pool);
    let mut count = 0u64;
    while let Some(row) = rows.try_next().await.map_err(from_sqlx)? {
        std::hint::black_box(row);
        count += 1;
    }
    Ok(count)
}
