//! `ledger token issue|revoke|list`: the admin tokens stored in the database, managed on the
//! database directly. Running servers need no restart: they check the registry again at least
//! every second, so a revoked token stops working on all of them within that time.

use chrono::{DateTime, Utc};
use ledger_api::token_registry::{self, Role, TokenError, TokenInfo};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::args::{TokenCommand, TokenRole};
use crate::database::Target;
use crate::output::{CliError, JsonLines, print_json};

/// What `ledger token issue` prints: the token, this once.
#[derive(Serialize)]
struct IssuedOut<'a> {
    #[serde(flatten)]
    info: &'a TokenInfo,
    token: &'a str,
    message: &'static str,
}

/// What `ledger token revoke` prints.
#[derive(Serialize)]
struct RevokedOut {
    token_id: Uuid,
    name: String,
    revoked_at: Option<DateTime<Utc>>,
    was_already_revoked: bool,
}

/// Runs one token command on `target`'s database (which must exist).
pub async fn run(target: &Target, command: TokenCommand) -> Result<(), CliError> {
    let db = super::open_existing(target).await?;
    let store = db.store.as_ref();
    let error = |e: TokenError| match e {
        TokenError::Store(e) => target.error(e),
        other => CliError::bad_input(other.code(), other.to_string()),
    };
    let metadata = json!({"actor": "cli"});
    match command {
        TokenCommand::Issue(args) => {
            let role = match args.role {
                TokenRole::Admin => Role::Admin,
                TokenRole::Auditor => Role::Auditor,
            };
            let issued = token_registry::issue(store, &args.name, role, metadata)
                .await
                .map_err(error)?;
            print_json(&IssuedOut {
                info: &issued.info,
                token: &issued.token,
                message: "keep this token secret: it is shown only now; send it as `Authorization: Bearer <token>`",
            })
        }
        TokenCommand::Revoke(args) => {
            let revoked = token_registry::revoke(store, args.token.trim(), metadata)
                .await
                .map_err(error)?;
            print_json(&RevokedOut {
                token_id: revoked.info.token_id,
                name: revoked.info.name,
                revoked_at: revoked.info.revoked_at,
                was_already_revoked: revoked.was_already_revoked,
            })
        }
        TokenCommand::List => {
            let tokens = token_registry::list(store)
                .await
                .map_err(|e| target.error(e))?;
            let mut out = JsonLines::stdout();
            for token in &tokens {
                out.write(token)?;
            }
            out.finish()
        }
    }
}
