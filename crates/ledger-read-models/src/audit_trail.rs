//! `audit_trail`: one row per event of the log (every stream), keyed by when it was recorded
//! and its position, with its tenant, who acted and in which request: the index audit queries
//! search. It holds no payload: a query finds positions here and reads the events themselves
//! from the log, so the row is small and the events table carries no index for it (appends
//! pay nothing; the projection runner keeps it, as every read model).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use ledger_core::{BaselineLookup, Position, StoreError};
use ledger_projector::{
    Column, Condition, Index, Key, Keys, ProjectionStore, Query, ReadModel, Record, Row, RowError,
    Rows, Schema, TableSpec, Value,
};

use crate::change::{Entry, Logged};
use crate::codec::unreadable;
use crate::typed;

/// The indexes: each filter alone, then the time and position, so that a filter with a time
/// range and the order by time read one index range.
const INDEXES: &[Index] = &[
    Index {
        name: "tenant",
        columns: &["tenant", "recorded_us", "position"],
        only_null: None,
    },
    Index {
        name: "stream",
        columns: &["stream", "recorded_us", "position"],
        only_null: None,
    },
    Index {
        name: "category",
        columns: &["category", "recorded_us", "position"],
        only_null: None,
    },
    Index {
        name: "type",
        columns: &["event_type", "recorded_us", "position"],
        only_null: None,
    },
    Index {
        name: "actor",
        columns: &["actor", "recorded_us", "position"],
        only_null: None,
    },
    Index {
        name: "on_behalf_of",
        columns: &["on_behalf_of", "recorded_us", "position"],
        only_null: None,
    },
    Index {
        name: "correlation",
        columns: &["correlation_id", "recorded_us", "position"],
        only_null: None,
    },
    Index {
        name: "request",
        columns: &["request_id", "recorded_us", "position"],
        only_null: None,
    },
];

/// The table: one row per event, keyed by (recorded time in microseconds, position).
pub static TABLE: TableSpec = TableSpec {
    name: "audit_trail",
    columns: &[
        Column::int("recorded_us"),
        Column::int("position"),
        Column::text("stream"),
        Column::text("category"),
        Column::int("seq"),
        Column::text("event_type"),
        Column::text("tenant").nullable(),
        Column::text("actor").nullable(),
        Column::text("on_behalf_of").nullable(),
        Column::text("correlation_id").nullable(),
        Column::text("request_id").nullable(),
    ],
    key: 2,
    indexes: INDEXES,
};

/// The read model's name, version and table.
pub static SCHEMA: Schema = Schema {
    name: "audit_trail",
    version: 1,
    tables: &[TABLE],
};

/// One event as the trail indexes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailRow {
    /// When it was recorded (to the microsecond).
    pub recorded_at: DateTime<Utc>,
    /// Its place in the log.
    pub position: Position,
    /// Its stream.
    pub stream: String,
    /// Its stream's category.
    pub category: String,
    /// Its place in the stream.
    pub seq: u64,
    /// Its type.
    pub event_type: String,
    /// The tenant it belongs to.
    pub tenant: Option<String>,
    /// The token that acted (its name), else the recorded role.
    pub actor: Option<String>,
    /// The person or service the token acted for.
    pub on_behalf_of: Option<String>,
    /// The client's correlation id.
    pub correlation_id: Option<String>,
    /// The request's id.
    pub request_id: Option<String>,
}

/// Microseconds since the Unix epoch.
fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

impl TrailRow {
    /// The row of an entry of the log.
    pub fn of(entry: &Entry) -> TrailRow {
        let category = entry
            .stream
            .split_once('-')
            .map_or(entry.stream.as_str(), |(c, _)| c);
        let trail = entry.trail();
        TrailRow {
            recorded_at: entry.recorded_at,
            position: entry.position,
            stream: entry.stream.clone(),
            category: category.to_string(),
            seq: entry.seq,
            event_type: entry.event_type.clone(),
            tenant: entry.tenant.clone(),
            actor: trail.actor().map(str::to_string),
            on_behalf_of: trail.on_behalf_of,
            correlation_id: trail.correlation_id,
            request_id: trail.request_id,
        }
    }

    /// Where a page that ends with this row resumes.
    pub fn cursor(&self) -> TrailCursor {
        TrailCursor {
            recorded_us: to_micros(self.recorded_at),
            position: self.position,
        }
    }
}

impl Record for TrailRow {
    const TABLE: &'static TableSpec = &TABLE;

