//! Typed configuration: built-in defaults -> demo -> file -> `VELLUM_*` environment, validated
//! once at start so that a bad value fails with the name of its key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;
use vellum_formats::jose::Algorithm;

use crate::secrets::WebhookSecret;

const DEFAULTS: &str = include_str!("../config.default.toml");
const DEMO: &str = include_str!("../demo.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub public_url: String,
    pub api_key: String,
    pub master_key: String,
    pub master_key_file: PathBuf,
    pub demo: bool,
    pub roles: RolesConfig,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub offers: OffersConfig,
    pub protocol: ProtocolConfig,
    pub dpop: DpopConfig,
    pub authorization: AuthorizationConfig,
    pub client_attestation: ClientAttestationConfig,
    pub metadata: MetadataConfig,
    pub status_lists: StatusListsConfig,
    pub encryption: EncryptionConfig,
    pub notifications: NotificationsConfig,
    pub streams: StreamsConfig,
    pub metrics: MetricsConfig,
    pub console: ConsoleConfig,
    pub credentials: CredentialsConfig,
    pub sessions: SessionsConfig,
    #[serde(default)]
    pub credential_configurations: BTreeMap<String, CredentialConfiguration>,
    #[serde(default)]
    pub keys: BTreeMap<String, KeyDeclaration>,
    /// Profile definitions, as written: `profiles` parses and checks them.
    #[serde(default)]
    pub profiles: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub host: String,
    pub port: u16,
    pub management_body_limit: usize,
    pub protocol_body_limit: usize,
    /// For a request's headers, from the moment the connection waits for one.
    #[serde(deserialize_with = "delay")]
    pub header_read_timeout: Duration,
    /// For a request's body and its answer (a stream: until it starts).
    #[serde(deserialize_with = "delay")]
    pub request_timeout: Duration,
    pub max_connections: usize,
    /// Origins of browser wallets allowed to call the wallet-facing endpoints (CORS): `*` for
    /// any, or `scheme://host[:port]` each; empty for none. Never the management API.
    pub cors_origins: Vec<String>,
    /// How long a browser may keep a preflight's answer (`Access-Control-Max-Age`).
    pub cors_max_age_seconds: u32,
}

/// What this instance does; several instances on one PostgreSQL database may split the work.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesConfig {
    /// The management API and the wallet-facing endpoints.
    pub api: bool,
    /// Webhook delivery and the session sweeper (expiry, retention).
    pub worker: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    pub synchronous: Synchronous,
    pub pool_size: usize,
    #[serde(deserialize_with = "delay")]
    pub connect_timeout: Duration,
}

/// The store `database.url` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Normal,
    Full,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffersConfig {
    pub default_expires_in_seconds: u32,
    pub max_expires_in_seconds: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolConfig {
    pub access_token_ttl_seconds: u32,
    pub nonce_ttl_seconds: u32,
    pub proof_max_age_seconds: u32,
    pub proof_max_future_seconds: u32,
    pub max_tx_code_attempts: u32,
    /// The most key proofs, and so credentials, one credential request may carry (OID4VCI 1.0
    /// §8, `batch_credential_issuance.batch_size`); 1: no batch issuance.
    pub batch_size: u32,
    /// The singular `proof` member of OID4VCI drafts 13-15 is accepted beside `proofs`.
    pub accept_singular_proof: bool,
    /// Deferred issuance: how long the operator's backend has to complete a transaction (the
    /// session and its access token live that long), and how often a wallet should ask.
    pub deferred_window_seconds: u32,
    pub deferred_interval_seconds: u32,
}

/// DPoP (RFC 9449): sender-constrained access tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpopConfig {
    /// Every token request must carry a DPoP proof (HAIP); otherwise a wallet that sends none
    /// gets a Bearer token.
    pub required: bool,
    /// Proofs must carry a server nonce (`DPoP-Nonce`).
    pub require_nonce: bool,
    pub nonce_ttl_seconds: u32,
    pub proof_max_age_seconds: u32,
    pub proof_max_future_seconds: u32,
    pub signing_alg_values_supported: Vec<String>,
}

impl DpopConfig {
    /// The accepted proof algorithms, parsed; validated at start so this cannot fail later.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        self.signing_alg_values_supported
            .iter()
            .filter_map(|name| Algorithm::parse(name).ok())
            .collect()
    }
}

