//! Property: onboarding histories over many tenants, applied in random batch splits (batch by
//! batch onto the tables, and as a replay from empty tables that inserts the keys it never saw
//! without loading them), give the same rows as applying the whole log in one batch, which are
//! the reference rows computed from the domain's own fold, for every read model.
//!
//! Two kinds of histories: valid ones, every event decided by the domain
//! ([`crate::testing::history`]), and arbitrary ones, any event in any order at any time,
//! which the domain's `evolve` accepts too (history is the truth) and so must the read models.

use chrono::{DateTime, Duration, TimeZone, Utc};
use ledger_core::Position;
use ledger_domain::{Phase, Stage, TenantEvent};
use ledger_projector::{Batch, Plan, ReadModel, Seen, Tables, fold};
use proptest::prelude::*;

use crate::testing::{Step, history, raw_log, reference};
use crate::{Change, Decoder};

/// The log as the engine sees it: each event's position and, for an onboarding event, its
/// decoded change.
type Log = Vec<(Position, Option<Change>)>;

/// 23:00 UTC: a generated history crosses midnight.
fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 20, 23, 0, 0).unwrap()
}

/// The decided history of `steps` over `tenants` tenants (slug claims included, which no read
/// model reads), decoded from its payload text as the engine does.
fn decided_log(steps: &[Step], tenants: usize) -> Log {
    use ledger_projector::Decode;
    raw_log(&history(1, tenants, steps, start()))
        .into_iter()
        .map(|raw| (raw.position, Decoder.decode(raw).and_then(|l| l.change)))
        .collect()
}

/// An arbitrary event: `kind` picks the variant, `arg` its details.
fn arbitrary_event(kind: u8, arg: u8, at: DateTime<Utc>) -> TenantEvent {
    let holder = format!("tab-{}", arg % 2);
    let target = ["crm", "billing"][usize::from(arg % 2)].to_string();
    match kind % 15 {
        0 => TenantEvent::TenantRegistered {
            slug: format!("s{}", arg % 3),
            name: format!("Tenant {arg}"),
            at,
        },
        1 => TenantEvent::PaymentVerified {
            checkout_session_id: format!("cs_{arg}"),
            at,
        },
        2 => TenantEvent::OnboardingLockAcquired {
            holder,
            at,
            expires_at: at + Duration::seconds(i64::from(arg % 90)),
        },
        3 => TenantEvent::OnboardingLockReleased {
            holder,
            reason: format!("r{arg}"),
            at,
        },
        4 => TenantEvent::OrganizationCreated { at },
        5 => TenantEvent::WorkspaceProvisioned { at },
        6 => TenantEvent::ApiKeyIssued {
            fingerprint: format!("fp_{arg}"),
            reveal_expires_at: at + Duration::hours(2),
            at,
        },
        7 => TenantEvent::OnboardingStepFailed {
            stage: Stage::ALL[usize::from(arg) % 5],
            code: format!("e{arg}"),
            at,
        },
        8 => TenantEvent::BackendSyncFailed {
            target,
            attempts: u32::from(arg % 4),
            last_error: format!("timeout {arg}"),
            at,
        },
        9 => TenantEvent::BackendSyncRetried { target, at },
        10 => TenantEvent::BackendSynced { target, at },
        11 => TenantEvent::BackendSyncAbandoned {
            target,
            reason: format!("gave up {arg}"),
            at,
        },
        12 => TenantEvent::OnboardingPhaseBackfilled {
            phase: Phase::ALL[usize::from(arg) % 6],
            at,
        },
        13 => TenantEvent::OnboardingCompleted { at },
        _ => TenantEvent::TenantErased { at },
    }
}

/// One arbitrary event of the log: for tenant `tenant` (none: an event of another stream),
/// `advance` microseconds after the previous one (or before it: clocks disagree).
#[derive(Clone, Copy, Debug)]
struct Arbitrary {
    tenant: Option<u8>,
    kind: u8,
    arg: u8,
    advance: i64,
}

fn arbitrary_log(events: &[Arbitrary]) -> Log {
    let mut at = start();
    let mut seqs = [0u64; 4];
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            at += Duration::microseconds(e.advance);
            let change = e.tenant.map(|t| {
                let t = usize::from(t) % seqs.len();
                seqs[t] += 1;
                Change {
                    tenant_id: format!("t{t}"),
                    seq: seqs[t],
                    event: arbitrary_event(e.kind, e.arg, at),
                }
            });
            (Position(i as u64 + 1), change)
        })
        .collect()
}

