//! One statement for many appends of a group: the appends' streams and expected heads, and
//! every event as a row, go in as arrays; the statement inserts the events of the appends
//! whose streams are still at their heads and leaves the others out, so an append is written
//! whole or not at all. A stored id (or a seq another process took) fails the whole statement,
//! which then wrote nothing. `RETURNING` tells which appends were written.

use std::collections::HashMap;

use ledger_core::chain::recorded_now;
use ledger_core::{AppendResult, ChainHash, ChainHead, Position, StreamAppend};
use sqlx::PgPool;
use uuid::Uuid;

/// Appends each append of the group whose stream is still at its expected head.
///
/// `$1` the streams and `$2` their heads (one per append); then per event `$3` its append's
/// index (1-based), `$4` its place in its append (1-based), `$5..$8` id, type, data and
/// metadata, `$10`/`$11` previous hash and hash; `$9` the recording time.
const GROUP_SQL: &str = "WITH batch AS (\
         SELECT * FROM UNNEST($1::text[], $2::bigint[]) WITH ORDINALITY AS b(stream, head, idx)), \
     admitted AS (\
         SELECT b.idx, b.stream, b.head FROM batch AS b \
         WHERE coalesce((SELECT max(seq) FROM events WHERE stream = b.stream), 0) = b.head) \
     INSERT INTO events \
     (event_id, stream, seq, event_type, data, metadata, recorded_at, prev_hash, hash) \
     SELECT e.event_id, a.stream, a.head + e.ord, e.event_type, e.data, e.metadata, $9, \
         e.prev_hash, e.hash \
     FROM admitted AS a JOIN UNNEST($3::bigint[], $4::bigint[], $5::uuid[], $6::text[], \
         $7::jsonb[], $8::jsonb[], $10::bytea[], $11::bytea[]) \
         AS e(idx, ord, event_id, event_type, data, metadata, prev_hash, hash) ON e.idx = a.idx \
     ORDER BY e.idx, e.ord \
     RETURNING event_id, position, seq";

/// What the statement did to each append.
pub(crate) enum Outcome {
    /// Written whole; the hash its stream now ends with.
    Written(AppendResult, ChainHash),
    /// Nothing written: its stream was not at the head it was chained to.
    Refused,
}

/// Chains each append after its head and inserts them all with one statement in autocommit;
/// says, for each, what happened.
pub(crate) async fn insert(
    pool: &PgPool,
    appends: &[(&StreamAppend, ChainHead)],
) -> Result<Vec<Outcome>, sqlx::Error> {
    let recorded_at = recorded_now();
    let mut streams = Vec::with_capacity(appends.len());
    let mut head_seqs = Vec::with_capacity(appends.len());
    let (mut idxs, mut ords, mut ids, mut types) = (vec![], vec![], vec![], vec![]);
    let (mut data, mut metadata, mut prevs, mut hashes) = (vec![], vec![], vec![], vec![]);
    let mut last_hash = Vec::with_capacity(appends.len());
    for (k, &(a, head)) in appends.iter().enumerate() {
        streams.push(a.stream.as_str());
        head_seqs.push(i64::try_from(head.seq.0).unwrap_or(i64::MAX));
        let links = head.links(&a.stream, &a.events, recorded_at);
        last_hash.push(links.last().map_or(head.hash, |l| l.1));
        for (j, (e, (prev, hash))) in a.events.iter().zip(links).enumerate() {
            idxs.push(k as i64 + 1);
            ords.push(j as i64 + 1);
            ids.push(e.event_id);
            types.push(e.event_type.as_str());
            data.push(&e.data);
            metadata.push(&e.metadata);
            prevs.push(prev.0.to_vec());
            hashes.push(hash.0.to_vec());
        }
    }
    let rows: Vec<(Uuid, i64, i64)> = sqlx::query_as(GROUP_SQL)
        .bind(streams)
        .bind(head_seqs)
        .bind(idxs)
        .bind(ords)
        .bind(ids)
        .bind(types)
        .bind(data)
        .bind(metadata)
        .bind(recorded_at)
        .bind(prevs)
        .bind(hashes)
        .fetch_all(pool)
        .await?;
    let stored: HashMap<Uuid, (i64, i64)> = rows
        .into_iter()
        .map(|(id, position, seq)| (id, (position, seq)))
        .collect();
    Ok(appends
        .iter()
        .zip(last_hash)
        .map(|(&(a, head), hash)| {
            let got: Vec<(i64, i64)> = a
                .events
                .iter()
                .filter_map(|e| stored.get(&e.event_id).copied())
                .collect();
            // The rows of one append share their stream and head: all are in, or none.
            if got.len() < a.events.len() {
                return Outcome::Refused;
            }
            let position = got.iter().map(|&(p, _)| p).max().unwrap_or(0);
            Outcome::Written(
                AppendResult {
                    stream: a.stream.clone(),
                    first_seq: head.seq.plus(1),
                    last_seq: head.seq.plus(a.events.len() as u64),
                    position: Position(position as u64),
                    replayed: false,
                },
                hash,
            )
        })
        .collect())
}
