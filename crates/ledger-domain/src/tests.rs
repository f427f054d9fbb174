//! Given/when/then tests: every command in every phase, locks, syncs and registration.

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::{
    Command, DomainError, Phase, Policy, Stage, SyncStatus, TenantEvent, TenantState, decide,
    evolve, fold,
};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 20, 9, 0, 0).unwrap()
}

/// The history that brings a registered tenant to `phase` through the normal flow.
fn history(phase: Phase) -> Vec<TenantEvent> {
    let at = t0();
    let mut h = vec![TenantEvent::TenantRegistered {
        slug: "acme".into(),
        name: "Acme".into(),
        at,
    }];
    let steps = [
        TenantEvent::PaymentVerified {
            checkout_session_id: "cs_1".into(),
            at,
        },
        TenantEvent::OrganizationCreated { at },
        TenantEvent::WorkspaceProvisioned { at },
        TenantEvent::ApiKeyIssued {
            fingerprint: "fp".into(),
            reveal_expires_at: at,
            at,
        },
        TenantEvent::OnboardingCompleted { at },
    ];
    h.extend(steps.into_iter().take(phase as usize));
    h
}

/// Runs the command against a history at `now` and describes the outcome:
/// `+Type,Type` for appended events, `=` for nothing appended, `!code` for a refusal.
fn outcome(given: &[TenantEvent], when: &Command, now: DateTime<Utc>) -> String {
    let state = fold(given);
    match decide(when, &state, now, &Policy::default()) {
        Ok(d) if d.events.is_empty() => {
            assert!(d.already_done);
            "=".into()
        }
        Ok(d) => {
            assert!(!d.already_done);
            let types: Vec<_> = d.events.iter().map(|e| e.event_type()).collect();
            format!("+{}", types.join(","))
        }
        Err(e) => format!("!{}", e.code()),
    }
}

fn commands() -> Vec<Command> {
    vec![
        Command::VerifyPayment {
            checkout_session_id: "cs_2".into(),
            holder: None,
        },
        Command::CreateOrganization { holder: None },
        Command::ProvisionWorkspace { holder: None },
        Command::IssueApiKey {
            fingerprint: "fp2".into(),
            holder: None,
        },
        Command::CompleteOnboarding { holder: None },
        Command::AcquireLock {
            holder: "tab-a".into(),
        },
        Command::ReleaseLock {
            holder: "tab-a".into(),
            reason: None,
        },
        Command::RecordStepFailure {
            stage: Stage::SettingUpWorkspace,
            code: "quota".into(),
            holder: None,
        },
        Command::RecordSyncFailure {
            target: "crm".into(),
            last_error: "503".into(),
        },
        Command::RecordSyncRetry {
            target: "crm".into(),
        },
        Command::RecordSyncSuccess {
            target: "crm".into(),
        },
        Command::AbandonSync {
            target: "crm".into(),
            reason: "gone".into(),
        },
        Command::BackfillPhase {
            phase: Phase::WorkspaceProvisioned,
        },
        Command::RegisterTenant {
            slug: "acme".into(),
            name: "Acme".into(),
        },
        Command::EraseTenant {},
    ]
}

#[test]
fn every_command_in_every_phase() {
    // Columns: NOT_STARTED, PAYMENT_VERIFIED, ORGANIZATION_CREATED, WORKSPACE_PROVISIONED,
    // API_KEY_ISSUED, COMPLETED.
    let bad = "!invalid_transition";
    let expected: [[&str; 6]; 15] = [
        ["+PaymentVerified", "=", "=", "=", "=", "="],
        [bad, "+OrganizationCreated", "=", "=", "=", "="],
        [bad, bad, "+WorkspaceProvisioned", "=", "=", "="],
        [bad, bad, bad, "+ApiKeyIssued", "=", "="],
        [bad, bad, bad, bad, "+OnboardingCompleted", "="],
        ["+OnboardingLockAcquired"; 6],
        ["="; 6],
        [bad, bad, "+OnboardingStepFailed", bad, bad, bad],
        ["+BackendSyncFailed"; 6],
        ["!sync_not_pending"; 6],
        ["+BackendSynced"; 6],
        ["!sync_not_pending"; 6],
        ["+OnboardingPhaseBackfilled"; 3]
            .into_iter()
            .chain(["="; 3])
            .collect::<Vec<_>>()
            .try_into()
            .unwrap(),
        ["!tenant_exists"; 6],
        ["+TenantErased"; 6],
    ];
    assert_eq!(commands().len(), expected.len());
    for (command, row) in commands().iter().zip(expected) {
        for (phase, want) in Phase::ALL.into_iter().zip(row) {
            let got = outcome(&history(phase), command, t0() + Duration::seconds(1));
            assert_eq!(got, want, "{} in {phase}", command.name());
        }
    }
}

