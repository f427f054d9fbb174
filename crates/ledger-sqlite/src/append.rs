//! The conditional insert behind every append, and what a refused append was.
//!
//! On the happy path a batch of up to [`CHUNK`] events is ONE statement: it computes the
//! stream's head, admits the expectation and inserts the rows at `head + i`. SQLite takes its
//! write lock before the statement reads, so the check and the write are atomic, across
//! processes too. Only when that statement inserts nothing (or hits a unique `event_id`) does
//! the store read, to tell an idempotent retry, a reused id and a conflict apart.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use chrono::{SecondsFormat, Utc};
use ledger_core::{
    AppendResult, Conflict, Envelope, ExpectedSeq, Limits, NewEvent, Position, Seq, StoreError,
    StreamName, match_replay,
};
use sqlx::{AssertSqlSafe, Connection, Row, SqliteConnection};
use uuid::Uuid;

use crate::error::{is_not_null_violation, is_unique_violation, store_err};
use crate::read::{HEAD, decode_row, fetch_envelopes};

/// Most events one insert statement carries; longer batches are inserted chunk by chunk
/// inside one transaction (or savepoint).
pub(crate) const CHUNK: usize = 500;

/// Parameters per row: event_id, event_type, data, metadata (after `?1`, the stream).
const ROW_PARAMS: usize = 4;

/// The conditional insert of one event. The seq is NULL when the stream's head is not
/// admitted, so the NOT NULL constraint refuses the row; unlike `INSERT ... SELECT` from the
/// table being written, this needs no temporary table (about half the statement's cost).
///
/// Parameters: `?1` the stream, `?2`..`?5` the event's id, type, data and metadata, `?6` and
/// `?7` the lowest and highest head the expectation admits, `?8` the recording time.
const INSERT_ONE: &str = "INSERT INTO events \
     (event_id, stream, seq, event_type, data, metadata, recorded_at) \
 VALUES (?2, ?1, \
     (SELECT CASE WHEN head BETWEEN ?6 AND ?7 THEN head + 1 END FROM (SELECT coalesce(\
         (SELECT seq FROM events WHERE stream = ?1 ORDER BY seq DESC LIMIT 1), 0) AS head)), \
     ?3, ?4, ?5, ?8)";

/// The conditional insert of several events, up to the rows
/// `(i, event_id, event_type, data, metadata)`.
///
/// Parameters: `?1` the stream, then the rows, then (numbered after them) the lowest and the
/// highest head the expectation admits and the recording time.
const INSERT_START: &str = "INSERT INTO events \
     (event_id, stream, seq, event_type, data, metadata, recorded_at) \
 SELECT batch.column2, ?1, head.seq + batch.column1, batch.column3, batch.column4, \
     batch.column5, ";

/// The conditional insert, between the recording time and the rows.
const INSERT_HEAD: &str = " FROM (SELECT coalesce(\
     (SELECT seq FROM events WHERE stream = ?1 ORDER BY seq DESC LIMIT 1), 0) AS seq) AS head \
 CROSS JOIN (VALUES ";

/// The conditional insert, between the rows and the admitted heads.
const INSERT_WHERE: &str = ") AS batch WHERE head.seq BETWEEN ";

/// The conditional insert, after the admitted heads.
const INSERT_END: &str = " ORDER BY batch.column1";

/// Added to an insert when the writer did not state the head (`exists`, `any`): the stored
/// seqs come back with the rows. Otherwise the seqs are known and the last position is
/// SQLite's last insert rowid, which spares the cost of RETURNING.
const RETURNING: &str = " RETURNING position, seq";

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

/// The conditional insert for `n` rows (`1..=CHUNK`), with or without RETURNING, built once
/// per length from the constants above.
fn insert_sql(n: usize, returning: bool) -> &'static str {
    static SQL: [[OnceLock<String>; CHUNK]; 2] = [const { [const { OnceLock::new() }; CHUNK] }; 2];
    SQL[usize::from(returning)][n - 1].get_or_init(|| {
        if n == 1 {
            let mut sql = String::from(INSERT_ONE);
            if returning {
                sql.push_str(RETURNING);
            }
            return sql;
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
                "({}, ?{}, ?{}, ?{}, ?{})",
                i + 1,
                p + 1,
                p + 2,
                p + 3,
                p + 4
            ));
        }
        sql.push_str(INSERT_WHERE);
        sql.push_str(&format!("?{} AND ?{}", after_rows + 1, after_rows + 2));
        sql.push_str(INSERT_END);
        if returning {
            sql.push_str(RETURNING);
        }
        sql
    })
}

