//! The onboarding funnel (`/ui/funnel`): per UTC day, registrations, first arrivals in each
//! phase and completions, as a bar chart drawn on the server (inline SVG) and as a table with
//! the same numbers.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use ledger_read_models::{COUNT_LABELS, FUNNEL_STEPS, FunnelDay};
use maud::{Markup, html};
use serde::Deserialize;

use super::{given, with_query};
use crate::console::page::page as shell;
use crate::console::{ConsoleError, Session};
use crate::error::ApiError;
use crate::input::ApiQuery;
use crate::routes::queries::{FunnelQuery, funnel};
use crate::state::AppState;

/// `GET /ui/funnel` parameters.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct FunnelParams {
    /// The first day, `YYYY-MM-DD` (empty: the first day with events).
    from: Option<String>,
    /// The last day, included (empty: the last day with events).
    to: Option<String>,
    /// The next page's cursor.
    cursor: Option<String>,
}

/// `GET /ui/funnel`: the funnel between two days, as the API's `GET /v1/funnel` answers this
/// session (403 for a tenant).
pub(crate) async fn page(
    session: Session,
    State(state): State<AppState>,
    params: Result<ApiQuery<FunnelParams>, ApiError>,
) -> Result<Response, ConsoleError> {
    let ApiQuery(params) = params?;
    let (from, to, cursor) = (given(params.from), given(params.to), given(params.cursor));
    let days = funnel(
        session.caller.clone(),
        State(state),
        ApiQuery(FunnelQuery {
            from: from.clone(),
            to: to.clone(),
            limit: None,
            cursor: cursor.clone(),
            min_position: None,
            as_of: None,
        }),
    )
    .await?
    .0;
    let (from, to) = (from.unwrap_or_default(), to.unwrap_or_default());
    let body = html! {
        h1 { "Onboarding funnel" }
        p class="muted" {
            "Per UTC day of event time: tenants registered, tenants reaching each phase for the first time, and onboardings completed for the first time. Backfills never count as progress."
        }
        form class="filters" method="get" action="/ui/funnel" {
            div {
                label for="from" { "From" }
                input id="from" name="from" type="date" value=(from);
            }
            div {
                label for="to" { "To (included)" }
                input id="to" name="to" type="date" value=(to);
            }
            div { button type="submit" { "Show" } }
        }
        figure class="funnel-figure" {
            div class="chart-scroll" { (chart(&days.items)) }
            (legend())
        }
        (table(&days.items))
        nav class="pager" aria-label="Pages" {
            @if cursor.is_some() {
                a href=(with_query("/ui/funnel", &[("from", &from), ("to", &to)])) { "First days" }
                " "
            }
            @if let Some(next) = &days.next_cursor {
                a rel="next" href=(with_query("/ui/funnel", &[("from", &from), ("to", &to), ("cursor", next)])) { "Next days" }
            }
        }
    };
    Ok(shell("Funnel", Some(&session), body).into_response())
}

/// One bar series of the chart: one of the funnel's steps.
struct Series {
    /// Its `data-series` name (the funnel's column).
    key: &'static str,
    /// Its name as a person reads it.
    label: &'static str,
    /// Its fill colour.
    color: &'static str,
    /// Its place among a day's counts.
    index: usize,
}

impl Series {
    /// Its value on a day.
    fn value(&self, day: &FunnelDay) -> u64 {
        day.counts()[self.index]
    }
}

/// The fill colour of each step's bars.
const COLORS: [&str; FUNNEL_STEPS] = [
    "#2651c8", "#5b8def", "#0f8a87", "#9a6700", "#8250df", "#1a7f37",
];

/// The bars drawn for each day, in order: the funnel's steps.
fn series() -> Vec<Series> {
    FunnelDay::count_columns()
        .zip(COUNT_LABELS)
        .zip(COLORS)
        .enumerate()
        .map(|(index, ((key, label), color))| Series {
            key,
            label,
            color,
            index,
        })
        .collect()
}

/// The chart's width in its own units (the viewBox; it scales to its box).
const WIDTH: f64 = 800.0;
/// Its width for a day or two, so a narrow screen shows them legibly.
const NARROW_WIDTH: f64 = 420.0;
/// Most days drawn in the narrow chart.
const NARROW_DAYS: usize = 2;
/// Its height.
const HEIGHT: f64 = 320.0;
/// Room left of the plot, for the counts.
const LEFT: f64 = 52.0;
/// Room right of the plot.
const RIGHT: f64 = 12.0;
/// Room above the plot.
const TOP: f64 = 16.0;
/// Room below the plot, for the days.
const BOTTOM: f64 = 76.0;
/// Widest bar.
const MAX_BAR: f64 = 24.0;
/// Most day labels written under the plot (every k-th day is labelled past it).
const MAX_LABELS: usize = 16;

