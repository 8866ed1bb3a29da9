//! Interoperability: software written by others drives or checks the service.

mod authorization;
mod fuzz;
mod leaks;
mod mdoc;
mod sd_jwt;
mod w3c;
mod webhooks;
