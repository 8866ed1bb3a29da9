//! The credential endpoints: the credential endpoint (access token, request shape, key proofs,
//! then the credentials, or a deferred transaction), the deferred credential endpoint, and the
//! wallet's notifications about what it received.

use serde::Serialize;
use serde_json::{Map, Value, json};
use vellum_formats::did::{self, did_jwk};
use vellum_formats::jose::{self, Jwk, UnverifiedJws};

use crate::clock::Millis;
use crate::context::Context;
use crate::credentials::{self, Input};
use crate::encryption::{self, ResponseEncryption};
use crate::errors::{CredentialError, Internal};
use crate::events;
use crate::keys;
use crate::limits;
use crate::mapping::{self, Inputs};
use crate::metrics::Step;
use crate::oauth::{dpop, nonces};
use crate::profiles::IssuanceTemplate;
use crate::protocol::PROOF_TYP;
use crate::secrets::{Purpose, hash_secret, random_token};
use crate::sessions;
use crate::status;
mod key_attestation;

use crate::store::{
    AccessTokenRecord, Deferral, DeferredLookup, DeferredState, GrantKind, Issuance,
    IssuanceCommit, IssuedCredentialRecord, NewEvent, NotificationReceipt, SessionRecord,
    SessionStatus, Spent, WalletNotification,
};

/// What the credential and deferred credential endpoints answer: the credentials (200), or a
/// transaction to ask about again (202).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum CredentialResponse {
    Issued {
        credentials: Vec<IssuedCredential>,
        notification_id: String,
    },
    Deferred {
        transaction_id: String,
        interval: u32,
    },
}

#[derive(Debug, Serialize)]
pub struct IssuedCredential {
    pub credential: String,
}

/// How the access token was presented: `Authorization: Bearer` or `Authorization: DPoP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScheme {
    Bearer,
    Dpop,
}

#[derive(Debug)]
pub struct PresentedToken {
    pub scheme: TokenScheme,
    pub token: String,
}

/// A request to one of the credential endpoints as received: the access token, the `DPoP`
/// header, and the JSON body or why it could not be read (reported once the token is known to
/// be good).
#[derive(Debug)]
pub struct CredentialRequest {
    pub access_token: Option<PresentedToken>,
    pub dpop: Result<Option<String>, CredentialError>,
    pub body: Result<Value, CredentialError>,
    /// The body came as a JWE to the request key (`credential_request_encryption`).
    pub encrypted: bool,
}

/// What the credential and deferred credential endpoints answer, and how the wallet asked for it
/// to be encrypted.
#[derive(Debug)]
pub struct Answer {
    pub response: CredentialResponse,
    pub encryption: Option<ResponseEncryption>,
}

/// The endpoints that take an access token, by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Credential,
    DeferredCredential,
    Notification,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Credential => "/credential",
            Endpoint::DeferredCredential => "/deferred-credential",
            Endpoint::Notification => "/notification",
        }
    }
}

/// A request whose access token is good, presented by its holder.
struct Authorized {
    token: AccessTokenRecord,
    token_hash: String,
    session: SessionRecord,
    now: Millis,
}

/// Checks the access token (known, unexpired) and that its holder presents it (DPoP).
async fn authorize(
    ctx: &Context,
    request: CredentialRequest,
    endpoint: Endpoint,
) -> Result<(Authorized, Result<Value, CredentialError>, bool), CredentialError> {
    let presented = request.access_token.ok_or_else(|| {
        CredentialError::InvalidToken(
            "an access token is required (Authorization: Bearer or DPoP)".into(),
        )
    })?;
    let token_hash = hash_secret(&presented.token);
    let (token, session) = ctx
        .store
        .token_session(&token_hash)
        .await?
        .ok_or_else(|| CredentialError::InvalidToken("unknown access token".into()))?;
    let now = ctx.clock.now();
    if token.expires_at <= now {
        return Err(CredentialError::InvalidToken(
            "the access token has expired".into(),
        ));
    }
    let holder = holder_of_token(
        ctx,
        &presented,
        token.dpop_jkt.as_deref(),
        request.dpop,
        endpoint,
        now,
    )
    .await;
    let authorized = Authorized {
        token,
        token_hash,
        session,
        now,
    };
    match holder {
        Ok(()) => Ok((authorized, request.body, request.encrypted)),
        Err(error) => {
            record_failure(ctx, &authorized.session, &error, now).await?;
            Err(error)
        }
    }
}

/// A failed request to a credential endpoint is an event of its session, with what the wallet
/// was told; a wallet told to fetch a DPoP nonce first has not failed.
async fn record_failure(
    ctx: &Context,
    session: &SessionRecord,
    error: &CredentialError,
    now: Millis,
) -> Result<(), CredentialError> {
    if matches!(
        error,
        CredentialError::Internal(_)
            | CredentialError::Unavailable
            | CredentialError::UseDpopNonce(_)
    ) {
        return Ok(());
    }
    let event = events::request_failed(
        session.id,
        events::CREDENTIAL_REQUEST_FAILED,
        error.code(),
        &error.to_string(),
        now,
    );
    ctx.store.append_events(&[event]).await?;
    Ok(())
}

/// `POST /credential`.
pub async fn request_credential(
    ctx: &Context,
    request: CredentialRequest,
) -> Result<Answer, CredentialError> {
    answer(ctx, request, Endpoint::Credential).await
}

