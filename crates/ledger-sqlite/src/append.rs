//! The conditional insert behind every append, and what a refused append was.
//!
//! On the happy path a batch of up to [`CHUNK`] events is ONE statement: it computes the
//! stream's head, admits the expectation and inserts the rows at `head + i`. SQLite takes its
//! write lock before the statement reads, so the check and the write are atomic, across
//! processes too. Only when that statement inserts nothing (or hits a unique `event_id`) does
//! the store read, to tell an idempotent retry, a reused id and a conflict apart.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, SecondsFormat, Utc};
use ledger_core::chain::recorded_now;
use ledger_core::{
    AppendResult, ChainHash, ChainHead, Conflict, Envelope, ExpectedSeq, HeadCache, Limits,
    NewEvent, Position, Seq, StoreError, StreamName, match_replay,
};
use sqlx::{AssertSqlSafe, Connection, SqliteConnection};
use uuid::Uuid;

use crate::error::{is_not_null_violation, is_unique_violation, store_err};
use crate::read::{HEAD, decode_row, fetch_envelopes};

/// Most events one insert statement carries; longer batches are inserted chunk by chunk
/// inside one transaction (or savepoint).
pub(crate) const CHUNK: usize = 500;

/// Parameters per row: event_id, event_type, data, metadata, prev_hash, hash (after `?1`, the
/// stream).
const ROW_PARAMS: usize = 6;

/// The conditional insert of one event. The seq is NULL when the stream's head is not the one
/// the event was chained to, so the NOT NULL constraint refuses the row; unlike
/// `INSERT ... SELECT` from the table being written, this needs no temporary table (about half
/// the statement's cost).
///
/// Parameters: `?1` the stream, `?2`..`?7` the event's id, type, data, metadata, previous hash
/// and hash, `?8` and `?9` the head it was chained to (twice), `?10` the recording time.
const INSERT_ONE: &str = "INSERT INTO events \
     (event_id, stream, seq, event_type, data, metadata, prev_hash, hash, recorded_at) \
 VALUES (?2, ?1, \
     (SELECT CASE WHEN head BETWEEN ?8 AND ?9 THEN head + 1 END FROM (SELECT coalesce(\
         (SELECT seq FROM events WHERE stream = ?1 ORDER BY seq DESC LIMIT 1), 0) AS head)), \
     ?3, ?4, ?5, ?6, ?7, ?10)";

/// The conditional insert of several events, up to the rows
/// `(i, event_id, event_type, data, metadata, prev_hash, hash)`.
///
/// Parameters: `?1` the stream, then the rows, then (numbered after them) the head they were
/// chained to (twice) and the recording time.
const INSERT_START: &str = "INSERT INTO events \
     (event_id, stream, seq, event_type, data, metadata, prev_hash, hash, recorded_at) \
 SELECT batch.column2, ?1, head.seq + batch.column1, batch.column3, batch.column4, \
     batch.column5, batch.column6, batch.column7, ";

/// The conditional insert, between the recording time and the rows.
const INSERT_HEAD: &str = " FROM (SELECT coalesce(\
     (SELECT seq FROM events WHERE stream = ?1 ORDER BY seq DESC LIMIT 1), 0) AS seq) AS head \
 CROSS JOIN (VALUES ";

/// The conditional insert, between the rows and the admitted heads.
const INSERT_WHERE: &str = ") AS batch WHERE head.seq BETWEEN ";

/// The conditional insert, after the admitted heads.
const INSERT_END: &str = " ORDER BY batch.column1";

/// The first events of a stream after a seq (what a conflicting writer missed).
const MISSED: &str = concat!(
    crate::read::select_envelope!(),
    " WHERE stream = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
);

/// The stored events with given ids, up to the list of `?` placeholders.
const WITH_IDS_START: &str = concat!(crate::read::select_envelope!(), " WHERE event_id IN (");

/// Most ids looked up by one statement.
const IDS_CHUNK: usize = 500;

/// How often an append whose expectation held by the time its refusal was examined (another
/// process appended in between) is tried again.
const ATTEMPTS: usize = 5;

