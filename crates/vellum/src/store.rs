//! The only place that knows SQL. `Store` is shaped by use case, one trait per concern
//! (settings, keys, profiles, sessions and grants, issued credentials, the event log, the
//! outbox): each method is one transaction, and every state change that announces itself
//! writes its events in that same transaction.
//! Conditional updates ("only if still ACTIVE and the code unused") make races safe: the caller
//! learns it lost and answers accordingly; nothing is done twice.

use async_trait::async_trait;
use serde_json::Value;

use crate::clock::Millis;
use crate::config::{Config, DatabaseUrl};
use crate::ids::{KeyId, ProfileId, SessionId};

pub mod postgres;
mod rows;
mod sql;
pub mod sqlite;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Opens (and migrates) the store `database.url` selects.
pub async fn open(config: &Config) -> StoreResult<std::sync::Arc<dyn Store>> {
    Ok(match config.database_url() {
        Some(DatabaseUrl::Sqlite(path)) => std::sync::Arc::new(
            sqlite::SqliteStore::open(&path, config.database.synchronous).await?,
        ),
        Some(DatabaseUrl::Postgres(url)) => {
            let options = postgres::PoolOptions {
                size: config.database.pool_size,
                connect_timeout: config.database.connect_timeout,
            };
            std::sync::Arc::new(postgres::PostgresStore::open(&url, options).await?)
        }
        None => return Err(StoreError::Unavailable("unsupported database.url".into())),
    })
}

/// What a listing read, in order: each row, or why it could not be read. One damaged row
/// never hides the others.
#[derive(Debug)]
pub struct Listing<T> {
    pub rows: Vec<Result<T, Unreadable>>,
}

impl<T> Listing<T> {
    /// The readable rows; each unreadable one is logged (it is damaged data the operator must
    /// see, not something a request did).
    pub fn logged(self, what: &str) -> Vec<T> {
        self.rows
            .into_iter()
            .filter_map(|row| {
                row.map_err(|row| {
                    tracing::error!(what, id = %row.id, reason = %row.reason,
                        "an unreadable row was left out of a listing");
                })
                .ok()
            })
            .collect()
    }
}

/// A row a listing could not read: its `id`, and its `created_at` when that column could be
/// read (the position of the row, for paging).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unreadable {
    pub id: String,
    pub reason: String,
    #[serde(skip)]
    pub created_at: Option<Millis>,
}

#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: KeyId,
    pub algorithm: String,
    pub public_jwk: Value,
    /// The private JWK, sealed with the master key (AES-256-GCM, key id as associated data).
    pub sealed_private: Vec<u8>,
    pub created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct ProfileRecord {
    pub id: ProfileId,
    pub version: i64,
    pub active: bool,
    pub definition: Value,
    pub issuer_key_id: KeyId,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Active,
    Successful,
    Unsuccessful,
    Expired,
}

/// A closed set of states stored as text: one spelling for both stores.
macro_rules! stored_names {
    ($name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

stored_names!(SessionStatus {
    Active => "ACTIVE",
    Successful => "SUCCESSFUL",
    Unsuccessful => "UNSUCCESSFUL",
    Expired => "EXPIRED",
});

/// What a grant lets a wallet obtain an access token with. Only the pre-authorized code today;
/// the authorization code and refresh tokens take their place beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    PreAuthorizedCode,
    /// The `issuer_state` of an offer for the authorization code flow: it ties the wallet's
    /// authorization request to the session, and is exchanged for nothing by itself.
    IssuerState,
    AuthorizationCode,
    /// Obtains new access tokens after the code's (rotated: each is used once), within the
    /// lifetime of the authorization it descends from.
    RefreshToken,
}

stored_names!(GrantKind {
    PreAuthorizedCode => "PRE_AUTHORIZED_CODE",
    IssuerState => "ISSUER_STATE",
    AuthorizationCode => "AUTHORIZATION_CODE",
    RefreshToken => "REFRESH_TOKEN",
});

/// An authorization request's life: pushed (PAR), the holder at the provider, ended with a code,
/// or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestStatus {
    Pushed,
    AtProvider,
    Completed,
    Failed,
}

stored_names!(RequestStatus {
    Pushed => "PUSHED",
    AtProvider => "AT_PROVIDER",
    Completed => "COMPLETED",
    Failed => "FAILED",
});

/// A grant's life: unused, exchanged for an access token, or dead after too many wrong
/// tx_codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantState {
    Unused,
    Redeemed,
    Locked,
}

stored_names!(GrantState {
    Unused => "UNUSED",
    Redeemed => "REDEEMED",
    Locked => "LOCKED",
});

/// A webhook delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// The retry schedule is exhausted.
    Failed,
    /// The URL answered 410: nothing more goes there until a redelivery.
    Gone,
}

