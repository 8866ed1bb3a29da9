//! What every feature function receives: configuration, store, secrets, clock and key cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use vellum_formats::jose::SigningKey;

use crate::clock::Clock;
use crate::config::Config;
use crate::credentials::Configurations;
use crate::events::tail::LogTail;
use crate::ids::KeyId;
use crate::secrets::Secrets;
use crate::store::Store;

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

/// Decrypted signing keys, kept after first use (`keys::signing_key`): keys never change once
/// stored, so the cache never needs to forget one.
#[derive(Default)]
pub struct KeyCache(Mutex<HashMap<KeyId, SigningKey>>);

impl KeyCache {
    pub fn get(&self, id: &KeyId) -> Option<SigningKey> {
        self.0.lock().ok()?.get(id).cloned()
    }

    pub fn insert(&self, id: KeyId, key: SigningKey) {
        if let Ok(mut keys) = self.0.lock() {
            keys.insert(id, key);
        }
    }
}
