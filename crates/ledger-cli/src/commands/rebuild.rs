//! `ledger rebuild <name|all>`: replays the whole log into fresh shadow tables while the live
//! tables keep serving, then swaps them in; resumes an interrupted rebuild. With `--verify`,
//! rebuilds up to the live checkpoint and prints a row-level diff instead (exit 1 on any
//! difference).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ledger_projector::{Progress, ProjectionError, ProjectorOptions};
use serde::Serialize;

use crate::args::RebuildArgs;
use crate::database::Target;
use crate::output::{CliError, JsonLines, print_json};
use crate::units;

/// The read models a `<name|all>` argument names.
pub fn names(name: &str) -> Result<Vec<&'static str>, CliError> {
    let catalog = ledger_read_models::catalog();
    if name == "all" {
        return Ok(catalog.names());
    }
    catalog
        .get(name)
        .map(|m| vec![m.schema().name])
        .map_err(|e| CliError::bad_input("unknown_projection", format!("{e}, or all")))
}

/// Rebuilds (or verifies) the named read models.
pub async fn run(target: &Target, args: RebuildArgs) -> Result<(), CliError> {
    let names = names(&args.projection)?;
    let db = super::open_existing(target).await?;
    let projector = db.projector(ProjectorOptions {
        rebuild_batch_size: args.batch_size as usize,
        ..ProjectorOptions::default()
    });
    let mut meter = Meter::new();
    if args.verify {
        let mut out = JsonLines::stdout();
        let mut differing = Vec::new();
        for name in names {
            let report = projector
                .verify(name, &mut |p| meter.show(p))
                .await
                .map_err(projection_error)?;
            meter.finish();
            if !report.is_clean() {
                differing.push(name);
            }
            out.write(&report)?;
        }
        out.finish()?;
        if differing.is_empty() {
            return Ok(());
        }
        return Err(CliError::Failed {
            code: "projection_differs",
            message: format!(
                "the live tables of {} differ from a fresh rebuild (see the diff on stdout); `ledger rebuild` replaces them",
                differing.join(", ")
            ),
        });
    }
    let report = projector
        .rebuild(&names, &mut |p| meter.show(p))
        .await
        .map_err(projection_error)?;
    meter.finish();
    print_json(&Rebuilt {
        rebuilt: report.projections.clone(),
        events: report.events,
        resumed_from: report.resumed_from,
        seconds: units::seconds(report.elapsed),
        events_per_s: units::whole(rate(report.events, report.elapsed)),
    })
}

/// What `ledger rebuild` prints (seconds to the millisecond, the rate a whole number).
#[derive(Serialize)]
struct Rebuilt {
    rebuilt: Vec<&'static str>,
    events: u64,
    resumed_from: u64,
    seconds: f64,
    events_per_s: u64,
}

/// Events per second.
pub fn rate(events: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        events as f64 / secs
    } else {
        0.0
    }
}

/// A projection failure as a CLI error.
pub fn projection_error(e: ProjectionError) -> CliError {
    match e {
        ProjectionError::Store(s) => CliError::Store(s),
        other => CliError::Failed {
            code: other.code(),
            message: other.to_string(),
        },
    }
}

/// Shows rebuild progress: an indicatif bar when stdout is a terminal, otherwise a plain line
/// on stderr at most every second (and when a pass ends).
pub struct Meter {
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Option<Instant>,
    last: Option<Progress>,
}

impl Default for Meter {
    fn default() -> Self {
        Self::new()
    }
}

impl Meter {
    /// A meter for stdout as it is.
    pub fn new() -> Self {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stdout());
            let style = ProgressStyle::with_template(
                "{msg} {bar:40} {human_pos}/{human_len} events ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            last_line: None,
            last: None,
        }
    }

    /// Shows one progress report.
    pub fn show(&mut self, p: &Progress) {
        // A new pass (read models that read other events): the last one's final line first.
        if let Some(last) = self.last.take_if(|l| l.projections != p.projections)
            && self.bar.is_none()
        {
            self.line(&last.projections.join(","), &last);
            self.started = Instant::now();
            self.last_line = None;
        }
        let names = &p.projections;
        let names = names.join(",");
        match &self.bar {
            Some(bar) => {
                bar.set_message(names);
                bar.set_length(p.total);
                bar.set_position(p.done);
            }
            None => {
                let due = self
                    .last_line
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
                if due {
                    self.line(&names, p);
                    self.last_line = Some(Instant::now());
                }
            }
        }
        self.last = Some(p.clone());
    }

    fn line(&self, names: &str, p: &Progress) {
        let elapsed = self.started.elapsed();
        let speed = rate(p.done, elapsed);
        let left = p.total.saturating_sub(p.done);
        let eta = if speed > 0.0 {
            format!("{:.0}s", left as f64 / speed)
        } else {
            "-".to_string()
        };
        let percent = if p.total > 0 {
            p.done as f64 * 100.0 / p.total as f64
        } else {
            100.0
        };
        eprintln!(
            "rebuild {names}: {}/{} events ({percent:.0}%), {}, eta {eta}",
            units::thousands(p.done),
            units::thousands(p.total),
            units::rate(speed)
        );
    }

    /// Ends the current pass: clears the bar, or prints the final line.
    pub fn finish(&mut self) {
        match self.bar.take() {
            Some(bar) => bar.finish_and_clear(),
            None => {
                if let Some(p) = self.last.take() {
                    let names = &p.projections;
                    self.line(&names.join(","), &p);
                }
            }
        }
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_select_projections() {
        assert_eq!(names("all").unwrap(), ledger_read_models::catalog().names());
        assert_eq!(names("pending_syncs").unwrap(), ["pending_syncs"]);
        let err = names("events").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(rate(10, Duration::from_secs(2)), 5.0);
    }
}
