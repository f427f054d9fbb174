//! `ledger audit ...`: a tenant's history for people, read from the database directly and
//! computed by the same code as the HTTP routes (`ledger_api`'s history functions), so both
//! answer alike. Each subcommand prints a table by default, `--format json` for scripts.
//!
//! - `ledger audit state <tenant> --at <time>`: as `GET /v1/tenants/{id}?as_of=`;
//! - `ledger audit timeline <tenant>`: as `GET /v1/tenants/{id}/timeline`, every page;
//! - `ledger audit events [filters]`: as `GET /v1/audit/events`, every page (its own module).

use std::fmt::Write as _;
use std::io::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand, ValueEnum};
use ledger_api::{ApiError, TenantAsOf, Timeline, parse_as_of, tenant_as_of, tenant_timeline};
use ledger_domain::{DomainError, Policy};
use serde::Serialize;
use uuid::Uuid;

use crate::database::Target;
use crate::output::{CliError, print_json};

/// The audit commands: reading what happened, never writing.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Prints a tenant as it was at an instant: its state folded from the events recorded up
    /// to then, with the seq it stood at, its lock and its syncs.
    State(StateArgs),
    /// Prints a tenant's timeline: one line per event, in words, with the time it was
    /// recorded, who acted, the phase after it and its correlation id. Refused commands
    /// append no event, so they appear in no timeline.
    Timeline(TimelineArgs),
    /// Prints the events of the whole log that match every filter given (tenant, stream,
    /// category, type, actor, on behalf of, correlation or request id, time range), as
    /// `GET /v1/audit/events` finds them.
    Events(Box<super::audit_events::EventsArgs>),
}

/// How an audit command prints its answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for a person.
    #[default]
    Table,
    /// The HTTP route's JSON, on one line.
    Json,
}

/// Arguments of `ledger audit state`.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// The tenant id.
    pub tenant: String,
    /// The instant, RFC 3339 (e.g. `2026-01-20T14:03:12Z`).
    #[arg(long, value_name = "TIME")]
    pub at: String,
    /// How to print it.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// Arguments of `ledger audit timeline`.
#[derive(Debug, Args)]
pub struct TimelineArgs {
    /// The tenant id.
    pub tenant: String,
    /// How to print it.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// Runs one audit command on `target`'s database (which must exist).
pub async fn run(target: &Target, command: AuditCommand) -> Result<(), CliError> {
    match command {
        AuditCommand::State(args) => {
            let tenant = tenant(&args.tenant)?;
            let at = parse_as_of("--at", &args.at).map_err(|e| error(target, e))?;
            let db = super::open_existing(target).await?;
            let view = tenant_as_of(super::sealed(&db).as_ref(), tenant, at, &Policy::default())
                .await
                .map_err(|e| error(target, e))?;
            print(args.format, &view, state_table)
        }
        AuditCommand::Timeline(args) => {
            let tenant = tenant(&args.tenant)?;
            let db = super::open_existing(target).await?;
            let timeline = tenant_timeline(super::sealed(&db).as_ref(), tenant, 1, usize::MAX)
                .await
                .map_err(|e| error(target, e))?;
            print(args.format, &timeline, timeline_table)
        }
        AuditCommand::Events(args) => super::audit_events::run(target, *args).await,
    }
}

/// The tenant id argument.
fn tenant(text: &str) -> Result<Uuid, CliError> {
    Uuid::try_parse(text.trim()).map_err(|_| {
        CliError::bad_input(
            "invalid_tenant_id",
            format!("{text:?} is not a tenant id; tenant ids are UUIDs"),
        )
    })
}

/// An error of the history functions as the CLI reports it: the store's errors as every
/// command reports them, an unknown tenant or a bad time as bad input (exit 2).
fn error(target: &Target, e: ApiError) -> CliError {
    let code = e.code().as_str();
    match e {
        ApiError::Store(e) => target.error(e),
        ApiError::Domain(DomainError::TenantNotFound) => CliError::bad_input(
            code,
            "the tenant was not registered at that time (or is not in this database)",
        ),
        other if other.status().is_client_error() => CliError::bad_input(code, other.to_string()),
        other => CliError::Failed {
            code,
            message: other.to_string(),
        },
    }
}

/// Prints `value` as JSON or as the table `table` makes of it.
fn print<T: Serialize>(format: Format, value: &T, table: fn(&T) -> String) -> Result<(), CliError> {
    match format {
        Format::Json => print_json(value),
        Format::Table => {
            let mut out = std::io::stdout().lock();
            match out.write_all(table(value).as_bytes()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => Ok(other?),
            }
        }
    }
}

/// A time to the millisecond, UTC.
fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An optional time, `-` when absent.
fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".to_string(), time)
}