/// The plot's height.
const PLOT_HEIGHT: f64 = HEIGHT - TOP - BOTTOM;
/// The chart's width for `days` days.
fn width(days: usize) -> f64 {
    if days <= NARROW_DAYS {
        NARROW_WIDTH
    } else {
        WIDTH
    }
}

/// The plot's width for `days` days.
fn plot_width(days: usize) -> f64 {
    width(days) - LEFT - RIGHT
}

/// The y of a zero count.
const BASELINE: f64 = TOP + PLOT_HEIGHT;

/// One bar, placed.
#[derive(Debug, Clone, PartialEq)]
struct Bar {
    /// The day's index.
    day: usize,
    /// The series' index in [`series`].
    series: usize,
    /// The count.
    value: u64,
    /// Left edge.
    x: f64,
    /// Top edge.
    y: f64,
    /// Width.
    width: f64,
    /// Height (0 for a zero count).
    height: f64,
}

/// The top of the count axis and the step between its ticks: `max` rounded up to a multiple of
/// a step of 1, 2 or 5 times a power of ten giving at most four steps.
fn scale(max: u64) -> (u64, u64) {
    let raw = max.div_ceil(4).max(1);
    let mut magnitude = 1u64;
    while magnitude.saturating_mul(10) <= raw {
        magnitude *= 10;
    }
    let step = [1, 2, 5, 10]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(raw);
    (step * max.div_ceil(step).max(1), step)
}

/// Every bar of `days`, scaled so the top of the axis ([`scale`] of the largest count) is the
/// plot's full height.
fn bars(days: &[FunnelDay]) -> Vec<Bar> {
    if days.is_empty() {
        return Vec::new();
    }
    let max = days
        .iter()
        .flat_map(|d| series().into_iter().map(move |s| s.value(d)))
        .max()
        .unwrap_or(0);
    let (top, _) = scale(max);
    let group = plot_width(days.len()) / days.len() as f64;
    let width = (group * 0.8 / FUNNEL_STEPS as f64).min(MAX_BAR);
    let inner = width * FUNNEL_STEPS as f64;
    let mut out = Vec::with_capacity(days.len() * FUNNEL_STEPS);
    for (i, day) in days.iter().enumerate() {
        let left = LEFT + group * i as f64 + (group - inner) / 2.0;
        for (j, series) in series().iter().enumerate() {
            let value = series.value(day);
            let height = PLOT_HEIGHT * value as f64 / top as f64;
            out.push(Bar {
                day: i,
                series: j,
                value,
                x: left + width * j as f64,
                y: BASELINE - height,
                width,
                height,
            });
        }
    }
    out
}

/// A coordinate as the SVG gets it.
fn n(v: f64) -> String {
    format!("{v:.2}")
}

