//! What the service does, feature by feature.

mod batch;
mod connections;
mod cors;
mod credential;
mod deferred;
mod dpop;
mod encryption;
mod flow;
mod headers;
mod key_attestation;
mod keys;
mod layering;
mod mdoc;
mod metadata;
mod notification;
mod offers;
mod openapi;
mod profiles;
mod sessions;
mod startup;
mod status;
mod store;
mod streams;
mod token;
mod w3c;
mod webhooks;
