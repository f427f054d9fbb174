//! The read models as of an instant: their rows folded in memory, by their own pure `apply`,
//! from the events recorded up to that instant. Nothing here reads a table or a clock.
//!
//! Which events count is [`Cutoff`]'s rule: per stream, the events whose `recorded_at` is at
//! or before the instant, up to the first that is not. Within one stream a later event is
//! normally recorded later; where it is not (PostgreSQL records a transaction's start time),
//! the rule still gives every stream a prefix of its history, so every view stands at one seq.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use ledger_core::Position;
use ledger_projector::{Batch, Key, ReadModel, Record, RowError, Tables};

use crate::change::Change;
use crate::onboarding_funnel::{self, FunnelDay, OnboardingFunnel};
use crate::onboarding_locks::{LockRow, OnboardingLocks};
use crate::pending_syncs::{PendingSyncRow, PendingSyncs};

/// Which events of streams read in order an as-of view takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cutoff {
    at: DateTime<Utc>,
    closed: HashSet<String>,
}

impl Cutoff {
    /// The cutoff at the instant `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self {
            at,
            closed: HashSet::new(),
        }
    }

    /// The instant.
    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }

    /// Whether the next event of `stream` (each stream's events given in seq order), recorded
    /// at `recorded_at`, is in: it is when it was recorded at or before the instant and no
    /// earlier event of its stream was left out.
    pub fn admits(&mut self, stream: &str, recorded_at: DateTime<Utc>) -> bool {
        if self.closed.contains(stream) {
            return false;
        }
        if recorded_at <= self.at {
            return true;
        }
        self.closed.insert(stream.to_string());
        false
    }
}

/// Events folded per batch.
const BATCH: usize = 1_000;

/// One read model's tables in memory, folded by its `apply` from the events pushed in.
pub struct Folded<M> {
    model: M,
    tables: Tables,
    pending: Batch<Change>,
    pushed: u64,
}

impl<M: ReadModel<Change>> Folded<M> {
    /// Empty tables of `model`.
    pub fn new(model: M) -> Self {
        let tables = Tables::new(model.schema());
        Self {
            model,
            tables,
            pending: Batch::new(),
            pushed: 0,
        }
    }

    /// Applies the next event (in log order).
    pub fn push(&mut self, change: Change) -> Result<(), RowError> {
        self.pushed += 1;
        self.pending.push(Position(self.pushed), Some(change));
        if self.pending.events().len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// The tables after every event pushed so far.
    pub fn tables(&mut self) -> Result<&Tables, RowError> {
        self.flush()?;
        Ok(&self.tables)
    }

    /// Every row of the model's first table, typed.
    pub fn rows<R: Record>(&mut self) -> Result<Vec<R>, RowError> {
        self.tables()?
            .rows(R::TABLE)
            .into_iter()
            .map(R::from_row)
            .collect()
    }

    fn flush(&mut self) -> Result<(), RowError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        self.tables.apply(&self.model, &batch)
    }
}

/// One tenant's lock and syncs as the `onboarding_locks` and `pending_syncs` read models hold
/// them after `changes` (that tenant's events, in seq order).
pub fn tenant_rows(
    changes: impl IntoIterator<Item = Change>,
) -> Result<(Option<LockRow>, Vec<PendingSyncRow>), RowError> {
    let mut locks = Folded::new(OnboardingLocks);
    let mut syncs = Folded::new(PendingSyncs);
    for change in changes {
        locks.push(change.clone())?;
        syncs.push(change)?;
    }
    let lock = locks.rows::<LockRow>()?.into_iter().next();
    Ok((lock, syncs.rows()?))
}

/// The `onboarding_funnel` read model folded in memory from the events pushed in.
pub struct FunnelAsOf(Folded<OnboardingFunnel>);

impl Default for FunnelAsOf {
    fn default() -> Self {
        Self(Folded::new(OnboardingFunnel))
    }
}