stored_names!(DeliveryStatus {
    Pending => "PENDING",
    Delivered => "DELIVERED",
    Failed => "FAILED",
    Gone => "GONE",
});

/// One issuance session: the offer, what it was made from, and where it stands. Its grants
/// and access tokens are records of their own.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id: SessionId,
    pub profile_id: ProfileId,
    pub profile_version: i64,
    pub credential_configuration_id: String,
    pub status: SessionStatus,
    pub status_reason: Option<String>,
    /// SHA-256 of the credential_offer_uri handle.
    pub offer_handle_hash: String,
    pub by_value: bool,
    /// Everything issuance needs, fixed when the offer was made (profile version + overrides),
    /// as JSON text: only issuance reads it, so nothing else depends on it being readable.
    pub template: String,
    /// Where this session's events are delivered, if anywhere.
    pub webhook: Option<WebhookTarget>,
    pub issuer_key_id: KeyId,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub expires_at: Millis,
    pub resolved_at: Option<Millis>,
    /// When its first access token was issued.
    pub token_issued_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// The grant the offer carries, read with the session: its pre-authorized code, or for the
    /// authorization code flow its issuer_state.
    pub offer_grant: Option<GrantRecord>,
}

/// A grant, as read: never its secret (only a hash of it is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    pub id: i64,
    pub kind: GrantKind,
    pub state: GrantState,
    /// The offer's `tx_code` object, and a MAC of the expected value (never the value).
    pub tx_code: Option<Value>,
    pub tx_code_mac: Option<String>,
    pub tx_code_failures: u32,
    pub created_at: Millis,
    pub redeemed_at: Option<Millis>,
    /// Until when it may be redeemed, when that is not the session's expiry (an authorization
    /// code).
    pub expires_at: Option<Millis>,
    /// The authorization request it ends (an authorization code) or descends from (a refresh
    /// token).
    pub request_id: Option<String>,
    /// The DPoP key a refresh token is bound to.
    pub dpop_jkt: Option<String>,
}

/// A grant written with its session.
#[derive(Debug, Clone)]
pub struct NewGrant {
    pub kind: GrantKind,
    /// SHA-256 of the code.
    pub secret_hash: String,
    pub tx_code: Option<Value>,
    pub tx_code_mac: Option<String>,
    pub expires_at: Option<Millis>,
    pub request_id: Option<String>,
    pub dpop_jkt: Option<String>,
}

/// An authorization request (RFC 6749 §4.1.1, pushed per RFC 9126 or not): who asked, where
/// the code goes, and how far the holder got.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizationRequestRecord {
    /// Random; names the request in the values derived for the provider (nonce, PKCE).
    pub id: String,
    /// SHA-256 of the `request_uri` the PAR endpoint returned, if pushed.
    pub request_uri_hash: Option<String>,
    /// SHA-256 of the `state` the holder was sent to the provider with.
    pub state_hash: Option<String>,
    pub session_id: Option<SessionId>,
    pub profile_id: ProfileId,
    pub client_id: String,
    /// The request's parameters (redirect_uri, code_challenge, state, ...), as JSON.
    pub parameters: Value,
    pub status: RequestStatus,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// How an authorization request is found: by its `request_uri`, or by the state the provider
/// sends back (hashes).
#[derive(Debug, Clone, Copy)]
pub enum RequestLookup<'a> {
    RequestUri(&'a str),
    State(&'a str),
}

/// A holder logged in: the request is completed with an authorization code, a grant of the
/// session, whose template now carries the claims mapped from the ID token.
#[derive(Debug, Clone)]
pub struct AuthorizationCompletion {
    pub request_id: String,
    pub session: SessionId,
    pub template: String,
    pub grant: NewGrant,
    pub now: Millis,
    pub events: Vec<NewEvent>,
}

/// An access token: what the credential endpoint accepts, until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenRecord {
    pub session_id: SessionId,
    /// The grant it was obtained with.
    pub grant_id: i64,
    pub grant_kind: GrantKind,
    pub issued_at: Millis,
    pub expires_at: Millis,
    /// RFC 7638 thumbprint of the key it is bound to (DPoP, `cnf.jkt`); `None` for a Bearer token.
    pub dpop_jkt: Option<String>,
}

/// An access token to create: only its hash is stored.
#[derive(Debug, Clone)]
pub struct NewAccessToken {
    pub hash: String,
    pub expires_at: Millis,
    pub dpop_jkt: Option<String>,
    /// The refresh token issued with it, if any.
    pub refresh: Option<NewGrant>,
}

