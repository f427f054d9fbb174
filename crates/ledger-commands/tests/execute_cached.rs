//! The executor's cases again, deciding on the folded states it caches: every outcome is the
//! same as when each command reads its stream.

/// Commands decide on cached states.
fn configure(
    ex: ledger_commands::Executor<ledger_memory::MemoryStore>,
) -> ledger_commands::Executor<ledger_memory::MemoryStore> {
    ex.with_state_cache(1000)
}

include!("cases/execute.rs");
