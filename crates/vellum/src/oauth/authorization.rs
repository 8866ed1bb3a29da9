//! The authorization code flow's front half (OID4VCI 1.0 §5, RFC 6749 §4.1): the `issuer_state`
//! of an offer, the pushed authorization request (RFC 9126), the authorization endpoint that
//! sends the holder to the profile's OpenID provider, and the provider's callback, which checks
//! the ID token, maps its claims into the session's credential data and sends the wallet its
//! code (with `iss`, RFC 9207). A redirect_uri is used only once it has been validated; before
//! that, errors are answered to the browser directly.

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use vellum_formats::jose;

use super::upstream::{self, LoginRequest, UpstreamError};
use super::{attestation, dpop};
use crate::clock::Millis;
use crate::context::Context;
use crate::errors::{Internal, OAuthError};
use crate::events;
use crate::ids::{ProviderId, SessionId};
use crate::profiles::{self, IssuanceTemplate, ProfileDefinition};
use crate::protocol::OPENID_CREDENTIAL;
use crate::secrets::{Purpose, Secrets, hash_secret, random_token};
use crate::store::{
    Applied, AuthorizationCompletion, AuthorizationRequestRecord, GrantKind, GrantState, NewEvent,
    NewGrant, ProfileRecord, RequestLookup, RequestStatus, SessionLookup, SessionRecord,
    SessionStatus,
};

const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// The `issuer_state` of a session's offer: derived, never stored (only its hash is).
pub fn issuer_state(secrets: &Secrets, session: SessionId) -> String {
    jose::b64(secrets.mac(Purpose::IssuerState, &[session.as_bytes()]))
}

/// The grant an offer for the authorization code flow is created with.
pub fn new_grant(secrets: &Secrets, session: SessionId) -> NewGrant {
    NewGrant {
        kind: GrantKind::IssuerState,
        secret_hash: hash_secret(&issuer_state(secrets, session)),
        tx_code: None,
        tx_code_mac: None,
        expires_at: None,
        request_id: None,
        dpop_jkt: None,
    }
}

/// The offer's `authorization_code` grant object.
pub fn offer_grant(secrets: &Secrets, session: SessionId) -> Value {
    json!({ "issuer_state": issuer_state(secrets, session) })
}

/// An authorization request's parameters (RFC 6749 §4.1.1, RFC 7636 §4.3, OID4VCI 1.0 §5.1), as
/// checked: what is kept of it for the callback and the token request.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct AuthorizationParameters {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<Value>,
    /// The wallet's DPoP key (RFC 9449 §10), when it proved or named one with the request: the
    /// code is then only exchanged with a proof by that key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
    /// The attested wallet instance's key (its thumbprint), when the wallet authenticated with a
    /// wallet attestation: the code is then only exchanged by that instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested_key: Option<String>,
    #[serde(skip)]
    issuer_state: Option<String>,
}

/// The parameters an authorization request may carry; anything else is ignored.
const PARAMETERS: [&str; 10] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "code_challenge",
    "code_challenge_method",
    "state",
    "scope",
    "authorization_details",
    "issuer_state",
    "dpop_jkt",
];