/// The authorization code flow: PAR, the authorization endpoint, and the OpenID providers
/// holders log in at.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// Authorization requests must be pushed first (RFC 9126); HAIP requires it.
    pub require_pushed_authorization_requests: bool,
    /// How long a `request_uri` from the PAR endpoint may be used (once).
    pub request_uri_ttl_seconds: u32,
    /// How long the holder may take to log in at the provider.
    pub login_timeout_seconds: u32,
    /// How long an authorization code may be exchanged (once).
    pub code_ttl_seconds: u32,
    /// The authorization code grant also gives a refresh token (rotated at each use) for new
    /// access tokens, and so new credentials, after the first.
    pub refresh_tokens: bool,
    /// How long the refresh tokens of one authorization may be used, from the code's exchange:
    /// rotation never extends it.
    pub refresh_token_ttl_seconds: u32,
    /// How long the provider may take to answer one request (discovery, keys, token).
    #[serde(deserialize_with = "delay")]
    pub provider_timeout: Duration,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
}

/// Wallet attestation as client authentication (draft-ietf-oauth-attestation-based-client-auth):
/// a wallet provider the operator trusts vouches for the wallet instance's key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAttestationConfig {
    /// Wallets without an attestation (public clients) may use the authorization code flow;
    /// HAIP: false.
    pub allow_public_clients: bool,
    /// Every attestation PoP must carry a challenge from the challenge endpoint.
    pub require_challenge: bool,
    pub challenge_ttl_seconds: u32,
    /// A PoP's iat may be this old, or `dpop.proof_max_future_seconds` in the future; each PoP is
    /// accepted once.
    pub pop_max_age_seconds: u32,
    pub signing_alg_values_supported: Vec<String>,
    /// The public keys (JWKs) of the wallet providers whose attestations are accepted.
    #[serde(default)]
    pub trusted_keys: Vec<serde_json::Value>,
    /// PEM files of the certificates (trust anchors) under which wallet providers sign: an
    /// attestation whose `x5c` chains to one is accepted.
    #[serde(default)]
    pub trusted_certificates: Vec<PathBuf>,
    /// The anchors read from `trusted_certificates` (DER), read once.
    #[serde(skip)]
    anchors: std::sync::OnceLock<Vec<Vec<u8>>>,
}

impl ClientAttestationConfig {
    /// The accepted algorithms, parsed; validated at start so this cannot fail later.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        self.signing_alg_values_supported
            .iter()
            .filter_map(|name| Algorithm::parse(name).ok())
            .collect()
    }

    /// The certificates of `trusted_certificates` (DER); read and checked at start, so a file
    /// that became unreadable since leaves only the others.
    pub fn anchors(&self) -> &[Vec<u8>] {
        self.anchors.get_or_init(|| {
            self.trusted_certificates
                .iter()
                .filter_map(|path| read_certificates(path).ok())
                .flatten()
                .collect()
        })
    }

    /// Whether any wallet provider's attestations (of clients or of keys) can be checked.
    pub fn trusts_a_wallet_provider(&self) -> bool {
        !self.trusted_keys.is_empty() || !self.trusted_certificates.is_empty()
    }

    /// The trusted wallet-provider keys, parsed; validated at start so none is dropped here.
    pub fn keys(&self) -> Vec<vellum_formats::jose::Jwk> {
        self.trusted_keys
            .iter()
            .filter_map(|jwk| vellum_formats::jose::Jwk::from_value(jwk).ok())
            .collect()
    }
}

/// Status lists: where credentials whose profile asks for it (`credentialStatus: "STATUS_LIST"`)
/// get an entry, published for verifiers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusListsConfig {
    /// Entries per list (a new list when one is full); Bitstring lists have at least 131,072.
    pub size: u32,
    /// Bits per entry of a Token Status List: 1 (valid, invalid) or 2 (also suspended), 4, 8.
    pub bits: u8,
    /// How long verifiers may cache a list (`ttl`, Cache-Control max-age).
    pub ttl_seconds: u32,
    /// How long a signed list is valid (`exp`).
    pub validity_seconds: u32,
    /// The longest a change waits before the served list shows it: within this time of its
    /// last look at the store, an instance answers from the list it signed.
    #[serde(deserialize_with = "delay")]
    pub publish_delay: Duration,
}

/// Encrypted credential requests and responses (OID4VCI 1.0 §10): ECDH-ES on P-256 with
/// A128GCM or A256GCM, DEFLATE optional; always offered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Every credential and deferred credential request must be encrypted, and ask for an
    /// encrypted response (`encryption_required` in both metadata objects).
    pub required: bool,
}