/// A credential as issued: what it is and whom it is bound to, never the credential itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCredentialRecord {
    /// `urn:uuid:...`-free UUID, chosen by the issuer.
    pub id: String,
    pub session_id: SessionId,
    pub credential_configuration_id: String,
    /// The format's name as metadata gives it (`dc+sd-jwt`, `jwt_vc_json`, `mso_mdoc`, ...).
    pub format: String,
    /// The holder key it is bound to: its RFC 7638 thumbprint, or a DID.
    pub holder: String,
    pub issued_at: Millis,
    pub expires_at: Millis,
    /// Where its status is published (a status list reference), when it has one.
    pub status: Option<Value>,
    /// Its entry in a status list of this issuer's: the list and the index.
    pub status_entry: Option<StatusEntry>,
    /// Its status there: 0 valid, 1 invalid (revoked), 2 suspended.
    pub status_value: u8,
    /// The `notification_id` of the credential response that carried it.
    pub notification_id: Option<String>,
}

/// An entry of a status list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    pub list_id: String,
    pub index: i64,
}

/// Which encoding a status list is published in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusListKind {
    /// The IETF Token Status List (SD-JWT VC, mdoc).
    Token,
    /// The W3C Bitstring Status List (W3C VCs).
    Bitstring,
}

stored_names!(StatusListKind {
    Token => "TOKEN",
    Bitstring => "BITSTRING",
});

/// A status list: its shape, and how many of its entries are handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusListRecord {
    pub id: String,
    pub kind: StatusListKind,
    /// Who signs it: what its credentials are signed with (key, iss, certificates), as JSON.
    pub signer: Value,
    pub bits: u8,
    pub size: i64,
    pub allocated: i64,
    pub created_at: Millis,
    pub changed_at: Millis,
}

/// An entry handed out: its list, and its place in the list's allocation order (the index is
/// derived from it, see the migration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusAllocation {
    pub list: StatusListRecord,
    pub position: i64,
}

/// A credential request that succeeded, committed at once: the access token it used (still
/// valid, of a session still ACTIVE), what it spends (once), the credentials issued, whether the
/// session is now finished, and the events.
#[derive(Debug, Clone)]
pub struct Issuance {
    pub session: SessionId,
    pub token_hash: String,
    pub spends: Spent,
    pub credentials: Vec<IssuedCredentialRecord>,
    /// Whether this completes the session (SUCCESSFUL).
    pub finish: bool,
    pub now: Millis,
    pub events: Vec<NewEvent>,
}

/// What a credential request spends, so that it succeeds once.
#[derive(Debug, Clone)]
pub enum Spent {
    /// The key proofs' nonce (the credential endpoint), remembered until it expires.
    Nonce { hash: String, expires_at: Millis },
    /// A READY deferred transaction (the deferred credential endpoint), ISSUED after.
    Deferred { transaction_hash: String },
}

/// A credential request whose credentials come later (deferred issuance), committed at once: as
/// an [`Issuance`], the token and the nonce; the transaction with the proven keys; the session
/// and the access token kept alive until `expires_at`; the events.
#[derive(Debug, Clone)]
pub struct Deferral {
    pub session: SessionId,
    pub token_hash: String,
    pub nonce_hash: String,
    pub nonce_expires_at: Millis,
    pub transaction_hash: String,
    /// The proven holder keys, one credential each (JSON, as `issuance` writes it).
    pub holders: Value,
    pub expires_at: Millis,
    pub now: Millis,
    pub events: Vec<NewEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeferredState {
    /// Waiting for the operator's backend.
    Pending,
    /// Completed: the data is in the session's template; the wallet may fetch the credentials.
    Ready,
    /// Failed by the operator's backend, with a reason.
    Failed,
    /// Fetched by the wallet.
    Issued,
}

impl DeferredState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeferredState::Pending => "PENDING",
            DeferredState::Ready => "READY",
            DeferredState::Failed => "FAILED",
            DeferredState::Issued => "ISSUED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            DeferredState::Pending,
            DeferredState::Ready,
            DeferredState::Failed,
            DeferredState::Issued,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeferredRecord {
    pub session_id: SessionId,
    pub transaction_hash: String,
    pub holders: Value,
    pub state: DeferredState,
    pub reason: Option<String>,
    pub created_at: Millis,
    pub changed_at: Millis,
}

/// How a deferred transaction is named: by its session (the operator) or by a hash of the
/// transaction id (the wallet).
#[derive(Debug, Clone, Copy)]
pub enum DeferredLookup<'a> {
    Session(SessionId),
    TransactionHash(&'a str),
}

/// What the operator's backend decided for a PENDING deferred transaction.
#[derive(Debug, Clone)]
pub enum DeferredOutcome {
    /// The session's template, now with the data: the wallet may fetch its credentials.
    Ready { template: String },
    /// No credentials: the session fails.
    Failed { reason: String },
}

/// A wallet's report about the credentials of one credential response (OID4VCI 1.0 §11).
#[derive(Debug, Clone)]
pub struct WalletNotification {
    pub notification_id: String,
    /// The session of the access token it came with.
    pub session: SessionId,
    /// `credential_accepted`, `credential_failure` or `credential_deleted`.
    pub event: String,
    pub now: Millis,
    pub events: Vec<NewEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationReceipt {
    /// First report of this event for this id: recorded, with its events.
    Recorded,
    /// Reported before: nothing changes.
    Repeated,
    /// No credential of the session has this notification id.
    Unknown,
}

/// A webhook as the dispatcher needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    pub url: String,
    pub bearer_token: Option<String>,
    /// Standard Webhooks secret (`whsec_...`), if this webhook signs.
    pub secret: Option<String>,
    /// Event types to deliver; `None` delivers all.
    pub events: Option<Vec<String>>,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("url", &self.url)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "[redacted]"),
            )
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("events", &self.events)
            .finish()
    }
}