impl AuthorizationParameters {
    /// Checks the parameters of a pushed or direct authorization request. Nothing here is
    /// answered by redirect: the redirect_uri is not yet known to be good.
    pub fn parse(pairs: Vec<(String, String)>) -> Result<Self, OAuthError> {
        let invalid = |why: &str| OAuthError::InvalidRequest(why.to_owned());
        let mut known: [Option<String>; 10] = Default::default();
        for (name, value) in pairs {
            if name == "request" {
                return Err(invalid(
                    "request objects (JAR) are not supported; send the parameters",
                ));
            }
            let Some(index) = PARAMETERS.iter().position(|known| *known == name) else {
                continue;
            };
            if known[index].replace(value).is_some() {
                return Err(OAuthError::InvalidRequest(format!(
                    "parameter {} is repeated",
                    PARAMETERS[index]
                )));
            }
        }
        let [
            response_type,
            client_id,
            redirect_uri,
            code_challenge,
            code_challenge_method,
            state,
            scope,
            authorization_details,
            issuer_state,
            dpop_jkt,
        ] = known;
        if response_type.as_deref() != Some("code") {
            return Err(invalid("response_type must be code"));
        }
        let client_id = client_id.ok_or_else(|| invalid("client_id is missing"))?;
        if !printable(&client_id, 255) {
            return Err(invalid(
                "client_id must be 1-255 printable ASCII characters",
            ));
        }
        let redirect_uri = redirect_uri.ok_or_else(|| invalid("redirect_uri is missing"))?;
        check_redirect_uri(&redirect_uri).map_err(invalid)?;
        // RFC 7636 §4.3: without a method the challenge is plain, which is refused (HAIP, FAPI 2).
        match code_challenge_method.as_deref() {
            Some("S256") => {}
            Some("plain") | None => {
                return Err(invalid(
                    "PKCE with code_challenge_method S256 is required; plain is refused",
                ));
            }
            Some(_) => return Err(invalid("code_challenge_method must be S256")),
        }
        let code_challenge = code_challenge
            .filter(|challenge| challenge.len() == 43 && jose::b64_decode(challenge).is_ok())
            .ok_or_else(|| {
                invalid("code_challenge must be the base64url SHA-256 of the code_verifier")
            })?;
        if let Some(state) = &state
            && !printable(state, 512)
        {
            return Err(invalid("state must be 1-512 printable ASCII characters"));
        }
        if let Some(scope) = &scope
            && !printable(scope, 1024)
        {
            return Err(invalid("scope must be 1-1024 printable ASCII characters"));
        }
        let authorization_details = authorization_details
            .map(|text| parse_authorization_details(&text))
            .transpose()?;
        if let Some(jkt) = &dpop_jkt
            && (jkt.len() != 43 || jose::b64_decode(jkt).is_err())
        {
            return Err(invalid(
                "dpop_jkt must be a base64url SHA-256 JWK thumbprint",
            ));
        }
        Ok(AuthorizationParameters {
            client_id,
            redirect_uri,
            code_challenge,
            state,
            scope,
            authorization_details,
            dpop_jkt,
            attested_key: None,
            issuer_state,
        })
    }

    /// The credential configurations the wallet asked for, by `authorization_details` and by
    /// `scope` (the configurations whose scope it names).
    fn requested_configurations(&self, ctx: &Context) -> Vec<String> {
        let mut requested = self.detailed_configurations();
        requested.extend(self.scoped_configurations(ctx));
        requested
    }

    /// The configurations `authorization_details` names.
    fn detailed_configurations(&self) -> Vec<String> {
        self.authorization_details
            .iter()
            .flat_map(|details| details.as_array().into_iter().flatten())
            .filter_map(|detail| detail["credential_configuration_id"].as_str())
            .map(str::to_owned)
            .collect()
    }

    /// The configurations whose scope `scope` names; its other values (openid, ...) are not ours.
    fn scoped_configurations(&self, ctx: &Context) -> Vec<String> {
        let Some(scope) = &self.scope else {
            return Vec::new();
        };
        ctx.config
            .credential_configurations
            .iter()
            .filter(|(id, configuration)| {
                let configured = configuration.scope.as_deref().unwrap_or(id);
                scope.split(' ').any(|token| token == configured)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }
}

fn printable(text: &str, max: usize) -> bool {
    !text.is_empty() && text.len() <= max && text.bytes().all(|byte| (0x20..=0x7e).contains(&byte))
}

/// A redirect_uri a code may be sent to: absolute, no fragment, https or a wallet's own scheme;
/// http only on a loopback address (RFC 8252 §7.3); never a scheme that runs or reads content.
fn check_redirect_uri(text: &str) -> Result<(), &'static str> {
    if text.len() > 2048 {
        return Err("redirect_uri must be at most 2048 characters");
    }
    let url = url::Url::parse(text).map_err(|_| "redirect_uri must be an absolute URI")?;
    if url.fragment().is_some() {
        return Err("redirect_uri must not have a fragment");
    }
    match url.scheme() {
        "javascript" | "data" | "file" | "vbscript" | "blob" | "about" => {
            Err("redirect_uri has a scheme a code must never be sent to")
        }
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(name)) => name == "localhost",
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err("redirect_uri may use http only on a loopback address")
            }
        }
        _ => Ok(()),
    }
}

