//! Conditional appends: one statement per stream, arbitrated by the database; the slow path
//! that tells replays, reused ids and conflicts apart; single- and multi-stream appends.

use ledger_core::chain::recorded_now;
use ledger_core::{
    AppendResult, ChainHash, ChainHead, Conflict, ExpectedSeq, HeadCache, Limits, NewEvent,
    Position, Seq, StoreError, StreamAppend, StreamName, match_replay, validate_appends,
    validate_batch,
};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::error::{from_sqlx, is_retryable, unique_violation};
use crate::read::{EnvelopeRow, envelope};

/// How often an append retries after losing a race it is allowed to retry.
pub(crate) const MAX_TRIES: usize = 100;

/// Inserts after the head of stream `$1` only while that head is still seq `$2`, the head the
/// events were chained to: the part every conditional insert shares.
macro_rules! conditional_insert {
    ($select:literal, $from:literal, $($tail:literal),*) => {
        concat!(
            "WITH head AS (SELECT coalesce(max(seq), 0) AS seq FROM events WHERE stream = $1::text) ",
            "INSERT INTO events ",
            "(event_id, stream, seq, event_type, data, metadata, recorded_at, prev_hash, hash) ",
            $select, " ", $from, " ",
            "WHERE head.seq = $2::bigint ",
            $($tail, " "),*
        )
    };
}

/// Appends a batch to one stream if the stream's head is still the one it was chained to.
///
/// `$1` stream, `$2` the head, `$3..$6` the batch's ids, types, data and metadata, `$7` the
/// recording time, `$8` and `$9` the events' previous hashes and hashes. A concurrent writer
/// that took the same seqs makes it fail on `events_stream_seq_key`.
const APPEND_SQL: &str = conditional_insert!(
    "SELECT e.event_id, $1::text, head.seq + e.ord, e.event_type, e.data, e.metadata, $7, e.prev_hash, e.hash",
    "FROM head, UNNEST($3::uuid[], $4::text[], $5::jsonb[], $6::jsonb[], $8::bytea[], $9::bytea[]) WITH ORDINALITY AS e(event_id, event_type, data, metadata, prev_hash, hash, ord)",
    "ORDER BY e.ord RETURNING position, seq"
);

/// [`APPEND_SQL`] for the common batch of one event: `$3..$6`, `$8` and `$9` are scalars,
/// which spares the arrays and the UNNEST.
const APPEND_ONE_SQL: &str = conditional_insert!(
    "SELECT $3::uuid, $1::text, head.seq + 1, $4::text, $5::jsonb, $6::jsonb, $7, $8::bytea, $9::bytea",
    "FROM head",
    "RETURNING position, seq"
);

/// [`APPEND_SQL`] that also inserts nothing when one of the batch's ids is already visible,
/// so a replay inside an open transaction does not abort it with a unique violation.
const APPEND_IN_TX_SQL: &str = conditional_insert!(
    "SELECT e.event_id, $1::text, head.seq + e.ord, e.event_type, e.data, e.metadata, $7, e.prev_hash, e.hash",
    "FROM head, UNNEST($3::uuid[], $4::text[], $5::jsonb[], $6::jsonb[], $8::bytea[], $9::bytea[]) WITH ORDINALITY AS e(event_id, event_type, data, metadata, prev_hash, hash, ord)",
    "AND NOT EXISTS (SELECT 1 FROM events WHERE event_id = ANY($3::uuid[]))",
    "ORDER BY e.ord RETURNING position, seq"
);

/// The last seq of stream `$1` and its hash.
const HEAD_SQL: &str =
    "SELECT seq, hash FROM events WHERE stream = $1::text ORDER BY seq DESC LIMIT 1";

/// Takes transaction-scoped advisory locks on the keys `$1`, in array order.
const LOCK_STREAMS_SQL: &str =
    "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k";

/// The head (current seq) of a stream.
const STREAM_SEQ_SQL: &str = "SELECT coalesce(max(seq), 0) FROM events WHERE stream = $1::text";

/// The stored events carrying any of the ids `$1`.
const BY_IDS_SQL: &str = "SELECT event_id, stream, seq, position, event_type, data, metadata, \
     recorded_at FROM events WHERE event_id = ANY($1::uuid[])";

/// Up to `$3` events of stream `$1` with seq > `$2`, in seq order.
const MISSED_SQL: &str = "SELECT event_id, stream, seq, position, event_type, data, metadata, \
     recorded_at FROM events WHERE stream = $1::text AND seq > $2 ORDER BY seq LIMIT $3";

