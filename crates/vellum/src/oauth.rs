//! The authorization server side: the token endpoint and its grants (`pre_authorized` now; the
//! authorization code, PAR and PKCE take their places beside it), sender-constrained tokens
//! (`dpop`), and the nonce endpoint (`nonces`).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::clock::Millis;
use crate::context::Context;
use crate::errors::OAuthError;
use crate::events;
use crate::metrics::Step;
use crate::protocol::{AUTHORIZATION_CODE_GRANT, PRE_AUTHORIZED_GRANT, REFRESH_TOKEN_GRANT};
use crate::secrets::{Purpose, hash_secret};
use crate::store::{GrantKind, SessionLookup, SessionRecord};

pub mod attestation;
pub mod authorization;
pub mod authorization_code;
pub mod dpop;
pub mod nonces;
pub mod pre_authorized;
pub mod refresh;
pub mod upstream;

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u32,
    /// The `authorization_details` of the request, each with its `credential_identifiers`
    /// (OID4VCI 1.0 §6.2), when the wallet asked with them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// An error the wallet gets, and whether its event is already written.
struct Failure {
    error: OAuthError,
    recorded: bool,
}

impl From<OAuthError> for Failure {
    fn from(error: OAuthError) -> Self {
        Failure {
            error,
            recorded: false,
        }
    }
}

impl From<crate::errors::Internal> for Failure {
    fn from(error: crate::errors::Internal) -> Self {
        OAuthError::from(error).into()
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(error: crate::store::StoreError) -> Self {
        OAuthError::from(error).into()
    }
}

/// A token request (RFC 6749 §4.1.3, OID4VCI 1.0 §6.1): the grant and what identifies the
/// client. Parsed from the form's parameters; anything else a client sends is ignored and
/// never recorded.
#[derive(Debug)]
pub struct TokenRequest {
    pub grant: GrantRequest,
    pub client_id: Option<String>,
}

#[derive(Debug)]
pub enum GrantRequest {
    PreAuthorizedCode {
        code: String,
        tx_code: Option<String>,
    },
    AuthorizationCode {
        code: String,
        redirect_uri: Option<String>,
        code_verifier: Option<String>,
    },
    RefreshToken {
        refresh_token: String,
    },
}

impl GrantRequest {
    /// The grant type, as `grant_type` names it.
    pub fn name(&self) -> &'static str {
        match self {
            GrantRequest::PreAuthorizedCode { .. } => PRE_AUTHORIZED_GRANT,
            GrantRequest::AuthorizationCode { .. } => AUTHORIZATION_CODE_GRANT,
            GrantRequest::RefreshToken { .. } => REFRESH_TOKEN_GRANT,
        }
    }
}

/// The token request's headers that grants and client authentication read: a DPoP proof
/// (RFC 9449; the token is then bound to its key) and the wallet's attestation.
#[derive(Debug)]
pub struct TokenHeaders {
    /// The `DPoP` header, or why it cannot be read (sent more than once, not text).
    pub dpop: Result<Option<String>, OAuthError>,
    pub attestation: attestation::Presented,
}

/// The parameters [`TokenRequest`] reads.
const PARAMETERS: [&str; 8] = [
    "grant_type",
    "pre-authorized_code",
    "tx_code",
    "client_id",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
];

impl TokenRequest {
    /// From the form's pairs, in order. A parameter may appear once (RFC 6749 §3.2).
    pub fn parse(form: Vec<(String, String)>) -> Result<TokenRequest, OAuthError> {
        let mut known: [Option<String>; 8] = Default::default();
        for (name, value) in form {
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
            grant_type,
            pre_authorized_code,
            tx_code,
            client_id,
            code,
            redirect_uri,
            code_verifier,
            refresh_token,
        ] = known;
        let grant_type =
            grant_type.ok_or_else(|| OAuthError::InvalidRequest("grant_type is missing".into()))?;
        let grant = match grant_type.as_str() {
            PRE_AUTHORIZED_GRANT => GrantRequest::PreAuthorizedCode {
                code: pre_authorized_code.ok_or_else(|| {
                    OAuthError::InvalidRequest("pre-authorized_code is missing".into())
                })?,
                tx_code,
            },
            AUTHORIZATION_CODE_GRANT => GrantRequest::AuthorizationCode {
                code: code.ok_or_else(|| OAuthError::InvalidRequest("code is missing".into()))?,
                redirect_uri,
                code_verifier,
            },
            REFRESH_TOKEN_GRANT => GrantRequest::RefreshToken {
                refresh_token: refresh_token
                    .ok_or_else(|| OAuthError::InvalidRequest("refresh_token is missing".into()))?,
            },
            // The value is not repeated back: it is the client's, and it reaches the event log.
            _ => {
                return Err(OAuthError::UnsupportedGrantType(format!(
                    "this grant_type is not supported; use {PRE_AUTHORIZED_GRANT}, \
                     {AUTHORIZATION_CODE_GRANT} or {REFRESH_TOKEN_GRANT}"
                )));
            }
        };
        // RFC 6749 Appendix A.1: a client_id is visible ASCII and spaces.
        if let Some(client_id) = &client_id
            && (client_id.is_empty()
                || client_id.len() > 255
                || !client_id.bytes().all(|byte| (0x20..=0x7e).contains(&byte)))
        {
            return Err(OAuthError::InvalidRequest(
                "client_id must be 1-255 printable ASCII characters".into(),
            ));
        }
        Ok(TokenRequest { grant, client_id })
    }

