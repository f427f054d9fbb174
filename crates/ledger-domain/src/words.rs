//! Events in words, for a person reading a tenant's timeline.
//!
//! One sentence per event, from the event and the state just before it (so a renewal reads as
//! a renewal). Times are UTC, written as the time of day when they fall on the event's day.

use chrono::{DateTime, Utc};

use crate::{Phase, Stage, TenantEvent, TenantState};

/// What `event` did to a tenant that was in `before`, in one sentence.
pub fn describe(event: &TenantEvent, before: &TenantState) -> String {
    match event {
        TenantEvent::TenantRegistered { slug, name, .. } => {
            format!("tenant registered as {slug} ({name:?})")
        }
        TenantEvent::PaymentVerified {
            checkout_session_id,
            ..
        } => format!("payment {checkout_session_id} verified"),
        TenantEvent::OnboardingLockAcquired {
            holder,
            at,
            expires_at,
        } => {
            let renewed = before
                .lock
                .as_ref()
                .is_some_and(|l| l.holder == *holder && l.is_active(*at));
            let verb = if renewed { "renewed" } else { "acquired" };
            format!(
                "onboarding lock {verb} by {holder} until {}",
                clock(*at, *expires_at)
            )
        }
        TenantEvent::OnboardingLockReleased { holder, reason, .. } => {
            match before.lock.as_ref().map(|l| l.holder.as_str()) {
                Some(h) if h == holder => {
                    format!("onboarding lock released by {holder} ({reason})")
                }
                Some(h) => format!(
                    "{holder} released an onboarding lock it did not hold ({reason}); {h}'s lock stands"
                ),
                None => format!(
                    "{holder} released an onboarding lock nobody held ({reason}); nothing changed"
                ),
            }
        }
        TenantEvent::OrganizationCreated { .. } => "organisation created".to_string(),
        TenantEvent::WorkspaceProvisioned { .. } => "workspace provisioned".to_string(),
        TenantEvent::ApiKeyIssued {
            fingerprint,
            reveal_expires_at,
            at,
        } => format!(
            "API key {fingerprint} issued, shown to the user until {}",
            clock(*at, *reveal_expires_at)
        ),
        TenantEvent::OnboardingStepFailed { stage, code, .. } => {
            format!("{} failed: {code}", stage_words(*stage))
        }
        TenantEvent::BackendSyncFailed {
            target,
            attempts,
            last_error,
            ..
        } => {
            let s = if *attempts == 1 { "" } else { "s" };
            format!("sync to {target} failed ({attempts} attempt{s}): {last_error}")
        }
        TenantEvent::BackendSyncRetried { target, .. } => format!("sync to {target} retried"),
        TenantEvent::BackendSynced { target, .. } => format!("synced to {target}"),
        TenantEvent::BackendSyncAbandoned { target, reason, .. } => {
            format!("sync to {target} abandoned: {reason}")
        }
        TenantEvent::OnboardingPhaseBackfilled { phase, .. } => {
            if *phase > before.phase {
                format!("phase backfilled to {phase}")
            } else {
                format!(
                    "phase backfilled to {phase}, which the tenant had already passed ({})",
                    before.phase
                )
            }
        }
        TenantEvent::OnboardingCompleted { .. } => {
            if before.phase == Phase::Completed {
                "onboarding completed again (it was already complete)".to_string()
            } else {
                "onboarding completed".to_string()
            }
        }
        TenantEvent::TenantErased { .. } => {
            if before.erased_at.is_some() {
                "personal data erased again (it was already erased)".to_string()
            } else {
                "personal data erased; the tenant's data key is destroyed".to_string()
            }
        }
    }
}

/// A stage as part of a sentence.
fn stage_words(stage: Stage) -> &'static str {
    match stage {
        Stage::VerifyingPayment => "verifying payment",
        Stage::CreatingOrganization => "creating the organisation",
        Stage::SettingUpWorkspace => "setting up the workspace",
        Stage::GeneratingApiKey => "generating the API key",
        Stage::Finalizing => "finalising",
    }
}