/// A delivery claimed by the dispatcher: leased to it until `lease_until`.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: i64,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    /// Retries already scheduled since the last manual redelivery.
    pub retry_step: u32,
    pub event: EventRecord,
    pub webhook: WebhookTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub started_at: Millis,
    pub duration_ms: i64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    /// The start of the response body, for the operator.
    pub response: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    RetryAt(Millis),
    /// The retry schedule is exhausted.
    Failed,
    /// 410 Gone: this and every pending delivery to the URL stop.
    Gone,
}

/// An attempt the dispatcher has finished, to be recorded.
#[derive(Debug, Clone)]
pub struct FinishedAttempt {
    pub delivery: i64,
    pub record: AttemptRecord,
    pub outcome: AttemptOutcome,
    /// When the attempt ended.
    pub at: Millis,
}

/// The pending deliveries to one webhook URL: how many, and when the oldest was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    pub url: String,
    pub pending: i64,
    pub oldest_created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub id: i64,
    pub event_seq: i64,
    pub url: String,
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<Millis>,
    pub attempts: Vec<AttemptRecord>,
}

/// An event to append to the log, in the transaction of the change it announces.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub session_id: Option<SessionId>,
    pub event_type: String,
    pub timestamp: Millis,
    pub data: Value,
}

#[derive(Debug, Clone)]
pub struct EventRecord {
    pub seq: i64,
    pub id: String,
    pub session_id: Option<SessionId>,
    pub event_type: String,
    pub timestamp: Millis,
    pub data: Value,
}

/// How a wallet's request names its session: by a hash of a secret it holds.
#[derive(Debug, Clone, Copy)]
pub enum SessionLookup<'a> {
    /// The handle of the offer's `credential_offer_uri`.
    OfferHandle(&'a str),
    /// An offer grant's code (pre-authorized code or issuer_state): the session comes with that
    /// grant as `offer_grant`.
    Grant(&'a str),
}

#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub status: Option<SessionStatus>,
    pub profile_id: Option<ProfileId>,
    /// Keyset cursor: sessions strictly older than (created_at, id).
    pub before: Option<(Millis, SessionId)>,
    pub limit: u32,
}

/// A statement behind a listing or filter of the management API, exactly as the stores run it,
/// with sample values: what the query plan test (`tests/api/features/store.rs`) explains on
/// both databases, to show that each page is read through an index however large the tables
/// grow.
#[derive(Debug, Clone)]
pub struct ListingStatement {
    /// The request it serves, e.g. `GET /api/v1/sessions?status&cursor`.
    pub name: String,
    /// The SQL both stores run, with `$1`, `$2`, ... parameters.
    pub sql: String,
    /// A sample value for each parameter, `$1` first: a JSON string for text, a number for an
    /// integer.
    pub params: Vec<Value>,
    /// The tables it reads that grow with the traffic (a row or more per session): none of them
    /// may be read whole.
    pub large_tables: &'static [&'static str],
    /// The one index it may read from its start instead of seeking in, because that read is
    /// bounded anyway: it stops after a page in the index's order (the newest sessions), or the
    /// index holds only what is listed (the partial index of pending deliveries).
    pub whole_index: Option<&'static str>,
    /// The index its plan must read, where the indexes that serve it differ in how much they
    /// read (the partial index of entries that are not valid, against every entry of a list).
    pub reads_index: Option<&'static str>,
}