/// The conditional insert for `n` rows (`1..=CHUNK`), built once per length from the
/// constants above. The seqs are known (the head the rows were chained to), and the last
/// position is SQLite's last insert rowid, which spares the cost of RETURNING.
fn insert_sql(n: usize) -> &'static str {
    static SQL: [OnceLock<String>; CHUNK] = [const { OnceLock::new() }; CHUNK];
    SQL[n - 1].get_or_init(|| {
        if n == 1 {
            return String::from(INSERT_ONE);
        }
        let after_rows = 1 + n * ROW_PARAMS;
        let mut sql = String::with_capacity(400 + n * 32);
        sql.push_str(INSERT_START);
        sql.push_str(&format!("?{}", after_rows + 3));
        sql.push_str(INSERT_HEAD);
        for i in 0..n {
            let p = 1 + i * ROW_PARAMS;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "({}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{})",
                i + 1,
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6
            ));
        }
        sql.push_str(INSERT_WHERE);
        sql.push_str(&format!("?{} AND ?{}", after_rows + 1, after_rows + 2));
        sql.push_str(INSERT_END);
        sql
    })
}

/// The time the store records, as stored: UTC RFC 3339 with microseconds.
pub(crate) fn now_text() -> String {
    time_text(Utc::now())
}

/// A recording time as stored.
pub(crate) fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The last seq of stream `?1` and its hash.
const HEAD_WITH_HASH: &str =
    "SELECT seq, hash FROM events WHERE stream = ?1 ORDER BY seq DESC LIMIT 1";

