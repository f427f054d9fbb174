//! Reading the global log page by page for readers that keep their own checkpoint (the
//! projection engine): raw events with their payload still JSON text, filtered by category.

use chrono::{DateTime, Utc};

use crate::{BoxFuture, Envelope, EventFilter, LogCursor, LogEvent, Position, Seq, StoreError};

/// Which events of the log a reader wants.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LogFilter {
    /// Only streams of these categories (the part of the name before the first `-`); empty
    /// means every stream.
    pub categories: Vec<String>,
}

impl LogFilter {
    /// Every event of the log.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only events of streams in these categories.
    pub fn categories<I, S>(categories: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut categories: Vec<String> = categories.into_iter().map(Into::into).collect();
        categories.sort_unstable();
        categories.dedup();
        Self { categories }
    }

    /// Whether an event of `stream` passes the filter.
    pub fn matches(&self, stream: &str) -> bool {
        if self.categories.is_empty() {
            return true;
        }
        let category = stream.split_once('-').map_or(stream, |(c, _)| c);
        self.categories.iter().any(|c| c == category)
    }
}

/// One event of the log as stored, its payload still JSON text: decoded by the reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvent {
    /// Its place in the log.
    pub position: Position,
    /// The stream's name.
    pub stream: String,
    /// Its place in the stream.
    pub seq: Seq,
    /// The event type.
    pub event_type: String,
    /// The payload as JSON text.
    pub data: String,
    /// The metadata as JSON text.
    pub metadata: String,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

impl RawEvent {
    /// A stored envelope as the projection engine reads it: its payload and metadata as JSON
    /// text.
    pub fn of(e: &Envelope) -> RawEvent {
        RawEvent {
            position: e.position,
            stream: e.stream.as_str().to_string(),
            seq: e.seq,
            event_type: e.event_type.clone(),
            data: e.data.to_string(),
            metadata: e.metadata.to_string(),
            recorded_at: e.recorded_at,
        }
    }
}

/// A page of the log read by [`LogReader::read_page`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogPage {
    /// The events, in the log's read order.
    pub events: Vec<RawEvent>,
    /// Every transaction below this id had ended when the page was read (`u64::MAX` where
    /// commits are serial): compare with [`LogReader::log_mark`].
    pub horizon: u64,
}

/// Paged, gap-free reads of the global log for readers that keep a checkpoint.
///
/// The read order is the store's commit-safe order (on PostgreSQL `(transaction, position)`,
/// so positions are never compared as numbers: [`covers`](Self::covers) compares them).
pub trait LogReader: Send + Sync {
    /// Up to `limit` events of the log after `after` that pass `filter`, in read order. Never
    /// skips an event that commits later: on PostgreSQL it reads only transactions older than
    /// every running one. It does not wait for transactions in flight; fewer than `limit`
    /// events means "nothing more for now", and the page's horizon tells how far that holds.
    fn read_page<'a>(
        &'a self,
        after: Position,
        filter: &'a LogFilter,
        limit: usize,
    ) -> BoxFuture<'a, Result<LogPage, StoreError>>;

    /// The log's end as of now: once a page's [`LogPage::horizon`] reaches this mark, every
    /// transaction that was running when the mark was taken has ended (PostgreSQL: the next
    /// transaction id; 0 where commits are serial).
    fn log_mark(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Whether a reader of `filter` whose checkpoint is `checkpoint` has seen everything up to
    /// the event at `position`: the event is in the log, and no event passing `filter` lies
    /// after `checkpoint` and at or before `position` in read order. False for a position that
    /// is not in the log (yet), and for `Position::START`, which is no event.
    fn covers<'a>(
        &'a self,
        checkpoint: Position,
        position: Position,
        filter: &'a LogFilter,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// How many events passing `filter` come after `position` in read order (all of them for
    /// `Position::START`): the lag of a checkpoint.
    fn count_after<'a>(
        &'a self,
        position: Position,
        filter: &'a LogFilter,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// The largest position of a committed event (`Position::START` for an empty log).
    fn last_position(&self) -> BoxFuture<'_, Result<Position, StoreError>>;

    /// Up to `limit` whole events after `after` that pass `filter`, in read order, each with
    /// the cursor that resumes after it. Gap-free as [`read_page`](Self::read_page): fewer
    /// than `limit` events means "nothing more for now", never "one was skipped".
    fn read_events<'a>(
        &'a self,
        after: LogCursor,
        filter: &'a EventFilter,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<LogEvent>, StoreError>>;

    /// The cursor of the event at `position` ([`LogCursor::START`] for `Position::START`);
    /// [`StoreError::UnknownPosition`] when no event is there.
    fn cursor_at(&self, position: Position) -> BoxFuture<'_, Result<LogCursor, StoreError>>;

    /// The events at `positions`, in the order given; positions where no event is are left
    /// out. For readers that found positions in an index of their own (audit queries).
    fn events_at<'a>(
        &'a self,
        positions: &'a [Position],
    ) -> BoxFuture<'a, Result<Vec<Envelope>, StoreError>>;
}

macro_rules! forward_log_reader {
    ($ptr:path) => {
        impl<T: LogReader + ?Sized> LogReader for $ptr {
            fn read_page<'a>(
                &'a self,
                after: Position,
                filter: &'a LogFilter,
                limit: usize,
            ) -> BoxFuture<'a, Result<LogPage, StoreError>> {
                (**self).read_page(after, filter, limit)
            }

            fn log_mark(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
                (**self).log_mark()
            }

            fn covers<'a>(
                &'a self,
                checkpoint: Position,
                position: Position,
                filter: &'a LogFilter,
            ) -> BoxFuture<'a, Result<bool, StoreError>> {
                (**self).covers(checkpoint, position, filter)
            }

            fn count_after<'a>(
                &'a self,
                position: Position,
                filter: &'a LogFilter,
            ) -> BoxFuture<'a, Result<u64, StoreError>> {
                (**self).count_after(position, filter)
            }

            fn last_position(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
                (**self).last_position()
            }

            fn read_events<'a>(
                &'a self,
                after: LogCursor,
                filter: &'a EventFilter,
                limit: usize,
            ) -> BoxFuture<'a, Result<Vec<LogEvent>, StoreError>> {
                (**self).read_events(after, filter, limit)
            }

            fn cursor_at(
                &self,
                position: Position,
            ) -> BoxFuture<'_, Result<LogCursor, StoreError>> {
                (**self).cursor_at(position)
            }

            fn events_at<'a>(
                &'a self,
                positions: &'a [Position],
            ) -> BoxFuture<'a, Result<Vec<Envelope>, StoreError>> {
                (**self).events_at(positions)
            }
        }
    };
}

forward_log_reader!(std::sync::Arc<T>);
forward_log_reader!(Box<T>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_categories() {
        let all = LogFilter::all();
        assert!(all.matches("tenant-a") && all.matches("slug-b") && all.matches("x"));
        let tenants = LogFilter::categories(["tenant", "tenant"]);
        assert_eq!(tenants.categories, ["tenant"]);
        assert!(tenants.matches("tenant-a-b"));
        assert!(!tenants.matches("tenants-a") && !tenants.matches("slug-tenant"));
        assert!(!tenants.matches("tenantx"));
        assert!(LogFilter::categories(["tenant"]).matches("tenant"));
    }
}