/// Which statement runs an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Autocommit or a transaction that is retried whole: unique violations are fine.
    Plain,
    /// Inside a caller's open transaction, which a unique violation would abort.
    InTx,
}

/// Why the database refused an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The stream's head did not admit the expectation (or, in a transaction, an id exists).
    NotAdmitted,
    /// A concurrent writer took one of the seqs (`events_stream_seq_key`).
    SeqTaken,
    /// One of the ids is stored (`events_event_id_key`).
    IdTaken,
}

/// The outcome of one conditional insert.
pub(crate) enum Attempt {
    /// The events were written; the last one's hash.
    Written(AppendResult, ChainHash),
    /// The database refused them; nothing was written.
    Refused(Refusal),
}

/// The outcome of one conditional insert, or a database error (still `sqlx`, so callers can
/// tell retryable transaction failures apart).
pub(crate) type AttemptResult = Result<Attempt, sqlx::Error>;

/// Reads the head of `stream`.
pub(crate) async fn read_head<'c, E: PgExecutor<'c>>(
    exec: E,
    stream: &StreamName,
) -> Result<ChainHead, sqlx::Error> {
    let row: Option<(i64, Option<Vec<u8>>)> = sqlx::query_as(HEAD_SQL)
        .bind(stream.as_str())
        .fetch_optional(exec)
        .await?;
    match row {
        None => Ok(ChainHead::EMPTY),
        Some((seq, hash)) => ChainHead::stored(seq, hash.as_deref())
            .ok_or_else(|| sqlx::Error::Protocol(ChainHead::unchained(stream))),
    }
}

/// Runs the conditional insert of one stream's batch, chained after `head`.
pub(crate) async fn try_insert<'c, E: PgExecutor<'c>>(
    exec: E,
    mode: Mode,
    stream: &StreamName,
    head: ChainHead,
    events: &[NewEvent],
) -> AttemptResult {
    let recorded_at = recorded_now();
    let links = head.links(stream, events, recorded_at);
    let last_hash = links.last().map_or(head.hash, |l| l.1);
    let head_seq = i64::try_from(head.seq.0).unwrap_or(i64::MAX);
    let query = match (mode, events) {
        (Mode::Plain, [one]) => sqlx::query_as(APPEND_ONE_SQL)
            .bind(stream.as_str())
            .bind(head_seq)
            .bind(one.event_id)
            .bind(one.event_type.as_str())
            .bind(&one.data)
            .bind(&one.metadata)
            .bind(recorded_at)
            .bind(&links[0].0.0[..])
            .bind(&links[0].1.0[..]),
        _ => {
            let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
            let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
            let data: Vec<&serde_json::Value> = events.iter().map(|e| &e.data).collect();
            let metadata: Vec<&serde_json::Value> = events.iter().map(|e| &e.metadata).collect();
            let prevs: Vec<&[u8]> = links.iter().map(|l| &l.0.0[..]).collect();
            let hashes: Vec<&[u8]> = links.iter().map(|l| &l.1.0[..]).collect();
            let sql = match mode {
                Mode::Plain => APPEND_SQL,
                Mode::InTx => APPEND_IN_TX_SQL,
            };
            sqlx::query_as(sql)
                .bind(stream.as_str())
                .bind(head_seq)
                .bind(ids)
                .bind(types)
                .bind(data)
                .bind(metadata)
                .bind(recorded_at)
                .bind(prevs)
                .bind(hashes)
        }
    };
    let rows: Result<Vec<(i64, i64)>, sqlx::Error> = query.fetch_all(exec).await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(err) => {
            return match unique_violation(&err) {
                Some("events_stream_seq_key") => Ok(Attempt::Refused(Refusal::SeqTaken)),
                Some("events_event_id_key") => Ok(Attempt::Refused(Refusal::IdTaken)),
                _ => Err(err),
            };
        }
    };
    // Rows come back in insertion order in practice; min/max do not rely on it.
    let Some(first) = rows.iter().map(|&(_, seq)| seq).min() else {
        return Ok(Attempt::Refused(Refusal::NotAdmitted));
    };
    let (position, last) = rows
        .iter()
        .max_by_key(|&&(_, seq)| seq)
        .copied()
        .expect("rows is not empty");
    Ok(Attempt::Written(
        AppendResult {
            stream: stream.clone(),
            first_seq: Seq(first as u64),
            last_seq: Seq(last as u64),
            position: Position(position as u64),
            replayed: false,
        },
        last_hash,
    ))
}

