//! End-to-end tests: the real `rampart` binary on port 0 with a fresh data dir, driven over
//! real HTTPS (and the offline CLI), on SQLite and, when `RAMPART_TEST_POSTGRES` is set, on
//! PostgreSQL.

mod audit_cli;
mod detection;
mod device_management;
mod firmware;
mod first_start;
mod flows;
mod gateway;
mod isolation;
mod retained;
mod security_flows;
mod simulate;
mod tidy;

pub const BIN: &str = env!("CARGO_BIN_EXE_rampart");