#[test]
fn an_unregistered_tenant_only_accepts_registration() {
    for command in commands() {
        let got = outcome(&[], &command, t0());
        let want = match command {
            Command::RegisterTenant { .. } => "+TenantRegistered",
            _ => "!tenant_not_found",
        };
        assert_eq!(got, want, "{}", command.name());
    }
}

#[test]
fn registration_validates_the_slug() {
    for slug in [
        "a",
        "-acme",
        "acme-",
        "Acme",
        "ac_me",
        "ac me",
        &"x".repeat(64),
    ] {
        let cmd = Command::RegisterTenant {
            slug: slug.to_string(),
            name: "Acme".into(),
        };
        assert_eq!(outcome(&[], &cmd, t0()), "!invalid_slug", "{slug}");
    }
    let cmd = Command::RegisterTenant {
        slug: "acme-2".into(),
        name: " ".into(),
    };
    assert_eq!(outcome(&[], &cmd, t0()), "!invalid_command");
}

#[test]
fn completing_twice_reports_the_first_completion() {
    let given = history(Phase::Completed);
    let state = fold(&given);
    let later = t0() + Duration::hours(3);
    let d = decide(
        &Command::CompleteOnboarding { holder: None },
        &state,
        later,
        &Policy::default(),
    )
    .unwrap();
    assert!(d.events.is_empty() && d.already_done);
    assert_eq!(state.completed_at, Some(t0()));
}

#[test]
fn a_backfilled_phase_is_not_backfilled_again() {
    let mut given = history(Phase::NotStarted);
    given.push(TenantEvent::OnboardingPhaseBackfilled {
        phase: Phase::Completed,
        at: t0(),
    });
    let state = fold(&given);
    assert_eq!(state.phase, Phase::Completed);
    assert_eq!(state.completed_at, Some(t0()));
    for phase in Phase::ALL {
        let cmd = Command::BackfillPhase { phase };
        assert_eq!(outcome(&given, &cmd, t0()), "=", "{phase}");
    }
    assert_eq!(
        outcome(&given, &Command::CompleteOnboarding { holder: None }, t0()),
        "="
    );
}

fn locked_by(holder: &str) -> Vec<TenantEvent> {
    let mut given = history(Phase::PaymentVerified);
    given.push(TenantEvent::OnboardingLockAcquired {
        holder: holder.into(),
        at: t0(),
        expires_at: t0() + Duration::seconds(60),
    });
    given
}

#[test]
fn another_holders_active_lock_refuses_steps_and_locks() {
    let given = locked_by("tab-a");
    let now = t0() + Duration::seconds(30);
    let refused = [
        Command::AcquireLock {
            holder: "tab-b".into(),
        },
        Command::ReleaseLock {
            holder: "tab-b".into(),
            reason: None,
        },
        Command::CreateOrganization {
            holder: Some("tab-b".into()),
        },
        Command::CreateOrganization { holder: None },
        Command::VerifyPayment {
            checkout_session_id: "cs".into(),
            holder: Some("tab-b".into()),
        },
        Command::CompleteOnboarding {
            holder: Some("tab-b".into()),
        },
        Command::RecordStepFailure {
            stage: Stage::CreatingOrganization,
            code: "x".into(),
            holder: None,
        },
    ];
    for cmd in refused {
        let err = decide(&cmd, &fold(&given), now, &Policy::default()).unwrap_err();
        assert_eq!(
            err,
            DomainError::LockHeld {
                holder: "tab-a".into(),
                expires_at: t0() + Duration::seconds(60)
            },
            "{}",
            cmd.name()
        );
    }
    let own = Command::CreateOrganization {
        holder: Some("tab-a".into()),
    };
    assert_eq!(outcome(&given, &own, now), "+OrganizationCreated");
    // Sync bookkeeping and backfills are not steps a tab drives: the lock does not gate them.
    let sync = Command::RecordSyncFailure {
        target: "crm".into(),
        last_error: "x".into(),
    };
    assert_eq!(outcome(&given, &sync, now), "+BackendSyncFailed");
}