/// What a refused append turned out to be, when it is not an error.
pub(crate) enum Explained {
    /// The events were appended before: the original result.
    Replayed(AppendResult),
    /// The stream's head admits the expectation now: a lost race, worth another try.
    Admitted,
}

/// The head of `stream`.
pub(crate) async fn stream_seq(
    conn: &mut PgConnection,
    stream: &StreamName,
) -> Result<Seq, StoreError> {
    let head: i64 = sqlx::query_scalar(STREAM_SEQ_SQL)
        .bind(stream.as_str())
        .fetch_one(conn)
        .await
        .map_err(from_sqlx)?;
    Ok(Seq(head as u64))
}

/// Works out why an append was refused: a replay (the original result), a reused id or a
/// conflict (errors), or a race that a retry may win.
pub(crate) async fn explain(
    conn: &mut PgConnection,
    stream: &StreamName,
    expected: ExpectedSeq,
    events: &[NewEvent],
    limits: &Limits,
) -> Result<Explained, StoreError> {
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let existing = sqlx::query_as::<_, EnvelopeRow>(BY_IDS_SQL)
        .bind(ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?
        .into_iter()
        .map(envelope)
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(replay) = match_replay(stream, events, &existing) {
        return replay.map(Explained::Replayed);
    }
    let head = stream_seq(&mut *conn, stream).await?;
    if expected.admits(head) {
        return Ok(Explained::Admitted);
    }
    Err(conflict(conn, stream, expected, head, limits).await?)
}

/// The conflict of an append to `stream` at `expected` when the stream is at `head`: the
/// events after the expected seq the writer missed, the current seq.
pub(crate) async fn conflict(
    conn: &mut PgConnection,
    stream: &StreamName,
    expected: ExpectedSeq,
    head: Seq,
    limits: &Limits,
) -> Result<StoreError, StoreError> {
    let after = expected.missed_after();
    let take = i64::try_from(limits.max_missed_events.saturating_add(1)).unwrap_or(i64::MAX);
    let missed = sqlx::query_as::<_, EnvelopeRow>(MISSED_SQL)
        .bind(stream.as_str())
        .bind(i64::try_from(after.0).unwrap_or(i64::MAX))
        .bind(take)
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?
        .into_iter()
        .map(envelope)
        .collect::<Result<Vec<_>, _>>()?;
    // Events appended after `head` was read may be in `missed`; the current seq covers them.
    let current = missed.last().map_or(head, |e| e.seq.max(head));
    Ok(Conflict::error(
        stream,
        expected,
        current,
        missed,
        limits.max_missed_events,
    ))
}

/// The error of an append that kept losing races.
pub(crate) fn contention(stream: &StreamName) -> StoreError {
    StoreError::unavailable(format!(
        "gave up appending to {stream} after {MAX_TRIES} tries under heavy contention"
    ))
}

/// Appends one stream's batch in autocommit: one statement on the happy path, when `heads`
/// knows where the stream ends.
pub(crate) async fn append(
    pool: &PgPool,
    heads: &HeadCache,
    limits: &Limits,
    stream: StreamName,
    expected: ExpectedSeq,
    events: Vec<NewEvent>,
) -> Result<AppendResult, StoreError> {
    validate_batch(&events, limits)?;
    let mut cached = heads.assume(stream.as_str(), expected);
    for _ in 0..MAX_TRIES {
        let from_cache = cached.is_some();
        let head = match cached.take() {
            Some(head) => head,
            None => match read_head(pool, &stream).await {
                Ok(head) => head,
                Err(err) if is_retryable(&err) => continue,
                Err(err) => return Err(from_sqlx(err)),
            },
        };
        if expected.admits(head.seq) {
            let refusal = match try_insert(pool, Mode::Plain, &stream, head, &events).await {
                Ok(Attempt::Written(result, hash)) => {
                    let head = ChainHead {
                        seq: result.last_seq,
                        hash,
                    };
                    heads.put(stream.as_str(), head);
                    return Ok(result);
                }
                Ok(Attempt::Refused(refusal)) => refusal,
                Err(err) if is_retryable(&err) => continue,
                Err(err) => return Err(from_sqlx(err)),
            };
            heads.forget(stream.as_str());
            if refusal != Refusal::IdTaken && retries_lost_races(expected) {
                continue;
            }
        } else if from_cache {
            // The cached head may be behind another process's appends: read it.
            continue;
        }
        let mut conn = pool.acquire().await.map_err(from_sqlx)?;
        match explain(&mut conn, &stream, expected, &events, limits).await? {
            Explained::Replayed(result) => return Ok(result),
            Explained::Admitted => continue,
        }
    }
    Err(contention(&stream))
}

/// Whether a lost race on a seq is simply retried (the expectation does not pin a seq).
pub(crate) fn retries_lost_races(expected: ExpectedSeq) -> bool {
    matches!(expected, ExpectedSeq::Any | ExpectedSeq::Exists)
}

/// Advisory lock keys of `streams`, sorted and without repeats: a stable 64-bit FNV-1a hash
/// of each name (two streams sharing a key only queue behind each other).
fn lock_keys(streams: &[&StreamName]) -> Vec<i64> {
    let mut keys: Vec<i64> = streams
        .iter()
        .map(|s| {
            let hash = s.as_str().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
            i64::from_ne_bytes(hash.to_ne_bytes())
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Appends to several streams in one transaction: all commit or none.
pub(crate) async fn append_multi(
    pool: &PgPool,
    heads: &HeadCache,
    limits: &Limits,
    appends: Vec<StreamAppend>,
) -> Result<Vec<AppendResult>, StoreError> {
    validate_appends(&appends, limits)?;
    // Replays found on the slow path are final: those streams are not written again.
    let mut results: Vec<Option<AppendResult>> = vec![None; appends.len()];
    for _ in 0..MAX_TRIES {
        let mut tx = crate::tx::begin(pool, None).await?;
        let pending: Vec<&StreamName> = appends
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_none())
            .map(|(a, _)| &a.stream)
            .collect();
        if pending.len() > 1 {
            // Two multi-stream appends that insert into the same streams in opposite orders
            // would deadlock on the (stream, seq) index; locking the streams in one global
            // order first makes them queue instead.
            let locked = sqlx::query(LOCK_STREAMS_SQL)
                .bind(lock_keys(&pending))
                .execute(&mut *tx)
                .await;
            match locked {
                Ok(_) => {}
                Err(err) if is_retryable(&err) => continue,
                Err(err) => return Err(from_sqlx(err)),
            }
        }
        let mut written = Vec::with_capacity(appends.len());
        let mut refused = None;
        for (i, a) in appends.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            // Inside the transaction (and its advisory locks) the head read is the head.
            let head = match read_head(&mut *tx, &a.stream).await {
                Ok(head) => head,
                Err(err) => {
                    refused = Some((i, Err(err)));
                    break;
                }
            };
            if !a.expected.admits(head.seq) {
                refused = Some((i, Ok(Refusal::NotAdmitted)));
                break;
            }
            match try_insert(&mut *tx, Mode::Plain, &a.stream, head, &a.events).await {
                Ok(Attempt::Written(result, hash)) => written.push((i, result, hash)),
                Ok(Attempt::Refused(refusal)) => {
                    refused = Some((i, Ok(refusal)));
                    break;
                }
                Err(err) => {
                    refused = Some((i, Err(err)));
                    break;
                }
            }
        }
        let Some((failed, why)) = refused else {
            tx.commit().await.map_err(from_sqlx)?;
            for (i, result, hash) in written {
                let head = ChainHead {
                    seq: result.last_seq,
                    hash,
                };
                heads.put(result.stream.as_str(), head);
                results[i] = Some(result);
            }
            return Ok(results.into_iter().flatten().collect());
        };
        tx.rollback().await.map_err(from_sqlx)?;
        match why {
            Err(err) if is_retryable(&err) => continue,
            Err(err) => return Err(from_sqlx(err)),
            Ok(Refusal::SeqTaken) if retries_lost_races(appends[failed].expected) => continue,
            Ok(_) => {}
        }
        // Explain every stream still to write, in order, as the in-memory store decides.
        let mut conn = pool.acquire().await.map_err(from_sqlx)?;
        for (i, a) in appends.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            if let Explained::Replayed(result) =
                explain(&mut conn, &a.stream, a.expected, &a.events, limits).await?
            {
                results[i] = Some(result);
            }
        }
        if results.iter().all(Option::is_some) {
            return Ok(results.into_iter().flatten().collect());
        }
    }
    Err(contention(&appends[0].stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_sorted_and_unique() {
        let a = StreamName::parse("order-a").unwrap();
        let b = StreamName::parse("slug-b").unwrap();
        let keys = lock_keys(&[&a, &b, &a]);
        assert_eq!(keys.len(), 2);
        assert!(keys[0] < keys[1]);
        assert_eq!(keys, lock_keys(&[&b, &a]));
    }
}