/// `POST /deferred-credential` (OID4VCI 1.0 §9): the credentials of a deferred transaction once
/// the operator's backend completed it, the same transaction again while it has not.
pub async fn request_deferred(
    ctx: &Context,
    request: CredentialRequest,
) -> Result<Answer, CredentialError> {
    answer(ctx, request, Endpoint::DeferredCredential).await
}

/// The credential or deferred credential endpoint's answer; a failure is an event of the
/// session.
async fn answer(
    ctx: &Context,
    request: CredentialRequest,
    endpoint: Endpoint,
) -> Result<Answer, CredentialError> {
    let (authorized, body, encrypted) = authorize(ctx, request, endpoint).await?;
    let answered = match (body, endpoint) {
        (Err(error), _) => Err(error),
        (Ok(body), Endpoint::DeferredCredential) => {
            deferred(ctx, &authorized, &body, encrypted).await
        }
        (Ok(body), _) => issue(ctx, &authorized, &body, encrypted).await,
    };
    if let Err(error) = &answered {
        record_failure(ctx, &authorized.session, error, authorized.now).await?;
    }
    let format = ctx
        .credential_configurations
        .get(&authorized.session.credential_configuration_id)
        .map_or("", |configured| configured.configuration.format.as_str());
    let (outcome, credentials) = match &answered {
        Ok(Answer {
            response: CredentialResponse::Issued { credentials, .. },
            ..
        }) => ("issued", credentials.len() as u64),
        Ok(_) => ("deferred", 0),
        Err(error) => (error.code(), 0),
    };
    ctx.metrics.step(Step::Credential {
        format,
        outcome,
        credentials,
    });
    answered
}

/// `POST /notification` (OID4VCI 1.0 §11): what became of the credentials of one response, as
/// an event of their session; a report repeated is acknowledged and changes nothing.
pub async fn notify(ctx: &Context, request: CredentialRequest) -> Result<(), CredentialError> {
    let (authorized, body, _) = authorize(ctx, request, Endpoint::Notification).await?;
    let invalid = |why: &str| CredentialError::InvalidNotificationRequest(why.into());
    // A body that could not be read is this endpoint's invalid_notification_request.
    let body = body.map_err(|error| match error {
        CredentialError::InvalidCredentialRequest(why)
        | CredentialError::InvalidEncryptionParameters(why) => {
            CredentialError::InvalidNotificationRequest(why)
        }
        other => other,
    })?;
    let body = body
        .as_object()
        .ok_or_else(|| invalid("the body must be a JSON object"))?;
    let notification_id = match body.get("notification_id") {
        Some(Value::String(id)) if !id.is_empty() => id,
        Some(_) => return Err(invalid("notification_id must be a string")),
        None => return Err(invalid("notification_id is missing")),
    };
    let event = match body.get("event").and_then(Value::as_str) {
        Some(event) => events::WALLET_NOTIFICATIONS
            .into_iter()
            .find(|known| *known == event)
            .ok_or_else(|| {
                invalid(
                    "event must be credential_accepted, credential_failure or credential_deleted",
                )
            })?,
        None => return Err(invalid("event is missing")),
    };
    let description = match body.get("event_description") {
        None => None,
        Some(Value::String(text)) if is_event_description(text) => Some(text.as_str()),
        Some(_) => {
            return Err(invalid(&format!(
                "event_description must be at most {} printable ASCII characters, without \" or \\",
                limits::MAX_EVENT_DESCRIPTION
            )));
        }
    };
    let session = &authorized.session;
    // The id is echoed only once it is known to be one of this session's.
    let mut data = json!({
        "notificationId": notification_id,
        "credentialConfigurationId": session.credential_configuration_id,
    });
    if let Some(description) = description {
        data["eventDescription"] = Value::from(description);
    }
    let notification = WalletNotification {
        notification_id: notification_id.clone(),
        session: session.id,
        event: event.to_owned(),
        now: authorized.now,
        events: vec![events::new(session.id, event, authorized.now, data)],
    };
    match ctx.store.record_wallet_notification(&notification).await? {
        NotificationReceipt::Recorded | NotificationReceipt::Repeated => Ok(()),
        NotificationReceipt::Unknown => Err(CredentialError::InvalidNotificationId(
            "not a notification_id of a credential this access token obtained".into(),
        )),
    }
}

