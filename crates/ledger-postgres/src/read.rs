//! Paged reads: one stream in seq order, and the global log in gap-free commit-safe order.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use ledger_core::{Envelope, EventStream, Position, ReadAll, Seq, StoreError, StreamName};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::from_sqlx;
use crate::log::{BEGIN_IN_LOG_ORDER, HORIZON_SQL, START_SQL, log_page, prefixes};

/// The envelope columns as selected: event_id, stream, seq, position, event_type, data,
/// metadata, recorded_at.
pub(crate) type EnvelopeRow = (Uuid, String, i64, i64, String, Value, Value, DateTime<Utc>);

/// One page of a stream: `$1` stream, seq >= `$2`, at most `$3` events.
const READ_STREAM_SQL: &str = "SELECT event_id, stream, seq, position, event_type, data, \
     metadata, recorded_at FROM events WHERE stream = $1::text AND seq >= $2 \
     ORDER BY seq LIMIT $3";

/// The global log after the event at position `$1` (0: from the start) in `(tx_id, position)`
/// order, from transactions below the horizon `$2`, optionally only the stream prefix of a
/// category (`$3`) and type `$4`, at most `$5` events: the page query [`LogReader`] pages use,
/// with the envelope's columns.
///
/// [`LogReader`]: ledger_core::LogReader
const READ_ALL_SQL: &str =
    log_page!("event_id, stream, seq, position, event_type, data, metadata, recorded_at");

/// How long one global-log query should stream: long enough that query round trips do not
/// matter, short enough that a slow consumer does not hold a connection and a snapshot long.
const CHUNK_DURATION: Duration = Duration::from_millis(200);

/// The largest global-log query, in pages.
const MAX_CHUNK_PAGES: usize = 64;

/// Longest pause between two polls while a read waits for in-flight transactions.
const MAX_POLL_DELAY: Duration = Duration::from_millis(20);

/// Decodes the envelope columns.
pub(crate) fn envelope(row: EnvelopeRow) -> Result<Envelope, StoreError> {
    let (event_id, stream, seq, position, event_type, data, metadata, recorded_at) = row;
    let stream = StreamName::parse(stream)
        .map_err(|e| StoreError::backend_with("the log holds an invalid stream name", e))?;
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

/// A page size as a SQL limit.
fn limit(page: usize) -> i64 {
    i64::try_from(page).unwrap_or(i64::MAX)
}

/// The events of `stream` with seq >= `from`, page by page.
pub(crate) fn read_stream(pool: PgPool, page: usize, stream: StreamName, from: Seq) -> EventStream {
    async_stream::try_stream! {
        let mut next = i64::try_from(from.0.max(1)).unwrap_or(i64::MAX);
        loop {
            let rows: Vec<EnvelopeRow> = sqlx::query_as(READ_STREAM_SQL)
                .bind(stream.as_str())
                .bind(next)
                .bind(limit(page))
                .fetch_all(&pool)
                .await
                .map_err(from_sqlx)?;
            let full = rows.len() >= page;
            for row in rows {
                let e = envelope(row)?;
                next = e.seq.0 as i64 + 1;
                yield e;
            }
            if !full {
                break;
            }
        }
    }
    .boxed()
}

/// The size of the next global-log query: about [`CHUNK_DURATION`] at the pace the last one
/// was consumed, between one page and [`MAX_CHUNK_PAGES`] pages.
fn next_chunk(page: usize, scanned: usize, took: Duration) -> usize {
    let rate = scanned as f64 / took.as_secs_f64().max(1e-6);
    let rows = (rate * CHUNK_DURATION.as_secs_f64()) as usize;
    rows.clamp(page, page.saturating_mul(MAX_CHUNK_PAGES))
}

/// The global log after `query.after` in `(tx_id, position)` order, reading only rows of
/// transactions older than every running one, until it has caught up with what had started
/// when the read began (or `settle_timeout` of waiting has passed).
///
/// Rows are streamed, so memory stays flat whatever the query size; queries start at one
/// page and grow while the consumer keeps up, so bulk reads pay few round trips.
pub(crate) fn read_all(
    pool: PgPool,
    page: usize,
    settle_timeout: Duration,
    query: ReadAll,
) -> EventStream {
    async_stream::try_stream! {
        let unknown = || StoreError::UnknownPosition(query.after.0);
        let mut cursor = i64::try_from(query.after.0).map_err(|_| unknown())?;
        // Everything below `target` had started when the read began: the read ends once all
        // of it is below the horizon. Rows below an older horizon stay safe to read, so the
        // horizon is refreshed only when the read has caught up with it.
        let (mut horizon, target, known): (i64, i64, bool) = sqlx::query_as(START_SQL)
            .bind(cursor)
            .fetch_one(&pool)
            .await
            .map_err(from_sqlx)?;
        if query.after != Position::START && !known {
            Err(unknown())?;
        }
        let mut chunk = page;
        let mut waited = Duration::ZERO;
        let mut delay = Duration::from_millis(1);
        // Unfiltered reads are forced into log order (see `BEGIN_IN_LOG_ORDER`); filtered
        // ones keep the planner's choice.
        let unfiltered = query.category.is_none() && query.event_type.is_none();
        let category = prefixes(query.category.as_deref());
        loop {
            let started = Instant::now();
            let mut tx = if unfiltered {
                Some(crate::tx::begin(&pool, Some(BEGIN_IN_LOG_ORDER)).await?)
            } else {
                None
            };
            let statement = sqlx::query_as::<_, EnvelopeRow>(READ_ALL_SQL)
                .bind(cursor)
                .bind(horizon)
                .bind(&category)
                .bind(query.event_type.as_deref())
                .bind(limit(chunk));
            let mut rows = match tx.as_mut() {
                Some(tx) => statement.fetch(&mut **tx),
                None => statement.fetch(&pool),
            };
            let mut scanned = 0;
            while let Some(row) = rows.try_next().await.map_err(from_sqlx)? {
                scanned += 1;
                let e = envelope(row)?;
                cursor = e.position.0 as i64;
                yield e;
            }
            drop(rows);
            if let Some(tx) = tx {
                crate::tx::end_read_only(tx);
            }
            if scanned >= chunk {
                chunk = next_chunk(page, scanned, started.elapsed());
                continue;
            }
            if horizon >= target {
                break;
            }
            if waited >= settle_timeout {
                tracing::warn!(
                    horizon,
                    target,
                    waited_ms = waited.as_millis() as u64,
                    "read_all stops before transactions that were in flight when it started \
                     have ended; resuming later reads them without a gap"
                );
                break;
            }
            let pause = delay.min(settle_timeout - waited);
            tokio::time::sleep(pause).await;
            waited += pause;
            delay = (delay * 2).min(MAX_POLL_DELAY);
            horizon = sqlx::query_scalar(HORIZON_SQL)
                .fetch_one(&pool)
                .await
                .map_err(from_sqlx)?;
        }
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_grow_with_a_fast_consumer_and_stay_a_page_with_a_slow_one() {
        let page = 1000;
        assert_eq!(next_chunk(page, 1000, Duration::from_millis(2)), 64 * page);
        assert_eq!(next_chunk(page, 1000, Duration::from_secs(5)), page);
        assert_eq!(next_chunk(page, 10_000, Duration::from_millis(100)), 20_000);
        assert_eq!(next_chunk(page, 1000, Duration::ZERO), 64 * page);
    }
}