    fn from_row(row: Row) -> Result<Self, RowError> {
        let mut c = TABLE.cells(row)?;
        let recorded_us = c.int()?;
        Ok(Self {
            recorded_at: DateTime::from_timestamp_micros(recorded_us)
                .ok_or_else(|| unreadable(&TABLE, 0, Value::Int(recorded_us)))?,
            position: Position(c.uint()?),
            stream: c.text()?,
            category: c.text()?,
            seq: c.uint()?,
            event_type: c.text()?,
            tenant: c.opt_text()?,
            actor: c.opt_text()?,
            on_behalf_of: c.opt_text()?,
            correlation_id: c.opt_text()?,
            request_id: c.opt_text()?,
        })
    }

    fn into_row(self) -> Row {
        vec![
            Value::Int(to_micros(self.recorded_at)),
            Value::uint(self.position.0),
            Value::Text(self.stream),
            Value::Text(self.category),
            Value::uint(self.seq),
            Value::Text(self.event_type),
            Value::opt_text(self.tenant),
            Value::opt_text(self.actor),
            Value::opt_text(self.on_behalf_of),
            Value::opt_text(self.correlation_id),
            Value::opt_text(self.request_id),
        ]
    }

    fn key(&self) -> Key {
        self.cursor().key()
    }
}

/// A place in the trail's order (recorded time, then position): where a page resumes.
/// Written `<microseconds since the epoch>.<position>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TrailCursor {
    /// Recorded time, microseconds since the Unix epoch.
    pub recorded_us: i64,
    /// Position.
    pub position: Position,
}

impl TrailCursor {
    /// The row key it stands for.
    fn key(self) -> Key {
        vec![Value::Int(self.recorded_us), Value::uint(self.position.0)]
    }
}

impl fmt::Display for TrailCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.recorded_us, self.position.0)
    }
}

/// Text that is no trail cursor.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a cursor of audit results is two whole numbers joined by a dot, as `next_cursor` gives")]
pub struct ParseTrailCursorError;

impl FromStr for TrailCursor {
    type Err = ParseTrailCursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (at, position) = s.split_once('.').ok_or(ParseTrailCursorError)?;
        let digits =
            |t: &str| !t.is_empty() && t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit());
        let at_digits = at.strip_prefix('-').unwrap_or(at);
        if !digits(at_digits) || !digits(position) {
            return Err(ParseTrailCursorError);
        }
        Ok(TrailCursor {
            recorded_us: at.parse().map_err(|_| ParseTrailCursorError)?,
            position: Position(position.parse().map_err(|_| ParseTrailCursorError)?),
        })
    }
}

/// The `audit_trail` read model: every event of the log adds its row.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuditTrail;

impl ReadModel<Logged> for AuditTrail {
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    /// Every category: an empty list is the whole log.
    fn categories(&self) -> &'static [&'static str] {
        &[]
    }

    fn keys(&self, logged: &Logged, keys: &mut Keys) {
        let entry = &logged.entry;
        let key = TrailCursor {
            recorded_us: to_micros(entry.recorded_at),
            position: entry.position,
        };
        keys.add(0, key.key());
    }

    fn apply(&self, logged: &Logged, rows: &mut Rows) -> Result<(), RowError> {
        let row = TrailRow::of(&logged.entry);
        let key = row.key();
        typed::update(rows, 0, &key, |slot: &mut Option<TrailRow>| {
            *slot = Some(row);
        })
    }
}

/// Which events an audit query wants: every filter given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Events of this tenant (its stream, and its slug claim).
    pub tenant: Option<String>,
    /// Events of this stream.
    pub stream: Option<String>,
    /// Events of streams of this category.
    pub category: Option<String>,
    /// Events of this type.
    pub event_type: Option<String>,
    /// Events of this actor: a token's name, or a recorded role for events without one.
    pub actor: Option<String>,
    /// Events recorded on behalf of this person or service.
    pub on_behalf_of: Option<String>,
    /// The texts `on_behalf_of` takes sealed with the tenants' keys (the trail holds what the
    /// events hold): rows holding one of them match too.
    pub on_behalf_of_sealed: Vec<String>,
    /// Events of this correlation id.
    pub correlation_id: Option<String>,
    /// Events of this request.
    pub request_id: Option<String>,
    /// Recorded at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Recorded before this time.
    pub to: Option<DateTime<Utc>>,
}