/// Rows of cells as left-aligned columns two spaces apart (the last column unpadded).
fn columns(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `ledger audit state` as a table.
fn state_table(view: &TenantAsOf) -> String {
    let t = &view.tenant;
    let text = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".to_string());
    let mut rows = vec![
        vec!["tenant".to_string(), t.tenant_id.to_string()],
        vec!["as of".into(), time(view.as_of.to_utc())],
        vec!["seq".into(), t.seq.to_string()],
        vec!["slug".into(), text(&t.slug)],
        vec!["name".into(), text(&t.name)],
        vec!["registered".into(), opt_time(t.registered_at)],
        vec!["phase".into(), t.phase.to_string()],
    ];
    for stage in &t.stages {
        rows.push(vec![
            format!("  {}", stage.label),
            opt_time(stage.completed_at),
        ]);
    }
    rows.push(vec!["completed".into(), opt_time(t.completed_at)]);
    let lock = match &view.onboarding_lock {
        None => "-".to_string(),
        Some(l) => {
            let mut s = format!(
                "held by {} since {}, expires {}",
                l.holder,
                time(l.acquired_at),
                time(l.expires_at)
            );
            if let Some(at) = l.released_at {
                let reason = l.release_reason.as_deref().unwrap_or("-");
                let _ = write!(s, ", released {} ({reason})", time(at));
            }
            s
        }
    };
    rows.push(vec!["lock".into(), lock]);
    let key = t.api_key.as_ref().map_or_else(
        || "-".to_string(),
        |k| {
            format!(
                "{} (shown until {})",
                k.fingerprint,
                time(k.reveal_expires_at)
            )
        },
    );
    rows.push(vec!["api key".into(), key]);
    let failure = t.last_failure.as_ref().map_or_else(
        || "-".to_string(),
        |f| {
            let stage = serde_json::to_value(f.stage).unwrap_or_default();
            let stage = stage.as_str().unwrap_or_default();
            format!("{stage} failed: {} at {}", f.code, time(f.at))
        },
    );
    rows.push(vec!["last failure".into(), failure]);
    let mut out = columns(&rows);
    out.push_str("\nsyncs:");
    if view.pending_syncs.is_empty() {
        out.push_str(" none\n");
        return out;
    }
    out.push('\n');
    let mut syncs = vec![
        [
            "TARGET",
            "STATUS",
            "ATTEMPTS",
            "RETRIES",
            "UPDATED",
            "LAST ERROR",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for s in &view.pending_syncs {
        syncs.push(vec![
            s.target.clone(),
            ledger_read_models::status_text(s.status).to_string(),
            s.attempts.to_string(),
            s.retry_count.to_string(),
            time(s.updated_at),
            s.last_error.clone().unwrap_or_else(|| "-".to_string()),
        ]);
    }
    out.push_str(&columns(&syncs));
    out
}

/// `ledger audit timeline` as a table.
fn timeline_table(timeline: &Timeline) -> String {
    let mut rows = vec![
        [
            "RECORDED",
            "SEQ",
            "PHASE AFTER",
            "ACTOR",
            "CORRELATION",
            "WHAT",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for e in &timeline.entries {
        let mut actor = e.actor.clone().unwrap_or_else(|| "-".to_string());
        if let Some(token) = &e.token {
            let _ = write!(actor, " (token {token})");
        }
        if let Some(user) = &e.on_behalf_of {
            let _ = write!(actor, " for {user}");
        }
        rows.push(vec![
            time(e.recorded_at),
            e.seq.to_string(),
            e.phase.to_string(),
            actor,
            e.correlation_id.clone().unwrap_or_else(|| "-".to_string()),
            e.summary.clone(),
        ]);
    }
    columns(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_leave_the_last_unpadded() {
        let rows = vec![
            vec!["A".to_string(), "BB".into(), "C".into()],
            vec!["aaa".into(), "b".into(), "c c".into()],
        ];
        assert_eq!(columns(&rows), "A    BB  C\naaa  b   c c\n");
        assert_eq!(columns(&[]), "");
    }

    #[test]
    fn tenant_ids_are_uuids() {
        assert!(tenant("0190aaaa-0000-7000-8000-000000000001").is_ok());
        let e = tenant("acme").unwrap_err();
        assert_eq!(e.exit_code(), crate::output::EXIT_BAD_INPUT);
    }
}
