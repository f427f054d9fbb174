//! Shared helpers of the ledger test suite.