impl AuditFilter {
    /// The query's conditions.
    fn conditions(&self) -> Vec<Condition> {
        let mut out = Vec::new();
        let texts = [
            ("tenant", &self.tenant),
            ("stream", &self.stream),
            ("category", &self.category),
            ("event_type", &self.event_type),
            ("actor", &self.actor),
            ("correlation_id", &self.correlation_id),
            ("request_id", &self.request_id),
        ];
        for (column, value) in texts {
            if let Some(v) = value {
                out.push(Condition::Eq(column, Value::text(v.as_str())));
            }
        }
        match &self.on_behalf_of {
            Some(person) if self.on_behalf_of_sealed.is_empty() => {
                out.push(Condition::Eq("on_behalf_of", Value::text(person.as_str())));
            }
            Some(person) => {
                let forms = std::iter::once(person).chain(&self.on_behalf_of_sealed);
                let values = forms.map(|v| Value::text(v.as_str())).collect();
                out.push(Condition::In("on_behalf_of", values));
            }
            None => {}
        }
        if let Some(from) = self.from {
            out.push(Condition::Ge("recorded_us", Value::Int(to_micros(from))));
        }
        if let Some(to) = self.to {
            out.push(Condition::Lt("recorded_us", Value::Int(to_micros(to))));
        }
        out
    }

    /// The same search as one plain SQL lookup (the yardstick of `ledger bench audit`);
    /// `None` when it filters on more than one column besides time.
    pub fn baseline(&self, order: Order, limit: usize) -> Option<BaselineLookup> {
        let mut equal = None;
        for condition in self.conditions() {
            match condition {
                Condition::Eq(column, Value::Text(v)) if equal.is_none() => {
                    equal = Some((column, v));
                }
                Condition::Ge(..) | Condition::Lt(..) => {}
                _ => return None,
            }
        }
        Some(BaselineLookup {
            table: TABLE.name,
            equal,
            order_by: TABLE.columns[0].name,
            from: self.from.map(to_micros),
            to: self.to.map(to_micros),
            descending: order == Order::Desc,
            limit,
        })
    }

    /// The query of a page.
    pub fn query(&self, order: Order, after: Option<TrailCursor>, limit: usize) -> Query {
        let mut query = Query::new(&TABLE, limit)
            .after(after.map(TrailCursor::key))
            .descending(order == Order::Desc);
        query.conditions = self.conditions();
        query
    }
}

/// The order of audit results: by recorded time, then position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// Oldest first.
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// Sealed forms of `on_behalf_of` one query lists at most: a search over more tenants' keys
/// runs one query per share of them and merges their pages.
pub const FORMS_PER_QUERY: usize = 10_000;