/// Reads the head of `stream` through `conn`.
pub(crate) async fn read_head(
    conn: &mut SqliteConnection,
    stream: &StreamName,
) -> Result<ChainHead, StoreError> {
    let row: Option<(i64, Option<Vec<u8>>)> = sqlx::query_as(HEAD_WITH_HASH)
        .bind(stream.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(store_err)?;
    match row {
        None => Ok(ChainHead::EMPTY),
        Some((seq, hash)) => ChainHead::stored(seq, hash.as_deref())
            .ok_or_else(|| StoreError::backend(ChainHead::unchained(stream))),
    }
}

/// One event's columns, encoded before the writer connection is taken so that the time the
/// connection is held is spent in SQLite.
pub(crate) struct EncodedEvent {
    pub(crate) event_id: Uuid,
    pub(crate) event_type: Arc<str>,
    pub(crate) data: Arc<str>,
    pub(crate) metadata: Arc<str>,
}

/// A batch chained after a head: each event's (previous hash, hash) and the recording time.
pub(crate) struct Chained {
    head: ChainHead,
    links: Vec<(ChainHash, ChainHash)>,
    recorded_at: String,
}

impl Chained {
    /// Chains `batch` after `head`, recorded now.
    fn after(batch: &Batch, head: ChainHead) -> Self {
        let recorded_at = recorded_now();
        let links = head.links(&batch.stream, &batch.events, recorded_at);
        Self {
            head,
            links,
            recorded_at: time_text(recorded_at),
        }
    }

    /// The head the batch was chained to.
    pub(crate) fn head(&self) -> ChainHead {
        self.head
    }

    /// Each event's (previous hash, hash).
    pub(crate) fn links(&self) -> &[(ChainHash, ChainHash)] {
        &self.links
    }

    /// The recording time, as stored.
    pub(crate) fn recorded_at(&self) -> &str {
        &self.recorded_at
    }

    /// The hash of the batch's last event.
    pub(crate) fn last_hash(&self) -> ChainHash {
        self.links.last().map_or(self.head.hash, |l| l.1)
    }
}

/// One stream's append: the events as given (for the refusal's examination) and encoded.
pub(crate) struct Batch {
    pub(crate) stream: StreamName,
    expected: ExpectedSeq,
    events: Vec<NewEvent>,
    encoded: Vec<EncodedEvent>,
}

impl Batch {
    /// Encodes a validated batch.
    pub(crate) fn encode(
        stream: StreamName,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
    ) -> Result<Self, StoreError> {
        let json = |v: &serde_json::Value| {
            serde_json::to_string(v)
                .map(Arc::from)
                .map_err(|e| StoreError::backend_with("cannot encode JSON", e))
        };
        let encoded = events
            .iter()
            .map(|e| {
                Ok(EncodedEvent {
                    event_id: e.event_id,
                    event_type: Arc::from(e.event_type.as_str()),
                    data: json(&e.data)?,
                    metadata: json(&e.metadata)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Self {
            stream,
            expected,
            events,
            encoded,
        })
    }

    /// The events, encoded.
    pub(crate) fn encoded(&self) -> &[EncodedEvent] {
        &self.encoded
    }

    /// The number of events.
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }
}

/// Runs one conditional insert of at most [`CHUNK`] events; `None` when the stream was not
/// where `expected` says and nothing was written.
async fn insert_chunk(
    conn: &mut SqliteConnection,
    stream: &StreamName,
    head: Seq,
    rows: &[EncodedEvent],
    links: &[(ChainHash, ChainHash)],
    recorded_at: &str,
) -> Result<Option<AppendResult>, sqlx::Error> {
    match run_insert(conn, stream, head, rows, links, recorded_at).await {
        // The one-event insert refuses with a NULL seq; nothing else it binds can be NULL.
        Err(error) if rows.len() == 1 && is_not_null_violation(&error) => Ok(None),
        other => other,
    }
}

/// Runs the statement of [`insert_chunk`].
async fn run_insert(
    conn: &mut SqliteConnection,
    stream: &StreamName,
    head: Seq,
    rows: &[EncodedEvent],
    links: &[(ChainHash, ChainHash)],
    recorded_at: &str,
) -> Result<Option<AppendResult>, sqlx::Error> {
    let at = i64::try_from(head.0).unwrap_or(-1);
    let mut query = sqlx::query(insert_sql(rows.len())).bind(stream.as_str());
    for (row, (prev, hash)) in rows.iter().zip(links) {
        query = query
            .bind(row.event_id)
            .bind(row.event_type.clone())
            .bind(row.data.clone())
            .bind(row.metadata.clone())
            .bind(&prev.0[..])
            .bind(&hash.0[..]);
    }
    let query = query.bind(at).bind(at).bind(recorded_at);
    let done = query.execute(&mut *conn).await?;
    let written = (done.rows_affected() > 0).then(|| {
        (
            head.0 + 1,
            head.0 + rows.len() as u64,
            done.last_insert_rowid(),
        )
    });
    Ok(written.map(|(first, last, position)| AppendResult {
        stream: stream.clone(),
        first_seq: Seq(first),
        last_seq: Seq(last),
        position: Position(position as u64),
        replayed: false,
    }))
}

/// Inserts the whole batch if the stream is where it expects; `None` when it is not.
/// A batch longer than [`CHUNK`] is inserted in chunks inside a transaction (a savepoint when
/// one is already open), each chunk after the first expecting where the previous one ended.
async fn insert(
    conn: &mut SqliteConnection,
    batch: &Batch,
    chained: &Chained,
) -> Result<Option<AppendResult>, sqlx::Error> {
    let recorded_at = &chained.recorded_at;
    if batch.encoded.len() <= CHUNK {
        return insert_chunk(
            conn,
            &batch.stream,
            chained.head.seq,
            &batch.encoded,
            &chained.links,
            recorded_at,
        )
        .await;
    }
    let mut tx = conn.begin().await?;
    let mut head = chained.head.seq;
    let mut total: Option<AppendResult> = None;
    let chunks = batch.encoded.chunks(CHUNK).zip(chained.links.chunks(CHUNK));
    for (chunk, links) in chunks {
        match insert_chunk(&mut tx, &batch.stream, head, chunk, links, recorded_at).await {
            Ok(Some(written)) => {
                head = written.last_seq;
                total = Some(match total {
                    None => written,
                    Some(so_far) => AppendResult {
                        last_seq: written.last_seq,
                        position: written.position,
                        ..so_far
                    },
                });
            }
            Ok(None) => {
                tx.rollback().await?;
                return Ok(None);
            }
            Err(error) => {
                // The statement's error is the answer; dropping `tx` rolls back as well.
                let _ = tx.rollback().await;
                return Err(error);
            }
        }
    }
    tx.commit().await?;
    Ok(total)
}

/// What a refused insert was.
enum Refusal {
    /// An idempotent retry, a reused id or a conflict.
    Answer(Result<AppendResult, StoreError>),
    /// The expectation holds now (another process wrote between the insert and the look):
    /// insert again.
    Retry,
}

/// Tells apart what a refused insert was, reading through `conn`.
async fn examine(
    conn: &mut SqliteConnection,
    batch: &Batch,
    limits: &Limits,
) -> Result<Refusal, StoreError> {
    let (stream, expected) = (&batch.stream, batch.expected);
    let existing = stored_with_ids(conn, &batch.events).await?;
    if let Some(answer) = match_replay(stream, &batch.events, &existing) {
        return Ok(Refusal::Answer(answer));
    }
    let current = head(conn, stream).await?;
    if expected.admits(current) {
        return Ok(Refusal::Retry);
    }
    let missed = fetch_envelopes(
        sqlx::query(MISSED)
            .bind(stream.as_str())
            .bind(i64::try_from(expected.missed_after().0).unwrap_or(i64::MAX))
            .bind((limits.max_missed_events as i64).saturating_add(1)),
        &mut *conn,
    )
    .await?;
    Ok(Refusal::Answer(Err(Conflict::error(
        stream,
        expected,
        current,
        missed,
        limits.max_missed_events,
    ))))
}

/// The stream's head, read through `conn`.
async fn head(conn: &mut SqliteConnection, stream: &StreamName) -> Result<Seq, StoreError> {
    let seq: i64 = sqlx::query_scalar(HEAD)
        .bind(stream.as_str())
        .fetch_one(conn)
        .await
        .map_err(store_err)?;
    Ok(Seq(seq as u64))
}

/// The stored envelopes whose ids are in `events`, in the batch's order.
async fn stored_with_ids(
    conn: &mut SqliteConnection,
    events: &[NewEvent],
) -> Result<Vec<Envelope>, StoreError> {
    let mut found = Vec::new();
    for chunk in events.chunks(IDS_CHUNK) {
        let mut sql = String::from(WITH_IDS_START);
        for i in 1..=chunk.len() {
            if i > 1 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("?{i}"));
        }
        sql.push(')');
        let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(false);
        for e in chunk {
            query = query.bind(e.event_id);
        }
        let rows = query.fetch_all(&mut *conn).await.map_err(store_err)?;
        for row in &rows {
            found.push(decode_row(row).map_err(store_err)?);
        }
    }
    let order: HashMap<Uuid, usize> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.event_id, i))
        .collect();
    found.sort_by_key(|e| order.get(&e.event_id).copied());
    Ok(found)
}

