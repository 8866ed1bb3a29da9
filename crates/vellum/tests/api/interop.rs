//! Interoperability: software written by others drives or checks the service.

mod attestation;
mod authorization;
mod batch;
mod code_flow;
mod console;
mod deferred;
mod encryption;
mod fuzz;
mod holder_did;
mod leaks;
mod mdoc;
mod metrics;
mod refresh;
mod sd_jwt;
mod status;
mod w3c;
mod wallet_initiated;
mod webhooks;
