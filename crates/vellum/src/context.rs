//! What every feature function receives: configuration, store, secrets, clock, key cache, and
//! what was learnt from the OpenID providers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use vellum_formats::jose::{Jwk, SigningKey};

use crate::clock::{Clock, Millis};
use crate::config::Config;
use crate::credentials::Configurations;
use crate::events::tail::LogTail;
use crate::ids::{KeyId, ProviderId};
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
    /// For requests to the OpenID providers: timeouts, no redirects, no proxy from the
    /// environment.
    pub provider_client: reqwest::Client,
    pub providers: ProviderCache,
    /// Status lists as last signed, so that reading an unchanged list costs no signature.
    pub status_lists: SignedCache,
    /// Cancelled when the server starts to shut down: live event streams end on it, since
    /// graceful shutdown waits for every response to finish; a retention sweep stops between
    /// its batches.
    pub stopping: CancellationToken,
    /// The newest events, shared by live event streams.
    pub log_tail: LogTail,
    /// The key wallets encrypt credential requests to, and its `kid` (its thumbprint).
    pub request_key: vellum_formats::jwe::DecryptionKey,
    pub request_key_id: String,
    /// This instance's counters (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
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

/// An OpenID provider's discovery document, as far as the authorization code flow reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

/// What is known of one provider: its metadata and signing keys, and when each was fetched.
#[derive(Debug, Clone)]
pub struct KnownProvider {
    pub metadata: ProviderMetadata,
    pub metadata_fetched_at: Millis,
    pub keys: Vec<(Option<String>, Jwk)>,
    pub keys_fetched_at: Millis,
}

/// A document signed once and served until it changes: its bytes, and what it was signed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub body: Vec<u8>,
    pub etag: String,
    /// The version of what it was signed from (a list's last change).
    pub version: i64,
    /// Unix milliseconds after which it is signed again (well before its `exp`).
    pub fresh_until: i64,
    /// When it was last found to be up to date (Unix milliseconds).
    pub checked_at: i64,
}

/// Signed documents by name (`status::serve`).
#[derive(Default)]
pub struct SignedCache(Mutex<HashMap<String, Signed>>);

impl SignedCache {
    pub fn get(&self, name: &str) -> Option<Signed> {
        self.0.lock().ok()?.get(name).cloned()
    }

    pub fn insert(&self, name: String, signed: Signed) {
        if let Ok(mut documents) = self.0.lock() {
            documents.insert(name, signed);
        }
    }
}

/// The providers' documents, fetched on first use (`oauth::upstream`) and refreshed there.
#[derive(Default)]
pub struct ProviderCache(Mutex<HashMap<ProviderId, KnownProvider>>);

impl ProviderCache {
    pub fn get(&self, id: &ProviderId) -> Option<KnownProvider> {
        self.0.lock().ok()?.get(id).cloned()
    }

    pub fn insert(&self, id: ProviderId, known: KnownProvider) {
        if let Ok(mut providers) = self.0.lock() {
            providers.insert(id, known);
        }
    }
}