/// The batch chained after the head `heads` assumes for its stream, before the writer
/// connection is taken (so the hashing is not done while holding it); `None` when the head
/// must be read first.
pub(crate) fn prepare(heads: &HeadCache, batch: &Batch) -> Option<Chained> {
    heads
        .assume(batch.stream.as_str(), batch.expected)
        .filter(|head| batch.expected.admits(head.seq))
        .map(|head| Chained::after(batch, head))
}

/// Appends in autocommit mode on the writer connection: the batch is one statement when it
/// was `prepared` on the right head, and a refusal is examined in a read transaction of its
/// own.
pub(crate) async fn append_autocommit(
    conn: &mut SqliteConnection,
    heads: &HeadCache,
    batch: &Batch,
    prepared: Option<Chained>,
    limits: &Limits,
) -> Result<AppendResult, StoreError> {
    let fast = match prepared {
        Some(chained) => insert_prepared(conn, batch, &chained).await,
        None => Ok(None),
    };
    let written = match fast {
        Ok(Some(written)) => Ok(written),
        Ok(None) => append_locked(conn, batch, limits).await,
        Err(e) => Err(e),
    };
    match &written {
        Ok((result, Some(hash))) => {
            let head = ChainHead {
                seq: result.last_seq,
                hash: *hash,
            };
            heads.put(batch.stream.as_str(), head)
        }
        Ok(_) => {}
        Err(_) => heads.forget(batch.stream.as_str()),
    }
    written.map(|(result, _)| result)
}