/// `authorization_details` (RFC 9396) of type `openid_credential` naming a configuration.
fn parse_authorization_details(text: &str) -> Result<Value, OAuthError> {
    let invalid = |why: &str| OAuthError::InvalidRequest(format!("authorization_details {why}"));
    let details: Value = serde_json::from_str(text).map_err(|_| invalid("must be a JSON array"))?;
    crate::limits::check("authorization_details", &details)
        .map_err(|error| OAuthError::InvalidRequest(error.to_string()))?;
    let entries = details
        .as_array()
        .ok_or_else(|| invalid("must be a JSON array"))?;
    if entries.is_empty() || entries.len() > 16 {
        return Err(invalid("must have 1-16 entries"));
    }
    for entry in entries {
        if entry["type"] != OPENID_CREDENTIAL {
            return Err(invalid("entries must be of type openid_credential"));
        }
        if !entry["credential_configuration_id"].is_string() {
            return Err(invalid("entries must name a credential_configuration_id"));
        }
    }
    Ok(details)
}

/// The PAR endpoint's answer (RFC 9126 §2.2).
#[derive(Debug, Serialize)]
pub struct PushedRequest {
    pub request_uri: String,
    pub expires_in: u32,
}

/// `POST /par`: checks the request, ties it to its session, and keeps it for the authorization
/// endpoint under a single-use `request_uri`.
pub async fn push(
    ctx: &Context,
    parameters: AuthorizationParameters,
    dpop_proof: Option<String>,
    attestation: attestation::Presented,
) -> Result<PushedRequest, OAuthError> {
    let now = ctx.clock.now();
    let Some(session) = session_of(ctx, &parameters).await? else {
        // Wallet-initiated: the client is authenticated before a session is made for it.
        let (profile, definition) = wallet_initiated_profile(ctx, &parameters).await?;
        let mut parameters = parameters;
        authenticate(ctx, &mut parameters, dpop_proof, attestation, now).await?;
        let session = start_session(ctx, &profile, definition, &parameters, now).await?;
        return keep(ctx, &session, parameters, now).await;
    };
    let checked = async {
        check_for_session(ctx, &session, &parameters, now)?;
        let mut parameters = parameters;
        authenticate(ctx, &mut parameters, dpop_proof, attestation, now).await?;
        keep(ctx, &session, parameters, now).await
    };
    match checked.await {
        Ok(pushed) => Ok(pushed),
        Err(error) => {
            if error.is_failure_event() {
                let event = events::request_failed(
                    session.id,
                    events::PUSHED_AUTHORIZATION_REQUEST_FAILED,
                    error.code(),
                    &error.to_string(),
                    now,
                );
                ctx.store.append_events(&[event]).await?;
            }
            Err(error)
        }
    }
}

/// The client of a pushed request: its wallet attestation (required unless public clients are
/// allowed) and the DPoP key it proves, both kept with the request.
async fn authenticate(
    ctx: &Context,
    parameters: &mut AuthorizationParameters,
    dpop_proof: Option<String>,
    attestation: attestation::Presented,
    now: Millis,
) -> Result<(), OAuthError> {
    let attested = attestation::require(ctx, attestation, Some(&parameters.client_id), now).await?;
    parameters.attested_key = attested.map(|client| client.key_thumbprint);
    if let Some(proof) = dpop_proof {
        let target = dpop::Target {
            method: "POST",
            url: &ctx.endpoint("/par"),
            access_token: None,
        };
        let jkt = dpop::verify(ctx, &proof, &target, now).await?;
        if parameters
            .dpop_jkt
            .as_ref()
            .is_some_and(|named| *named != jkt)
        {
            return Err(OAuthError::InvalidDpopProof(
                "dpop_jkt is not the thumbprint of the DPoP proof's key".into(),
            ));
        }
        parameters.dpop_jkt = Some(jkt);
    }
    Ok(())
}