    /// What the `requested_token` event records: the parameters read, secrets redacted.
    fn recorded(&self) -> Value {
        let mut recorded = Map::new();
        match &self.grant {
            GrantRequest::PreAuthorizedCode { tx_code, .. } => {
                recorded.insert("grant_type".into(), Value::from(PRE_AUTHORIZED_GRANT));
                recorded.insert("pre-authorized_code".into(), Value::from(events::REDACTED));
                if tx_code.is_some() {
                    recorded.insert("tx_code".into(), Value::from(events::REDACTED));
                }
            }
            GrantRequest::AuthorizationCode {
                redirect_uri,
                code_verifier,
                ..
            } => {
                recorded.insert("grant_type".into(), Value::from(AUTHORIZATION_CODE_GRANT));
                recorded.insert("code".into(), Value::from(events::REDACTED));
                // Checked against the request's before anything is recorded.
                if let Some(redirect_uri) = redirect_uri {
                    recorded.insert("redirect_uri".into(), Value::from(redirect_uri.as_str()));
                }
                if code_verifier.is_some() {
                    recorded.insert("code_verifier".into(), Value::from(events::REDACTED));
                }
            }
            GrantRequest::RefreshToken { .. } => {
                recorded.insert("grant_type".into(), Value::from(REFRESH_TOKEN_GRANT));
                recorded.insert("refresh_token".into(), Value::from(events::REDACTED));
            }
        }
        if let Some(client_id) = &self.client_id {
            recorded.insert("client_id".into(), Value::from(client_id.as_str()));
        }
        Value::Object(recorded)
    }
}

/// `POST /nonce`: a nonce valid for `protocol.nonce_ttl_seconds`.
pub fn nonce(ctx: &Context) -> nonces::NonceResponse {
    let ttl = i64::from(ctx.config.protocol.nonce_ttl_seconds) * 1000;
    nonces::NonceResponse {
        c_nonce: nonces::issue(&ctx.secrets, Purpose::Nonce, ctx.clock.now() + ttl),
    }
}

/// `POST /token`.
pub async fn token(
    ctx: &Context,
    request: TokenRequest,
    headers: TokenHeaders,
) -> Result<TokenResponse, OAuthError> {
    let grant = request.grant.name();
    let answered = exchange(ctx, request, headers).await;
    let outcome = match &answered {
        Ok(_) => "issued",
        Err(error) => error.code(),
    };
    ctx.metrics.step(Step::Token { grant, outcome });
    answered
}