/// The range of heads `expected` admits.
fn admitted_heads(expected: ExpectedSeq) -> (i64, i64) {
    match expected {
        ExpectedSeq::NoStream => (0, 0),
        ExpectedSeq::Exists => (1, i64::MAX),
        ExpectedSeq::Exact(Seq(n)) => i64::try_from(n).map_or((-1, -1), |n| (n, n)),
        ExpectedSeq::Any => (0, i64::MAX),
    }
}

/// The head an expectation states, when it states one.
fn stated_head(expected: ExpectedSeq) -> Option<Seq> {
    match expected {
        ExpectedSeq::NoStream => Some(Seq::ZERO),
        ExpectedSeq::Exact(n) => Some(n),
        ExpectedSeq::Exists | ExpectedSeq::Any => None,
    }
}

/// The time the store records, as stored: UTC RFC 3339 with microseconds.
pub(crate) fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One event's columns, encoded before the writer connection is taken so that the time the
/// connection is held is spent in SQLite.
struct EncodedEvent {
    event_id: Uuid,
    event_type: Arc<str>,
    data: Arc<str>,
    metadata: Arc<str>,
}

/// One stream's append: the events as given (for the refusal's examination) and encoded.
pub(crate) struct Batch<'a> {
    stream: &'a StreamName,
    expected: ExpectedSeq,
    events: &'a [NewEvent],
    encoded: Vec<EncodedEvent>,
}

