//! The executor against the in-memory store: the flow, races resolved into domain answers,
//! stale expectations and idempotent retries.

/// Every command reads its tenant's stream.
fn configure(
    ex: ledger_commands::Executor<ledger_memory::MemoryStore>,
) -> ledger_commands::Executor<ledger_memory::MemoryStore> {
    ex
}

include!("cases/execute.rs");
