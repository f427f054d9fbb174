//! One statement for many appends of a group: every event of every append is a row of one
//! `INSERT ... SELECT`, each row carrying its stream's expected head; the rows of a stream that
//! has moved get no seq and are left out, so an append is written whole or not at all.
//! SQLite computes the rows before it inserts any (the SELECT reads the table written), so
//! every row sees the heads as they were. A stored id (or seq) fails the whole statement,
//! which then wrote nothing. `RETURNING` tells which appends were written.

use std::collections::HashMap;
use std::sync::OnceLock;

use ledger_core::{AppendResult, Position, Seq};
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use crate::append::{Batch, Chained};

/// Most rows (events) one statement carries: ten parameters each, well below SQLite's limit.
pub(crate) const MAX_ROWS: usize = 500;

/// Parameters per row.
const ROW_PARAMS: usize = 10;

/// The statement for `n` rows (`1..=MAX_ROWS`), built once per length. Each row's ten
/// parameters (`column1..column10` of the VALUES), in order: id, stream, expected head, place
/// in its append (1-based), type, data, metadata, previous hash, hash, recording time.
fn sql(n: usize) -> &'static str {
    static SQL: [OnceLock<String>; MAX_ROWS] = [const { OnceLock::new() }; MAX_ROWS];
    SQL[n - 1].get_or_init(|| {
        let mut sql = String::with_capacity(300 + n * 60);
        sql.push_str(
            "INSERT INTO events \
             (event_id, stream, seq, event_type, data, metadata, prev_hash, hash, recorded_at) \
             SELECT column1, column2, seq, column5, column6, column7, column8, column9, column10 \
             FROM (SELECT v.*, (SELECT CASE WHEN head = v.column3 THEN head + v.column4 END \
             FROM (SELECT coalesce((SELECT seq FROM events WHERE stream = v.column2 \
             ORDER BY seq DESC LIMIT 1), 0) AS head)) AS seq FROM (VALUES ",
        );
        for r in 0..n {
            if r > 0 {
                sql.push_str(", ");
            }
            // Anonymous parameters, bound in order: looking up numbered ones costs SQLite a
            // scan of all of them per parameter.
            sql.push('(');
            for k in 0..ROW_PARAMS {
                if k > 0 {
                    sql.push_str(", ");
                }
                sql.push('?');
            }
            sql.push(')');
        }
        sql.push_str(") AS v) WHERE seq IS NOT NULL");
        sql.push_str(" RETURNING event_id, position, seq");
        sql
    })
}

/// What the statement did to each append.
pub(crate) enum Outcome {
    /// Written whole.
    Written(AppendResult),
    /// Nothing written: its stream was not at the head it was chained to.
    Refused,
}

/// Inserts the appends (each chained, at most [`MAX_ROWS`] events in all) with one statement
/// and says, for each, what happened.
pub(crate) async fn insert(
    conn: &mut SqliteConnection,
    appends: &[(&Batch, &Chained)],
) -> Result<Vec<Outcome>, sqlx::Error> {
    let rows: usize = appends.iter().map(|(b, _)| b.len()).sum();
    let mut query = sqlx::query(sql(rows));
    for (batch, chained) in appends {
        let at = i64::try_from(chained.head().seq.0).unwrap_or(-1);
        let events = batch.encoded().iter().zip(chained.links());
        for (ord, (event, (prev, hash))) in events.enumerate() {
            query = query
                .bind(event.event_id)
                .bind(batch.stream.as_str())
                .bind(at)
                .bind(ord as i64 + 1)
                .bind(event.event_type.clone())
                .bind(event.data.clone())
                .bind(event.metadata.clone())
                .bind(&prev.0[..])
                .bind(&hash.0[..])
                .bind(chained.recorded_at());
        }
    }
    let stored: HashMap<Uuid, (i64, i64)> = query
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get::<Uuid, _>(0)?,
                (row.try_get::<i64, _>(1)?, row.try_get::<i64, _>(2)?),
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(appends
        .iter()
        .map(|(batch, chained)| {
            let got: Vec<(i64, i64)> = batch
                .encoded()
                .iter()
                .filter_map(|e| stored.get(&e.event_id).copied())
                .collect();
            // The rows of one append share their stream and head: all are in, or none.
            if got.len() < batch.len() {
                return Outcome::Refused;
            }
            let head = chained.head().seq.0;
            let position = got.iter().map(|&(p, _)| p).max().unwrap_or(0);
            Outcome::Written(AppendResult {
                stream: batch.stream.clone(),
                first_seq: Seq(head + 1),
                last_seq: Seq(head + batch.len() as u64),
                position: Position(position as u64),
                replayed: false,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_row_has_ten_parameters() {
        let two = sql(2);
        assert!(two.starts_with("INSERT INTO events"), "{two}");
        let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        assert!(two.contains(&format!(
            "(VALUES {row}, {row}) AS v) WHERE seq IS NOT NULL"
        )));
        assert_eq!(two.matches('?').count(), 20);
        assert!(std::ptr::eq(two, sql(2)));
    }
}