#[test]
fn the_same_holder_renews_and_keeps_its_acquired_at() {
    let given = locked_by("tab-a");
    let now = t0() + Duration::seconds(50);
    let cmd = Command::AcquireLock {
        holder: "tab-a".into(),
    };
    let d = decide(&cmd, &fold(&given), now, &Policy::default()).unwrap();
    let state = d.events.iter().fold(fold(&given), evolve);
    let lock = state.lock.unwrap();
    assert_eq!(lock.acquired_at, t0());
    assert_eq!(lock.expires_at, now + Duration::seconds(60));
}

#[test]
fn an_expired_lock_is_free() {
    let given = locked_by("tab-a");
    let at_expiry = t0() + Duration::seconds(60);
    assert_eq!(
        outcome(
            &given,
            &Command::AcquireLock {
                holder: "tab-b".into()
            },
            at_expiry
        ),
        "+OnboardingLockAcquired"
    );
    let step = Command::CreateOrganization { holder: None };
    assert_eq!(outcome(&given, &step, at_expiry), "+OrganizationCreated");
    let release = Command::ReleaseLock {
        holder: "tab-a".into(),
        reason: None,
    };
    assert_eq!(outcome(&given, &release, at_expiry), "=");
}

#[test]
fn releasing_frees_the_lock_for_others() {
    let mut given = locked_by("tab-a");
    let now = t0() + Duration::seconds(10);
    let release = Command::ReleaseLock {
        holder: "tab-a".into(),
        reason: Some("done".into()),
    };
    assert_eq!(outcome(&given, &release, now), "+OnboardingLockReleased");
    given.push(TenantEvent::OnboardingLockReleased {
        holder: "tab-a".into(),
        reason: "done".into(),
        at: now,
    });
    let state = fold(&given);
    assert!(state.active_lock(now).is_none());
    assert_eq!(state.lock.unwrap().released.unwrap().reason, "done");
    assert_eq!(
        outcome(
            &given,
            &Command::AcquireLock {
                holder: "tab-b".into()
            },
            now
        ),
        "+OnboardingLockAcquired"
    );
}

#[test]
fn lock_ttl_and_reveal_window_come_from_the_policy() {
    let policy = Policy {
        lock_ttl: Duration::seconds(5),
        api_key_reveal_window: Duration::minutes(10),
    };
    let state = fold(&history(Phase::WorkspaceProvisioned));
    let now = t0();
    let d = decide(
        &Command::AcquireLock {
            holder: "job".into(),
        },
        &state,
        now,
        &policy,
    )
    .unwrap();
    assert!(
        matches!(d.events[0], TenantEvent::OnboardingLockAcquired { expires_at, .. } if expires_at == now + Duration::seconds(5))
    );
    let d = decide(
        &Command::IssueApiKey {
            fingerprint: "fp".into(),
            holder: None,
        },
        &state,
        now,
        &policy,
    )
    .unwrap();
    assert!(
        matches!(d.events[0], TenantEvent::ApiKeyIssued { reveal_expires_at, .. } if reveal_expires_at == now + Duration::minutes(10))
    );
}

#[test]
fn a_failed_step_can_be_retried_and_the_failure_clears() {
    let mut given = history(Phase::OrganizationCreated);
    given.push(TenantEvent::OnboardingStepFailed {
        stage: Stage::SettingUpWorkspace,
        code: "quota".into(),
        at: t0(),
    });
    let state = fold(&given);
    assert_eq!(state.phase, Phase::OrganizationCreated);
    assert_eq!(state.last_failure.as_ref().unwrap().code, "quota");
    assert_eq!(
        outcome(&given, &Command::ProvisionWorkspace { holder: None }, t0()),
        "+WorkspaceProvisioned"
    );
    given.push(TenantEvent::WorkspaceProvisioned {
        at: t0() + Duration::seconds(5),
    });
    let state = fold(&given);
    assert!(state.last_failure.is_none());
    assert_eq!(
        state.stages[&Stage::SettingUpWorkspace],
        t0() + Duration::seconds(5)
    );
}

