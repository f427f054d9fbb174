//! The `ledger` command; everything lives in the `ledger_cli` library.

use std::process::ExitCode;

/// mimalloc: the projection engine and the readers allocate many small, short-lived values
/// from several threads, where it is markedly faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ledger_cli::main()
}