impl FunnelAsOf {
    /// Applies the next onboarding event of the log.
    pub fn push(&mut self, change: Change) -> Result<(), RowError> {
        self.0.push(change)
    }

    /// The days from `from` to `to` after `after`, at most `limit`: what
    /// [`onboarding_funnel::days`] answers from the live table, from these rows.
    pub fn days(
        &mut self,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
        after: Option<Key>,
        limit: usize,
    ) -> Result<Vec<FunnelDay>, RowError> {
        let query = onboarding_funnel::days_query(from, to, after, limit);
        self.0
            .tables()?
            .page(query.table, query.after.as_ref(), query.limit, |row| {
                query.passes(row)
            })
            .into_iter()
            .map(FunnelDay::from_row)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use ledger_projector::Decode;

    use super::*;
    use crate::testing::{history, random_steps, raw_log, reference};
    use crate::{Decoder, onboarding_locks, pending_syncs};

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 20, 22, 0, 0).unwrap() + Duration::seconds(s)
    }

    #[test]
    fn the_cutoff_takes_each_stream_up_to_its_first_later_event() {
        let mut cut = Cutoff::new(t(10));
        assert_eq!(cut.at(), t(10));
        let taken: Vec<bool> = [
            ("a", t(1)),
            ("b", t(11)),
            ("a", t(10)),
            ("b", t(2)),
            ("a", t(12)),
            ("a", t(3)),
            ("c", t(9)),
        ]
        .into_iter()
        .map(|(s, at)| cut.admits(s, at))
        .collect();
        assert_eq!(taken, [true, false, true, false, false, false, true]);
    }

    /// The generated history's changes, in log order.
    fn changes(seed: u64) -> Vec<Change> {
        let steps = random_steps(seed, 4, 400);
        raw_log(&history(seed, 4, &steps, t(0)))
            .into_iter()
            .filter_map(|raw| Decoder.decode(raw).and_then(|l| l.change))
            .collect()
    }

    #[test]
    fn tenant_rows_equal_the_reference_for_every_prefix() {
        let all = changes(3);
        let tenant = all[0].tenant_id.clone();
        let mine: Vec<Change> = all.into_iter().filter(|c| c.tenant_id == tenant).collect();
        assert!(mine.len() > 20, "{} events", mine.len());
        for n in 0..=mine.len() {
            let prefix = &mine[..n];
            let want = reference(prefix);
            let (lock, syncs) = tenant_rows(prefix.iter().cloned()).unwrap();
            let lock: Vec<_> = lock.into_iter().map(Record::into_row).collect();
            let syncs: Vec<_> = syncs.into_iter().map(Record::into_row).collect();
            assert_eq!(lock, want[onboarding_locks::TABLE.name], "after {n}");
            assert_eq!(syncs, want[pending_syncs::TABLE.name], "after {n}");
        }
    }

    #[test]
    fn the_funnel_equals_the_reference_for_every_prefix_and_pages_like_the_table() {
        let all = changes(5);
        let mut funnel = FunnelAsOf::default();
        for n in 0..=all.len() {
            if n > 0 {
                funnel.push(all[n - 1].clone()).unwrap();
            }
            if n % 37 != 0 && n != all.len() {
                continue;
            }
            let want = reference(&all[..n]);
            let days: Vec<_> = funnel
                .days(None, None, None, usize::MAX)
                .unwrap()
                .into_iter()
                .map(Record::into_row)
                .collect();
            assert_eq!(days, want[onboarding_funnel::DAYS.name], "after {n}");
        }
        let every = funnel.days(None, None, None, usize::MAX).unwrap();
        assert!(every.len() >= 2, "{} days", every.len());
        let first = every[0].day;
        let page = funnel.days(Some(first), Some(first), None, 10).unwrap();
        assert_eq!(page, every[..1]);
        let rest = funnel
            .days(None, None, Some(every[0].key()), usize::MAX)
            .unwrap();
        assert_eq!(rest, every[1..]);
        assert_eq!(funnel.days(None, None, None, 1).unwrap(), every[..1]);
    }
}