/// Keeps a checked request under a new single-use `request_uri`.
async fn keep(
    ctx: &Context,
    session: &SessionRecord,
    parameters: AuthorizationParameters,
    now: Millis,
) -> Result<PushedRequest, OAuthError> {
    let request_uri = format!("{REQUEST_URI_PREFIX}{}", random_token());
    let ttl = ctx.config.authorization.request_uri_ttl_seconds;
    let record = AuthorizationRequestRecord {
        id: uuid::Uuid::new_v4().to_string(),
        request_uri_hash: Some(hash_secret(&request_uri)),
        state_hash: None,
        session_id: Some(session.id),
        profile_id: session.profile_id.clone(),
        client_id: parameters.client_id.clone(),
        parameters: serde_json::to_value(&parameters).map_err(Internal::new)?,
        status: RequestStatus::Pushed,
        created_at: now,
        expires_at: now + i64::from(ttl) * 1000,
    };
    let event = events::new(
        session.id,
        events::PUSHED_AUTHORIZATION_REQUEST_SUCCEEDED,
        now,
        json!({
            "clientId": parameters.client_id,
            "credentialConfigurationId": session.credential_configuration_id,
            "dpopBound": parameters.dpop_jkt.is_some(),
            "clientAttested": parameters.attested_key.is_some(),
        }),
    );
    ctx.store
        .create_authorization_request(&record, &[event])
        .await?;
    Ok(PushedRequest {
        request_uri,
        expires_in: ttl,
    })
}

/// The session an authorization request names by `issuer_state`, if it names one.
async fn session_of(
    ctx: &Context,
    parameters: &AuthorizationParameters,
) -> Result<Option<SessionRecord>, OAuthError> {
    let Some(issuer_state) = &parameters.issuer_state else {
        return Ok(None);
    };
    let session = ctx
        .store
        .session_by(SessionLookup::Grant(&hash_secret(issuer_state)))
        .await?
        .filter(|session| {
            session
                .offer_grant
                .as_ref()
                .is_some_and(|grant| grant.kind == GrantKind::IssuerState)
        });
    match session {
        Some(session) => Ok(Some(session)),
        None => Err(OAuthError::InvalidRequest(
            "unknown issuer_state: it was not issued by this issuer".into(),
        )),
    }
}

/// The profile a wallet-initiated request gets its session from: the wallet-initiated profile of
/// the one credential configuration it asks for.
async fn wallet_initiated_profile(
    ctx: &Context,
    parameters: &AuthorizationParameters,
) -> Result<(ProfileRecord, ProfileDefinition), OAuthError> {
    let detailed = parameters.detailed_configurations();
    if let Some(unknown) = detailed
        .iter()
        .find(|id| !ctx.config.credential_configurations.contains_key(*id))
    {
        return Err(OAuthError::InvalidAuthorizationDetails(format!(
            "no credential configuration {unknown:?} at this issuer"
        )));
    }
    let mut requested = detailed;
    let by_details = !requested.is_empty();
    requested.extend(parameters.scoped_configurations(ctx));
    requested.sort();
    requested.dedup();
    let configuration = match requested.as_slice() {
        [one] => one,
        [] if parameters.scope.is_some() => {
            return Err(OAuthError::InvalidScope(
                "the scope names no credential configuration of this issuer".into(),
            ));
        }
        [] => {
            return Err(OAuthError::InvalidRequest(
                "without issuer_state, name the credential configuration by scope or \
                 authorization_details (wallet-initiated issuance)"
                    .into(),
            ));
        }
        _ => {
            return Err(OAuthError::InvalidRequest(
                "ask for one credential configuration per authorization request".into(),
            ));
        }
    };
    let why =
        format!("no profile is configured for wallet-initiated issuance of {configuration:?}");
    profiles::wallet_initiated(ctx, configuration)
        .await?
        .ok_or(if by_details {
            OAuthError::InvalidAuthorizationDetails(why)
        } else {
            OAuthError::InvalidScope(why)
        })
}