#[test]
fn the_sync_queue_follows_failures_retries_and_outcomes() {
    let mut given = history(Phase::NotStarted);
    let fail = |n: u32, s: i64| TenantEvent::BackendSyncFailed {
        target: "crm".into(),
        attempts: n,
        last_error: format!("e{n}"),
        at: t0() + Duration::seconds(s),
    };
    given.push(fail(1, 1));
    let state = fold(&given);
    let d = decide(
        &Command::RecordSyncFailure {
            target: "crm".into(),
            last_error: "e2".into(),
        },
        &state,
        t0(),
        &Policy::default(),
    )
    .unwrap();
    assert!(matches!(
        &d.events[0],
        TenantEvent::BackendSyncFailed { attempts: 2, .. }
    ));
    given.push(TenantEvent::BackendSyncRetried {
        target: "crm".into(),
        at: t0() + Duration::seconds(2),
    });
    given.push(fail(2, 3));
    let crm = fold(&given).syncs["crm"].clone();
    assert_eq!(
        (crm.status, crm.attempts, crm.retry_count),
        (SyncStatus::PendingSync, 2, 1)
    );
    assert_eq!(crm.first_failed_at, Some(t0() + Duration::seconds(1)));
    assert_eq!(crm.last_error.as_deref(), Some("e2"));
    assert_eq!(
        outcome(
            &given,
            &Command::AbandonSync {
                target: "crm".into(),
                reason: "r".into()
            },
            t0()
        ),
        "+BackendSyncAbandoned"
    );
    given.push(TenantEvent::BackendSynced {
        target: "crm".into(),
        at: t0() + Duration::seconds(4),
    });
    let state = fold(&given);
    assert_eq!(state.syncs["crm"].status, SyncStatus::Synced);
    assert_eq!(
        outcome(
            &given,
            &Command::RecordSyncSuccess {
                target: "crm".into()
            },
            t0()
        ),
        "="
    );
    assert_eq!(
        outcome(
            &given,
            &Command::RecordSyncRetry {
                target: "crm".into()
            },
            t0()
        ),
        "!sync_not_pending"
    );
}

#[test]
fn stages_record_first_completion_times() {
    let state: TenantState = fold(&history(Phase::Completed));
    assert_eq!(state.stages.len(), 5);
    assert!(Stage::ALL.iter().all(|s| state.stages[s] == t0()));
    assert_eq!(state.registration.unwrap().slug, "acme");
}

#[test]
fn empty_fields_are_refused() {
    let given = history(Phase::NotStarted);
    for cmd in [
        Command::AcquireLock { holder: "".into() },
        Command::VerifyPayment {
            checkout_session_id: " ".into(),
            holder: None,
        },
        Command::VerifyPayment {
            checkout_session_id: "cs".into(),
            holder: Some("".into()),
        },
        Command::RecordSyncFailure {
            target: "".into(),
            last_error: "x".into(),
        },
    ] {
        assert_eq!(
            outcome(&given, &cmd, t0()),
            "!invalid_command",
            "{}",
            cmd.name()
        );
    }
}

#[test]
fn commands_parse_from_json_bodies() {
    let cmd: Command = serde_json::from_value(serde_json::json!({
        "command": "verify-payment", "checkout_session_id": "cs_1"
    }))
    .unwrap();
    assert_eq!(
        cmd,
        Command::VerifyPayment {
            checkout_session_id: "cs_1".into(),
            holder: None
        }
    );
    let bad = serde_json::json!({"command": "verify-payment", "checkout_session_id": 1});
    assert!(serde_json::from_value::<Command>(bad).is_err());
    let unknown = serde_json::json!({"command": "create-organization", "extra": true});
    assert!(serde_json::from_value::<Command>(unknown).is_err());
}

/// The history that brings a registered tenant to `phase` and then erases it at `t0() + 5s`.
fn erased(phase: Phase) -> Vec<TenantEvent> {
    let mut given = history(phase);
    given.push(TenantEvent::TenantErased {
        at: t0() + Duration::seconds(5),
    });
    given
}

#[test]
fn erasure_is_allowed_in_every_phase() {
    let now = t0() + Duration::seconds(7);
    for phase in Phase::ALL {
        let d = decide(
            &Command::EraseTenant {},
            &fold(&history(phase)),
            now,
            &Policy::default(),
        )
        .unwrap();
        assert!(!d.already_done, "{phase}");
        assert_eq!(d.events, [TenantEvent::TenantErased { at: now }], "{phase}");
    }
}

#[test]
fn erasure_is_not_blocked_by_anyones_lock() {
    let given = locked_by("tab-a");
    let now = t0() + Duration::seconds(30);
    assert!(fold(&given).active_lock(now).is_some());
    assert_eq!(
        outcome(&given, &Command::EraseTenant {}, now),
        "+TenantErased"
    );
    // A failed step awaiting its retry does not hold the erasure back either.
    let mut failed = history(Phase::OrganizationCreated);
    failed.push(TenantEvent::OnboardingStepFailed {
        stage: Stage::SettingUpWorkspace,
        code: "quota".into(),
        at: t0(),
    });
    assert_eq!(
        outcome(&failed, &Command::EraseTenant {}, t0()),
        "+TenantErased"
    );
}