/// The funnel's days as an inline SVG bar chart (`svg#funnel-chart.chart`): per day a bar for
/// registrations, each phase reached and completions, the counts on the left, the days below.
/// It scales to its box through its viewBox; the table beside it has the same numbers.
pub(crate) fn chart(days: &[FunnelDay]) -> Markup {
    let label = match (days.first(), days.last()) {
        (Some(first), Some(last)) => format!(
            "Onboarding funnel bar chart, {} day{} from {} to {}: per day, a bar for each step of the funnel, from registration to completion. The table below has the numbers.",
            days.len(),
            if days.len() == 1 { "" } else { "s" },
            first.day,
            last.day
        ),
        _ => "Onboarding funnel bar chart: no onboarding events in this range.".to_string(),
    };
    let max = days
        .iter()
        .flat_map(|d| series().into_iter().map(move |s| s.value(d)))
        .max()
        .unwrap_or(0);
    let (top, step) = scale(max);
    let ticks: Vec<u64> = (0..=top / step).map(|k| k * step).collect();
    let (full, plot) = (width(days.len()), plot_width(days.len()));
    let group = plot / days.len().max(1) as f64;
    let class = if days.len() <= NARROW_DAYS {
        "chart narrow"
    } else {
        "chart wide"
    };
    let every = days.len().div_ceil(MAX_LABELS).max(1);
    html! {
        svg id="funnel-chart" class=(class) role="img" aria-label=(label)
            viewBox={ "0 0 " (full) " " (HEIGHT) } preserveAspectRatio="xMidYMid meet"
            xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="12" {
            title { "Onboarding funnel per day" }
            g class="axis" fill="#5b6475" stroke="none" {
                @for t in &ticks {
                    @let y = BASELINE - PLOT_HEIGHT * *t as f64 / top as f64;
                    line x1=(n(LEFT)) x2=(n(full - RIGHT)) y1=(n(y)) y2=(n(y)) stroke="#d9dee7" stroke-width="1" {}
                    text x=(n(LEFT - 6.0)) y=(n(y + 4.0)) text-anchor="end" { (t) }
                }
                text x="14" y=(n(TOP + PLOT_HEIGHT / 2.0)) text-anchor="middle"
                    transform={ "rotate(-90 14 " (n(TOP + PLOT_HEIGHT / 2.0)) ")" } { "Tenants" }
                line x1=(n(LEFT)) x2=(n(LEFT)) y1=(n(TOP)) y2=(n(BASELINE)) stroke="#5b6475" stroke-width="1" {}
                line x1=(n(LEFT)) x2=(n(full - RIGHT)) y1=(n(BASELINE)) y2=(n(BASELINE)) stroke="#5b6475" stroke-width="1" {}
                @for (i, day) in days.iter().enumerate() {
                    @if i % every == 0 {
                        @let x = LEFT + group * (i as f64 + 0.5);
                        @let y = BASELINE + 14.0;
                        text class="day" x=(n(x)) y=(n(y)) text-anchor="end"
                            transform={ "rotate(-40 " (n(x)) " " (n(y)) ")" } { (day.day) }
                    }
                }
            }
            @if days.is_empty() {
                text class="empty" x=(n(LEFT + plot / 2.0)) y=(n(TOP + PLOT_HEIGHT / 2.0))
                    text-anchor="middle" fill="#5b6475" font-size="16" { "No onboarding events in this range" }
            }
            @let all = series();
            g class="bars" {
                @for bar in bars(days) {
                    @let series = &all[bar.series];
                    @let day = days[bar.day].day;
                    rect class="bar" data-series=(series.key) data-day=(day) data-value=(bar.value)
                        x=(n(bar.x)) y=(n(bar.y)) width=(n(bar.width)) height=(n(bar.height)) fill=(series.color) {
                        title { (day) " · " (series.label) ": " (bar.value) }
                    }
                }
            }
        }
    }
}

/// The chart's legend: a swatch and the name of each series.
fn legend() -> Markup {
    html! {
        figcaption {
            ul class="legend" {
                @for s in series() {
                    li data-series=(s.key) {
                        svg width="12" height="12" viewBox="0 0 12 12" aria-hidden="true" focusable="false" {
                            rect width="12" height="12" fill=(s.color) {}
                        }
                        (s.label)
                    }
                }
            }
        }
    }
}