/// A session for a wallet-initiated request, from the profile, for as long as the request's
/// steps may take: pushed, logged in, the code exchanged.
async fn start_session(
    ctx: &Context,
    profile: &ProfileRecord,
    definition: ProfileDefinition,
    parameters: &AuthorizationParameters,
    now: Millis,
) -> Result<SessionRecord, OAuthError> {
    let settings = &ctx.config.authorization;
    let lifetime = i64::from(settings.request_uri_ttl_seconds)
        + i64::from(settings.login_timeout_seconds)
        + i64::from(settings.code_ttl_seconds);
    let id = SessionId::generate();
    let template = IssuanceTemplate {
        definition,
        expected_proof_key_thumbprint: None,
        omit_issuer_state: false,
    };
    let session = profiles::new_session(ctx, id, profile, &template, now + lifetime * 1000, now)?;
    let event = events::new(
        id,
        events::WALLET_INITIATED_SESSION_CREATED,
        now,
        json!({
            "profileId": profile.id,
            "profileVersion": profile.version,
            "credentialConfigurationId": session.credential_configuration_id,
            "authMethod": "AUTHORIZED",
            "clientId": parameters.client_id,
            "expiresAt": session.expires_at,
        }),
    );
    // The session's grant is an issuer_state no wallet is given: the request below uses it as an
    // offer's would be.
    let grant = new_grant(&ctx.secrets, id);
    ctx.store
        .create_session(&session, Some(&grant), &event)
        .await?;
    Ok(session)
}

/// What a session requires of a request: still active and unexpired, its offer's grant not yet
/// used, and any configuration the wallet names being the session's.
fn check_for_session(
    ctx: &Context,
    session: &SessionRecord,
    parameters: &AuthorizationParameters,
    now: Millis,
) -> Result<(), OAuthError> {
    if session.status != SessionStatus::Active || session.expires_at <= now {
        return Err(OAuthError::InvalidRequest(
            "the credential offer is no longer active".into(),
        ));
    }
    if session
        .offer_grant
        .as_ref()
        .is_some_and(|grant| grant.state != GrantState::Unused)
    {
        return Err(OAuthError::InvalidRequest(
            "the credential offer has already been used".into(),
        ));
    }
    let requested = parameters.requested_configurations(ctx);
    if requested
        .iter()
        .any(|id| *id != session.credential_configuration_id)
    {
        return Err(OAuthError::InvalidRequest(format!(
            "the credential offer is for {:?} only",
            session.credential_configuration_id
        )));
    }
    Ok(())
}

/// Where the authorization endpoint and the callback send the browser: an absolute URL, or an
/// error answered in place (before a redirect_uri could be trusted).
pub type Redirect = String;

/// `GET /authorize`: the pushed request named by `request_uri` (single use), or, when PAR is not
/// required, the parameters themselves; the holder goes to the provider.
pub async fn authorize(
    ctx: &Context,
    pairs: Vec<(String, String)>,
) -> Result<Redirect, OAuthError> {
    let now = ctx.clock.now();
    let request_uri = pairs
        .iter()
        .find(|(name, _)| name == "request_uri")
        .map(|(_, value)| value.clone());
    let client_id = pairs
        .iter()
        .find(|(name, _)| name == "client_id")
        .map(|(_, value)| value.clone());
    let request = match request_uri {
        Some(request_uri) => pushed_request(ctx, &request_uri, client_id.as_deref(), now).await?,
        None if ctx
            .config
            .authorization
            .require_pushed_authorization_requests =>
        {
            return Err(OAuthError::InvalidRequest(
                "this issuer requires pushed authorization requests: push the request to the \
                 PAR endpoint first, then send its request_uri"
                    .into(),
            ));
        }
        None => direct_request(ctx, pairs, now).await?,
    };
    let parameters: AuthorizationParameters =
        serde_json::from_value(request.parameters.clone()).map_err(Internal::new)?;
    // From here on the redirect_uri is the one checked when the request was made.
    match send_to_provider(ctx, &request, now).await {
        Ok(url) => Ok(url),
        Err(error) => fail(ctx, &request, &parameters, error).await,
    }
}

