//! The `ledger` command; everything lives in the `ledger_cli` library.

use std::process::ExitCode;

fn main() -> ExitCode {
    ledger_cli::main()
}
