//! The `ledger` command, built inside this package so that the process tests can run it
//! (`env!("CARGO_BIN_EXE_ledger-under-test")`): cargo builds only a test's own package's binaries.

fn main() -> std::process::ExitCode {
    ledger_cli::main()
}