/// Every statement behind a listing or filter of the management API and the console's
/// sign-in check: each combination of the sessions listing's filters, a session and what is
/// listed under it, the event log, keys, profiles, and the overview's counts and backlog; and
/// those whose cost must not grow with the store either: a status list's publication and the
/// retention sweep's batches.
pub fn listing_statements() -> Vec<ListingStatement> {
    const SESSION_TABLES: &[&str] = &["sessions", "webhooks", "grants"];
    let session = Value::from(SessionId::generate().to_string());
    let since = Value::from(1_700_000_000_000_i64);
    let statement = |name: &str,
                     sql: &str,
                     params: Vec<Value>,
                     large_tables: &'static [&'static str]| ListingStatement {
        name: name.to_owned(),
        sql: sql.to_owned(),
        params,
        large_tables,
        whole_index: None,
        reads_index: None,
    };
    let mut statements = Vec::new();
    for filters in 0..8 {
        let filter = SessionFilter {
            status: (filters & 1 != 0).then_some(SessionStatus::Active),
            profile_id: (filters & 2 != 0).then(|| ProfileId::parse("pid").expect("a profile id")),
            before: (filters & 4 != 0).then(|| (1_700_000_000_000, SessionId::generate())),
            // A page of 50 and one more, as the listing asks by default.
            limit: 51,
        };
        let given: Vec<&str> = [
            filter.status.map(|_| "status"),
            filter.profile_id.as_ref().map(|_| "profileId"),
            filter.before.map(|_| "cursor"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let (sql, values) = sql::sessions_page(&filter);
        let params = values
            .into_iter()
            .map(|value| match value {
                sql::Bound::Text(text) => Value::from(text),
                sql::Bound::Int(int) => Value::from(int),
            })
            .collect();
        let mut page = statement(
            &format!("GET /api/v1/sessions?{}", given.join("&")),
            &sql,
            params,
            SESSION_TABLES,
        );
        if given.is_empty() {
            page.name = "GET /api/v1/sessions".into();
            page.whole_index = Some("sessions_by_created");
        }
        statements.push(page);
    }
    let by_session = |name: &str, sql: &str, large_tables: &'static [&'static str]| {
        statement(name, sql, vec![session.clone()], large_tables)
    };
    statements.extend([
        by_session(
            "GET /api/v1/sessions/{sessionId} (and every route under it)",
            &sql::SESSION,
            SESSION_TABLES,
        ),
        statement(
            "GET /api/v1/sessions/{sessionId}/events",
            &sql::SESSION_EVENTS,
            vec![session.clone(), Value::from(0), Value::from(100)],
            &["events"],
        ),
        by_session(
            "GET /api/v1/sessions/{sessionId}/events: deliveries",
            sql::SESSION_DELIVERIES,
            &["deliveries"],
        ),
        by_session(
            "GET /api/v1/sessions/{sessionId}/events: delivery attempts",
            sql::SESSION_DELIVERY_ATTEMPTS,
            &["deliveries", "delivery_attempts"],
        ),
        by_session(
            "GET /api/v1/sessions/{sessionId}/credentials",
            &sql::ISSUED_CREDENTIALS,
            &["issued_credentials"],
        ),
        by_session(
            "GET /api/v1/sessions/{sessionId}/deferred",
            &sql::DEFERRED_BY_SESSION,
            &["deferred_transactions"],
        ),
        statement(
            "GET /api/v1/events",
            &sql::EVENTS,
            vec![Value::from(0), Value::from(100)],
            &["events"],
        ),
        statement("GET /api/v1/keys", sql::KEYS, Vec::new(), &[]),
        statement("GET /api/v1/profiles", &sql::PROFILES, Vec::new(), &[]),
        statement(
            "GET /api/v1/overview: sessions",
            sql::SESSION_COUNTS,
            vec![since.clone()],
            &["sessions"],
        ),
        statement(
            "GET /api/v1/overview: deliveries",
            sql::DELIVERY_COUNTS,
            vec![since.clone()],
            &["deliveries"],
        ),
        ListingStatement {
            whole_index: Some("deliveries_pending"),
            ..statement(
                "GET /api/v1/overview: backlog",
                sql::DELIVERY_BACKLOG,
                Vec::new(),
                &["deliveries"],
            )
        },
        ListingStatement {
            reads_index: Some("issued_credentials_not_valid"),
            ..statement(
                "GET /status-lists/{listId}, after a change: the entries that are not valid",
                sql::STATUS_ENTRIES,
                vec![Value::from("list")],
                &["issued_credentials"],
            )
        },
        statement(
            "the retention sweep: a batch of finished sessions",
            sql::PURGE_BATCH,
            vec![since.clone(), Value::from(200)],
            &["sessions"],
        ),
        // The cut-off of a batch: a few hundred sessions finished before it.
        statement(
            "the retention sweep: the events of a batch",
            &sql::PURGE[0],
            vec![Value::from(200_000)],
            &["events", "sessions"],
        ),
        statement(
            "the retention sweep: records of expired credentials",
            sql::PURGE_CREDENTIALS,
            vec![since.clone(), Value::from(200)],
            &["issued_credentials"],
        ),
        statement(
            "the retention sweep: spent nonces",
            sql::PURGE_NONCES,
            vec![since.clone(), Value::from(200)],
            &["used_nonces"],
        ),
        statement(
            "the console's sign-in, on every console request",
            sql::CONSOLE_SESSION,
            vec![Value::from("hash"), since],
            &[],
        ),
    ]);
    statements
}

