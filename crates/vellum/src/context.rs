//! What every feature function receives: configuration, store, secrets, clock and key cache.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::credentials::Configurations;
use crate::keys::KeyCache;
use crate::secrets::Secrets;
use crate::store::Store;
use crate::streams::LogTail;

pub struct Context {
    pub config: Config,
    /// `config.credential_configurations`, each read by its format.
    pub credential_configurations: Configurations,
    /// The credential issuer identifier (no trailing slash).
    pub issuer_url: String,
    /// The path part of `issuer_url` ("" or e.g. "/tenant"), under which endpoints are served.
    pub base_path: String,
    pub store: Arc<dyn Store>,
    pub secrets: Secrets,
    pub clock: Arc<dyn Clock>,
    /// SHA-256 (hex) of the management API key.
    pub api_key_hash: String,
    pub keys: KeyCache,
    /// Cancelled when the server starts to shut down: live event streams end on it, since
    /// graceful shutdown waits for every response to finish.
    pub stopping: CancellationToken,
    /// The newest events, shared by live event streams.
    pub log_tail: LogTail,
}

impl Context {
    /// An absolute URL of one of our endpoints, e.g. `endpoint("/token")`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer_url, path)
    }
}