/// The log cut into consecutive batches of the sizes `splits` cycles through.
fn batches(log: &Log, splits: &[usize]) -> Vec<Batch<Change>> {
    let mut out = Vec::new();
    let mut rest = log.as_slice();
    let mut sizes = splits.iter().cycle();
    while !rest.is_empty() {
        let n = sizes.next().copied().unwrap_or(1).clamp(1, rest.len());
        out.push(rest[..n].iter().cloned().collect());
        rest = &rest[n..];
    }
    out
}

/// A replay into empty tables: keys never seen before are inserted without loading, and must
/// indeed be new.
fn replay(model: &dyn ReadModel<Change>, batches: &[Batch<Change>]) -> Tables {
    let schema = model.schema();
    let mut tables = Tables::new(schema);
    let mut seen = Seen::new();
    for batch in batches {
        let plan = Plan::of(model, batch, Some(&mut seen));
        let loaded = schema
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| tables.load(t, &plan.to_load(i)))
            .collect();
        let writes = fold(model, plan, loaded, batch).unwrap();
        for w in &writes {
            for row in &w.inserts {
                let key = w.table.key_of(row);
                assert!(
                    tables.load(w.table, std::slice::from_ref(&key)).is_empty(),
                    "{}: {key:?} inserted twice",
                    w.table.name
                );
            }
        }
        tables.write(writes);
    }
    tables
}

/// Checks every read model on `log` split by `splits`.
fn check(log: &Log, splits: &[usize]) -> Result<(), TestCaseError> {
    let changes: Vec<Change> = log.iter().filter_map(|(_, c)| c.clone()).collect();
    let want = reference(&changes);
    let split = batches(log, splits);
    let whole: Batch<Change> = log.iter().cloned().collect();
    for model in crate::onboarding() {
        let model = &*model;
        let schema = model.schema();
        let mut incremental = Tables::new(schema);
        for batch in &split {
            incremental.apply(model, batch).unwrap();
        }
        let replayed = replay(model, &split);
        let mut at_once = Tables::new(schema);
        at_once.apply(model, &whole).unwrap();
        for table in schema.tables {
            let name = table.name;
            prop_assert_eq!(
                incremental.rows(table),
                at_once.rows(table),
                "{} split",
                name
            );
            prop_assert_eq!(
                replayed.rows(table),
                at_once.rows(table),
                "{} replayed",
                name
            );
            prop_assert_eq!(
                &at_once.rows(table),
                &want[name],
                "{} vs the reference",
                name
            );
        }
    }
    Ok(())
}

fn step() -> impl Strategy<Value = Step> {
    (0usize..8, any::<u8>(), any::<u8>(), 0u16..120).prop_map(|(tenant, command, arg, advance)| {
        Step {
            tenant,
            command,
            arg,
            advance,
        }
    })
}

fn arbitrary() -> impl Strategy<Value = Arbitrary> {
    let second = 1_000_000i64;
    let advance = prop_oneof![
        0..120 * second,
        0..4 * 3600 * second,
        -600 * second..0,
        0..10 * 86_400 * second,
    ];
    (
        prop::option::weighted(0.9, any::<u8>()),
        any::<u8>(),
        any::<u8>(),
        advance,
    )
        .prop_map(|(tenant, kind, arg, advance)| Arbitrary {
            tenant,
            kind,
            arg,
            advance,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn incremental_equals_rebuilt_equals_fold(
        tenants in 1usize..8,
        steps in prop::collection::vec(step(), 0..160),
        splits in prop::collection::vec(1usize..25, 1..40),
    ) {
        check(&decided_log(&steps, tenants), &splits)?;
    }

    #[test]
    fn arbitrary_histories_follow_the_domain_too(
        events in prop::collection::vec(arbitrary(), 0..120),
        splits in prop::collection::vec(1usize..25, 1..40),
    ) {
        check(&arbitrary_log(&events), &splits)?;
    }
}

#[test]
fn a_long_decided_history_in_many_splits() {
    let steps = crate::testing::random_steps(5, 30, 3000);
    let log = decided_log(&steps, 30);
    let funnel_events = log
        .iter()
        .filter_map(|(_, c)| c.as_ref())
        .filter(|c| matches!(c.event, TenantEvent::OnboardingCompleted { .. }))
        .count();
    assert!(funnel_events > 5, "{funnel_events} completions");
    for splits in [&[1][..], &[7, 3, 50], &[1000]] {
        check(&log, splits).unwrap();
    }
}
