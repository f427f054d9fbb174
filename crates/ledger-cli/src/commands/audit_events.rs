//! `ledger audit events`: the events of the whole log that match an auditor's filters, as
//! `GET /v1/audit/events` answers them (the same checks and the same search), read from the
//! database directly: a table on a terminal, `--format csv` or `--format json` (one event per
//! line) for scripts. Pages of 1,000 are printed as they come, so memory stays bounded.

use std::io::Write as _;

use chrono::SecondsFormat;
use clap::{Args, ValueEnum};
use ledger_api::{AuditQuery, AuditSearch};
use ledger_core::{Envelope, Trail};
use ledger_projector::ProjectorOptions;
use ledger_read_models::audit_trail;

use crate::database::Target;
use crate::output::{CliError, JsonLines};

/// Events fetched per page.
const PAGE: usize = 1_000;

/// How `ledger audit events` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum EventsFormat {
    /// Aligned columns for a person.
    #[default]
    Table,
    /// Comma-separated values with a header line.
    Csv,
    /// One event per line, as the HTTP route's `events` hold them.
    Json,
}

/// Arguments of `ledger audit events`: every filter given must hold.
#[derive(Debug, Default, Args)]
pub struct EventsArgs {
    /// Events of this tenant: its stream and its slug claim.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Events of this stream.
    #[arg(long)]
    pub stream: Option<String>,
    /// Events of streams of this category (`tenant`, `slug`, ...).
    #[arg(long)]
    pub category: Option<String>,
    /// Events of this type.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Events of this actor: a token's name, or the recorded actor of events without one.
    #[arg(long)]
    pub actor: Option<String>,
    /// Events recorded on behalf of this person or service.
    #[arg(long)]
    pub on_behalf_of: Option<String>,
    /// Events of this correlation id.
    #[arg(long)]
    pub correlation_id: Option<String>,
    /// Events of this request id.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Recorded at or after this instant (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Recorded before this instant (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// `asc` (oldest first) or `desc` (newest first).
    #[arg(long, default_value = "asc")]
    pub order: String,
    /// Print at most this many events.
    #[arg(long)]
    pub limit: Option<usize>,
    /// How to print them.
    #[arg(long, value_enum, default_value_t)]
    pub format: EventsFormat,
}

impl EventsArgs {
    /// The HTTP query with the same parameters.
    fn query(&self) -> AuditQuery {
        AuditQuery {
            tenant: self.tenant.clone(),
            stream: self.stream.clone(),
            category: self.category.clone(),
            event_type: self.event_type.clone(),
            actor: self.actor.clone(),
            on_behalf_of: self.on_behalf_of.clone(),
            correlation_id: self.correlation_id.clone(),
            request_id: self.request_id.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            order: Some(self.order.clone()),
            ..AuditQuery::default()
        }
    }
}

/// The columns of the table and the CSV.
const HEADER: [&str; 9] = [
    "RECORDED",
    "POSITION",
    "STREAM",
    "SEQ",
    "TYPE",
    "ACTOR",
    "ON BEHALF OF",
    "CORRELATION",
    "REQUEST",
];

/// One event's cells.
fn cells(e: &Envelope) -> [String; 9] {
    let trail = Trail::of(&e.metadata);
    let text = |s: Option<&str>| s.unwrap_or("-").to_string();
    [
        e.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        e.position.0.to_string(),
        e.stream.as_str().to_string(),
        e.seq.0.to_string(),
        e.event_type.clone(),
        text(trail.actor()),
        text(trail.on_behalf_of.as_deref()),
        text(trail.correlation_id.as_deref()),
        text(trail.request_id.as_deref()),
    ]
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Prints the rows of one page as aligned columns (widths fixed by the first page).
struct Table {
    widths: Option<Vec<usize>>,
}

impl Table {
    fn lines(&mut self, rows: &[[String; 9]]) -> String {
        let widths = self.widths.get_or_insert_with(|| {
            (0..HEADER.len())
                .map(|i| {
                    rows.iter()
                        .map(|r| r[i].chars().count())
                        .chain([HEADER[i].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect()
        });
        let mut out = String::new();
        for row in rows {
            let line: Vec<String> = row
                .iter()
                .zip(widths.iter())
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

/// Runs `ledger audit events` on `target`'s database (which must exist): the audit trail is
/// brought up to the log's end first, so the answer holds every event committed before.
pub async fn run(target: &Target, args: EventsArgs) -> Result<(), CliError> {
    let search = AuditSearch::of(&args.query(), None)
        .map_err(|e| CliError::bad_input(e.code().as_str(), e.to_string()))?;
    let db = super::open_existing(target).await?;
    let projector = db.projector(ProjectorOptions::default());
    projector
        .catch_up(audit_trail::SCHEMA.name)
        .await
        .map_err(|e| CliError::Failed {
            code: "projection_failed",
            message: format!("the audit trail could not catch up with the log: {e}"),
        })?;
    let log = super::sealed_log(&db);
    let mut search = search
        .with_sealed_forms(Some(&super::vault(&db)))
        .await
        .map_err(|e| CliError::bad_input(e.code().as_str(), e.to_string()))?;
    let mut left = args.limit.unwrap_or(usize::MAX);
    let mut json = JsonLines::stdout();
    let mut out = std::io::stdout().lock();
    let mut table = Table { widths: None };
    let mut first = true;
    while left > 0 {
        let page = search
            .page(db.projections.as_ref(), log.as_ref(), left.min(PAGE))
            .await
            .map_err(|e| target.error(e))?;
        left -= page.events.len();
        let text = match args.format {
            EventsFormat::Json => {
                for e in &page.events {
                    json.write(e)?;
                }
                String::new()
            }
            EventsFormat::Csv => {
                let mut text = String::new();
                if first {
                    text = HEADER.join(",") + "\n";
                }
                for e in &page.events {
                    let row: Vec<String> = cells(e).iter().map(|c| csv_field(c)).collect();
                    text += &(row.join(",") + "\n");
                }
                text
            }
            EventsFormat::Table => {
                let mut rows: Vec<[String; 9]> = page.events.iter().map(cells).collect();
                if first {
                    rows.insert(0, HEADER.map(String::from));
                }
                table.lines(&rows)
            }
        };
        first = false;
        match out.write_all(text.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other?,
        }
        match page.next_cursor {
            Some(next) => search.after = next.parse().ok(),
            None => break,
        }
    }
    json.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn the_arguments_are_the_routes_parameters() {
        let args = EventsArgs {
            actor: Some("ops-bot".into()),
            order: "desc".into(),
            ..EventsArgs::default()
        };
        let search = AuditSearch::of(&args.query(), None).unwrap();
        assert_eq!(search.filter.actor.as_deref(), Some("ops-bot"));
        assert_eq!(search.order, ledger_read_models::Order::Desc);
        let bad = EventsArgs {
            order: "sideways".into(),
            ..EventsArgs::default()
        };
        let e = AuditSearch::of(&bad.query(), None).unwrap_err();
        assert_eq!(e.code().as_str(), "invalid_query");
    }
}
