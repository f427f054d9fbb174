//! `ledger erase`: erases a tenant's personal data, as `POST /v1/tenants/{id}/erase` does.

use ledger_api::Erased;
use ledger_commands::{CommandRequest, ExecuteError, Executor};
use ledger_core::{StoreError, StoreOptions};
use ledger_domain::{Command, DomainError};
use serde_json::{Map, json};
use uuid::Uuid;

use crate::args::EraseArgs;
use crate::database::{self, Target};
use crate::output::{CliError, print_json};

/// Erases the tenant `args.tenant` names.
pub async fn run(target: &Target, args: EraseArgs) -> Result<(), CliError> {
    let tenant = Uuid::try_parse(args.tenant.trim()).map_err(|_| {
        CliError::bad_input(
            "invalid_tenant_id",
            format!("{:?} is not a tenant id; tenant ids are UUIDs", args.tenant),
        )
    })?;
    let db = database::open_existing(target, StoreOptions::default()).await?;
    let vault = super::vault(&db);
    let executor = Executor::new(super::sealed(&db));
    let mut metadata = Map::new();
    metadata.insert("actor".into(), json!("cli"));
    let request = CommandRequest {
        metadata,
        ..CommandRequest::new(Command::EraseTenant {})
    };
    let erasure = ledger_commands::erase(&executor, &vault, tenant, request)
        .await
        .map_err(execute_error)?;
    db.flush_wakeups().await;
    print_json(&Erased::of(tenant, &erasure))
}

/// A command's failure as the CLI reports it: the store's errors as every command does, the
/// domain's with their code.
pub(crate) fn execute_error(e: ExecuteError) -> CliError {
    match e {
        ExecuteError::Store(e) => CliError::Store(e),
        ExecuteError::Conflict(c) => CliError::Store(StoreError::Conflict(c)),
        ExecuteError::Domain(DomainError::TenantNotFound) => {
            CliError::bad_input("tenant_not_found", "no tenant has this id")
        }
        other => CliError::Failed {
            code: other.code(),
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_their_code() {
        let missing = execute_error(ExecuteError::Domain(DomainError::TenantNotFound));
        assert_eq!(missing.to_json()["error"], "tenant_not_found");
        assert_eq!(
            missing.exit_code(),
            CliError::bad_input("x", "y").exit_code()
        );
        let at = chrono::DateTime::from_timestamp(0, 0).unwrap();
        let erased = execute_error(ExecuteError::Domain(DomainError::TenantErased {
            erased_at: at,
        }));
        assert_eq!(erased.to_json()["error"], "tenant_erased");
    }
}
