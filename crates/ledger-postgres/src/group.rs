//! Group commit on PostgreSQL: a group of appends to distinct streams is one conditional
//! INSERT in autocommit (`crate::together`: one transaction and one round trip, plus one to
//! read the heads no cache knows). Each append carries its own expected head; the statement writes the appends
//! whose heads still match and skips the others, which then take the single-append path and
//! get its answers (conflict, replay, reused id, retry). A unique violation (another process
//! took a seq, an id is stored) fails the statement as a whole: every append then takes the
//! single-append path.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::join_all;
use ledger_core::{
    AppendResult, BoxFuture, ChainHead, GroupWriter, HeadCache, Limits, StoreError, StreamAppend,
    StreamName,
};
use sqlx::PgPool;

use crate::append;
use crate::error::from_sqlx;
use crate::together::{self, Outcome};
use crate::wakeup::Notifier;

/// The heads of the streams `$1`: each stream's last seq and hash (NULL when empty).
const HEADS_SQL: &str = "SELECT s.stream, h.seq, h.hash FROM unnest($1::text[]) AS s(stream) \
     LEFT JOIN LATERAL (SELECT seq, hash FROM events WHERE stream = s.stream \
     ORDER BY seq DESC LIMIT 1) AS h ON true";

/// Writes groups of appends for the store's committer.
pub(crate) struct PgGroups {
    pub(crate) pool: PgPool,
    pub(crate) heads: Arc<HeadCache>,
    pub(crate) limits: Limits,
    pub(crate) wakeup: Arc<Notifier>,
}

impl PgGroups {
    /// The single-append path (see `append::append`).
    async fn single(&self, a: StreamAppend) -> Result<AppendResult, StoreError> {
        append::append(
            &self.pool,
            &self.heads,
            &self.limits,
            a.stream,
            a.expected,
            a.events,
        )
        .await
    }

    /// The heads of `streams`, read in one statement.
    async fn read_heads(
        &self,
        streams: Vec<&str>,
    ) -> Result<HashMap<String, ChainHead>, StoreError> {
        let rows: Vec<(String, Option<i64>, Option<Vec<u8>>)> = sqlx::query_as(HEADS_SQL)
            .bind(streams)
            .fetch_all(&self.pool)
            .await
            .map_err(from_sqlx)?;
        rows.into_iter()
            .map(|(stream, seq, hash)| {
                let head = match seq {
                    None => ChainHead::EMPTY,
                    Some(seq) => ChainHead::stored(seq, hash.as_deref()).ok_or_else(|| {
                        StoreError::backend(format!("stream {stream} ends with an unchained event"))
                    })?,
                };
                Ok((stream, head))
            })
            .collect()
    }

    /// Writes the group in one statement where it can; `None` for the appends it did not
    /// write (their heads moved, or the statement failed as a whole).
    async fn write_together(&self, group: &[StreamAppend]) -> Vec<Option<AppendResult>> {
        let mut heads: Vec<Option<ChainHead>> = group
            .iter()
            .map(|a| self.heads.assume(a.stream.as_str(), a.expected))
            .collect();
        let unknown: Vec<&str> = group
            .iter()
            .zip(&heads)
            .filter(|(_, h)| h.is_none())
            .map(|(a, _)| a.stream.as_str())
            .collect();
        if !unknown.is_empty() {
            // Without the heads nothing can be chained: every append goes alone.
            let Ok(read) = self.read_heads(unknown).await else {
                return vec![None; group.len()];
            };
            for (a, head) in group.iter().zip(heads.iter_mut()) {
                if head.is_none() {
                    *head = read.get(a.stream.as_str()).copied();
                }
            }
        }
        // Appends whose expectation the head does not admit go alone, to be answered.
        let admitted: Vec<(usize, ChainHead)> = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                h.filter(|h| group[i].expected.admits(h.seq))
                    .map(|h| (i, h))
            })
            .collect();
        let mut written = vec![None; group.len()];
        if admitted.is_empty() {
            return written;
        }
        let appends: Vec<(&StreamAppend, ChainHead)> = admitted
            .iter()
            .map(|&(i, head)| (&group[i], head))
            .collect();
        let outcomes = match together::insert(&self.pool, &appends).await {
            Ok(outcomes) => outcomes,
            Err(error) => {
                // A unique violation or a failure: the single-append path tells which, per
                // append.
                tracing::debug!(%error, appends = group.len(), "a group's insert failed; its appends go alone");
                return written;
            }
        };
        for (&(i, _), outcome) in admitted.iter().zip(outcomes) {
            if let Outcome::Written(result, hash) = outcome {
                let head = ChainHead {
                    seq: result.last_seq,
                    hash,
                };
                self.heads.put(group[i].stream.as_str(), head);
                written[i] = Some(result);
            }
        }
        written
    }
}

impl GroupWriter for PgGroups {
    type Request = StreamAppend;

    fn stream(request: &StreamAppend) -> &StreamName {
        &request.stream
    }

    fn events(request: &StreamAppend) -> usize {
        request.events.len()
    }

    const ONE_PER_STREAM: bool = true;

    fn write_one(&self, request: StreamAppend) -> BoxFuture<'_, Result<AppendResult, StoreError>> {
        Box::pin(async move {
            let result = self.single(request).await;
            if matches!(&result, Ok(r) if !r.replayed) {
                self.wakeup.appended();
            }
            result
        })
    }

    fn write_group(
        &self,
        group: Vec<StreamAppend>,
    ) -> BoxFuture<'_, Vec<Result<AppendResult, StoreError>>> {
        Box::pin(async move {
            let written = self.write_together(&group).await;
            let mut wrote = written.iter().any(Option::is_some);
            let alone = group
                .into_iter()
                .zip(&written)
                .filter(|(_, w)| w.is_none())
                .map(|(a, _)| {
                    self.heads.forget(a.stream.as_str());
                    self.single(a)
                });
            let mut answers = join_all(alone).await.into_iter();
            let results: Vec<Result<AppendResult, StoreError>> = written
                .into_iter()
                .map(|w| match w {
                    Some(result) => Ok(result),
                    None => {
                        let answer = answers.next().expect("one answer per append left out");
                        wrote |= matches!(&answer, Ok(r) if !r.replayed);
                        answer
                    }
                })
                .collect();
            if wrote {
                self.wakeup.appended();
            }
            results
        })
    }
}