/// `t` as the time of day when it falls on the UTC day of `at`, else with its date.
fn clock(at: DateTime<Utc>, t: DateTime<Utc>) -> String {
    if t.date_naive() == at.date_naive() {
        t.format("%H:%M:%S").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::{evolve, fold};

    fn t() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 20, 14, 2, 12).unwrap()
    }

    fn registered() -> TenantState {
        fold(&[TenantEvent::TenantRegistered {
            slug: "acme".into(),
            name: "Acme Ltd".into(),
            at: t(),
        }])
    }

    fn locked_by(holder: &str) -> TenantState {
        evolve(
            registered(),
            &TenantEvent::OnboardingLockAcquired {
                holder: holder.into(),
                at: t(),
                expires_at: t() + Duration::seconds(60),
            },
        )
    }

    fn says(event: TenantEvent, before: &TenantState) -> String {
        describe(&event, before)
    }

    #[test]
    fn registration() {
        let e = TenantEvent::TenantRegistered {
            slug: "acme".into(),
            name: "Acme Ltd".into(),
            at: t(),
        };
        assert_eq!(
            says(e, &TenantState::default()),
            r#"tenant registered as acme ("Acme Ltd")"#
        );
    }

    #[test]
    fn payment() {
        let e = TenantEvent::PaymentVerified {
            checkout_session_id: "cs_123".into(),
            at: t(),
        };
        assert_eq!(says(e, &registered()), "payment cs_123 verified");
    }

    #[test]
    fn lock_acquired_and_renewed() {
        let acquire = |holder: &str, at| TenantEvent::OnboardingLockAcquired {
            holder: holder.into(),
            at,
            expires_at: at + Duration::seconds(60),
        };
        assert_eq!(
            says(acquire("tab-a", t()), &registered()),
            "onboarding lock acquired by tab-a until 14:03:12"
        );
        let later = t() + Duration::seconds(30);
        assert_eq!(
            says(acquire("tab-a", later), &locked_by("tab-a")),
            "onboarding lock renewed by tab-a until 14:03:42"
        );
        // After expiry the same holder takes it afresh; another holder never renews.
        let expired = t() + Duration::seconds(61);
        assert_eq!(
            says(acquire("tab-a", expired), &locked_by("tab-a")),
            "onboarding lock acquired by tab-a until 14:04:13"
        );
        assert_eq!(
            says(acquire("tab-b", expired), &locked_by("tab-a")),
            "onboarding lock acquired by tab-b until 14:04:13"
        );
        let midnight = Utc.with_ymd_and_hms(2026, 1, 20, 23, 59, 30).unwrap();
        assert_eq!(
            says(acquire("job", midnight), &registered()),
            "onboarding lock acquired by job until 2026-01-21 00:00:30"
        );
    }

    #[test]
    fn lock_released() {
        let release = |holder: &str| TenantEvent::OnboardingLockReleased {
            holder: holder.into(),
            reason: "done".into(),
            at: t(),
        };
        assert_eq!(
            says(release("tab-a"), &locked_by("tab-a")),
            "onboarding lock released by tab-a (done)"
        );
        assert_eq!(
            says(release("tab-b"), &locked_by("tab-a")),
            "tab-b released an onboarding lock it did not hold (done); tab-a's lock stands"
        );
        assert_eq!(
            says(release("tab-b"), &registered()),
            "tab-b released an onboarding lock nobody held (done); nothing changed"
        );
    }

    #[test]
    fn organisation_and_workspace() {
        assert_eq!(
            says(TenantEvent::OrganizationCreated { at: t() }, &registered()),
            "organisation created"
        );
        assert_eq!(
            says(TenantEvent::WorkspaceProvisioned { at: t() }, &registered()),
            "workspace provisioned"
        );
    }

    #[test]
    fn api_key() {
        let e = TenantEvent::ApiKeyIssued {
            fingerprint: "fp_9f2c".into(),
            reveal_expires_at: t() + Duration::hours(2),
            at: t(),
        };
        assert_eq!(
            says(e, &registered()),
            "API key fp_9f2c issued, shown to the user until 16:02:12"
        );
    }

    #[test]
    fn step_failed() {
        let e = |stage| TenantEvent::OnboardingStepFailed {
            stage,
            code: "quota".into(),
            at: t(),
        };
        let said: Vec<String> = Stage::ALL
            .into_iter()
            .map(|s| says(e(s), &registered()))
            .collect();
        assert_eq!(
            said,
            [
                "verifying payment failed: quota",
                "creating the organisation failed: quota",
                "setting up the workspace failed: quota",
                "generating the API key failed: quota",
                "finalising failed: quota",
            ]
        );
    }

    #[test]
    fn syncs() {
        let failed = |attempts| TenantEvent::BackendSyncFailed {
            target: "crm".into(),
            attempts,
            last_error: "timeout".into(),
            at: t(),
        };
        assert_eq!(
            says(failed(1), &registered()),
            "sync to crm failed (1 attempt): timeout"
        );
        assert_eq!(
            says(failed(3), &registered()),
            "sync to crm failed (3 attempts): timeout"
        );
        let retried = TenantEvent::BackendSyncRetried {
            target: "crm".into(),
            at: t(),
        };
        assert_eq!(says(retried, &registered()), "sync to crm retried");
        let synced = TenantEvent::BackendSynced {
            target: "crm".into(),
            at: t(),
        };
        assert_eq!(says(synced, &registered()), "synced to crm");
        let abandoned = TenantEvent::BackendSyncAbandoned {
            target: "crm".into(),
            reason: "account closed".into(),
            at: t(),
        };
        assert_eq!(
            says(abandoned, &registered()),
            "sync to crm abandoned: account closed"
        );
    }

    #[test]
    fn backfill() {
        let backfill = |phase| TenantEvent::OnboardingPhaseBackfilled { phase, at: t() };
        assert_eq!(
            says(backfill(Phase::WorkspaceProvisioned), &registered()),
            "phase backfilled to WORKSPACE_PROVISIONED"
        );
        let done = evolve(registered(), &backfill(Phase::Completed));
        assert_eq!(
            says(backfill(Phase::PaymentVerified), &done),
            "phase backfilled to PAYMENT_VERIFIED, which the tenant had already passed (COMPLETED)"
        );
    }

    #[test]
    fn completion() {
        let e = TenantEvent::OnboardingCompleted { at: t() };
        assert_eq!(says(e.clone(), &registered()), "onboarding completed");
        let done = evolve(registered(), &e);
        assert_eq!(
            says(e, &done),
            "onboarding completed again (it was already complete)"
        );
    }

    #[test]
    fn erasure() {
        let e = TenantEvent::TenantErased { at: t() };
        assert_eq!(
            says(e.clone(), &registered()),
            "personal data erased; the tenant's data key is destroyed"
        );
        assert_eq!(
            says(e.clone(), &locked_by("tab-a")),
            "personal data erased; the tenant's data key is destroyed"
        );
        let erased = evolve(registered(), &e);
        assert_eq!(
            says(e, &erased),
            "personal data erased again (it was already erased)"
        );
    }
}