/// The outcome of the pre-authorized code's conditional updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Yes,
    /// The session moved on (another request won a race, or it finished): nothing changed.
    Stale,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuanceCommit {
    Issued,
    /// The nonce, or the deferred transaction, was spent by another request.
    AlreadySpent,
    /// The session finished or expired meanwhile, or the access token did.
    SessionNotActive,
}

/// What a tx_code failure does to the session.
#[derive(Debug, Clone)]
pub struct TxCodeFailure {
    /// The failure count the caller saw; the update applies only if it is still current.
    pub seen_failures: u32,
    /// Whether this failure exhausts the attempts (the code dies, the session fails).
    pub locks: bool,
}

/// Settings the service keeps for itself, and the database's pulse.
#[async_trait]
pub trait SettingsStore: Send + Sync {
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> StoreResult<()>;
    async fn setting(&self, name: &str) -> StoreResult<Option<String>>;
    /// Stores `value` unless `name` already has one; returns whichever value is now stored.
    async fn init_setting(&self, name: &str, value: &str) -> StoreResult<String>;
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn insert_key(&self, key: &KeyRecord) -> StoreResult<()>;
    async fn key(&self, id: &KeyId) -> StoreResult<Option<KeyRecord>>;
    async fn keys(&self) -> StoreResult<Listing<KeyRecord>>;
    /// Keys any profile or offer has ever used to sign: the issuer's JWKS.
    async fn published_keys(&self) -> StoreResult<Listing<KeyRecord>>;
}

#[async_trait]
pub trait ProfileStore: Send + Sync {
    /// Version 1 of a new profile; `Conflict` if the id is taken. Publishes its key.
    async fn create_profile(&self, profile: &ProfileRecord) -> StoreResult<()>;
    /// Appends a version to an active profile; `None` if it does not exist or is inactive.
    async fn update_profile(
        &self,
        id: &ProfileId,
        definition: &Value,
        issuer_key_id: &KeyId,
        now: Millis,
    ) -> StoreResult<Option<ProfileRecord>>;
    /// Stops new offers from a profile; returns false if it does not exist.
    async fn deactivate_profile(&self, id: &ProfileId, now: Millis) -> StoreResult<bool>;
    /// The latest version, or the given one.
    async fn profile(
        &self,
        id: &ProfileId,
        version: Option<i64>,
    ) -> StoreResult<Option<ProfileRecord>>;
    async fn profiles(&self) -> StoreResult<Listing<ProfileRecord>>;
}