/// The funnel's numbers (`table#funnel`), a row per day.
pub(crate) fn table(days: &[FunnelDay]) -> Markup {
    html! {
        div class="table-wrap" role="region" aria-label="Funnel numbers" tabindex="0" {
            table id="funnel" {
                caption class="muted" { "The onboarding funnel per UTC day" }
                thead {
                    tr {
                        th scope="col" { "Day" }
                        @for label in COUNT_LABELS { th scope="col" { (label) } }
                    }
                }
                tbody {
                    @if days.is_empty() {
                        tr { td colspan=(COUNT_LABELS.len() + 1) class="muted" { "No onboarding events in this range." } }
                    }
                    @for d in days {
                        tr data-day=(d.day) {
                            th scope="row" { (d.day) }
                            @for (column, count) in FunnelDay::count_columns().zip(d.counts()) {
                                td data-series=(column) { (count) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The column of the funnel's first step.
    fn first_column() -> &'static str {
        FunnelDay::count_columns().next().unwrap()
    }

    fn day(d: u32, registered: u64, completed: u64) -> FunnelDay {
        use ledger_projector::{Record, Value};
        let counts = [
            registered,
            registered.min(completed + 1),
            completed,
            completed,
            completed,
            completed,
            0,
            completed,
            0,
            0,
            0,
        ];
        let day = Value::text(format!("2026-12-{d:02}"));
        FunnelDay::from_row(
            std::iter::once(day)
                .chain(counts.map(Value::uint))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn an_empty_funnel_draws_an_empty_labelled_chart() {
        assert!(bars(&[]).is_empty());
        let svg = chart(&[]).into_string();
        assert!(svg.starts_with(r#"<svg id="funnel-chart" class="chart narrow" role="img" aria-label="Onboarding funnel bar chart: no onboarding events"#));
        assert!(svg.contains("<title>Onboarding funnel per day</title>"));
        assert!(svg.contains("No onboarding events in this range"));
        assert!(!svg.contains("<rect"));
        assert!(svg.contains(r#"viewBox="0 0 420 320""#));
        assert!(table(&[]).into_string().contains("No onboarding events"));
    }

    #[test]
    fn one_day_draws_one_group_of_bars_with_its_date() {
        let days = [day(1, 3, 1)];
        let bars = bars(&days);
        assert_eq!(bars.len(), FUNNEL_STEPS);
        assert!(bars.iter().all(|b| b.width == MAX_BAR));
        let first = &bars[0];
        assert_eq!(first.value, 3);
        assert!(
            (first.height - PLOT_HEIGHT).abs() < 1e-9,
            "3 is the axis top"
        );
        assert!((first.y - TOP).abs() < 1e-9);
        // The group is centred in the plot.
        let left = bars[0].x;
        let right = bars[5].x + bars[5].width;
        assert!((left - LEFT - (LEFT + plot_width(1) - right)).abs() < 1e-9);
        let svg = chart(&days).into_string();
        assert!(svg.contains(
            r#"aria-label="Onboarding funnel bar chart, 1 day from 2026-12-01 to 2026-12-01"#
        ));
        assert!(svg.contains(">2026-12-01</text>"));
        assert!(svg.contains(&format!(
            r#"data-series="{FIRST}" data-day="2026-12-01" data-value="3""#,
            FIRST = first_column()
        )));
        assert!(svg.contains("<title>2026-12-01 · Completions: 1</title>"));
        assert_eq!(svg.matches("<rect").count(), FUNNEL_STEPS);
        let rows = table(&days).into_string();
        assert!(rows.contains(&format!(r#"<tr data-day="2026-12-01"><th scope="row">2026-12-01</th><td data-series="{FIRST}">3</td>"#, FIRST = first_column())));
    }

    #[test]
    fn bars_scale_to_the_largest_count() {
        let days = [day(1, 8, 2), day(2, 4, 0), day(3, 0, 0)];
        let bars = bars(&days);
        let height = |d: usize, s: usize| bars[d * FUNNEL_STEPS + s].height;
        assert!(
            (height(0, 0) - PLOT_HEIGHT).abs() < 1e-9,
            "the largest count fills the plot"
        );
        assert!((height(1, 0) - PLOT_HEIGHT / 2.0).abs() < 1e-9);
        assert!((height(0, 5) - PLOT_HEIGHT / 4.0).abs() < 1e-9);
        assert_eq!(height(2, 0), 0.0);
        assert!(
            bars.iter()
                .all(|b| (b.y + b.height - BASELINE).abs() < 1e-9)
        );
        assert!(
            bars.iter()
                .all(|b| b.x >= LEFT && b.x + b.width <= WIDTH - RIGHT + 1e-9)
        );
        // Groups go left to right, one per day.
        assert!(
            bars[0].x < bars[FUNNEL_STEPS].x && bars[FUNNEL_STEPS].x < bars[2 * FUNNEL_STEPS].x
        );
        // A count that is not a round number gets a round axis top above it.
        let odd = super::bars(&[day(1, 7, 0)]);
        assert!((odd[0].height - PLOT_HEIGHT * 7.0 / 8.0).abs() < 1e-9);
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(scale(0), (1, 1));
        assert_eq!(scale(1), (1, 1));
        assert_eq!(scale(4), (4, 1));
        assert_eq!(scale(7), (8, 2));
        assert_eq!(scale(10), (10, 5));
        assert_eq!(scale(100), (100, 50));
        assert_eq!(scale(1234), (1500, 500));
    }

    #[test]
    fn many_days_are_labelled_sparsely() {
        let days: Vec<FunnelDay> = (1..=31).map(|d| day(d, 1, 0)).collect();
        let svg = chart(&days).into_string();
        assert_eq!(svg.matches(r#"<text class="day""#).count(), 16);
        assert_eq!(svg.matches("<rect").count(), 31 * FUNNEL_STEPS);
        assert!(svg.contains(r#"class="chart wide""#));
        assert!(svg.contains(r#"viewBox="0 0 800 320""#));
    }
}