async fn pushed_request(
    ctx: &Context,
    request_uri: &str,
    client_id: Option<&str>,
    now: Millis,
) -> Result<AuthorizationRequestRecord, OAuthError> {
    let unknown = || {
        OAuthError::InvalidRequest(
            "unknown, expired or already used request_uri: push the request again".into(),
        )
    };
    let request = ctx
        .store
        .authorization_request(RequestLookup::RequestUri(&hash_secret(request_uri)))
        .await?
        .ok_or_else(unknown)?;
    if request.status != RequestStatus::Pushed || request.expires_at <= now {
        return Err(unknown());
    }
    if client_id != Some(request.client_id.as_str()) {
        return Err(OAuthError::InvalidRequest(
            "client_id must be the one the request was pushed with".into(),
        ));
    }
    Ok(request)
}

/// An authorization request sent straight to the authorization endpoint (PAR not required).
async fn direct_request(
    ctx: &Context,
    pairs: Vec<(String, String)>,
    now: Millis,
) -> Result<AuthorizationRequestRecord, OAuthError> {
    // A browser's request carries no attestation headers.
    if !ctx.config.client_attestation.allow_public_clients {
        return Err(OAuthError::InvalidClientAttestation(
            "this issuer requires wallet attestation: push the request to the PAR endpoint with \
             OAuth-Client-Attestation and OAuth-Client-Attestation-PoP, then send its request_uri"
                .into(),
        ));
    }
    let parameters = AuthorizationParameters::parse(pairs)?;
    let session = match session_of(ctx, &parameters).await? {
        Some(session) => {
            check_for_session(ctx, &session, &parameters, now)?;
            session
        }
        None => {
            let (profile, definition) = wallet_initiated_profile(ctx, &parameters).await?;
            start_session(ctx, &profile, definition, &parameters, now).await?
        }
    };
    let record = AuthorizationRequestRecord {
        id: uuid::Uuid::new_v4().to_string(),
        request_uri_hash: None,
        state_hash: None,
        session_id: Some(session.id),
        profile_id: session.profile_id.clone(),
        client_id: parameters.client_id.clone(),
        parameters: serde_json::to_value(&parameters).map_err(Internal::new)?,
        status: RequestStatus::Pushed,
        created_at: now,
        expires_at: now + i64::from(ctx.config.authorization.request_uri_ttl_seconds) * 1000,
    };
    ctx.store.create_authorization_request(&record, &[]).await?;
    Ok(record)
}

/// What the provider login of a request is made of: state (random, kept as a hash), and nonce
/// and PKCE verifier derived from the request id.
struct Login {
    state: String,
    nonce: String,
    code_verifier: String,
}

impl Login {
    fn derived(secrets: &Secrets, request_id: &str, state: String) -> Login {
        let derive = |what: &str| {
            jose::b64(secrets.mac(
                Purpose::UpstreamLogin,
                &[request_id.as_bytes(), what.as_bytes()],
            ))
        };
        Login {
            state,
            nonce: derive("nonce"),
            code_verifier: derive("code_verifier"),
        }
    }

    fn request<'a>(&'a self, redirect_uri: &'a str) -> LoginRequest<'a> {
        LoginRequest {
            redirect_uri,
            state: &self.state,
            nonce: &self.nonce,
            code_verifier: &self.code_verifier,
        }
    }
}

/// The profile's provider, for a request.
async fn provider_of(
    ctx: &Context,
    request: &AuthorizationRequestRecord,
) -> Result<ProviderId, OAuthError> {
    let profile = ctx
        .store
        .profile(&request.profile_id, None)
        .await?
        .ok_or_else(|| OAuthError::Internal(Internal::msg("the request's profile is gone")))?;
    profile
        .definition
        .get("identityProvider")
        .and_then(Value::as_str)
        .and_then(|id| ProviderId::parse(id).ok())
        .ok_or_else(|| {
            OAuthError::Internal(Internal::msg(format!(
                "profile {} names no identityProvider",
                request.profile_id
            )))
        })
}