/// Sessions, their grants and access tokens.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// A new ACTIVE session (the offer) with its grant, webhook and first event. Publishes its
    /// issuer key.
    async fn create_session(
        &self,
        session: &SessionRecord,
        grant: Option<&NewGrant>,
        event: &NewEvent,
    ) -> StoreResult<()>;
    async fn session(&self, id: SessionId) -> StoreResult<Option<SessionRecord>>;
    async fn session_by(&self, lookup: SessionLookup<'_>) -> StoreResult<Option<SessionRecord>>;
    /// The access token with this hash and its session.
    async fn token_session(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<(AccessTokenRecord, SessionRecord)>>;
    async fn sessions(&self, filter: &SessionFilter) -> StoreResult<Listing<SessionRecord>>;

    /// Marks the offer as fetched by a wallet (first time only) and appends the events.
    async fn record_offer_resolved(
        &self,
        id: SessionId,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<()>;
    /// Counts a wrong tx_code against an unused grant of an ACTIVE session, if its count is
    /// still the one seen; when it locks the grant, the session ends UNSUCCESSFUL.
    async fn record_tx_code_failure(
        &self,
        session: SessionId,
        grant: i64,
        failure: &TxCodeFailure,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<Applied>;
    /// Exchanges an unused grant of an ACTIVE, unexpired session for an access token; the
    /// session lives at least as long as the token.
    async fn redeem_grant(
        &self,
        session: SessionId,
        grant: i64,
        token: &NewAccessToken,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<Applied>;

    async fn sessions_due_for_expiry(&self, now: Millis, limit: u32)
    -> StoreResult<Vec<SessionId>>;
    /// ACTIVE -> EXPIRED if its time has come; returns false when it already moved on.
    async fn expire_session(
        &self,
        id: SessionId,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<bool>;
    /// One bounded batch of retention, in one transaction: deletes the sessions that finished
    /// first before `finished_before`, at least `batch` of them when there are that many (more
    /// only when several finished in the same millisecond as the last), with everything they own
    /// (events, deliveries and their attempts, webhook, grants, access tokens, deferred
    /// transactions, wallet notifications); and up to `batch` each of the records of credentials
    /// that expired before it, of nonces and of authorization requests that can no longer be
    /// used at `now`. The sweep calls it again while [`Purged::more`] says a batch was full, so
    /// that no transaction grows with the backlog.
    async fn purge(&self, finished_before: Millis, now: Millis, batch: u32) -> StoreResult<Purged>;
    /// Fills the store for growth benchmarks (`vellum bench seed`): writes copies of the
    /// finished session `template` with everything it owns that grows with the traffic (its
    /// grants, access tokens, issued credentials with status entries, and events), in one
    /// transaction. Returns the events written.
    async fn seed(&self, template: SessionId, batch: &SeedBatch) -> StoreResult<u64>;
}

/// One transaction of seeding: copies `first..first + count` of a template session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedBatch {
    /// Tags the identifiers of one seeding run, so that runs never collide.
    pub run: u16,
    /// The number of the first copy in this batch (copies are numbered across batches).
    pub first: u64,
    pub count: u64,
    /// Copy `i` happened `(i + 1) * step_ms` before the template.
    pub step_ms: i64,
    /// Events each copy gets: the template's, in order, repeated or cut to this many.
    pub events_per_session: u32,
}

/// What one batch of retention removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Sessions removed, with everything they owned.
    pub sessions: u64,
    /// Whether a part of the batch was full: there may be more to remove.
    pub more: bool,
}

/// Issued credentials.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// Commits a successful credential request (see [`Issuance`]), or nothing.
    async fn complete_issuance(&self, issuance: &Issuance) -> StoreResult<IssuanceCommit>;
    /// The credentials a session issued, oldest first.
    async fn issued_credentials(
        &self,
        session: SessionId,
    ) -> StoreResult<Vec<IssuedCredentialRecord>>;
    /// Hands out the next entry of the newest status list of this kind, signer and shape that
    /// has room, making a new list when none has: never the same entry twice, across instances.
    async fn allocate_status_entry(
        &self,
        kind: StatusListKind,
        signer: &Value,
        bits: u8,
        size: i64,
        now: Millis,
    ) -> StoreResult<StatusAllocation>;
    async fn status_list(&self, id: &str) -> StoreResult<Option<StatusListRecord>>;
    async fn issued_credential(&self, id: &str) -> StoreResult<Option<IssuedCredentialRecord>>;
    /// Sets a credential's status from `from` (what the caller saw) to `to`, marks its list
    /// changed, and appends the events, in one transaction; `Stale` when the status was no
    /// longer `from` (or the credential has no entry).
    async fn change_credential_status(
        &self,
        id: &str,
        from: u8,
        to: u8,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<Applied>;
    /// The entries of a list that are not valid: index and status, by index.
    async fn status_entries(&self, list_id: &str) -> StoreResult<Vec<(i64, u8)>>;
    /// Commits a deferred credential request (see [`Deferral`]), or nothing.
    async fn defer_issuance(&self, deferral: &Deferral) -> StoreResult<IssuanceCommit>;
    async fn deferred_transaction(
        &self,
        lookup: DeferredLookup<'_>,
    ) -> StoreResult<Option<DeferredRecord>>;
    /// PENDING -> READY (the session's template replaced) or FAILED (the session UNSUCCESSFUL),
    /// with the events, in one transaction; `Stale` when it was no longer PENDING or the session
    /// no longer ACTIVE.
    async fn resolve_deferred(
        &self,
        session: SessionId,
        outcome: &DeferredOutcome,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<Applied>;
    /// Records a wallet's report once, with its events, if a credential of the session carries
    /// its notification id.
    async fn record_wallet_notification(
        &self,
        notification: &WalletNotification,
    ) -> StoreResult<NotificationReceipt>;
}

/// The authorization code flow's requests.
#[async_trait]
pub trait AuthorizationStore: Send + Sync {
    async fn create_authorization_request(
        &self,
        request: &AuthorizationRequestRecord,
        events: &[NewEvent],
    ) -> StoreResult<()>;
    async fn authorization_request(
        &self,
        lookup: RequestLookup<'_>,
    ) -> StoreResult<Option<AuthorizationRequestRecord>>;
    /// PUSHED and unexpired -> AT_PROVIDER, with the state's hash and a new expiry.
    async fn start_login(
        &self,
        id: &str,
        state_hash: &str,
        expires_at: Millis,
        now: Millis,
    ) -> StoreResult<Applied>;
    /// AT_PROVIDER -> COMPLETED, if the session is still ACTIVE: its template replaced, its
    /// issuer_state used, the authorization code added, the events written.
    async fn complete_authorization(
        &self,
        completion: &AuthorizationCompletion,
    ) -> StoreResult<Applied>;
    /// PUSHED or AT_PROVIDER -> FAILED, with the events.
    async fn fail_authorization(&self, id: &str, events: &[NewEvent]) -> StoreResult<Applied>;
    /// The grant of this kind (an authorization code or a refresh token) with this secret's hash,
    /// its request and its session.
    async fn request_grant(
        &self,
        kind: GrantKind,
        secret_hash: &str,
    ) -> StoreResult<Option<(GrantRecord, AuthorizationRequestRecord, SessionRecord)>>;
    /// Revokes every access token obtained with the grants of an authorization request, and its
    /// refresh tokens not yet used (a code or refresh token used twice), with the events.
    async fn revoke_request(&self, request_id: &str, events: &[NewEvent]) -> StoreResult<u64>;
}

/// Values a client may present once (a DPoP proof's jti), remembered by their hash until they
/// can no longer be presented; `purge` forgets them after that.
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Records the use; `Stale` when it was used before.
    async fn record_use(&self, hash: &str, remember_until: Millis) -> StoreResult<Applied>;
}

/// The event log.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Events that change no state (a failed request on a session that stays ACTIVE).
    async fn append_events(&self, events: &[NewEvent]) -> StoreResult<()>;
    /// Events after `after_seq` in order: one session's, or the whole issuer's.
    async fn events(
        &self,
        session: Option<SessionId>,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<EventRecord>>;
    /// The sequence number of the newest committed event, updated after every commit that
    /// wrote events: the wake-up for the dispatcher and for live streams.
    fn watch_events(&self) -> tokio::sync::watch::Receiver<i64>;
}

/// The webhook outbox: deliveries written with their events, claimed and recorded by the
/// dispatcher.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Leases up to `limit` due deliveries, skipping URLs that already have `per_url` in flight.
    async fn claim_deliveries(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
        per_url: u32,
    ) -> StoreResult<Vec<DueDelivery>>;
    /// Records an attempt and its consequence, and ends the lease.
    async fn record_attempt(
        &self,
        delivery: i64,
        attempt: &AttemptRecord,
        outcome: AttemptOutcome,
        now: Millis,
    ) -> StoreResult<()>;
    /// The dispatcher's bookkeeping in one write: records `finished` as `record_attempt`
    /// does, then claims as `claim_deliveries` does (seeing those leases ended).
    async fn record_and_claim(
        &self,
        finished: Vec<FinishedAttempt>,
        now: Millis,
        lease_until: Millis,
        limit: u32,
        per_url: u32,
    ) -> StoreResult<Vec<DueDelivery>>;
    /// The pending deliveries by URL, in URL order (for the metrics).
    async fn delivery_backlog(&self) -> StoreResult<Vec<Backlog>>;
    /// Every delivery of a session's events, with its attempts.
    async fn session_deliveries(&self, id: SessionId) -> StoreResult<Vec<DeliveryRecord>>;
    /// Sends again: one event's deliveries, or every FAILED or GONE delivery of the session.
    /// A URL redelivered to is no longer treated as gone. Returns how many were rescheduled.
    async fn redeliver(
        &self,
        id: SessionId,
        event_id: Option<&str>,
        now: Millis,
    ) -> StoreResult<u64>;
}

/// A console sign-in: the hash of its cookie, the fingerprint of the API key it was made with
/// (a new key ends it), and its lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSessionRecord {
    pub id_hash: String,
    pub key_fingerprint: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// How many sessions of one credential configuration, made since a moment, are in one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCount {
    pub credential_configuration_id: String,
    pub status: String,
    pub count: i64,
}

/// How many deliveries made since a moment are in one state: `DELIVERED`, `PENDING` (not yet
/// tried), `RETRYING` (pending after a failed attempt), `FAILED` or `GONE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryCount {
    pub state: String,
    pub count: i64,
}

