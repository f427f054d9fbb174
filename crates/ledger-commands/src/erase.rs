//! Erasing a tenant: record `TenantErased` in its stream, then destroy its data key. The event
//! comes first, so a command racing the erasure either lands before it or is refused after it;
//! the key goes second, and every process reads the tenant's personal fields as `[erased]`
//! from then on. An erasure is also re-applied from the log ([`reapply_erasures`]), so a key
//! table restored from an older backup cannot bring an erased key back.

use futures::TryStreamExt;
use ledger_core::{EventStore, ReadAll};
use ledger_domain::Command;
use uuid::Uuid;

use crate::{CommandRequest, ExecuteError, Executed, Executor, Vault};

/// What an erasure did.
#[derive(Clone, Debug, PartialEq)]
pub struct Erasure {
    /// The command's outcome: `TenantErased` appended, or `already_done` for a tenant erased
    /// before.
    pub executed: Executed,
    /// True when a live key was destroyed now (false when it was gone already).
    pub key_destroyed: bool,
}

/// The type name of the erasure event.
pub const TENANT_ERASED: &str = "TenantErased";

/// Erases a tenant: appends `TenantErased` (through `executor`, so with the request's
/// metadata, expectation and idempotency) and destroys the tenant's key in `vault`. Erasing an
/// erased tenant appends nothing and destroys the key again if it came back.
pub async fn erase<S: EventStore>(
    executor: &Executor<S>,
    vault: &Vault,
    tenant_id: Uuid,
    mut request: CommandRequest,
) -> Result<Erasure, ExecuteError> {
    request.command = Command::EraseTenant {};
    let executed = executor.execute(tenant_id, request).await?;
    let key_destroyed = vault.destroy(&tenant_id.to_string()).await?;
    // The cached state holds the tenant's personal fields in plain text.
    executor.forget(tenant_id);
    Ok(Erasure {
        executed,
        key_destroyed,
    })
}

/// Destroys the key of every tenant the log says was erased; the number of keys destroyed
/// (0 unless the key table was restored from before an erasure).
pub async fn reapply_erasures(store: &dyn EventStore, vault: &Vault) -> Result<u64, ExecuteError> {
    let query = ReadAll::from_start()
        .category("tenant")
        .event_type(TENANT_ERASED);
    let mut erased = store.read_all(query);
    let mut destroyed = 0;
    while let Some(event) = erased.try_next().await? {
        if vault.destroy(event.stream.id()).await? {
            tracing::warn!(
                tenant = event.stream.id(),
                "the key of a tenant erased at position {} was back (a restored key table?); destroyed it again",
                event.position.0
            );
            destroyed += 1;
        }
    }
    Ok(destroyed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_domain::TenantEvent;

    #[test]
    fn the_event_name_is_the_catalogs() {
        let at = chrono::DateTime::from_timestamp(0, 0).unwrap();
        assert_eq!(TenantEvent::TenantErased { at }.event_type(), TENANT_ERASED);
    }
}
