//! The onboarding ledger's read models, each a module holding its table specs (declared once),
//! its typed rows, a pure `apply` of onboarding events to those rows, and its queries:
//!
//! - [`tenant_phase`]: per tenant, its registration, phase and when each stage completed;
//! - [`onboarding_locks`]: per tenant, the last onboarding lock;
//! - [`pending_syncs`]: the compensation queue, per tenant and downstream target;
//! - [`onboarding_funnel`]: per UTC day, registrations, first arrivals at each phase,
//!   completions (never twice per tenant), backfills and time-to-complete buckets;
//! - [`audit_trail`]: one row per event of the whole log, with its tenant, actor and request
//!   ids, indexed for audit queries.
//!
//! Events are decoded once for all of them ([`Decoder`] into [`Logged`], which carries a
//! [`Change`] for onboarding events); the projection
//! engine (`ledger-projector`) runs the [`catalog`]. Everything here is pure but the query
//! functions, which read through the engine's `ProjectionStore` trait. The tables are
//! documented in `projections/{postgres,sqlite}/<read model>.sql`.

pub mod as_of;
pub mod audit_trail;
pub mod bench;
mod change;
mod codec;
pub mod onboarding_funnel;
pub mod onboarding_locks;
pub mod pending_syncs;
pub mod tenant_phase;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod typed;

#[cfg(test)]
mod fold_tests;

use std::sync::Arc;

use ledger_projector::{Catalog, ReadModel};

pub use as_of::{Cutoff, Folded, FunnelAsOf, tenant_rows};
pub use audit_trail::{AuditFilter, AuditTrail, Order, TrailCursor, TrailRow};
pub use change::{Change, Decoder, Entry, Logged, OnChanges, TENANT_CATEGORY, normalize};
pub use codec::{
    PhaseSchema, SyncStatusSchema, day_text, parse_day, parse_phase, parse_status, phase_text,
    status_text,
};
pub use onboarding_funnel::{
    COUNT_LABELS, FUNNEL_STEPS, FunnelDay, FunnelTenant, OnboardingFunnel,
};
pub use onboarding_locks::{LockFilter, LockItem, LockRow, OnboardingLocks};
pub use pending_syncs::{PendingSyncRow, PendingSyncs, SyncFilter};
pub use tenant_phase::{TenantFilter, TenantPhase, TenantPhaseRow};

/// The four read models of onboarding events, as they apply [`Change`]s.
pub fn onboarding() -> Vec<Arc<dyn ReadModel<Change>>> {
    vec![
        Arc::new(TenantPhase),
        Arc::new(OnboardingLocks),
        Arc::new(PendingSyncs),
        Arc::new(OnboardingFunnel),
    ]
}

/// The five read models (the four of [`onboarding`], then [`AuditTrail`]), in the order
/// runners and rebuilds take them, with their decoder.
pub fn catalog() -> Catalog<Logged> {
    let mut models: Vec<Arc<dyn ReadModel<Logged>>> = onboarding()
        .into_iter()
        .map(|m| Arc::new(OnChanges(m)) as Arc<dyn ReadModel<Logged>>)
        .collect();
    models.push(Arc::new(AuditTrail));
    Catalog::new(Arc::new(Decoder), models)
        .expect("the read models' specs are well formed (a test checks them)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_holds_the_five_read_models_with_valid_specs() {
        let catalog = catalog();
        assert_eq!(
            catalog.names(),
            [
                "tenant_phase",
                "onboarding_locks",
                "pending_syncs",
                "onboarding_funnel",
                "audit_trail"
            ]
        );
        for model in catalog.models() {
            let schema = model.schema();
            assert_eq!(schema.validate(), Ok(()));
            assert_eq!(
                schema.tables[0].name, schema.name,
                "the first table is the model's"
            );
        }
        let onboarding = &catalog.names()[..4];
        for name in onboarding {
            assert_eq!(catalog.get(name).unwrap().categories(), [TENANT_CATEGORY]);
        }
        assert_eq!(catalog.filter(onboarding).categories, [TENANT_CATEGORY]);
        assert!(
            catalog.filter(&["audit_trail"]).categories.is_empty(),
            "the trail reads the whole log"
        );
        assert!(catalog.filter(&catalog.names()).categories.is_empty());
    }

    /// The properties of a type's OpenAPI schema, sorted.
    fn properties<T: utoipa::PartialSchema>() -> Vec<String> {
        let schema = serde_json::to_value(T::schema()).unwrap();
        let mut names: Vec<String> = schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn the_api_schemas_of_rows_name_the_columns() {
        use ledger_projector::Record;
        fn check<R: Record + utoipa::PartialSchema>() {
            let mut columns: Vec<String> = R::TABLE
                .columns
                .iter()
                .map(|c| c.name.to_string())
                .collect();
            columns.sort();
            assert_eq!(properties::<R>(), columns, "{}", R::TABLE.name);
        }
        check::<TenantPhaseRow>();
        check::<LockRow>();
        check::<PendingSyncRow>();
        check::<FunnelDay>();
        let item = serde_json::to_value(<LockItem as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(item["allOf"][0]["$ref"], "#/components/schemas/LockRow");
        assert!(item["allOf"][1]["properties"]["active"].is_object());
        let phase = serde_json::to_value(<PhaseSchema as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(phase["enum"][0], "NOT_STARTED");
        let status =
            serde_json::to_value(<SyncStatusSchema as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(status["enum"][0], "pending_sync");
    }
}
