//! Fault tests: the real `assent` binary as child processes, killed,
//! restarted and run side by side on one database, with a real SMTP server.
//! The slow ones are `#[ignore]`d so that `cargo test` stays quick; CI runs
//! them with `--include-ignored`.

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "../api/smtp_server.rs"]
#[allow(dead_code)]
mod smtp_server;

mod harness;

mod crash;
mod db_faults;
mod instances;
mod upgrades;
