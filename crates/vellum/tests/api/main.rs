//! The one integration-test binary: every test starts the real app on 127.0.0.1:0 with a fresh
//! database (helpers::spawn_app) and talks HTTP to it.

mod database;
mod helpers;
mod support;
mod wallet;

mod cluster;
mod connections;
mod credential;
mod durability;
mod flow;
mod fuzz;
mod headers;
mod interop;
mod interop_mdoc;
mod interop_w3c;
mod keys;
mod layering;
mod leaks;
mod mdoc;
mod metadata;
mod offers;
mod openapi;
mod outage;
mod process;
mod profiles;
mod restart;
mod sessions;
mod startup;
mod store;
mod streams;
mod token;
mod upgrade;
mod w3c;
mod webhooks;
mod webhooks_interop;