/// Signed credential issuer metadata (OID4VCI 1.0 §12.2.2), served on `Accept: application/jwt`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataConfig {
    /// The managed key that signs the metadata; none: metadata is served as JSON only.
    #[serde(default)]
    pub signing_key: Option<String>,
    /// PEM certificates, leaf first, certifying `signing_key` (the `x5c` header); none: a
    /// development chain for the key.
    #[serde(default)]
    pub x5_chain_file: Option<PathBuf>,
    /// How long a signed metadata document is valid (`exp` - `iat`).
    pub validity_seconds: u32,
}

/// `scheme://host[:port]`, as a browser sends it in `Origin`.
fn is_origin(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|url| {
        url.has_host()
            && url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none()
            && url.username().is_empty()
            && url.origin().ascii_serialization() == text
    })
}

/// The certificates (DER) of a PEM file.
fn read_certificates(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let pem = std::fs::read_to_string(path).map_err(|error| error.to_string())?;
    vellum_formats::x509::from_pem_chain(&pem).map_err(|error| error.to_string())
}

/// An OpenID Connect provider (`[authorization.providers.<id>]`), a confidential client of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Its issuer identifier; discovery is read from `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: ClientSecret,
    #[serde(default = "default_provider_scopes")]
    pub scopes: Vec<String>,
}

fn default_provider_scopes() -> Vec<String> {
    vec!["openid".into()]
}

/// A client secret: never printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret([redacted])")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    #[serde(deserialize_with = "delays")]
    pub retry_schedule: Vec<Duration>,
    pub retry_jitter: f64,
    #[serde(deserialize_with = "delay")]
    pub connect_timeout: Duration,
    #[serde(deserialize_with = "delay")]
    pub timeout: Duration,
    /// How long a claimed delivery belongs to the instance that claimed it.
    #[serde(deserialize_with = "delay")]
    pub lease: Duration,
    pub max_response_bytes: usize,
    pub max_in_flight: usize,
    pub max_in_flight_per_url: usize,
    #[serde(deserialize_with = "delay")]
    pub poll_interval: Duration,
    /// For webhooks that have no secret of their own (`""`: none).
    #[serde(deserialize_with = "optional_secret")]
    pub signing_secret: Option<WebhookSecret>,
    #[serde(deserialize_with = "networks")]
    pub allow_private_targets: Vec<IpNet>,
    /// Every delivery goes through it (`""`: no proxy).
    #[serde(deserialize_with = "optional_proxy")]
    pub proxy: Option<Url>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamsConfig {
    #[serde(deserialize_with = "delay")]
    pub heartbeat: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// A bearer token for `GET /metrics` besides the management API key ("": the key only).
    pub token: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Whether `/console` is served.
    pub enabled: bool,
    /// How long a console sign-in lasts.
    #[serde(deserialize_with = "delay")]
    pub session_lifetime: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    pub default_validity_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    pub retention_seconds: u64,
    pub sweep_interval_seconds: u64,
}

/// One entry of `credential_configurations_supported`: the members every format has, and the
/// format's own (`vct`, `doctype`, `credential_definition`, ...), which its format reads and
/// checks at start (`credentials`).
#[derive(Debug, Clone, Deserialize)]
pub struct CredentialConfiguration {
    pub format: String,
    pub scope: Option<String>,
    pub credential_signing_alg_values_supported: Vec<String>,
    pub cryptographic_binding_methods_supported: Vec<String>,
    pub proof_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    pub credential_metadata: Option<Value>,
    /// Key attestations (OID4VCI 1.0 Annex D) the wallet must send with its proofs, with the
    /// attack potential resistance accepted; none: a key attestation is welcome, not required.
    #[serde(default)]
    pub key_attestations_required: Option<KeyAttestationsRequired>,
    /// Every other member, for the format: unknown ones are refused there.
    #[serde(flatten)]
    pub members: Map<String, Value>,
}

impl CredentialConfiguration {
    /// The proof algorithms, parsed; validated at start so this cannot fail later.
    pub fn proof_algorithms(&self) -> Vec<Algorithm> {
        self.proof_signing_alg_values_supported
            .iter()
            .filter_map(|name| Algorithm::parse(name).ok())
            .collect()
    }
}

/// `key_attestations_required` of a credential configuration: an attestation's `key_storage`
/// and `user_authentication` must each name one of these values (when given).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAttestationsRequired {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_storage: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_authentication: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDeclaration {
    pub algorithm: String,
}

