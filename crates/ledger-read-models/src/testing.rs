//! For tests (cargo feature `testing`): random onboarding histories, every event decided by
//! the domain against the tenant's folded state, so the histories are valid ones; the log they
//! make; and the reference rows every read model must hold for a log, computed apart from the
//! read models, from the domain's own fold of each tenant's history.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use ledger_core::{ExpectedSeq, NewEvent, Position, RawEvent, Seq, StreamName};
use ledger_domain::{
    Command, Phase, Policy, SlugClaimed, Stage, TenantEvent, TenantState, decide, evolve,
};
use ledger_projector::{Record, Row};

pub use crate::bench::to_new_event;
use crate::change::{Change, TENANT_CATEGORY};
use crate::onboarding_funnel;
use crate::onboarding_locks::{self, LockRow};
use crate::pending_syncs::{self, PendingSyncRow};
use crate::tenant_phase::{self, TenantPhaseRow};

/// One append of a generated history.
#[derive(Clone, Debug, PartialEq)]
pub struct Append {
    /// The stream.
    pub stream: StreamName,
    /// The seq the stream is at before the append.
    pub expected: ExpectedSeq,
    /// The events.
    pub events: Vec<NewEvent>,
}

/// One generated step: a command for one tenant, a little later than the previous step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Which tenant (an index below the history's tenant count).
    pub tenant: usize,
    /// Which command (any number; taken modulo the number of commands).
    pub command: u8,
    /// The command's argument choice (holder, target, stage, phase).
    pub arg: u8,
    /// Seconds since the previous step.
    pub advance: u16,
}

/// A small deterministic random source (splitmix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `n` random steps over `tenants` tenants.
pub fn random_steps(seed: u64, tenants: usize, n: usize) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| Step {
            tenant: rng.below(tenants.max(1) as u64) as usize,
            command: rng.below(256) as u8,
            arg: rng.below(256) as u8,
            advance: rng.below(90) as u16,
        })
        .collect()
}

/// The id of tenant `i` of the history `run`: a UUID's text.
pub fn tenant_id(run: u64, i: usize) -> String {
    let hex = format!("{:032x}", (u128::from(run) << 64) | i as u128);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The command a step stands for.
fn command(step: &Step) -> Command {
    let holder = |a: u8| format!("tab-{}", a % 2);
    let maybe_holder = |a: u8| (!a.is_multiple_of(3)).then(|| holder(a));
    let target = |a: u8| ["crm", "billing"][usize::from(a % 2)].to_string();
    let a = step.arg;
    match step.command % 14 {
        0 => Command::VerifyPayment {
            checkout_session_id: format!("cs_{a}"),
            holder: maybe_holder(a),
        },
        1 => Command::AcquireLock { holder: holder(a) },
        2 => Command::ReleaseLock {
            holder: holder(a),
            reason: None,
        },
        3 => Command::CreateOrganization {
            holder: maybe_holder(a),
        },
        4 => Command::ProvisionWorkspace {
            holder: maybe_holder(a),
        },
        5 => Command::IssueApiKey {
            fingerprint: format!("fp_{a}"),
            holder: maybe_holder(a),
        },
        6 => Command::CompleteOnboarding {
            holder: maybe_holder(a),
        },
        7 => Command::RecordStepFailure {
            stage: Stage::ALL[usize::from(a) % 5],
            code: format!("e{a}"),
            holder: maybe_holder(a),
        },
        8 | 13 => Command::RecordSyncFailure {
            target: target(a),
            last_error: format!("timeout {a}"),
        },
        9 => Command::RecordSyncRetry { target: target(a) },
        10 => Command::RecordSyncSuccess { target: target(a) },
        11 => Command::AbandonSync {
            target: target(a),
            reason: format!("gave up {a}"),
        },
        _ => Command::BackfillPhase {
            phase: Phase::ALL[usize::from(a) % 6],
        },
    }
}

/// The history `steps` make for `tenants` tenants of run `run`, starting at `start`: each
/// tenant is registered (with its slug claim) at its first step, then every step's command is
/// decided against the tenant's state; refused commands and commands with nothing to append
/// are left out.
pub fn history(run: u64, tenants: usize, steps: &[Step], start: DateTime<Utc>) -> Vec<Append> {
    let policy = Policy::default();
    let mut states: Vec<Option<(TenantState, u64)>> = vec![None; tenants];
    let mut now = start;
    let mut out = Vec::new();
    for step in steps {
        now += Duration::seconds(i64::from(step.advance)) + Duration::microseconds(137);
        let i = step.tenant % tenants.max(1);
        let id = tenant_id(run, i);
        let stream = StreamName::from_parts(TENANT_CATEGORY, &id).expect("a valid stream");
        let (state, seq) = states[i].get_or_insert_with(|| (TenantState::default(), 0));
        let cmd = if *seq == 0 {
            let slug = format!("t{run:x}-{i}");
            let claim =
                serde_json::to_value(SlugClaimed { tenant_id: id }).expect("claims serialize");
            out.push(Append {
                stream: StreamName::from_parts("slug", &slug).expect("a valid stream"),
                expected: ExpectedSeq::NoStream,
                events: vec![NewEvent::new(SlugClaimed::TYPE, claim)],
            });
            Command::RegisterTenant {
                name: format!("Tenant {i}"),
                slug,
            }
        } else {
            command(step)
        };
        let Ok(decision) = decide(&cmd, state, now, &policy) else {
            continue;
        };
        if decision.events.is_empty() {
            continue;
        }
        let expected = if *seq == 0 {
            ExpectedSeq::NoStream
        } else {
            ExpectedSeq::Exact(Seq(*seq))
        };
        let events = decision.events.iter().map(to_new_event).collect();
        for e in &decision.events {
            *state = evolve(std::mem::take(state), e);
        }
        *seq += decision.events.len() as u64;
        out.push(Append {
            stream,
            expected,
            events,
        });
    }
    out
}

/// The log `appends` make, as a log reader returns it: consecutive positions from 1, each
/// event at its seq in its stream, its payload JSON text.
pub fn raw_log(appends: &[Append]) -> Vec<RawEvent> {
    let mut heads: BTreeMap<&str, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for append in appends {
        let head = heads.entry(append.stream.as_str()).or_insert(0);
        for e in &append.events {
            *head += 1;
            out.push(RawEvent {
                position: Position(out.len() as u64 + 1),
                stream: append.stream.as_str().to_string(),
                seq: Seq(*head),
                event_type: e.event_type.clone(),
                data: e.data.to_string(),
                metadata: e.metadata.to_string(),
                recorded_at: chrono::DateTime::UNIX_EPOCH
                    + chrono::Duration::seconds(out.len() as i64 + 1),
            });
        }
    }
    out
}

/// The rows every table of the four read models must hold after the whole log whose
/// onboarding events are `changes` (in log order), by table name, each table's rows in key
/// order. Computed from each tenant's history by the domain's fold (and, for the funnel, from
/// each history step by step with the domain's `evolve`), never by the read models' `apply`.
pub fn reference(changes: &[Change]) -> BTreeMap<&'static str, Vec<Row>> {
    let mut histories: BTreeMap<&str, Vec<&Change>> = BTreeMap::new();
    for c in changes {
        histories.entry(c.tenant_id.as_str()).or_default().push(c);
    }
    let mut phases = Vec::new();
    let mut locks = Vec::new();
    let mut syncs = Vec::new();
    let mut events: Vec<(&str, Vec<TenantEvent>)> = Vec::new();
    for (tenant, history) in &histories {
        let Some(last) = history.last() else {
            continue;
        };
        let state = ledger_domain::fold(history.iter().map(|c| &c.event));
        phases.push(TenantPhaseRow::from_state(
            tenant,
            &state,
            last.seq,
            last.event.at(),
        ));
        locks.extend(LockRow::from_state(tenant, &state));
        syncs.extend(PendingSyncRow::from_state(tenant, &state));
        events.push((tenant, history.iter().map(|c| c.event.clone()).collect()));
    }
    let (days, tenants) =
        onboarding_funnel::reference(events.iter().map(|(t, e)| (*t, e.as_slice())));
    BTreeMap::from([
        (tenant_phase::TABLE.name, rows(phases)),
        (onboarding_locks::TABLE.name, rows(locks)),
        (pending_syncs::TABLE.name, rows(syncs)),
        (onboarding_funnel::DAYS.name, rows(days)),
        (onboarding_funnel::TENANTS.name, rows(tenants)),
    ])
}

