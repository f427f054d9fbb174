//! Generated onboarding histories, for tests and `ledger bench rebuild`: every event is decided
//! by the domain against the tenant's folded state, so the histories are valid ones.

use chrono::{DateTime, Duration, Utc};
use ledger_core::{ExpectedSeq, NewEvent, Seq, StreamName};
use ledger_domain::{
    Command, Phase, Policy, SlugClaimed, Stage, TenantEvent, TenantState, decide, evolve,
};
use uuid::Uuid;

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

/// The id of tenant `i` of the history `run`.
pub fn tenant_id(run: u64, i: usize) -> Uuid {
    Uuid::from_u128((u128::from(run) << 64) | i as u128)
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
        let stream = StreamName::from_parts("tenant", &id.to_string()).expect("a valid stream");
        let (state, seq) = states[i].get_or_insert_with(|| (TenantState::default(), 0));
        let cmd = if *seq == 0 {
            let slug = format!("t{run:x}-{i}");
            let claim = serde_json::to_value(SlugClaimed {
                tenant_id: id.to_string(),
            })
            .expect("claims serialize");
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

/// An onboarding event as an event to append.
pub fn to_new_event(event: &TenantEvent) -> NewEvent {
    let (ty, data) = event.to_parts();
    NewEvent::new(ty, data)
}

/// The benchmark's tenant: ten events from registration to completion, with a lock and a
/// failed then retried and succeeded downstream sync, starting at `at`.
pub fn bench_tenant(at: DateTime<Utc>, i: usize) -> Vec<NewEvent> {
    let s = |n: i64| at + Duration::seconds(n);
    let holder = format!("worker-{}", i % 8);
    let events = [
        TenantEvent::TenantRegistered {
            slug: format!("bench-{i}"),
            name: format!("Bench tenant {i}"),
            at: s(0),
        },
        TenantEvent::OnboardingLockAcquired {
            holder: holder.clone(),
            at: s(1),
            expires_at: s(61),
        },
        TenantEvent::PaymentVerified {
            checkout_session_id: format!("cs_live_{i:012}"),
            at: s(2),
        },
        TenantEvent::OrganizationCreated { at: s(3) },
        TenantEvent::BackendSyncFailed {
            target: "crm".into(),
            attempts: 1,
            last_error: "crm timed out after 30s".into(),
            at: s(4),
        },
        TenantEvent::WorkspaceProvisioned { at: s(5) },
        TenantEvent::ApiKeyIssued {
            fingerprint: format!("fp_{i:016x}"),
            reveal_expires_at: s(6 + 7200),
            at: s(6),
        },
        TenantEvent::BackendSyncRetried {
            target: "crm".into(),
            at: s(7),
        },
        TenantEvent::OnboardingCompleted { at: s(8) },
        TenantEvent::OnboardingLockReleased {
            holder,
            reason: "completed".into(),
            at: s(9),
        },
    ];
    events.iter().map(to_new_event).collect()
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
        assert!(types(&a).iter().any(|t| t == "OnboardingCompleted"));
        assert!(types(&a).iter().any(|t| t == "BackendSyncRetried"));
        assert_eq!(bench_tenant(start, 3).len(), 10);
    }
}