async fn send_to_provider(
    ctx: &Context,
    request: &AuthorizationRequestRecord,
    now: Millis,
) -> Result<Redirect, Failure> {
    let provider = provider_of(ctx, request).await?;
    let login = Login::derived(&ctx.secrets, &request.id, random_token());
    let callback = ctx.endpoint("/authorize/callback");
    let url = upstream::login_url(ctx, &provider, &login.request(&callback)).await?;
    let expires_at = now + i64::from(ctx.config.authorization.login_timeout_seconds) * 1000;
    match ctx
        .store
        .start_login(&request.id, &hash_secret(&login.state), expires_at, now)
        .await?
    {
        Applied::Yes => Ok(url),
        Applied::Stale => Err(OAuthError::InvalidRequest(
            "unknown, expired or already used request_uri: push the request again".into(),
        )
        .into()),
    }
}

/// Why a login did not end with a code: what the wallet is told, and the provider's own error
/// when it gave one (for the operator's event).
struct Failure {
    error: OAuthError,
    provider: Option<UpstreamError>,
}

impl From<OAuthError> for Failure {
    fn from(error: OAuthError) -> Self {
        Failure {
            error,
            provider: None,
        }
    }
}

impl From<Internal> for Failure {
    fn from(error: Internal) -> Self {
        OAuthError::from(error).into()
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(error: crate::store::StoreError) -> Self {
        OAuthError::from(error).into()
    }
}

impl From<UpstreamError> for Failure {
    fn from(error: UpstreamError) -> Self {
        let wallet = match &error {
            UpstreamError::Refused { error, .. } if error == "access_denied" => {
                OAuthError::AccessDenied(
                    "the holder did not log in at the identity provider".into(),
                )
            }
            UpstreamError::Refused { .. } => {
                OAuthError::AccessDenied("the identity provider refused the login".into())
            }
            UpstreamError::Failed(_) => OAuthError::TemporarilyUnavailable(
                "the identity provider could not be used; try again later".into(),
            ),
        };
        Failure {
            error: wallet,
            provider: Some(error),
        }
    }
}

/// Ends a request without a code: the request FAILED with its event, and the wallet's browser
/// sent to its redirect_uri with the error. A failure to tell (the database) is answered in
/// place instead.
async fn fail(
    ctx: &Context,
    request: &AuthorizationRequestRecord,
    parameters: &AuthorizationParameters,
    failure: impl Into<Failure>,
) -> Result<Redirect, OAuthError> {
    let Failure { error, provider } = failure.into();
    if matches!(error, OAuthError::Internal(_) | OAuthError::Unavailable) {
        return Err(error);
    }
    let now = ctx.clock.now();
    let mut data = json!({"error": error.code(), "error_description": error.to_string()});
    if let Some(provider) = &provider {
        data["providerError"] = Value::from(provider.to_string());
    }
    let events: Vec<NewEvent> = request
        .session_id
        .map(|session| events::new(session, events::AUTHORIZATION_REQUEST_FAILED, now, data))
        .into_iter()
        .collect();
    ctx.store.fail_authorization(&request.id, &events).await?;
    if let Some(provider) = &provider {
        tracing::warn!(request = %request.id, error = %provider, "holder login failed");
    }
    Ok(response_redirect(
        ctx,
        parameters,
        &[
            ("error", error.code()),
            ("error_description", &error.to_string()),
        ],
    ))
}

/// The wallet's redirect_uri with the response parameters, its `state` and our `iss`.
fn response_redirect(
    ctx: &Context,
    parameters: &AuthorizationParameters,
    response: &[(&str, &str)],
) -> Redirect {
    let mut url = url::Url::parse(&parameters.redirect_uri)
        .unwrap_or_else(|_| unreachable!("redirect_uri was checked when the request was made"));
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in response {
            query.append_pair(name, value);
        }
        if let Some(state) = &parameters.state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", &ctx.issuer_url);
    }
    url.into()
}

