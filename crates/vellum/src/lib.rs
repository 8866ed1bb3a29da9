//! Vellum: an OID4VCI 1.0 credential issuer with a profile-based management API.
//! docs/ARCHITECTURE.md is the map of this crate.

pub mod app;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod context;
pub mod credentials;
pub mod deferred;
pub mod encryption;
pub mod errors;
pub mod events;
pub mod http;
pub mod ids;
pub mod issuance;
pub mod keys;
pub mod limits;
pub mod mapping;
pub mod metadata;
pub mod metrics;
pub mod notifications;
pub mod oauth;
pub mod offers;
pub mod operator;
pub mod profiles;
pub mod protocol;
pub mod qr;
pub mod secrets;
pub mod sessions;
pub mod status;
pub mod store;
pub mod streams;