impl<'a> Batch<'a> {
    /// Encodes a validated batch.
    pub(crate) fn encode(
        stream: &'a StreamName,
        expected: ExpectedSeq,
        events: &'a [NewEvent],
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
}

/// Runs one conditional insert of at most [`CHUNK`] events; `None` when the stream was not
/// where `expected` says and nothing was written.
async fn insert_chunk(
    conn: &mut SqliteConnection,
    stream: &StreamName,
    expected: ExpectedSeq,
    rows: &[EncodedEvent],
    recorded_at: &str,
) -> Result<Option<AppendResult>, sqlx::Error> {
    match run_insert(conn, stream, expected, rows, recorded_at).await {
        // The one-event insert refuses with a NULL seq; nothing else it binds can be NULL.
        Err(error) if rows.len() == 1 && is_not_null_violation(&error) => Ok(None),
        other => other,
    }
}

/// Runs the statement of [`insert_chunk`].
async fn run_insert(
    conn: &mut SqliteConnection,
    stream: &StreamName,
    expected: ExpectedSeq,
    rows: &[EncodedEvent],
    recorded_at: &str,
) -> Result<Option<AppendResult>, sqlx::Error> {
    let known = stated_head(expected);
    let (low, high) = admitted_heads(expected);
    let mut query = sqlx::query(insert_sql(rows.len(), known.is_none())).bind(stream.as_str());
    for row in rows {
        query = query
            .bind(row.event_id)
            .bind(row.event_type.clone())
            .bind(row.data.clone())
            .bind(row.metadata.clone());
    }
    let query = query.bind(low).bind(high).bind(recorded_at);
    let written = match known {
        Some(head) => {
            let done = query.execute(&mut *conn).await?;
            (done.rows_affected() > 0).then(|| {
                (
                    head.0 + 1,
                    head.0 + rows.len() as u64,
                    done.last_insert_rowid(),
                )
            })
        }
        None => {
            let returned = query.fetch_all(&mut *conn).await?;
            let mut written: Option<(u64, u64, i64)> = None;
            for row in &returned {
                let position: i64 = row.try_get(0)?;
                let seq = row.try_get::<i64, _>(1)? as u64;
                written = Some(match written {
                    None => (seq, seq, position),
                    Some((first, last, pos)) => (first.min(seq), last.max(seq), pos.max(position)),
                });
            }
            written
        }
    };
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
    batch: &Batch<'_>,
) -> Result<Option<AppendResult>, sqlx::Error> {
    let recorded_at = now_text();
    if batch.encoded.len() <= CHUNK {
        return insert_chunk(
            conn,
            batch.stream,
            batch.expected,
            &batch.encoded,
            &recorded_at,
        )
        .await;
    }
    let mut tx = conn.begin().await?;
    let mut expected = batch.expected;
    let mut total: Option<AppendResult> = None;
    for chunk in batch.encoded.chunks(CHUNK) {
        match insert_chunk(&mut tx, batch.stream, expected, chunk, &recorded_at).await {
            Ok(Some(written)) => {
                expected = ExpectedSeq::Exact(written.last_seq);
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
    batch: &Batch<'_>,
    limits: &Limits,
) -> Result<Refusal, StoreError> {
    let (stream, expected) = (batch.stream, batch.expected);
    let existing = stored_with_ids(conn, batch.events).await?;
    if let Some(answer) = match_replay(stream, batch.events, &existing) {
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

/// Appends in autocommit mode on the writer connection: the batch is one statement, and a
/// refusal is examined in a read transaction of its own.
pub(crate) async fn append_autocommit(
    conn: &mut SqliteConnection,
    batch: &Batch<'_>,
    limits: &Limits,
) -> Result<AppendResult, StoreError> {
    append_on(conn, batch, limits, false).await
}

/// Appends inside the open write transaction `conn`, which sees its own earlier appends.
pub(crate) async fn append_in_tx(
    conn: &mut SqliteConnection,
    batch: &Batch<'_>,
    limits: &Limits,
) -> Result<AppendResult, StoreError> {
    append_on(conn, batch, limits, true).await
}

/// Inserts; on refusal examines why, and answers (or inserts again when another process made
/// the expectation true in between).
async fn append_on(
    conn: &mut SqliteConnection,
    batch: &Batch<'_>,
    limits: &Limits,
    in_tx: bool,
) -> Result<AppendResult, StoreError> {
    for _ in 0..ATTEMPTS {
        match insert(conn, batch).await {
            Ok(Some(result)) => return Ok(result),
            Ok(None) => {}
            Err(error) if is_unique_violation(&error) => {}
            Err(error) => return Err(store_err(error)),
        }
        let refusal = if in_tx {
            examine(conn, batch, limits).await?
        } else {
            // One snapshot for the id look-up, the head and the missed events.
            let mut tx = conn.begin().await.map_err(store_err)?;
            let refusal = examine(&mut tx, batch, limits).await?;
            tx.commit().await.map_err(store_err)?;
            refusal
        };
        match refusal {
            Refusal::Answer(answer) => return answer,
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
        let sql = insert_sql(2, false);
        assert!(sql.contains("batch.column5, ?12 FROM"), "{sql}");
        assert!(sql.contains("VALUES (1, ?2, ?3, ?4, ?5), (2, ?6, ?7, ?8, ?9)) AS batch"));
        assert!(sql.contains("BETWEEN ?10 AND ?11 ORDER BY batch.column1"));
        assert!(!sql.contains("RETURNING"));
        assert!(std::ptr::eq(sql, insert_sql(2, false)));
        let one = insert_sql(1, true);
        assert!(one.starts_with(INSERT_ONE), "{one}");
        assert!(one.ends_with("?8) RETURNING position, seq"), "{one}");
    }

    #[test]
    fn expectations_become_head_ranges() {
        assert_eq!(admitted_heads(ExpectedSeq::NoStream), (0, 0));
        assert_eq!(admitted_heads(ExpectedSeq::Exact(Seq(0))), (0, 0));
        assert_eq!(admitted_heads(ExpectedSeq::Exact(Seq(7))), (7, 7));
        assert_eq!(admitted_heads(ExpectedSeq::Exact(Seq(u64::MAX))), (-1, -1));
        assert_eq!(admitted_heads(ExpectedSeq::Exists), (1, i64::MAX));
        assert_eq!(admitted_heads(ExpectedSeq::Any), (0, i64::MAX));
        assert_eq!(stated_head(ExpectedSeq::NoStream), Some(Seq(0)));
        assert_eq!(stated_head(ExpectedSeq::Any), None);
    }
}
