//! The onboarding ledger's read models.
