//! What a person is told when an onboarding step failed: a message for the failure's code and
//! what happens next, never the code's technical text.
//!
//! Step failures carry a machine-readable `code` chosen by the writer. The codes below get their
//! own words; any other code gets the words of the stage it failed in.

use crate::Stage;

/// The words for one step failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Friendly {
    /// What went wrong, for the person onboarding.
    pub message: &'static str,
    /// What happens next, or what they can do.
    pub next: &'static str,
}

/// The failure codes with words of their own, each with its words.
pub const KNOWN_CODES: &[(&str, Friendly)] = &[
    (
        "payment_declined",
        Friendly {
            message: "Your payment was declined by your bank.",
            next: "Try another card or contact your bank; nothing was charged.",
        },
    ),
    (
        "payment_not_found",
        Friendly {
            message: "We could not find your payment.",
            next: "Return to checkout and complete the payment again; nothing was charged twice.",
        },
    ),
    (
        "organization_exists",
        Friendly {
            message: "This organisation already exists.",
            next: "Sign in to the existing organisation, or choose another name.",
        },
    ),
    (
        "quota_exceeded",
        Friendly {
            message: "Your plan's limit was reached while setting up.",
            next: "Upgrade your plan or remove unused workspaces, then try again.",
        },
    ),
    (
        "backend_unreachable",
        Friendly {
            message: "We could not reach our servers just now.",
            next: "We retry automatically; you can also reload this page in a minute.",
        },
    ),
    (
        "timeout",
        Friendly {
            message: "This step took longer than expected.",
            next: "We retry automatically; you can also reload this page in a minute.",
        },
    ),
];

/// The words for a failure of `stage` with `code`.
pub fn friendly(stage: Stage, code: &str) -> Friendly {
    KNOWN_CODES
        .iter()
        .find(|(known, _)| *known == code)
        .map(|(_, words)| *words)
        .unwrap_or_else(|| for_stage(stage))
}

/// The words for a failure of `stage` whose code has none of its own.
fn for_stage(stage: Stage) -> Friendly {
    let message = match stage {
        Stage::VerifyingPayment => "We could not verify your payment.",
        Stage::CreatingOrganization => "We could not create your organisation.",
        Stage::SettingUpWorkspace => "We could not set up your workspace.",
        Stage::GeneratingApiKey => "We could not generate your API key.",
        Stage::Finalizing => "We could not finish setting up your account.",
    };
    Friendly {
        message,
        next: "Our team has been notified and the step will be retried; you can keep this page open.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words that would leak how the system is built.
    const TECHNICAL: &[&str] = &[
        "sql",
        "constraint",
        "panicked",
        "error:",
        "exception",
        "null",
        "_",
        "stack",
    ];

    fn assert_plain(words: Friendly) {
        for text in [words.message, words.next] {
            assert!(text.ends_with('.'), "{text}");
            let lower = text.to_lowercase();
            for t in TECHNICAL {
                assert!(!lower.contains(t), "{text:?} contains {t:?}");
            }
        }
    }

    #[test]
    fn known_codes_have_their_own_words() {
        for (code, words) in KNOWN_CODES {
            for stage in Stage::ALL {
                assert_eq!(friendly(stage, code), *words);
            }
            assert_plain(*words);
        }
    }

    #[test]
    fn other_codes_get_their_stage_words_and_never_their_text() {
        let codes = [
            "E_DB_23505",
            "duplicate key value violates unique constraint",
            "",
        ];
        for stage in Stage::ALL {
            let words = friendly(stage, codes[0]);
            assert_plain(words);
            for code in codes {
                assert_eq!(friendly(stage, code), words);
                if !code.is_empty() {
                    assert!(!words.message.contains(code));
                }
            }
        }
        let messages: std::collections::HashSet<_> = Stage::ALL
            .iter()
            .map(|s| friendly(*s, "x").message)
            .collect();
        assert_eq!(messages.len(), Stage::ALL.len());
    }
}