/// The token endpoint's work for one grant.
async fn exchange(
    ctx: &Context,
    request: TokenRequest,
    headers: TokenHeaders,
) -> Result<TokenResponse, OAuthError> {
    let recorded = request.recorded();
    let now = ctx.clock.now();
    let (session, redeemed) = match request.grant {
        GrantRequest::PreAuthorizedCode { code, tx_code } => {
            let Some(session) = ctx
                .store
                .session_by(SessionLookup::Grant(&hash_secret(&code)))
                .await?
            else {
                return Err(OAuthError::InvalidGrant(
                    "unknown pre-authorized_code".into(),
                ));
            };
            let client = async {
                // Optional here; an attested wallet is checked, and must be the client it says.
                let attested = attestation::authenticate(ctx, headers.attestation, now).await?;
                if let (Some(attested), Some(client_id)) = (&attested, &request.client_id)
                    && attested.client_id != *client_id
                {
                    return Err(OAuthError::InvalidClientAttestation(
                        "client_id is not the client the wallet attestation names (sub)".into(),
                    ));
                }
                key_binding(ctx, headers.dpop?, None, now).await
            };
            let redeemed = match client.await {
                Ok(dpop_jkt) => {
                    let grant = pre_authorized::Redemption {
                        tx_code: tx_code.as_deref(),
                        dpop_jkt,
                        recorded,
                    };
                    pre_authorized::redeem(ctx, session.clone(), grant, now).await
                }
                Err(error) => Err(error.into()),
            };
            (session, redeemed)
        }
        GrantRequest::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
        } => {
            let Some((grant, authorization, session)) = ctx
                .store
                .request_grant(GrantKind::AuthorizationCode, &hash_secret(&code))
                .await?
            else {
                return Err(OAuthError::InvalidGrant(
                    "unknown authorization code".into(),
                ));
            };
            let exchange = authorization_code::Exchange {
                client_id: request.client_id.as_deref(),
                attestation: headers.attestation,
                redirect_uri: redirect_uri.as_deref(),
                code_verifier: code_verifier.as_deref(),
                dpop: headers.dpop?,
                recorded,
            };
            let redeemed =
                authorization_code::redeem(ctx, &session, &grant, &authorization, exchange, now)
                    .await;
            (session, redeemed)
        }
        GrantRequest::RefreshToken { refresh_token } => {
            let Some((grant, authorization, session)) = ctx
                .store
                .request_grant(GrantKind::RefreshToken, &hash_secret(&refresh_token))
                .await?
            else {
                return Err(OAuthError::InvalidGrant("unknown refresh_token".into()));
            };
            let exchange = refresh::Exchange {
                client_id: request.client_id.as_deref(),
                attestation: headers.attestation,
                dpop: headers.dpop?,
                recorded,
            };
            let redeemed =
                refresh::redeem(ctx, &session, &grant, &authorization, exchange, now).await;
            (session, redeemed)
        }
    };
    match redeemed {
        Ok(response) => Ok(response),
        Err(Failure { error, recorded }) => {
            if !recorded && error.is_failure_event() {
                let event = failed(&session, &error, now);
                ctx.store.append_events(&[event]).await?;
            }
            Err(error)
        }
    }
}

/// The key the access token is to be bound to: the DPoP proof's, checked for this request; `None`
/// (a Bearer token) when the wallet sent no proof and DPoP is not required.
async fn key_binding(
    ctx: &Context,
    proof: Option<String>,
    required_key: Option<&str>,
    now: Millis,
) -> Result<Option<String>, OAuthError> {
    let Some(proof) = proof else {
        return if ctx.config.dpop.required || required_key.is_some() {
            Err(OAuthError::InvalidDpopProof(
                "this issuer requires DPoP: send a DPoP proof with the token request".into(),
            ))
        } else {
            Ok(None)
        };
    };
    let target = dpop::Target {
        method: "POST",
        url: &ctx.endpoint("/token"),
        access_token: None,
    };
    let jkt = dpop::verify(ctx, &proof, &target, now).await?;
    if required_key.is_some_and(|required| required != jkt) {
        return Err(OAuthError::InvalidDpopProof(
            "the DPoP proof is not signed by the key the authorization request was bound to".into(),
        ));
    }
    Ok(Some(jkt))
}

impl From<dpop::DpopFailure> for OAuthError {
    fn from(failure: dpop::DpopFailure) -> Self {
        match failure {
            dpop::DpopFailure::Invalid(why) => OAuthError::InvalidDpopProof(why),
            dpop::DpopFailure::UseNonce(why) => OAuthError::UseDpopNonce(why),
            dpop::DpopFailure::Internal(error) => error.into(),
        }
    }
}

/// The failure event of a token request tied to this session.
fn failed(session: &SessionRecord, error: &OAuthError, now: Millis) -> crate::store::NewEvent {
    events::request_failed(
        session.id,
        events::TOKEN_REQUEST_FAILED,
        error.code(),
        &error.to_string(),
        now,
    )
}

async fn reload(ctx: &Context, session: &SessionRecord) -> Result<SessionRecord, OAuthError> {
    ctx.store
        .session(session.id)
        .await?
        .ok_or_else(|| OAuthError::InvalidGrant("unknown pre-authorized_code".into()))
}