/// Inserts a batch chained before the writer connection was taken; `None` when the head it
/// was chained to is no longer the stream's (or one of its ids is stored), for
/// [`append_locked`] to settle.
async fn insert_prepared(
    conn: &mut SqliteConnection,
    batch: &Batch,
    chained: &Chained,
) -> Result<Option<(AppendResult, Option<ChainHash>)>, StoreError> {
    match insert(conn, batch, chained).await {
        Ok(Some(result)) => Ok(Some((result, Some(chained.last_hash())))),
        Ok(None) => Ok(None),
        Err(error) if is_unique_violation(&error) => Ok(None),
        Err(error) => Err(store_err(error)),
    }
}

/// Appends inside the open write transaction `conn` (a group's): the prepared insert when
/// the batch was chained before it was queued, else (or when that is refused) as
/// [`append_in_tx`] does.
pub(crate) async fn append_prepared_in_tx(
    conn: &mut SqliteConnection,
    batch: &Batch,
    prepared: Option<Chained>,
    limits: &Limits,
) -> Result<(AppendResult, Option<ChainHash>), StoreError> {
    if let Some(chained) = prepared
        && let Some(written) = insert_prepared(conn, batch, &chained).await?
    {
        return Ok(written);
    }
    append_in_tx(conn, batch, limits).await
}

/// Appends under SQLite's write lock (`BEGIN IMMEDIATE`): the head read, the chained insert
/// and the examination of a refusal see no other connection's writes in between, so an
/// `any` or `exists` append never loses a race to another process.
async fn append_locked(
    conn: &mut SqliteConnection,
    batch: &Batch,
    limits: &Limits,
) -> Result<(AppendResult, Option<ChainHash>), StoreError> {
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(store_err)?;
    match append_in_tx(&mut tx, batch, limits).await {
        Ok(written) => {
            tx.commit().await.map_err(store_err)?;
            Ok(written)
        }
        Err(error) => {
            // The answer is known; a failed rollback changes nothing in it.
            let _ = tx.rollback().await;
            Err(error)
        }
    }
}

/// Appends inside the open write transaction `conn`, which sees its own earlier appends: reads
/// the stream's head, inserts the batch chained after it, and on refusal examines why and
/// answers. The result and, when it wrote, the hash the stream ends with (once committed).
pub(crate) async fn append_in_tx(
    conn: &mut SqliteConnection,
    batch: &Batch,
    limits: &Limits,
) -> Result<(AppendResult, Option<ChainHash>), StoreError> {
    for _ in 0..ATTEMPTS {
        let head = read_head(conn, &batch.stream).await?;
        if batch.expected.admits(head.seq) {
            let chained = Chained::after(batch, head);
            match insert(conn, batch, &chained).await {
                Ok(Some(result)) => return Ok((result, Some(chained.last_hash()))),
                Ok(None) => {}
                Err(error) if is_unique_violation(&error) => {}
                Err(error) => return Err(store_err(error)),
            }
        }
        match examine(conn, batch, limits).await? {
            Refusal::Answer(answer) => return answer.map(|result| (result, None)),
            Refusal::Retry => continue,
        }
    }
    Err(StoreError::backend(format!(
        "append to {} was refused {ATTEMPTS} times although its expectation held",
        batch.stream
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_sql_numbers_every_row() {
        let sql = insert_sql(2);
        assert!(sql.contains("batch.column7, ?16 FROM"), "{sql}");
        assert!(sql.contains(
            "VALUES (1, ?2, ?3, ?4, ?5, ?6, ?7), (2, ?8, ?9, ?10, ?11, ?12, ?13)) AS batch"
        ));
        assert!(sql.contains("BETWEEN ?14 AND ?15 ORDER BY batch.column1"));
        assert!(std::ptr::eq(sql, insert_sql(2)));
        let one = insert_sql(1);
        assert_eq!(one, INSERT_ONE);
        assert!(one.ends_with("?10)"), "{one}");
    }
}
