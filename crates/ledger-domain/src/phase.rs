//! Onboarding phases and the five stages a person sees.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a tenant's onboarding is; phases only move forward.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    /// Registered, nothing done yet.
    #[default]
    NotStarted,
    /// The payment was verified.
    PaymentVerified,
    /// The organisation exists.
    OrganizationCreated,
    /// The workspace is provisioned.
    WorkspaceProvisioned,
    /// An API key was issued.
    ApiKeyIssued,
    /// Onboarding is finished.
    Completed,
}

impl Phase {
    /// Every phase in order.
    pub const ALL: [Phase; 6] = [
        Phase::NotStarted,
        Phase::PaymentVerified,
        Phase::OrganizationCreated,
        Phase::WorkspaceProvisioned,
        Phase::ApiKeyIssued,
        Phase::Completed,
    ];

    /// The stage whose completion reaches this phase (none for `NotStarted`).
    pub fn reached_by(self) -> Option<Stage> {
        match self {
            Phase::NotStarted => None,
            Phase::PaymentVerified => Some(Stage::VerifyingPayment),
            Phase::OrganizationCreated => Some(Stage::CreatingOrganization),
            Phase::WorkspaceProvisioned => Some(Stage::SettingUpWorkspace),
            Phase::ApiKeyIssued => Some(Stage::GeneratingApiKey),
            Phase::Completed => Some(Stage::Finalizing),
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_value(self).expect("phase serializes");
        f.write_str(text.as_str().expect("phase is a string"))
    }
}

/// One of the five progress stages a person sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Verifying payment.
    VerifyingPayment,
    /// Creating the organisation.
    CreatingOrganization,
    /// Setting up the workspace.
    SettingUpWorkspace,
    /// Generating the API key.
    GeneratingApiKey,
    /// Finalising.
    Finalizing,
}

impl Stage {
    /// Every stage in order.
    pub const ALL: [Stage; 5] = [
        Stage::VerifyingPayment,
        Stage::CreatingOrganization,
        Stage::SettingUpWorkspace,
        Stage::GeneratingApiKey,
        Stage::Finalizing,
    ];

    /// The phase this stage's completion reaches.
    pub fn target(self) -> Phase {
        match self {
            Stage::VerifyingPayment => Phase::PaymentVerified,
            Stage::CreatingOrganization => Phase::OrganizationCreated,
            Stage::SettingUpWorkspace => Phase::WorkspaceProvisioned,
            Stage::GeneratingApiKey => Phase::ApiKeyIssued,
            Stage::Finalizing => Phase::Completed,
        }
    }

    /// The phase the tenant must be in for this stage to run.
    pub fn requires(self) -> Phase {
        Phase::ALL[self.target() as usize - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_and_phases_line_up() {
        for stage in Stage::ALL {
            assert_eq!(stage.target().reached_by(), Some(stage));
            assert!(stage.requires() < stage.target());
        }
        assert_eq!(Phase::NotStarted.reached_by(), None);
        assert_eq!(Phase::ApiKeyIssued.to_string(), "API_KEY_ISSUED");
    }
}