/// OID4VCI 1.0 §11.1: `%x20-21 / %x23-5B / %x5D-7E`, here also bounded in length.
fn is_event_description(text: &str) -> bool {
    text.len() <= limits::MAX_EVENT_DESCRIPTION
        && text
            .bytes()
            .all(|byte| matches!(byte, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

/// Checks that the client presenting the token may use it: anyone holding a Bearer token, only
/// the holder of the bound key for a DPoP-bound one (RFC 9449 §7), proven for this request.
async fn holder_of_token(
    ctx: &Context,
    presented: &PresentedToken,
    bound_to: Option<&str>,
    proof: Result<Option<String>, CredentialError>,
    endpoint: Endpoint,
    now: Millis,
) -> Result<(), CredentialError> {
    let Some(bound_to) = bound_to else {
        return match presented.scheme {
            TokenScheme::Bearer => Ok(()),
            TokenScheme::Dpop => Err(CredentialError::InvalidToken(
                "this access token is not DPoP-bound: send it as Authorization: Bearer".into(),
            )),
        };
    };
    if presented.scheme != TokenScheme::Dpop {
        return Err(CredentialError::InvalidToken(
            "this access token is DPoP-bound: send it as Authorization: DPoP, with a DPoP proof"
                .into(),
        ));
    }
    let proof = proof?.ok_or_else(|| {
        CredentialError::InvalidDpopProof("a DPoP-bound access token needs a DPoP proof".into())
    })?;
    let target = dpop::Target {
        method: "POST",
        url: &ctx.endpoint(endpoint.path()),
        access_token: Some(&presented.token),
    };
    let jkt = dpop::verify(ctx, &proof, &target, now).await?;
    if jkt != bound_to {
        return Err(CredentialError::InvalidDpopProof(
            "the DPoP proof is not signed by the key the access token is bound to".into(),
        ));
    }
    Ok(())
}

impl From<dpop::DpopFailure> for CredentialError {
    fn from(failure: dpop::DpopFailure) -> Self {
        match failure {
            dpop::DpopFailure::Invalid(why) => CredentialError::InvalidDpopProof(why),
            dpop::DpopFailure::UseNonce(why) => CredentialError::UseDpopNonce(why),
            dpop::DpopFailure::Internal(error) => error.into(),
        }
    }
}

async fn issue(
    ctx: &Context,
    authorized: &Authorized,
    body: &Value,
    encrypted: bool,
) -> Result<Answer, CredentialError> {
    let Authorized {
        token,
        token_hash,
        session,
        now,
    } = authorized;
    let now = *now;
    match session.status {
        SessionStatus::Active => {}
        // A refreshed access token issues the session's credential again (new keys, a lost
        // device): the holder logged in for this data, within the refresh token's lifetime.
        SessionStatus::Successful if token.grant_kind == GrantKind::RefreshToken => {}
        SessionStatus::Successful => {
            return Err(CredentialError::CredentialRequestDenied(
                "the credential of this offer has already been issued".into(),
            ));
        }
        SessionStatus::Unsuccessful | SessionStatus::Expired => {
            return Err(CredentialError::CredentialRequestDenied(
                "the issuance session is no longer active".into(),
            ));
        }
    }
    let request = body.as_object().ok_or_else(|| {
        CredentialError::InvalidCredentialRequest("the body must be a JSON object".into())
    })?;
    let encryption = encryption::requested(ctx, request, encrypted)?;
    let answer = |response| Answer {
        response,
        encryption: encryption.clone(),
    };
    match (
        request.get("credential_configuration_id"),
        request.get("credential_identifier"),
    ) {
        (Some(_), Some(_)) => {
            return Err(CredentialError::InvalidCredentialRequest(
                "send credential_configuration_id or credential_identifier, not both".into(),
            ));
        }
        (None, None) => {
            return Err(CredentialError::InvalidCredentialRequest(
                "credential_configuration_id is missing".into(),
            ));
        }
        // The identifier a token response gives with authorization_details names the one
        // dataset of the session: its configuration.
        (None, Some(id)) if id.as_str() == Some(&session.credential_configuration_id) => {}
        (None, Some(_)) => {
            return Err(CredentialError::UnknownCredentialIdentifier(
                "not a credential identifier of this access token".into(),
            ));
        }
        (Some(id), None) if id.as_str() != Some(&session.credential_configuration_id) => {
            return Err(CredentialError::UnknownCredentialConfiguration(format!(
                "the access token covers only {:?}",
                session.credential_configuration_id
            )));
        }
        (Some(_), None) => {}
    }
    let template = session_template(session)?;
    let proofs = proofs_of(ctx, request)?;
    let proven = verify_proofs(ctx, &session.credential_configuration_id, proofs, now)?;
    if let Some(expected) = &template.expected_proof_key_thumbprint {
        match proven.as_slice() {
            [one] if one.jwk.thumbprint() == *expected => {}
            [_] => {
                return Err(CredentialError::InvalidProof(
                    "the proof is not signed by the key this offer is bound to".into(),
                ));
            }
            _ => {
                return Err(CredentialError::InvalidProof(
                    "this offer is bound to one key: send one proof".into(),
                ));
            }
        }
    }
    let first = &proven[0];
    let nonce_hash = hash_secret(&first.nonce);
    let holders: Vec<Holder> = proven
        .iter()
        .map(|key| Holder {
            jwk: key.jwk.clone(),
            did: key.did.clone().unwrap_or_else(|| did_jwk(&key.jwk)),
        })
        .collect();
    if template.definition.deferred && session.status == SessionStatus::Active {
        return defer(
            ctx,
            authorized,
            &holders,
            nonce_hash,
            first.nonce_expires_at,
        )
        .await
        .map(answer);
    }
    let spends = Spent::Nonce {
        hash: nonce_hash,
        expires_at: first.nonce_expires_at,
    };
    match commit(ctx, session, token_hash, &template, &holders, spends, now).await? {
        (IssuanceCommit::Issued, response) => Ok(answer(response)),
        (IssuanceCommit::AlreadySpent, _) => Err(CredentialError::InvalidNonce(
            "the nonce has already been used; fetch a new one".into(),
        )),
        (IssuanceCommit::SessionNotActive, _) => Err(not_active(ctx, session, now).await?),
    }
}

/// The session's issuance template, as stored with it.
fn session_template(session: &SessionRecord) -> Result<IssuanceTemplate, Internal> {
    serde_json::from_str(&session.template)
        .map_err(|error| Internal::msg(format!("session {}: {error}", session.id)))
}

/// The error for a session that stopped being active while a request was on its way (it
/// finished, failed or expired meanwhile); an expiry that was due is recorded now.
async fn not_active(
    ctx: &Context,
    session: &SessionRecord,
    now: Millis,
) -> Result<CredentialError, CredentialError> {
    if let Some(current) = ctx.store.session(session.id).await?
        && current.status == SessionStatus::Active
        && current.expires_at <= now
    {
        sessions::expire(ctx, &current, Vec::new()).await?;
    }
    Ok(CredentialError::CredentialRequestDenied(
        "the issuance session is no longer active".into(),
    ))
}

/// Builds one credential per holder key and commits them with what the request spends: the
/// commit's outcome, and the response the wallet gets if it is `Issued`.
async fn commit(
    ctx: &Context,
    session: &SessionRecord,
    token_hash: &str,
    template: &IssuanceTemplate,
    holders: &[Holder],
    spends: Spent,
    now: Millis,
) -> Result<(IssuanceCommit, CredentialResponse), CredentialError> {
    // One credential per key, each with its own status list entry when the status is managed:
    // taken before the credential is signed (an entry a failed request took stays unused,
    // valid forever: harmless).
    let managed = status::is_managed(template.definition.credential_status.as_ref());
    let format = format_name(ctx, &session.credential_configuration_id);
    let notification_id = random_token();
    let mut credentials = Vec::with_capacity(holders.len());
    let mut records = Vec::with_capacity(holders.len());
    let mut events = Vec::with_capacity(holders.len() + 1);
    for holder in holders {
        let assigned = match managed {
            true => Some(assign_status(ctx, session, template, now).await?),
            false => None,
        };
        let status = match &assigned {
            Some(assigned) => Some(&assigned.reference),
            None => template.definition.credential_status.as_ref(),
        };
        let (credential, issued, expires_at) =
            build(ctx, session, template, holder, status, now).await?;
        records.push(IssuedCredentialRecord {
            id: uuid::Uuid::new_v4().to_string(),
            session_id: session.id,
            credential_configuration_id: session.credential_configuration_id.clone(),
            format: format.clone(),
            holder: holder.jwk.thumbprint(),
            issued_at: now,
            expires_at: expires_at.saturating_mul(1000),
            status: status.cloned(),
            status_entry: assigned.map(|assigned| assigned.entry),
            status_value: 0,
            notification_id: Some(notification_id.clone()),
        });
        credentials.push(IssuedCredential { credential });
        events.push(issued);
    }
    // An offer names one credential configuration: its first credentials complete the session.
    let finish = session.status == SessionStatus::Active;
    if finish {
        events.push(events::status_changed(
            session.id,
            SessionStatus::Active,
            SessionStatus::Successful,
            None,
            now,
        ));
    }
    let issuance = Issuance {
        session: session.id,
        token_hash: token_hash.to_owned(),
        spends,
        credentials: records,
        finish,
        now,
        events,
    };
    let outcome = ctx.store.complete_issuance(&issuance).await?;
    Ok((
        outcome,
        CredentialResponse::Issued {
            credentials,
            notification_id,
        },
    ))
}

/// A credential request of a deferred profile: the proven keys kept in a transaction that the
/// operator's backend completes later; the wallet gets its id.
async fn defer(
    ctx: &Context,
    authorized: &Authorized,
    holders: &[Holder],
    nonce_hash: String,
    nonce_expires_at: Millis,
) -> Result<CredentialResponse, CredentialError> {
    let Authorized {
        token_hash,
        session,
        now,
        ..
    } = authorized;
    let protocol = &ctx.config.protocol;
    let transaction_id = random_token();
    let expires_at = now + i64::from(protocol.deferred_window_seconds) * 1000;
    let deferral = Deferral {
        session: session.id,
        token_hash: token_hash.clone(),
        nonce_hash,
        nonce_expires_at,
        transaction_hash: hash_secret(&transaction_id),
        holders: Value::Array(holders.iter().map(Holder::to_value).collect()),
        expires_at,
        now: *now,
        events: vec![events::new(
            session.id,
            events::CREDENTIAL_DEFERRED,
            *now,
            json!({
                "credentialConfigurationId": session.credential_configuration_id,
                "credentials": holders.len(),
                "expiresAt": expires_at,
            }),
        )],
    };
    match ctx.store.defer_issuance(&deferral).await? {
        IssuanceCommit::Issued => Ok(CredentialResponse::Deferred {
            transaction_id,
            interval: protocol.deferred_interval_seconds,
        }),
        IssuanceCommit::AlreadySpent => Err(CredentialError::InvalidNonce(
            "the nonce has already been used; fetch a new one".into(),
        )),
        IssuanceCommit::SessionNotActive => {
            let pending = ctx
                .store
                .deferred_transaction(DeferredLookup::Session(session.id))
                .await?;
            match pending {
                Some(_) => Err(CredentialError::CredentialRequestDenied(
                    "the credentials of this session are deferred: ask the deferred credential \
                     endpoint with the transaction_id"
                        .into(),
                )),
                None => Err(not_active(ctx, session, *now).await?),
            }
        }
    }
}

/// The deferred credential endpoint's answer for `body`'s transaction.
async fn deferred(
    ctx: &Context,
    authorized: &Authorized,
    body: &Value,
    encrypted: bool,
) -> Result<Answer, CredentialError> {
    let Authorized {
        token_hash,
        session,
        now,
        ..
    } = authorized;
    let request = body.as_object().ok_or_else(|| {
        CredentialError::InvalidCredentialRequest("the body must be a JSON object".into())
    })?;
    let encryption = encryption::requested(ctx, request, encrypted)?;
    let answer = |response| Answer {
        response,
        encryption: encryption.clone(),
    };
    let transaction_id = match request.get("transaction_id") {
        Some(Value::String(id)) => id,
        Some(_) => {
            return Err(CredentialError::InvalidCredentialRequest(
                "transaction_id must be a string".into(),
            ));
        }
        None => {
            return Err(CredentialError::InvalidCredentialRequest(
                "transaction_id is missing".into(),
            ));
        }
    };
    let unknown = || {
        CredentialError::InvalidTransactionId(
            "not a pending transaction of this access token".into(),
        )
    };
    let transaction_hash = hash_secret(transaction_id);
    let transaction = ctx
        .store
        .deferred_transaction(DeferredLookup::TransactionHash(&transaction_hash))
        .await?
        .filter(|transaction| transaction.session_id == session.id)
        .ok_or_else(unknown)?;
    match transaction.state {
        DeferredState::Pending if session.status == SessionStatus::Active => {
            Ok(answer(CredentialResponse::Deferred {
                transaction_id: transaction_id.clone(),
                interval: ctx.config.protocol.deferred_interval_seconds,
            }))
        }
        DeferredState::Failed => Err(CredentialError::CredentialRequestDenied(
            "the issuer declined to issue these credentials".into(),
        )),
        DeferredState::Ready if session.status == SessionStatus::Active => {
            let holders = Holder::all_from(&transaction.holders)?;
            let template = session_template(session)?;
            let spends = Spent::Deferred { transaction_hash };
            match commit(ctx, session, token_hash, &template, &holders, spends, *now).await? {
                (IssuanceCommit::Issued, response) => Ok(answer(response)),
                (IssuanceCommit::AlreadySpent, _) => Err(unknown()),
                (IssuanceCommit::SessionNotActive, _) => Err(not_active(ctx, session, *now).await?),
            }
        }
        // Fetched already, or its session expired.
        _ => Err(unknown()),
    }
}

/// The JWT key proofs of a request: `proofs.jwt`, one to `protocol.batch_size` of them, or the
/// singular `proof` of OID4VCI drafts 13-15 when `protocol.accept_singular_proof` allows it.
/// The key proofs of a request, as sent.
enum Proofs<'a> {
    /// JWT proofs of possession, one per key (a key attestation may ride in a header).
    Jwt(Vec<&'a str>),
    /// One key attestation, without a proof of possession (OID4VCI 1.0 Annex F.3).
    Attestation(&'a str),
}

fn proofs_of<'a>(
    ctx: &Context,
    request: &'a Map<String, Value>,
) -> Result<Proofs<'a>, CredentialError> {
    let invalid = |why: String| CredentialError::InvalidProof(why);
    match (request.get("proofs"), request.get("proof")) {
        (Some(_), Some(_)) => Err(CredentialError::InvalidCredentialRequest(
            "send proofs or proof, not both".into(),
        )),
        (None, None) => Err(invalid("proofs is missing".into())),
        (None, Some(_)) if !ctx.config.protocol.accept_singular_proof => {
            Err(CredentialError::InvalidCredentialRequest(
                "the proof member of OID4VCI drafts is not accepted here; send proofs".into(),
            ))
        }
        (None, Some(proof)) => {
            let proof = proof
                .as_object()
                .ok_or_else(|| invalid("proof must be an object".into()))?;
            match proof.get("proof_type").and_then(Value::as_str) {
                Some("jwt") => {}
                Some(other) => return Err(unsupported_proof_type(other)),
                None => return Err(invalid("proof.proof_type is missing".into())),
            }
            match proof.get("jwt") {
                Some(Value::String(jwt)) => Ok(Proofs::Jwt(vec![jwt])),
                _ => Err(invalid("proof.jwt must be a string".into())),
            }
        }
        (Some(proofs), None) => {
            let proofs = proofs
                .as_object()
                .ok_or_else(|| invalid("proofs must be an object".into()))?;
            if let Some(other) = proofs
                .keys()
                .find(|name| !["jwt", "attestation"].contains(&name.as_str()))
            {
                return Err(unsupported_proof_type(other));
            }
            if proofs.len() != 1 {
                return Err(invalid("proofs must hold one proof type".into()));
            }
            if let Some(attestations) = proofs.get("attestation") {
                return match attestations.as_array().map(Vec::as_slice) {
                    Some([Value::String(attestation)]) => Ok(Proofs::Attestation(attestation)),
                    _ => Err(invalid(
                        "proofs.attestation must hold exactly one key attestation (a string)"
                            .into(),
                    )),
                };
            }
            let jwts = proofs
                .get("jwt")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("proofs.jwt must be an array of proofs".into()))?;
            let batch_size = usize::try_from(ctx.config.protocol.batch_size).unwrap_or(1);
            if jwts.is_empty() {
                return Err(invalid("proofs.jwt must hold at least one proof".into()));
            }
            if jwts.len() > batch_size {
                return Err(CredentialError::InvalidCredentialRequest(format!(
                    "proofs.jwt holds {} proofs; this issuer issues at most {batch_size} \
                     credentials per request (batch_credential_issuance.batch_size)",
                    jwts.len()
                )));
            }
            jwts.iter()
                .enumerate()
                .map(|(index, jwt)| {
                    jwt.as_str()
                        .ok_or_else(|| invalid(format!("proofs.jwt[{index}] must be a string")))
                })
                .collect::<Result<_, _>>()
                .map(Proofs::Jwt)
        }
    }
}

/// A proof type other than `jwt`: named only when it is one OID4VCI defines, since a failure
/// event must not carry what a client made up.
fn unsupported_proof_type(other: &str) -> CredentialError {
    let named = ["di_vp", "ldp_vp", "cwt"]
        .into_iter()
        .find(|known| *known == other)
        .map_or_else(String::new, |known| format!(" {known}"));
    CredentialError::InvalidProof(format!(
        "the proof type{named} is not supported; use jwt or attestation"
    ))
}

/// Every proof of a request checked: each valid, all with the one nonce the request uses up,
/// and each of a key of its own (a batch binds each credential to a different key). A key
/// attestation names the keys itself: one proof carries it, and each attested key gets a
/// credential. A configuration with `key_attestations_required` takes nothing else.
fn verify_proofs(
    ctx: &Context,
    configuration_id: &str,
    proofs: Proofs<'_>,
    now: Millis,
) -> Result<Vec<ProvenKey>, CredentialError> {
    let required = ctx
        .config
        .credential_configurations
        .get(configuration_id)
        .is_some_and(|configuration| configuration.key_attestations_required.is_some());
    let proofs = match proofs {
        Proofs::Attestation(compact) => {
            let attested = key_attestation::check(ctx, configuration_id, compact, false, now)?;
            let nonce_expires_at =
                nonces::check(&ctx.secrets, Purpose::Nonce, &attested.nonce, now).map_err(
                    |why| {
                        CredentialError::InvalidNonce(format!(
                            "the key attestation's nonce: {why}; fetch a new one"
                        ))
                    },
                )?;
            return distinct(attested.keys, &attested.nonce, nonce_expires_at);
        }
        Proofs::Jwt(proofs) => proofs,
    };
    let at = |index: usize, error: CredentialError| match error {
        _ if proofs.len() == 1 => error,
        CredentialError::InvalidProof(why) => {
            CredentialError::InvalidProof(format!("proofs.jwt[{index}]: {why}"))
        }
        CredentialError::InvalidNonce(why) => {
            CredentialError::InvalidNonce(format!("proofs.jwt[{index}]: {why}"))
        }
        other => other,
    };
    let mut proven: Vec<ProvenKey> = Vec::with_capacity(proofs.len());
    for (index, proof) in proofs.iter().enumerate() {
        let (key, attested) =
            verify_proof(ctx, configuration_id, proof, now).map_err(|error| at(index, error))?;
        match attested {
            Some(keys) if proofs.len() == 1 => {
                return distinct(keys, &key.nonce, key.nonce_expires_at);
            }
            Some(_) => {
                return Err(CredentialError::InvalidProof(
                    "a proof with a key attestation comes alone: the attestation names the keys"
                        .into(),
                ));
            }
            None if required => {
                return Err(CredentialError::InvalidProof(
                    "this credential configuration requires a key attestation \
                     (key_attestations_required)"
                        .into(),
                ));
            }
            None => {}
        }
        if let Some(first) = proven.first()
            && first.nonce != key.nonce
        {
            return Err(CredentialError::InvalidProof(format!(
                "proofs.jwt[{index}] carries another nonce than proofs.jwt[0]: every proof of a \
                 request carries the same nonce"
            )));
        }
        let thumbprint = key.jwk.thumbprint();
        if let Some(same) = proven
            .iter()
            .position(|other| other.jwk.thumbprint() == thumbprint)
        {
            return Err(CredentialError::InvalidProof(format!(
                "proofs.jwt[{index}] proves the same key as proofs.jwt[{same}]: each credential \
                 is bound to a key of its own"
            )));
        }
        proven.push(key);
    }
    Ok(proven)
}

/// The attested keys as proven keys, each once.
fn distinct(
    keys: Vec<Jwk>,
    nonce: &str,
    nonce_expires_at: Millis,
) -> Result<Vec<ProvenKey>, CredentialError> {
    let mut proven: Vec<ProvenKey> = Vec::with_capacity(keys.len());
    for jwk in keys {
        if proven
            .iter()
            .any(|other| other.jwk.thumbprint() == jwk.thumbprint())
        {
            return Err(CredentialError::InvalidProof(
                "the key attestation attests a key twice".into(),
            ));
        }
        proven.push(ProvenKey {
            jwk,
            did: None,
            nonce: nonce.to_owned(),
            nonce_expires_at,
        });
    }
    Ok(proven)
}

struct ProvenKey {
    jwk: Jwk,
    /// The holder's DID, when the proof named its key by a DID URL in `kid`.
    did: Option<String>,
    nonce: String,
    nonce_expires_at: Millis,
}

/// Checks a JWT key proof (OID4VCI 1.0 Appendix F.1) in the order that gives wallets the most
/// useful error: shape, header, signature, then claims and nonce. With a key attestation in its
/// header, the proof is signed by one of the attested keys (named in the header or not), and
/// the attested keys come back too.
fn verify_proof(
    ctx: &Context,
    configuration_id: &str,
    proof: &str,
    now: Millis,
) -> Result<(ProvenKey, Option<Vec<Jwk>>), CredentialError> {
    let invalid = |why: String| CredentialError::InvalidProof(why);
    let jws = UnverifiedJws::parse(proof).map_err(|error| invalid(error.to_string()))?;
    if jws.header.get("typ").and_then(Value::as_str) != Some(PROOF_TYP) {
        return Err(invalid(format!("the proof's typ must be {PROOF_TYP}")));
    }
    let algorithm = jws.algorithm().map_err(|error| match error {
        // The client's alg is not repeated into the failure event.
        jose::JoseError::UnsupportedAlgorithm(_) => {
            invalid("the proof's alg is not one this issuer supports".into())
        }
        other => invalid(other.to_string()),
    })?;
    let allowed = ctx
        .config
        .credential_configurations
        .get(configuration_id)
        .map(|configuration| configuration.proof_algorithms())
        .unwrap_or_default();
    if !allowed.contains(&algorithm) {
        return Err(invalid(format!(
            "alg {algorithm} is not in proof_signing_alg_values_supported"
        )));
    }
    let attested = match jws.header.get("key_attestation") {
        Some(Value::String(compact)) => Some(key_attestation::check(
            ctx,
            configuration_id,
            compact,
            true,
            now,
        )?),
        Some(_) => return Err(invalid("the proof's key_attestation must be a JWT".into())),
        None => None,
    };
    let references = ["jwk", "kid", "x5c"]
        .into_iter()
        .filter(|name| jws.header.contains_key(*name))
        .collect::<Vec<_>>();
    let (jwk, did) = match references.as_slice() {
        ["jwk"] => (
            Jwk::from_value(&jws.header["jwk"]).map_err(|error| invalid(error.to_string()))?,
            None,
        ),
        ["kid"] => {
            let kid = jws.header["kid"]
                .as_str()
                .ok_or_else(|| invalid("the proof's kid must be a string".into()))?;
            let (jwk, did) = holder_did(ctx, configuration_id, kid)?;
            (jwk, Some(did))
        }
        // The attestation names the keys: the proof is signed by one of them.
        [] if attested.is_some() => {
            let keys = attested
                .as_ref()
                .map_or(&[][..], |attested| &attested.keys[..]);
            let signer = keys
                .iter()
                .find(|key| jws.verify_with(key).is_ok())
                .ok_or_else(|| {
                    invalid("the proof is not signed by a key its key attestation attests".into())
                })?;
            (signer.clone(), None)
        }
        [] => {
            return Err(invalid(
                "the proof header names no key: send it as jwk, or a DID URL as kid".into(),
            ));
        }
        [_] => {
            return Err(invalid(
                "key reference x5c is not supported; send the key as jwk, or a DID URL as kid"
                    .into(),
            ));
        }
        _ => return Err(invalid("use exactly one of jwk, kid and x5c".into())),
    };
    if jwk.is_private() {
        return Err(invalid("the proof's jwk contains a private key".into()));
    }
    jws.verify_with(&jwk)
        .map_err(|error| invalid(format!("the proof {error}")))?;
    if let Some(attested) = &attested
        && !attested
            .keys
            .iter()
            .any(|key| key.thumbprint() == jwk.thumbprint())
    {
        return Err(invalid(
            "the proof is not signed by a key its key attestation attests".into(),
        ));
    }

    let claims = &jws.payload;
    if claims.get("aud").and_then(Value::as_str) != Some(ctx.issuer_url.as_str()) {
        return Err(invalid(format!(
            "the proof's aud must be the credential issuer {}",
            ctx.issuer_url
        )));
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid("the proof has no numeric iat".into()))?;
    let now_seconds = now.div_euclid(1000);
    if iat > now_seconds + i64::from(ctx.config.protocol.proof_max_future_seconds) {
        return Err(invalid("the proof's iat is in the future".into()));
    }
    if iat < now_seconds - i64::from(ctx.config.protocol.proof_max_age_seconds) {
        return Err(invalid("the proof's iat is too old".into()));
    }
    // OID4VCI 1.0 §8.3.1.2: a proof without c_nonce is invalid_proof; a wrong one invalid_nonce.
    let nonce = claims.get("nonce").and_then(Value::as_str).ok_or_else(|| {
        invalid("the proof has no nonce; fetch one from the nonce endpoint".into())
    })?;
    let nonce_expires_at = nonces::check(&ctx.secrets, Purpose::Nonce, nonce, now)
        .map_err(|why| CredentialError::InvalidNonce(format!("{why}; fetch a new one")))?;
    if let Some(attested) = &attested
        && attested.nonce != nonce
    {
        return Err(invalid(
            "the key attestation's nonce must be the proof's (a c_nonce of this issuer)".into(),
        ));
    }
    let proven = ProvenKey {
        jwk,
        did,
        nonce: nonce.to_owned(),
        nonce_expires_at,
    };
    Ok((proven, attested.map(|attested| attested.keys)))
}

/// The key and DID a proof's `kid` names: a DID URL of a `did:jwk` or `did:key`, naming the
/// DID's verification method, for a configuration that advertises that binding method.
fn holder_did(
    ctx: &Context,
    configuration_id: &str,
    kid: &str,
) -> Result<(Jwk, String), CredentialError> {
    let invalid = |why: &str| CredentialError::InvalidProof(why.into());
    let (did, method, verification_method): (&str, &str, fn(&str) -> String) =
        match kid.split_once('#') {
            Some((did, _)) if did.starts_with("did:jwk:") => {
                (did, "did:jwk", did::did_jwk_verification_method)
            }
            Some((did, _)) if did.starts_with("did:key:") => {
                (did, "did:key", did::did_key_verification_method)
            }
            _ => {
                return Err(invalid(
                    "the proof's kid must be a did:jwk or did:key DID URL naming its \
                     verification method",
                ));
            }
        };
    let advertised = ctx
        .config
        .credential_configurations
        .get(configuration_id)
        .is_some_and(|configuration| {
            configuration
                .cryptographic_binding_methods_supported
                .iter()
                .any(|supported| supported == method)
        });
    if !advertised {
        return Err(CredentialError::InvalidProof(format!(
            "this credential configuration does not bind to {method} keys \
             (cryptographic_binding_methods_supported)"
        )));
    }
    if verification_method(did) != kid {
        return Err(CredentialError::InvalidProof(format!(
            "the proof's kid must name the {method} DID's verification method"
        )));
    }
    let jwk = did::jwk_from_did(did)
        .map_err(|_| invalid("the proof's kid is not a DID this issuer can resolve"))?;
    Ok((jwk, did.to_owned()))
}

/// The format name (as metadata gives it) of a credential configuration.
fn format_name(ctx: &Context, configuration_id: &str) -> String {
    ctx.config
        .credential_configurations
        .get(configuration_id)
        .map(|configuration| configuration.format.as_str().to_owned())
        .unwrap_or_default()
}

/// The status list entry of a credential of the session's configuration, signed as its profile
/// signs.
async fn assign_status(
    ctx: &Context,
    session: &SessionRecord,
    template: &IssuanceTemplate,
    now: Millis,
) -> Result<status::Assigned, Internal> {
    let kind = ctx
        .credential_configurations
        .get(&session.credential_configuration_id)
        .and_then(|configured| configured.format.status_list())
        .ok_or_else(|| {
            Internal::msg(format!(
                "credential configuration {} carries no status list entry",
                session.credential_configuration_id
            ))
        })?;
    let signer = credentials::status_signer(&template.definition.issuer(), &ctx.issuer_url)
        .map_err(Internal::msg)?;
    status::assign(ctx, kind, &signer, now).await
}

/// The key a credential is bound to, and the DID that names it (W3C `sub`).
#[derive(Debug, Clone)]
struct Holder {
    jwk: Jwk,
    did: String,
}

impl Holder {
    /// As a deferred transaction keeps it.
    fn to_value(&self) -> Value {
        json!({"jwk": self.jwk.to_value(), "did": self.did})
    }

    /// The holders a deferred transaction kept.
    fn all_from(value: &Value) -> Result<Vec<Holder>, Internal> {
        let broken = || Internal::msg("a deferred transaction's holders are unreadable");
        value
            .as_array()
            .ok_or_else(broken)?
            .iter()
            .map(|holder| {
                Ok(Holder {
                    jwk: Jwk::from_value(&holder["jwk"]).map_err(|_| broken())?,
                    did: holder["did"].as_str().ok_or_else(broken)?.to_owned(),
                })
            })
            .collect()
    }
}

/// A credential of the session bound to `holder`, in its configuration's format, the event announcing it (the
/// contract's `sdjwt_issue {sdjwt}`, `jwt_issue {jwt}` or `generated_mdoc {mdoc}`) and its
/// expiry (Unix seconds).
async fn build(
    ctx: &Context,
    session: &SessionRecord,
    template: &IssuanceTemplate,
    holder: &Holder,
    status: Option<&Value>,
    now: Millis,
) -> Result<(String, NewEvent, i64), Internal> {
    let definition = &template.definition;
    let format = &ctx
        .credential_configurations
        .get(&session.credential_configuration_id)
        .ok_or_else(|| {
            Internal::msg(format!(
                "credential configuration {} is no longer configured",
                session.credential_configuration_id
            ))
        })?
        .format;
    let inputs = Inputs {
        now,
        issuer_did: definition.issuer_did.as_deref(),
        subject_did: &holder.did,
    };
    let mut data = definition.credential_data.clone();
    mapping::deep_merge(&mut data, mapping::evaluate(&definition.mapping, &inputs));
    let iat = now.div_euclid(1000);
    let validity =
        i64::try_from(ctx.config.credentials.default_validity_seconds).unwrap_or(i64::MAX);
    // A numeric exp from the data (mapping) wins over the default validity.
    let exp = match data.remove("exp") {
        Some(Value::Number(exp)) => exp.as_i64().unwrap_or(iat.saturating_add(validity)),
        _ => iat.saturating_add(validity),
    };
    let key = keys::signing_key(ctx, &definition.issuer_key_id).await?;
    let issued = format
        .issue(Input {
            data,
            issuer: definition.issuer(),
            issuer_url: &ctx.issuer_url,
            key: &key,
            holder: &holder.jwk,
            holder_did: &holder.did,
            issued_at: iat,
            expires_at: exp,
            status,
            selective_disclosure: definition.selective_disclosure.as_ref(),
        })
        .map_err(Internal::msg)?;
    let event = events::new(session.id, issued.event_type, now, issued.event_data);
    Ok((issued.credential, event, exp))
}
