//! Interoperability: software written by others drives or checks the service.

mod attestation;
mod authorization;
mod code_flow;
mod encryption;
mod fuzz;
mod leaks;
mod mdoc;
mod refresh;
mod sd_jwt;
mod status;
mod w3c;
mod wallet_initiated;
mod webhooks;