/// Typed rows as the tables hold them.
fn rows<R: Record>(rows: Vec<R>) -> Vec<Row> {
    rows.into_iter().map(Record::into_row).collect()
}

/// The rows `audit_trail` must hold after the whole log `envelopes` (every stream), in key
/// order: one per event.
pub fn trail_reference(envelopes: &[ledger_core::Envelope]) -> Vec<Row> {
    use ledger_projector::Decode;
    let mut rows: Vec<Row> = envelopes
        .iter()
        .filter_map(|e| crate::Decoder.decode(RawEvent::of(e)))
        .map(|logged| crate::TrailRow::of(&logged.entry).into_row())
        .collect();
    rows.sort();
    rows
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn histories_are_deterministic_and_decided() {
        let start = Utc.with_ymd_and_hms(2026, 1, 20, 9, 0, 0).unwrap();
        let steps = random_steps(7, 5, 300);
        let a = history(1, 5, &steps, start);
        let b = history(1, 5, &steps, start);
        let types = |h: &[Append]| -> Vec<String> {
            h.iter()
                .flat_map(|a| a.events.iter().map(|e| e.event_type.clone()))
                .collect()
        };
        assert_eq!(types(&a), types(&b));
        for ty in [
            "OnboardingCompleted",
            "BackendSyncRetried",
            "OnboardingPhaseBackfilled",
        ] {
            assert!(types(&a).iter().any(|t| t == ty), "{ty}");
        }
        let log = raw_log(&a);
        assert_eq!(log.len(), types(&a).len());
        assert!(
            log.iter()
                .enumerate()
                .all(|(i, e)| e.position == Position(i as u64 + 1))
        );
        let first = log
            .iter()
            .find(|e| e.stream.starts_with("tenant-"))
            .unwrap();
        assert_eq!(first.seq, Seq(1));
        assert_eq!(tenant_id(1, 2), "00000000-0000-0001-0000-000000000002");
        assert!(StreamName::from_parts(TENANT_CATEGORY, &tenant_id(u64::MAX, 7)).is_ok());
    }
}