/// The operator's view: console sign-ins and the counts of a recent window.
#[async_trait]
pub trait OperatorStore: Send + Sync {
    /// Records a sign-in, and forgets those that expired before `now`.
    async fn open_console_session(
        &self,
        session: &ConsoleSessionRecord,
        now: Millis,
    ) -> StoreResult<()>;
    /// The sign-in with this cookie hash, unless it expired by `now` or was closed.
    async fn console_session(
        &self,
        id_hash: &str,
        now: Millis,
    ) -> StoreResult<Option<ConsoleSessionRecord>>;
    /// Ends a sign-in; false when there was none.
    async fn close_console_session(&self, id_hash: &str) -> StoreResult<bool>;
    /// Sessions created at or after `since`, by credential configuration and status.
    async fn session_counts(&self, since: Millis) -> StoreResult<Vec<SessionCount>>;
    /// Deliveries created at or after `since`, by state.
    async fn delivery_counts(&self, since: Millis) -> StoreResult<Vec<DeliveryCount>>;
}

/// The whole store, one trait per concern; both stores implement every one.
pub trait Store:
    SettingsStore
    + KeyStore
    + ProfileStore
    + SessionStore
    + CredentialStore
    + AuthorizationStore
    + ReplayStore
    + EventLog
    + Outbox
    + OperatorStore
    + 'static
{
}

impl<T> Store for T where
    T: SettingsStore
        + KeyStore
        + ProfileStore
        + SessionStore
        + CredentialStore
        + AuthorizationStore
        + ReplayStore
        + EventLog
        + Outbox
        + OperatorStore
        + 'static
{
}