/// The rows that pass `filter`, in `order` after `after`, at most `limit`.
pub async fn page(
    store: &dyn ProjectionStore,
    filter: &AuditFilter,
    order: Order,
    after: Option<TrailCursor>,
    limit: usize,
) -> Result<Vec<TrailRow>, StoreError> {
    if filter.on_behalf_of_sealed.len() <= FORMS_PER_QUERY {
        return typed::query(store, filter.query(order, after, limit)).await;
    }
    // The first `limit` rows of the union are among the first `limit` rows of each share.
    let mut rows: Vec<TrailRow> = Vec::new();
    for forms in filter.on_behalf_of_sealed.chunks(FORMS_PER_QUERY) {
        let part = AuditFilter {
            on_behalf_of_sealed: forms.to_vec(),
            ..filter.clone()
        };
        rows.extend(typed::query(store, part.query(order, after, limit)).await?);
    }
    rows.sort_by_key(TrailRow::cursor);
    if order == Order::Desc {
        rows.reverse();
    }
    // Each share also matches the plain value: keep each row once.
    rows.dedup_by_key(|r| r.cursor());
    rows.truncate(limit);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use ledger_core::{RawEvent, Seq};
    use ledger_projector::{Batch, Decode, Tables};

    use super::*;
    use crate::change::Decoder;

    fn raw(
        position: u64,
        stream: &str,
        ty: &str,
        data: &str,
        metadata: &str,
        sec: u32,
    ) -> RawEvent {
        RawEvent {
            position: Position(position),
            stream: stream.into(),
            seq: Seq(1),
            event_type: ty.into(),
            data: data.into(),
            metadata: metadata.into(),
            recorded_at: Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, sec).unwrap(),
        }
    }

    fn trail() -> Tables {
        let log = [
            raw(
                1,
                "tenant-a",
                "TenantRegistered",
                r#"{"slug":"acme","name":"Acme","at":"2026-03-01T12:00:00Z"}"#,
                r#"{"actor":{"role":"admin","token":"ops-bot"},"on_behalf_of":"alice","correlation_id":"c1","request_id":"r1"}"#,
                0,
            ),
            raw(
                2,
                "slug-acme",
                "SlugClaimed",
                r#"{"tenant_id":"a"}"#,
                r#"{"actor":{"role":"admin","token":"ops-bot"},"correlation_id":"c1","request_id":"r1"}"#,
                0,
            ),
            raw(3, "tenant-b", "Whatever", "{}", r#"{"actor":"cli"}"#, 5),
            raw(4, "subscription-x", "SubscriptionDefined", "{}", "{}", 9),
        ];
        let batch: Batch<Logged> = log
            .into_iter()
            .map(|r| (r.position, Decoder.decode(r)))
            .collect();
        let mut tables = Tables::new(&SCHEMA);
        tables.apply(&AuditTrail, &batch).unwrap();
        tables
    }

    fn positions(tables: &Tables, filter: AuditFilter, order: Order) -> Vec<u64> {
        tables
            .select(&filter.query(order, None, 10))
            .into_iter()
            .map(|r| TrailRow::from_row(r).unwrap().position.0)
            .collect()
    }

    #[test]
    fn every_event_is_indexed_by_tenant_actor_and_request() {
        let t = trail();
        assert_eq!(
            t.rows(&TABLE).len(),
            4,
            "one row per event, whatever its stream"
        );
        let f = AuditFilter::default;
        assert_eq!(positions(&t, f(), Order::Asc), [1, 2, 3, 4]);
        assert_eq!(positions(&t, f(), Order::Desc), [4, 3, 2, 1]);
        let tenant = AuditFilter {
            tenant: Some("a".into()),
            ..f()
        };
        assert_eq!(
            positions(&t, tenant, Order::Asc),
            [1, 2],
            "its stream and its slug claim"
        );
        let actor = AuditFilter {
            actor: Some("ops-bot".into()),
            ..f()
        };
        assert_eq!(positions(&t, actor, Order::Desc), [2, 1]);
        let cli = AuditFilter {
            actor: Some("cli".into()),
            ..f()
        };
        assert_eq!(positions(&t, cli, Order::Asc), [3]);
        let person = AuditFilter {
            on_behalf_of: Some("alice".into()),
            ..f()
        };
        assert_eq!(positions(&t, person, Order::Asc), [1]);
        let correlated = AuditFilter {
            correlation_id: Some("c1".into()),
            category: Some("slug".into()),
            ..f()
        };
        assert_eq!(positions(&t, correlated, Order::Asc), [2]);
        let window = AuditFilter {
            from: Some(Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 5).unwrap()),
            to: Some(Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 9).unwrap()),
            ..f()
        };
        assert_eq!(
            positions(&t, window, Order::Asc),
            [3],
            "from inclusive, to exclusive"
        );
        let typed = AuditFilter {
            event_type: Some("SubscriptionDefined".into()),
            stream: Some("subscription-x".into()),
            ..f()
        };
        assert_eq!(positions(&t, typed, Order::Asc), [4]);
    }

    #[test]
    fn pages_resume_after_their_cursor_both_ways() {
        let t = trail();
        for order in [Order::Asc, Order::Desc] {
            let mut after = None;
            let mut seen = Vec::new();
            loop {
                let page = t.select(&AuditFilter::default().query(order, after, 1));
                let Some(row) = page.into_iter().next() else {
                    break;
                };
                let row = TrailRow::from_row(row).unwrap();
                after = Some(row.cursor());
                seen.push(row.position.0);
            }
            let mut want = vec![1, 2, 3, 4];
            if order == Order::Desc {
                want.reverse();
            }
            assert_eq!(seen, want);
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_other_text() {
        let c = TrailCursor {
            recorded_us: 1_772_366_400_000_000,
            position: Position(42),
        };
        assert_eq!(c.to_string(), "1772366400000000.42");
        assert_eq!(c.to_string().parse(), Ok(c));
        let early = TrailCursor {
            recorded_us: -5,
            position: Position(1),
        };
        assert_eq!(early.to_string().parse(), Ok(early));
        for bad in [
            "",
            "1",
            "1.",
            ".1",
            "a.1",
            "1.b",
            "1.2.3",
            "+1.2",
            "1.-2",
            "99999999999999999999.1",
        ] {
            assert_eq!(
                bad.parse::<TrailCursor>(),
                Err(ParseTrailCursorError),
                "{bad:?}"
            );
        }
    }
}