/// An https URL, or http on a loopback address (a provider run beside the issuer), with a host
/// and without user info, query or fragment.
pub fn trusted_url(text: &str) -> bool {
    let Ok(url) = Url::parse(text) else {
        return false;
    };
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => return false,
    };
    (url.scheme() == "https" || (url.scheme() == "http" && loopback))
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none()
}

/// `250ms`, `5s`, `5m`, `2h`, `1d`.
pub fn parse_delay(text: &str) -> Result<Duration, String> {
    let invalid = || format!("{text:?} is not a delay such as 250ms, 5s, 5m, 2h or 1d");
    let (number, unit_ms) = if let Some(number) = text.strip_suffix("ms") {
        (number, 1)
    } else if let Some(number) = text.strip_suffix('s') {
        (number, 1000)
    } else if let Some(number) = text.strip_suffix('m') {
        (number, 60_000)
    } else if let Some(number) = text.strip_suffix('h') {
        (number, 3_600_000)
    } else if let Some(number) = text.strip_suffix('d') {
        (number, 86_400_000)
    } else {
        return Err(invalid());
    };
    let number: u64 = number.parse().map_err(|_| invalid())?;
    number
        .checked_mul(unit_ms)
        .filter(|ms| *ms <= 7 * 86_400_000)
        .map(Duration::from_millis)
        .ok_or_else(invalid)
}

/// A [`parse_delay`] text as a `Duration`, for settings read once at start.
fn delay<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_delay(&text).map_err(serde::de::Error::custom)
}

fn delays<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<Duration>, D::Error> {
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|text| parse_delay(text).map_err(serde::de::Error::custom))
        .collect()
}

/// Networks in CIDR notation, or single addresses.
fn networks<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|net| {
            net.parse::<IpNet>()
                .or_else(|_| net.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| serde::de::Error::custom(format!("{net:?} is not an address or CIDR")))
        })
        .collect()
}

fn optional_secret<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<WebhookSecret>, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.is_empty() {
        return Ok(None);
    }
    WebhookSecret::parse(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn optional_proxy<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Url>, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.is_empty() {
        return Ok(None);
    }
    Url::parse(&text)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some())
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom("must be an http(s) URL such as http://egress:3128")
        })
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// figment's message on one line, naming the key as the file spells it (`http.port`, not
    /// the environment's `HTTP.PORT` or figment's `default.http.port`). A TOML syntax error
    /// comes with a source excerpt on lines of their own, which are dropped: the message
    /// names line and column.
    fn from_figment(error: figment::Error) -> ConfigError {
        let messages: Vec<String> = error
            .into_iter()
            .map(|error| {
                let from = error
                    .metadata
                    .as_ref()
                    .map(|metadata| match &metadata.source {
                        Some(figment::Source::File(path)) => format!(" (in {})", path.display()),
                        _ => format!(" (in {})", metadata.name),
                    });
                if !error.path.is_empty() {
                    let key = error.path.join(".").to_lowercase();
                    return format!("{key}: {}{}", error.kind, from.unwrap_or_default());
                }
                let text = error.to_string();
                let mut lines = text
                    .lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .filter(|line| {
                        !line
                            .trim_start_matches(|c: char| c.is_ascii_digit())
                            .trim_start()
                            .starts_with('|')
                    });
                let first = lines.next().unwrap_or_default().to_owned();
                let rest: Vec<&str> = lines.collect();
                if rest.is_empty() {
                    first
                } else {
                    format!("{first}: {}", rest.join(" "))
                }
            })
            .collect();
        ConfigError(messages.join("; "))
    }
}