#[test]
fn erasing_twice_appends_nothing_and_keeps_the_first_time() {
    for phase in Phase::ALL {
        let given = erased(phase);
        let later = t0() + Duration::hours(1);
        let d = decide(
            &Command::EraseTenant {},
            &fold(&given),
            later,
            &Policy::default(),
        )
        .unwrap();
        assert!(d.events.is_empty() && d.already_done, "{phase}");
        assert_eq!(outcome(&given, &Command::EraseTenant {}, later), "=");
    }
    // A second TenantErased in the history (history is the truth) keeps the first time.
    let mut given = erased(Phase::NotStarted);
    given.push(TenantEvent::TenantErased {
        at: t0() + Duration::hours(2),
    });
    assert_eq!(fold(&given).erased_at, Some(t0() + Duration::seconds(5)));
}

#[test]
fn an_erased_tenant_takes_no_other_command() {
    for phase in Phase::ALL {
        let given = erased(phase);
        let state = fold(&given);
        for command in commands() {
            let got = decide(
                &command,
                &state,
                t0() + Duration::hours(1),
                &Policy::default(),
            );
            match command {
                Command::EraseTenant {} => assert!(got.unwrap().already_done, "{phase}"),
                _ => assert_eq!(
                    got,
                    Err(DomainError::TenantErased {
                        erased_at: t0() + Duration::seconds(5)
                    }),
                    "{} in {phase}",
                    command.name()
                ),
            }
        }
    }
    // The erasure's own lock holder is refused like anyone else.
    let mut given = locked_by("tab-a");
    given.push(TenantEvent::TenantErased { at: t0() });
    for command in [
        Command::CreateOrganization {
            holder: Some("tab-a".into()),
        },
        Command::AcquireLock {
            holder: "tab-a".into(),
        },
        Command::ReleaseLock {
            holder: "tab-a".into(),
            reason: None,
        },
    ] {
        assert_eq!(
            outcome(&given, &command, t0() + Duration::seconds(1)),
            "!tenant_erased",
            "{}",
            command.name()
        );
    }
}

#[test]
fn the_refusal_of_an_erased_tenant_says_so() {
    let err = DomainError::TenantErased {
        erased_at: t0() + Duration::seconds(5),
    };
    assert_eq!(err.code(), "tenant_erased");
    assert_eq!(
        err.to_string(),
        "tenant was erased at 2026-01-20 09:00:05 UTC; it takes no more commands"
    );
}

#[test]
fn malformed_input_is_still_refused_as_such_after_erasure() {
    let cmd = Command::AcquireLock { holder: "".into() };
    assert_eq!(
        outcome(&erased(Phase::NotStarted), &cmd, t0()),
        "!invalid_command"
    );
}

#[test]
fn erasing_an_unknown_tenant_is_refused() {
    assert_eq!(
        outcome(&[], &Command::EraseTenant {}, t0()),
        "!tenant_not_found"
    );
}

#[test]
fn evolve_records_the_erasure_and_nothing_else() {
    for phase in Phase::ALL {
        let mut given = history(phase);
        given.push(TenantEvent::OnboardingLockAcquired {
            holder: "tab-a".into(),
            at: t0(),
            expires_at: t0() + Duration::seconds(60),
        });
        given.push(TenantEvent::BackendSyncFailed {
            target: "crm".into(),
            attempts: 1,
            last_error: "503".into(),
            at: t0(),
        });
        let before = fold(&given);
        assert_eq!(before.erased_at, None);
        assert!(!before.is_erased());
        let at = t0() + Duration::seconds(9);
        let after = evolve(before.clone(), &TenantEvent::TenantErased { at });
        assert_eq!(after.erased_at, Some(at), "{phase}");
        assert!(after.is_erased());
        assert_eq!(
            TenantState {
                erased_at: None,
                ..after
            },
            before,
            "{phase}"
        );
    }
}

#[test]
fn erase_tenant_parses_from_its_json_body() {
    let cmd: Command =
        serde_json::from_value(serde_json::json!({"command": "erase-tenant"})).unwrap();
    assert_eq!(cmd, Command::EraseTenant {});
    assert_eq!(cmd.name(), "erase-tenant");
    assert_eq!(
        serde_json::to_value(&cmd).unwrap(),
        serde_json::json!({"command": "erase-tenant"})
    );
    let extra = serde_json::json!({"command": "erase-tenant", "holder": "tab-a"});
    assert!(serde_json::from_value::<Command>(extra).is_err());
}
