//! The projections by name, their versions and the two copies (slots) each can have.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One of the ledger's read models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `tenant_phase`: one row per tenant with its phase and stage times.
    TenantPhase,
    /// `onboarding_locks`: the last onboarding lock of each tenant.
    OnboardingLocks,
    /// `pending_syncs`: the compensation queue, per tenant and target.
    PendingSyncs,
}

/// The table definitions of `projections/postgres`, whose `-- version: N` lines are the
/// projections' versions (the SQLite files carry the same numbers; a test checks it).
const DEFINITIONS: [(Kind, &str); 3] = [
    (
        Kind::TenantPhase,
        include_str!("../../../projections/postgres/tenant_phase.sql"),
    ),
    (
        Kind::OnboardingLocks,
        include_str!("../../../projections/postgres/onboarding_locks.sql"),
    ),
    (
        Kind::PendingSyncs,
        include_str!("../../../projections/postgres/pending_syncs.sql"),
    ),
];

impl Kind {
    /// Every projection, in the order runners and rebuilds take them.
    pub const ALL: [Kind; 3] = [Kind::TenantPhase, Kind::OnboardingLocks, Kind::PendingSyncs];

    /// The projection's name, which is also its live table's name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::TenantPhase => "tenant_phase",
            Kind::OnboardingLocks => "onboarding_locks",
            Kind::PendingSyncs => "pending_syncs",
        }
    }

    /// The name of the table `slot` lives in.
    pub fn table(self, slot: Slot) -> &'static str {
        match (self, slot) {
            (kind, Slot::Live) => kind.name(),
            (Kind::TenantPhase, Slot::Rebuild) => "tenant_phase_rebuild",
            (Kind::OnboardingLocks, Slot::Rebuild) => "onboarding_locks_rebuild",
            (Kind::PendingSyncs, Slot::Rebuild) => "pending_syncs_rebuild",
        }
    }

    /// The projection's version: the `-- version: N` line of its table definition. Bumping it
    /// makes the runner rebuild the projection on start.
    pub fn version(self) -> u32 {
        let (_, sql) = DEFINITIONS
            .iter()
            .find(|(k, _)| *k == self)
            .expect("every kind has a definition");
        version_of(sql).expect("every projection definition has a `-- version: N` line")
    }
}

/// The `N` of the first `-- version: N` line of a table definition.
pub fn version_of(sql: &str) -> Option<u32> {
    sql.lines()
        .find_map(|l| l.trim().strip_prefix("-- version:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A table definition split into the table itself and the indexes built when it goes live,
/// with `{table}` replaced by `table`.
pub fn definition_parts(sql: &str, table: &str) -> (String, String) {
    let sql = sql.replace("{table}", table);
    match sql.find("-- indexes") {
        Some(i) => (sql[..i].to_string(), sql[i..].to_string()),
        None => (sql, String::new()),
    }
}

/// The names of the indexes a table definition's index part creates (the part
/// [`definition_parts`] returns second), in order.
pub fn index_names(indexes: &str) -> Vec<String> {
    indexes
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("CREATE ")?;
            let rest = rest.strip_prefix("UNIQUE ").unwrap_or(rest);
            let rest = rest.strip_prefix("INDEX ")?;
            let rest = rest.strip_prefix("IF NOT EXISTS ").unwrap_or(rest);
            rest.split_whitespace().next().map(str::to_string)
        })
        .collect()
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a projection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "there is no projection {0:?}; the projections are tenant_phase, onboarding_locks and pending_syncs"
)]
pub struct UnknownProjection(pub String);

impl FromStr for Kind {
    type Err = UnknownProjection;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownProjection(s.to_string()))
    }
}

/// Which copy of a projection: the live tables queries read, or the fresh copy a rebuild fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    /// The tables queries read.
    Live,
    /// The shadow tables a rebuild fills before they are swapped in.
    Rebuild,
}

impl Slot {
    /// The slot's name in the checkpoint table.
    pub fn name(self) -> &'static str {
        match self {
            Slot::Live => "live",
            Slot::Rebuild => "rebuild",
        }
    }

    /// The slot named `name` in the checkpoint table.
    pub fn parse(name: &str) -> Option<Slot> {
        match name {
            "live" => Some(Slot::Live),
            "rebuild" => Some(Slot::Rebuild),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQLITE: [(Kind, &str); 3] = [
        (
            Kind::TenantPhase,
            include_str!("../../../projections/sqlite/tenant_phase.sql"),
        ),
        (
            Kind::OnboardingLocks,
            include_str!("../../../projections/sqlite/onboarding_locks.sql"),
        ),
        (
            Kind::PendingSyncs,
            include_str!("../../../projections/sqlite/pending_syncs.sql"),
        ),
    ];

    #[test]
    fn both_backends_declare_the_same_versions() {
        for (kind, sql) in SQLITE {
            assert_eq!(version_of(sql), Some(kind.version()), "{kind}");
        }
    }

    #[test]
    fn names_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(kind.name().parse::<Kind>(), Ok(kind));
            assert_eq!(kind.table(Slot::Live), kind.name());
            assert!(kind.table(Slot::Rebuild).starts_with(kind.name()));
        }
        assert!("events".parse::<Kind>().is_err());
        for slot in [Slot::Live, Slot::Rebuild] {
            assert_eq!(Slot::parse(slot.name()), Some(slot));
        }
    }

    #[test]
    fn definitions_split_at_the_indexes() {
        let (table, indexes) =
            definition_parts(DEFINITIONS[0].1, Kind::TenantPhase.table(Slot::Rebuild));
        assert!(table.contains("CREATE TABLE tenant_phase_rebuild ("));
        assert!(!table.contains("CREATE INDEX"));
        assert!(indexes.contains("CREATE INDEX tenant_phase_rebuild_phase_idx"));
        assert!(!table.contains("{table}") && !indexes.contains("{table}"));
        assert_eq!(index_names(&indexes), ["tenant_phase_rebuild_phase_idx"]);
        assert_eq!(index_names(&table), Vec::<String>::new());
        let more = "-- indexes\nCREATE UNIQUE INDEX IF NOT EXISTS a_idx ON t (x);\n\
                    CREATE INDEX b_idx ON t (y) WHERE z IS NULL;";
        assert_eq!(index_names(more), ["a_idx", "b_idx"]);
        for (kind, sql) in DEFINITIONS {
            let (_, live) = definition_parts(sql, kind.table(Slot::Live));
            let (_, rebuild) = definition_parts(sql, kind.table(Slot::Rebuild));
            let (live, rebuild) = (index_names(&live), index_names(&rebuild));
            assert!(!live.is_empty(), "{kind} has secondary indexes");
            assert_eq!(live.len(), rebuild.len());
            assert!(live.iter().zip(&rebuild).all(|(l, r)| l != r), "{kind}");
        }
    }
}