impl Config {
    /// Loads the layers. `file` is an optional operator file; `VELLUM_CONFIG` names one too.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env_file = std::env::var_os("VELLUM_CONFIG").map(PathBuf::from);
        let file = file.map(Path::to_path_buf).or(env_file);
        if let Some(path) = &file
            && !path.is_file()
        {
            return Err(ConfigError(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        let mut layers = vec![Toml::string(DEFAULTS)];
        let env = || {
            Env::prefixed("VELLUM_")
                .ignore(&["CONFIG", "LOG"])
                // VELLUM_TEST_* steer the test suite, not the service.
                .filter(|key| {
                    !key.as_str()
                        .get(..5)
                        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("test_"))
                })
                .split("__")
        };
        // The demo layer sits under the operator's file, so whether it loads is decided first.
        let mut probe = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = &file {
            probe = probe.merge(Toml::file(path));
        }
        let demo: bool = probe
            .merge(env())
            .extract_inner("demo")
            .map_err(ConfigError::from_figment)?;
        if demo {
            layers.push(Toml::string(DEMO));
        }
        let mut figment = Figment::new();
        for layer in layers {
            figment = figment.merge(layer);
        }
        if let Some(path) = &file {
            figment = figment.merge(Toml::file(path));
        }
        Self::from_figment(figment.merge(env()))
    }

    /// Defaults plus the given overrides: how tests build a configuration.
    pub fn with_overrides(overrides: Value, demo: bool) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if demo {
            figment = figment.merge(Toml::string(DEMO));
        }
        Self::from_figment(figment.merge(Serialized::defaults(overrides)))
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment.extract().map_err(ConfigError::from_figment)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        if !self.public_url.is_empty() {
            match Url::parse(&self.public_url) {
                // Published in metadata, offers and credentials: no credentials in it, nothing
                // after the path.
                Ok(url)
                    if matches!(url.scheme(), "http" | "https")
                        && url.host_str().is_some()
                        && url.username().is_empty()
                        && url.password().is_none()
                        && url.query().is_none()
                        && url.fragment().is_none() => {}
                _ => {
                    return fail(
                        "public_url",
                        "must be an http(s) URL with a host and no user info, query or fragment",
                    );
                }
            }
        }
        if !valid_host(&self.http.host) {
            return fail(
                "http.host",
                "must be an IP address (such as 0.0.0.0 or ::) or a host name",
            );
        }
        if !self.master_key.is_empty() {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD.decode(self.master_key.trim());
            if decoded.map(|key| key.len()) != Ok(32) {
                return fail("master_key", "must be 32 random bytes in base64");
            }
        }
        for (key, limit) in [
            (
                "http.management_body_limit",
                self.http.management_body_limit,
            ),
            ("http.protocol_body_limit", self.http.protocol_body_limit),
        ] {
            if !(4096..=64 << 20).contains(&limit) {
                return fail(key, "must be between 4096 and 67108864 bytes");
            }
        }
        for (key, timeout) in [
            ("http.header_read_timeout", self.http.header_read_timeout),
            ("http.request_timeout", self.http.request_timeout),
        ] {
            if timeout.is_zero() {
                return fail(key, "must be positive");
            }
        }
        if !(1..=1_000_000).contains(&self.http.max_connections) {
            return fail("http.max_connections", "must be between 1 and 1000000");
        }
        if !self.api_key.is_empty() && self.api_key.len() < 32 {
            return fail("api_key", "must be at least 32 characters");
        }
        if !self.metrics.token.is_empty() && self.metrics.token.len() < 32 {
            return fail("metrics.token", "must be at least 32 characters");
        }
        match self.database_url() {
            Some(DatabaseUrl::Postgres(url)) => {
                if url.parse::<tokio_postgres::Config>().is_err() {
                    return fail("database.url", "is not a valid PostgreSQL connection URL");
                }
            }
            Some(DatabaseUrl::Sqlite(path)) if path.as_os_str().is_empty() => {
                return fail("database.url", "sqlite:// needs a file path");
            }
            Some(DatabaseUrl::Sqlite(_)) => {}
            None => {
                return fail(
                    "database.url",
                    "must be sqlite://PATH or postgres://USER@HOST:PORT/DATABASE",
                );
            }
        }
        if !(1..=1000).contains(&self.database.pool_size) {
            return fail("database.pool_size", "must be between 1 and 1000");
        }
        for (key, delay) in [
            ("database.connect_timeout", self.database.connect_timeout),
            (
                "notifications.connect_timeout",
                self.notifications.connect_timeout,
            ),
            ("notifications.timeout", self.notifications.timeout),
            ("notifications.lease", self.notifications.lease),
            (
                "notifications.poll_interval",
                self.notifications.poll_interval,
            ),
            ("streams.heartbeat", self.streams.heartbeat),
            ("console.session_lifetime", self.console.session_lifetime),
        ] {
            if delay.is_zero() {
                return fail(key, "must be positive");
            }
        }
        if !self.roles.api && !self.roles.worker {
            return fail("roles", "an instance needs at least one of api and worker");
        }
        if self.offers.default_expires_in_seconds == 0
            || self.offers.default_expires_in_seconds > self.offers.max_expires_in_seconds
        {
            return fail(
                "offers.default_expires_in_seconds",
                "must be between 1 and offers.max_expires_in_seconds",
            );
        }
        for (key, value) in [
            (
                "protocol.access_token_ttl_seconds",
                self.protocol.access_token_ttl_seconds,
            ),
            (
                "protocol.nonce_ttl_seconds",
                self.protocol.nonce_ttl_seconds,
            ),
            (
                "protocol.max_tx_code_attempts",
                self.protocol.max_tx_code_attempts,
            ),
            ("dpop.nonce_ttl_seconds", self.dpop.nonce_ttl_seconds),
            (
                "dpop.proof_max_age_seconds",
                self.dpop.proof_max_age_seconds,
            ),
        ] {
            if value == 0 {
                return fail(key, "must be greater than 0");
            }
        }
        for (key, value) in [
            (
                "authorization.request_uri_ttl_seconds",
                self.authorization.request_uri_ttl_seconds,
            ),
            (
                "authorization.login_timeout_seconds",
                self.authorization.login_timeout_seconds,
            ),
            (
                "authorization.code_ttl_seconds",
                self.authorization.code_ttl_seconds,
            ),
            (
                "authorization.refresh_token_ttl_seconds",
                self.authorization.refresh_token_ttl_seconds,
            ),
        ] {
            if value == 0 {
                return fail(key, "must be greater than 0");
            }
        }
        for (id, provider) in &self.authorization.providers {
            let key = |member: &str| format!("authorization.providers.{id}.{member}");
            if let Err(why) = crate::ids::ProviderId::parse(id) {
                return fail(&format!("authorization.providers.{id}"), &why);
            }
            if !trusted_url(&provider.issuer) {
                return fail(
                    &key("issuer"),
                    "must be an https URL (http only on a loopback address) without query or fragment",
                );
            }
            if provider.client_id.is_empty() {
                return fail(&key("client_id"), "must not be empty");
            }
            if provider.client_secret.expose().is_empty() {
                return fail(&key("client_secret"), "must not be empty");
            }
            if !provider.scopes.iter().any(|scope| scope == "openid") {
                return fail(&key("scopes"), "must include openid");
            }
        }
        if let Some(key) = &self.metadata.signing_key
            && let Err(why) = crate::ids::KeyId::parse(key)
        {
            return fail("metadata.signing_key", &why);
        }
        if let Some(path) = &self.metadata.x5_chain_file {
            let read = std::fs::read_to_string(path)
                .map_err(|error| format!("cannot be read: {error}"))
                .and_then(|pem| {
                    vellum_formats::x509::from_pem_chain(&pem).map_err(|error| error.to_string())
                });
            if let Err(why) = read {
                return fail("metadata.x5_chain_file", &why);
            }
            if self.metadata.signing_key.is_none() {
                return fail("metadata.x5_chain_file", "needs metadata.signing_key");
            }
        }
        for origin in &self.http.cors_origins {
            if origin != "*" && !is_origin(origin) {
                return fail(
                    "http.cors_origins",
                    "each must be * or an origin, scheme://host[:port] without a path",
                );
            }
        }
        for (id, configuration) in &self.credential_configurations {
            if let Some(required) = &configuration.key_attestations_required
                && [&required.key_storage, &required.user_authentication]
                    .iter()
                    .any(|list| list.as_ref().is_some_and(Vec::is_empty))
            {
                return fail(
                    &format!("credential_configurations.{id}.key_attestations_required"),
                    "key_storage and user_authentication, when given, list at least one value",
                );
            }
        }
        if !(1..=100).contains(&self.protocol.batch_size) {
            return fail("protocol.batch_size", "must be between 1 and 100");
        }
        let protocol = &self.protocol;
        if protocol.deferred_interval_seconds == 0
            || protocol.deferred_window_seconds <= protocol.deferred_interval_seconds
        {
            return fail(
                "protocol.deferred_window_seconds",
                "deferred_interval_seconds must be greater than 0 and the window longer than it",
            );
        }
        let lists = &self.status_lists;
        if !(16..=16 << 20).contains(&lists.size) {
            return fail(
                "status_lists.size",
                "must be between 16 and 16,777,216 entries",
            );
        }
        if !matches!(lists.bits, 2 | 4 | 8) {
            return fail(
                "status_lists.bits",
                "must be 2, 4 or 8 (valid, invalid and suspended need two bits)",
            );
        }
        if lists.ttl_seconds == 0 || lists.validity_seconds <= lists.ttl_seconds {
            return fail(
                "status_lists",
                "ttl_seconds must be greater than 0 and validity_seconds greater than it",
            );
        }
        if lists.publish_delay > Duration::from_secs(u64::from(lists.ttl_seconds)) {
            return fail(
                "status_lists.publish_delay",
                "must not be longer than ttl_seconds (verifiers cache a list that long anyway)",
            );
        }
        if self.metadata.validity_seconds == 0 {
            return fail("metadata.validity_seconds", "must be greater than 0");
        }
        let attestation = &self.client_attestation;
        if attestation.challenge_ttl_seconds == 0 || attestation.pop_max_age_seconds == 0 {
            return fail(
                "client_attestation",
                "challenge_ttl_seconds and pop_max_age_seconds must be greater than 0",
            );
        }
        for name in &attestation.signing_alg_values_supported {
            if Algorithm::parse(name).is_err() {
                return fail(
                    "client_attestation.signing_alg_values_supported",
                    &format!("{name:?} is not one of ES256, ES384, EdDSA"),
                );
            }
        }
        for path in &attestation.trusted_certificates {
            if let Err(why) = read_certificates(path) {
                return fail(
                    "client_attestation.trusted_certificates",
                    &format!("{}: {why}", path.display()),
                );
            }
        }
        for (index, jwk) in attestation.trusted_keys.iter().enumerate() {
            let key = format!("client_attestation.trusted_keys[{index}]");
            match vellum_formats::jose::Jwk::from_value(jwk) {
                Ok(jwk) if jwk.is_private() => {
                    return fail(&key, "is a private key: give the public key only");
                }
                Ok(_) => {}
                Err(error) => return fail(&key, &error.to_string()),
            }
        }
        if self.dpop.signing_alg_values_supported.is_empty() {
            return fail(
                "dpop.signing_alg_values_supported",
                "must name an algorithm",
            );
        }
        for name in &self.dpop.signing_alg_values_supported {
            if Algorithm::parse(name).is_err() {
                return fail(
                    "dpop.signing_alg_values_supported",
                    &format!("{name:?} is not one of ES256, ES384, EdDSA"),
                );
            }
        }
        let notifications = &self.notifications;
        if !(0.0..=1.0).contains(&notifications.retry_jitter) {
            return fail("notifications.retry_jitter", "must be between 0 and 1");
        }
        if notifications.max_in_flight == 0 || notifications.max_in_flight_per_url == 0 {
            return fail("notifications.max_in_flight", "must be at least 1");
        }
        if notifications.max_response_bytes == 0 {
            return fail("notifications.max_response_bytes", "must be at least 1");
        }
        if notifications.lease <= notifications.timeout {
            return fail(
                "notifications.lease",
                "must be longer than timeout (an attempt must end inside it)",
            );
        }
        if !(1..=100 * 366 * 86_400).contains(&self.credentials.default_validity_seconds) {
            return fail(
                "credentials.default_validity_seconds",
                "must be between 1 second and 100 years",
            );
        }
        if self.sessions.sweep_interval_seconds == 0 {
            return fail("sessions.sweep_interval_seconds", "must be greater than 0");
        }
        for (id, configuration) in &self.credential_configurations {
            let key = format!("credential_configurations.{id}");
            for name in configuration
                .credential_signing_alg_values_supported
                .iter()
                .chain(&configuration.proof_signing_alg_values_supported)
            {
                if Algorithm::parse(name).is_err() {
                    return fail(&key, &format!("unsupported algorithm {name:?}"));
                }
            }
            if configuration.proof_signing_alg_values_supported.is_empty() {
                return fail(&key, "proof_signing_alg_values_supported is empty");
            }
            if let Some(metadata) = &configuration.credential_metadata
                && !metadata.is_object()
            {
                return fail(&key, "credential_metadata must be a table");
            }
        }
        for (id, declaration) in &self.keys {
            if Algorithm::parse(&declaration.algorithm).is_err() {
                return fail(
                    &format!("keys.{id}.algorithm"),
                    "must be ES256, ES384 or EdDSA",
                );
            }
        }
        Ok(())
    }

