//! The one integration-test binary: every test starts the real app on 127.0.0.1:0 with a fresh
//! database (`support::spawn_app`), or the real binary, and talks HTTP to it.
//!
//! - `features/`: what the service does, feature by feature (and the store conformance suite);
//! - `interop/`: the same driven or checked by software written by others (wallet, verifiers,
//!   webhook receivers, a schema fuzzer), and the secrets scan over their flows;
//! - `operations/`: running it: several instances, a database outage, restarts, durability,
//!   upgrades of an existing database;
//! - `support/`: what the tests share.

mod features;
mod interop;
mod operations;
mod support;