/// `GET /authorize/callback`: the provider sends the holder back with a code (or an error).
pub async fn callback(ctx: &Context, pairs: Vec<(String, String)>) -> Result<Redirect, OAuthError> {
    let now = ctx.clock.now();
    let parameter = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let unknown = || {
        OAuthError::InvalidRequest("this login is unknown, has expired or has already ended".into())
    };
    let state = parameter("state").ok_or_else(unknown)?;
    let request = ctx
        .store
        .authorization_request(RequestLookup::State(&hash_secret(state)))
        .await?
        .ok_or_else(unknown)?;
    if request.status != RequestStatus::AtProvider {
        return Err(unknown());
    }
    let parameters: AuthorizationParameters =
        serde_json::from_value(request.parameters.clone()).map_err(Internal::new)?;
    if request.expires_at <= now {
        let error = OAuthError::AccessDenied("the holder took too long to log in".into());
        return fail(ctx, &request, &parameters, error).await;
    }
    let provider = match provider_of(ctx, &request).await {
        Ok(provider) => provider,
        Err(error) => return fail(ctx, &request, &parameters, error).await,
    };
    let callback_params: Value = Value::Object(
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), Value::from(value.as_str())))
            .collect(),
    );
    if let Some(refusal) = upstream::refusal(&callback_params) {
        return fail(ctx, &request, &parameters, refusal).await;
    }
    let Some(code) = parameter("code") else {
        let error =
            UpstreamError::Failed("the provider sent the holder back without a code".into());
        return fail(ctx, &request, &parameters, error).await;
    };
    let login = Login::derived(&ctx.secrets, &request.id, state.to_owned());
    let callback_url = ctx.endpoint("/authorize/callback");
    let claims =
        match upstream::redeem(ctx, &provider, code, &login.request(&callback_url), now).await {
            Ok(claims) => claims,
            Err(error) => return fail(ctx, &request, &parameters, error).await,
        };
    match complete(ctx, &request, &parameters, &provider, &claims, now).await {
        Ok(redirect) => Ok(redirect),
        Err(failure) => fail(ctx, &request, &parameters, failure).await,
    }
}

/// The holder logged in: the claims go into the session's template, the wallet gets a code.
async fn complete(
    ctx: &Context,
    request: &AuthorizationRequestRecord,
    parameters: &AuthorizationParameters,
    provider: &ProviderId,
    claims: &Map<String, Value>,
    now: Millis,
) -> Result<Redirect, Failure> {
    let session_id = request
        .session_id
        .ok_or_else(|| OAuthError::Internal(Internal::msg("a request without its session")))?;
    let session = ctx
        .store
        .session(session_id)
        .await?
        .ok_or_else(|| OAuthError::AccessDenied("the issuance session is gone".into()))?;
    let mut template: IssuanceTemplate =
        serde_json::from_str(&session.template).map_err(Internal::new)?;
    template.definition =
        profiles::with_login_claims(&ctx.credential_configurations, template.definition, claims)
            .map_err(|why| {
                UpstreamError::Failed(format!(
                    "the identity provider's claims cannot go into this credential: {why}"
                ))
            })?;
    let code = random_token();
    let completion = AuthorizationCompletion {
        request_id: request.id.clone(),
        session: session.id,
        template: serde_json::to_string(&template).map_err(Internal::new)?,
        grant: NewGrant {
            kind: GrantKind::AuthorizationCode,
            secret_hash: hash_secret(&code),
            tx_code: None,
            tx_code_mac: None,
            expires_at: Some(now + i64::from(ctx.config.authorization.code_ttl_seconds) * 1000),
            request_id: Some(request.id.clone()),
            dpop_jkt: None,
        },
        now,
        events: vec![events::new(
            session.id,
            events::AUTHORIZATION_REQUEST_SUCCEEDED,
            now,
            json!({"clientId": request.client_id, "identityProvider": provider}),
        )],
    };
    match ctx.store.complete_authorization(&completion).await? {
        Applied::Yes => Ok(response_redirect(ctx, parameters, &[("code", &code)])),
        Applied::Stale => {
            Err(OAuthError::AccessDenied("the issuance session is no longer active".into()).into())
        }
    }
}

/// PKCE (RFC 7636 §4.6): the verifier's SHA-256 is the challenge of the request.
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~'));
    well_formed && jose::b64(Sha256::digest(verifier.as_bytes())) == challenge
}

/// The parameters kept with a request, read back.
pub fn kept_parameters(
    request: &AuthorizationRequestRecord,
) -> Result<AuthorizationParameters, Internal> {
    serde_json::from_value(request.parameters.clone()).map_err(Internal::new)
}
