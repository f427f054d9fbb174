//! Tunable durations of the onboarding rules.

use chrono::Duration;

/// Durations the decisions use (defaults: a 60 s lock, a 2 h API key reveal window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// How long a lock lasts after it is acquired or renewed (default 60 s).
    pub lock_ttl: Duration,
    /// How long an issued API key may be revealed (default 2 h).
    pub api_key_reveal_window: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            lock_ttl: Duration::seconds(60),
            api_key_reveal_window: Duration::hours(2),
        }
    }
}