    /// The credential issuer identifier, without a trailing slash.
    pub fn issuer_url(&self, bound_port: u16) -> String {
        if self.public_url.is_empty() {
            format!("http://{}:{}", self.http.host, bound_port)
        } else {
            self.public_url.trim_end_matches('/').to_owned()
        }
    }

    /// The store `database.url` names: `sqlite://PATH` or `postgres://...`
    /// (`postgresql://` too); `None` for anything else (refused at start).
    pub fn database_url(&self) -> Option<DatabaseUrl> {
        let url = self.database.url.trim();
        if let Some(rest) = url.strip_prefix("sqlite:") {
            return Some(DatabaseUrl::Sqlite(PathBuf::from(
                rest.trim_start_matches("//"),
            )));
        }
        (url.starts_with("postgres://") || url.starts_with("postgresql://"))
            .then(|| DatabaseUrl::Postgres(url.to_owned()))
    }
}

/// An IP address, or a host name of DNS labels.
fn valid_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_built_in_defaults_and_demo_are_valid() {
        let config = Config::with_overrides(json!({}), true).expect("valid");
        assert_eq!(config.http.port, 7005);
        assert!(config.profiles.contains_key("demo-identity"));
        assert!(
            config
                .credential_configurations
                .contains_key("identity_credential")
        );
    }

    #[test]
    fn delays_parse_with_units() {
        assert_eq!(parse_delay("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_delay("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_delay("5").is_err());
        assert!(parse_delay("30d").is_err());
    }

    #[test]
    fn database_url_selects_the_store() {
        let with = |url: &str| Config::with_overrides(json!({"database": {"url": url}}), false);
        assert_eq!(
            with("sqlite://data/v.db").expect("valid").database_url(),
            Some(DatabaseUrl::Sqlite(PathBuf::from("data/v.db")))
        );
        for url in [
            "postgres://vellum@db.example:5433/vellum",
            "postgresql://vellum:secret@127.0.0.1/vellum",
        ] {
            assert_eq!(
                with(url).expect("valid").database_url(),
                Some(DatabaseUrl::Postgres(url.to_owned()))
            );
        }
        for url in ["mysql://db/v", "", "sqlite://", "postgres://db:notaport/v"] {
            let error = with(url).expect_err("refused");
            assert!(error.to_string().contains("database.url"), "{url}: {error}");
        }
    }

    #[test]
    fn an_instance_needs_a_role() {
        let error =
            Config::with_overrides(json!({"roles": {"api": false, "worker": false}}), false)
                .expect_err("refused");
        assert!(error.to_string().contains("roles"), "{error}");
        for roles in [json!({"api": false}), json!({"worker": false})] {
            Config::with_overrides(json!({ "roles": roles }), false).expect("one role is enough");
        }
    }

    #[test]
    fn notification_settings_are_parsed_once_and_a_bad_one_names_its_key() {
        let config = Config::with_overrides(
            json!({"notifications": {"allow_private_targets": ["127.0.0.1", "10.0.0.0/8"],
                                     "retry_schedule": ["250ms", "1s"]}}),
            false,
        )
        .expect("valid");
        let notifications = &config.notifications;
        assert_eq!(notifications.allow_private_targets.len(), 2);
        assert_eq!(
            notifications.retry_schedule,
            [Duration::from_millis(250), Duration::from_secs(1)]
        );
        assert!(notifications.signing_secret.is_none() && notifications.proxy.is_none());
        for (bad, key) in [
            (
                json!({"allow_private_targets": ["nope"]}),
                "notifications.allow_private_targets",
            ),
            (
                json!({"retry_schedule": ["soon"]}),
                "notifications.retry_schedule",
            ),
            (
                json!({"signing_secret": "not-whsec"}),
                "notifications.signing_secret",
            ),
            (json!({"proxy": "socks5://proxy"}), "notifications.proxy"),
            (json!({"timeout": "0s"}), "notifications.timeout"),
            (
                json!({"lease": "1s", "timeout": "2s"}),
                "notifications.lease",
            ),
        ] {
            let error = Config::with_overrides(json!({ "notifications": bad }), false)
                .expect_err("refused");
            assert!(error.to_string().contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let error =
            Config::with_overrides(json!({"http": {"port": "abc"}}), false).expect_err("invalid");
        assert!(error.to_string().contains("port"), "{error}");
        let error = Config::with_overrides(json!({"protocol": {"nonce_ttl_seconds": 0}}), false)
            .expect_err("invalid");
        assert!(
            error.to_string().contains("protocol.nonce_ttl_seconds"),
            "{error}"
        );
        let error = Config::with_overrides(json!({"keys": {"k": {"algorithm": "RS256"}}}), false)
            .expect_err("invalid");
        assert!(error.to_string().contains("keys.k.algorithm"), "{error}");
    }
}
