//! The authorization server side: the token endpoint (pre-authorized code grant) and the nonce
//! endpoint.

use serde::Serialize;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;
use vellum_formats::jose;

use crate::clock::Millis;
use crate::context::Context;
use crate::errors::OAuthError;
use crate::events;
use crate::offers::{self, PRE_AUTHORIZED_GRANT};
use crate::secrets::{Purpose, hash_secret, random_token};
use crate::sessions;
use crate::store::{
    Applied, CodeState, SessionLookup, SessionRecord, SessionStatus, TxCodeFailure,
};

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u32,
}

#[derive(Debug, Serialize)]
pub struct NonceResponse {
    pub c_nonce: String,
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

impl From<crate::store::StoreError> for Failure {
    fn from(error: crate::store::StoreError) -> Self {
        OAuthError::from(error).into()
    }
}

/// The token request's parameters that this issuer reads (RFC 6749 §4.1.3 and OID4VCI 1.0
/// §6.1). Anything else a client sends is ignored and never recorded.
pub struct TokenRequest {
    pub grant_type: String,
    pub pre_authorized_code: String,
    pub tx_code: Option<String>,
    pub client_id: Option<String>,
}

impl TokenRequest {
    /// From the form's pairs, in order. A parameter may appear once (RFC 6749 §3.2).
    pub fn parse(form: Vec<(String, String)>) -> Result<TokenRequest, OAuthError> {
        let mut known: [Option<String>; 4] = Default::default();
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
        let [grant_type, code, tx_code, client_id] = known;
        let grant_type =
            grant_type.ok_or_else(|| OAuthError::InvalidRequest("grant_type is missing".into()))?;
        if grant_type != PRE_AUTHORIZED_GRANT {
            // The value is not repeated back: it is the client's, and it reaches the event log.
            return Err(OAuthError::UnsupportedGrantType(format!(
                "this grant_type is not supported; use {PRE_AUTHORIZED_GRANT}"
            )));
        }
        let pre_authorized_code = code
            .ok_or_else(|| OAuthError::InvalidRequest("pre-authorized_code is missing".into()))?;
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
        Ok(TokenRequest {
            grant_type,
            pre_authorized_code,
            tx_code,
            client_id,
        })
    }

    /// What the `requested_token` event records: the parameters read, secrets redacted.
    fn recorded(&self) -> Value {
        let mut recorded = Map::new();
        recorded.insert("grant_type".into(), Value::from(self.grant_type.as_str()));
        recorded.insert("pre-authorized_code".into(), Value::from(events::REDACTED));
        if self.tx_code.is_some() {
            recorded.insert("tx_code".into(), Value::from(events::REDACTED));
        }
        if let Some(client_id) = &self.client_id {
            recorded.insert("client_id".into(), Value::from(client_id.as_str()));
        }
        Value::Object(recorded)
    }
}

/// The parameters [`TokenRequest`] reads, in the order of its fields.
const PARAMETERS: [&str; 4] = ["grant_type", "pre-authorized_code", "tx_code", "client_id"];

/// `POST /token`, form-encoded.
pub async fn token(
    ctx: &Context,
    form: Vec<(String, String)>,
) -> Result<TokenResponse, OAuthError> {
    let request = TokenRequest::parse(form)?;
    let Some(session) = ctx
        .store
        .session_by(SessionLookup::PreAuthorizedCode(&hash_secret(
            &request.pre_authorized_code,
        )))
        .await?
    else {
        return Err(OAuthError::InvalidGrant(
            "unknown pre-authorized_code".into(),
        ));
    };
    let now = ctx.clock.now();
    match redeem(ctx, session.clone(), &request, now).await {
        Ok(response) => Ok(response),
        Err(Failure { error, recorded }) => {
            if !recorded && !matches!(error, OAuthError::Internal(_) | OAuthError::Unavailable) {
                let event = failed(&session, &error, now);
                ctx.store.append_events(&[event]).await?;
            }
            Err(error)
        }
    }
}

fn failed(session: &SessionRecord, error: &OAuthError, now: Millis) -> crate::store::NewEvent {
    events::request_failed(
        session.id,
        events::TOKEN_REQUEST_FAILED,
        error.code(),
        &error.to_string(),
        now,
    )
}

async fn redeem(
    ctx: &Context,
    mut session: SessionRecord,
    request: &TokenRequest,
    now: Millis,
) -> Result<TokenResponse, Failure> {
    let tx_code = request.tx_code.as_deref();
    let max_attempts = ctx.config.protocol.max_tx_code_attempts;
    loop {
        check_redeemable(&session)?;
        if session.expires_at <= now {
            let error = OAuthError::InvalidGrant("the pre-authorized_code has expired".into());
            sessions::expire(ctx, &session, vec![failed(&session, &error, now)]).await?;
            return Err(Failure {
                error,
                recorded: true,
            });
        }
        match (&session.tx_code_mac, tx_code) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(OAuthError::InvalidRequest(
                    "tx_code was sent but the offer has none".into(),
                )
                .into());
            }
            (Some(_), None) => {
                return Err(OAuthError::InvalidRequest("tx_code is required".into()).into());
            }
            (Some(expected), Some(given)) => {
                let given = offers::tx_code_mac(ctx, session.id, given);
                if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                    let failures = session.tx_code_failures + 1;
                    let locks = failures >= max_attempts;
                    let error = OAuthError::InvalidGrant(if locks {
                        format!(
                            "wrong tx_code; after {max_attempts} wrong attempts the pre-authorized_code is no longer valid"
                        )
                    } else {
                        format!("wrong tx_code; {} attempts left", max_attempts - failures)
                    });
                    let mut events = vec![failed(&session, &error, now)];
                    if locks {
                        events.push(events::status_changed(
                            session.id,
                            SessionStatus::Active,
                            SessionStatus::Unsuccessful,
                            Some("tx_code_attempts_exhausted"),
                            now,
                        ));
                    }
                    let failure = TxCodeFailure {
                        seen_failures: session.tx_code_failures,
                        locks,
                    };
                    match ctx
                        .store
                        .record_tx_code_failure(session.id, &failure, now, &events)
                        .await?
                    {
                        Applied::Yes => {
                            return Err(Failure {
                                error,
                                recorded: true,
                            });
                        }
                        // Another attempt was counted meanwhile: count this one on the new state.
                        Applied::Stale => {
                            session = reload(ctx, &session).await?;
                            continue;
                        }
                    }
                }
            }
        }
        let token = random_token();
        let ttl = ctx.config.protocol.access_token_ttl_seconds;
        let event = events::new(
            session.id,
            events::REQUESTED_TOKEN,
            now,
            serde_json::json!({ "tokenRequest": request.recorded() }),
        );
        return match ctx
            .store
            .redeem_pre_authorized_code(
                session.id,
                &hash_secret(&token),
                now + i64::from(ttl) * 1000,
                now,
                &[event],
            )
            .await?
        {
            Applied::Yes => Ok(TokenResponse {
                access_token: token,
                token_type: "Bearer",
                expires_in: ttl,
            }),
            Applied::Stale => {
                session = reload(ctx, &session).await?;
                check_redeemable(&session)?;
                Err(
                    OAuthError::InvalidGrant("the pre-authorized_code cannot be redeemed".into())
                        .into(),
                )
            }
        };
    }
}

fn check_redeemable(session: &SessionRecord) -> Result<(), OAuthError> {
    match (session.code_state, session.status) {
        (CodeState::Redeemed, _) => Err(OAuthError::InvalidGrant(
            "the pre-authorized_code has already been used".into(),
        )),
        (CodeState::Locked, _) => Err(OAuthError::InvalidGrant(
            "too many wrong tx_code attempts; the pre-authorized_code is no longer valid".into(),
        )),
        (CodeState::Unused, SessionStatus::Active) => Ok(()),
        (CodeState::Unused, SessionStatus::Expired) => Err(OAuthError::InvalidGrant(
            "the pre-authorized_code has expired".into(),
        )),
        (CodeState::Unused, _) => Err(OAuthError::InvalidGrant(
            "the offer is no longer active".into(),
        )),
    }
}

async fn reload(ctx: &Context, session: &SessionRecord) -> Result<SessionRecord, OAuthError> {
    ctx.store
        .session(session.id)
        .await?
        .ok_or_else(|| OAuthError::InvalidGrant("unknown pre-authorized_code".into()))
}

// Nonces are stateless: version, expiry and randomness under a MAC. Only used ones are stored
// (by the credential endpoint), so fetching a nonce costs no write.
const NONCE_VERSION: u8 = 1;
const NONCE_LEN: usize = 1 + 8 + 16 + 16;

/// `POST /nonce`.
pub fn issue_nonce(ctx: &Context) -> NonceResponse {
    let expires_at = ctx.clock.now() + i64::from(ctx.config.protocol.nonce_ttl_seconds) * 1000;
    let mut body = Vec::with_capacity(NONCE_LEN);
    body.push(NONCE_VERSION);
    body.extend_from_slice(&expires_at.to_be_bytes());
    let mut random = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random);
    body.extend_from_slice(&random);
    let mac = ctx.secrets.mac(Purpose::Nonce, &[&body]);
    body.extend_from_slice(&mac[..16]);
    NonceResponse {
        c_nonce: jose::b64(body),
    }
}

/// Checks a nonce's MAC and expiry; returns its expiry (how long to remember it as used).
pub fn check_nonce(ctx: &Context, nonce: &str) -> Result<Millis, &'static str> {
    let bytes = jose::b64_decode(nonce).map_err(|_| "the nonce was not issued by this issuer")?;
    if bytes.len() != NONCE_LEN || bytes[0] != NONCE_VERSION {
        return Err("the nonce was not issued by this issuer");
    }
    let (body, mac) = bytes.split_at(NONCE_LEN - 16);
    let expected = ctx.secrets.mac(Purpose::Nonce, &[body]);
    if !bool::from(mac.ct_eq(&expected[..16])) {
        return Err("the nonce was not issued by this issuer");
    }
    let expires_at = Millis::from_be_bytes(body[1..9].try_into().map_err(|_| "malformed nonce")?);
    if expires_at <= ctx.clock.now() {
        return Err("the nonce has expired; fetch a new one");
    }
    Ok(expires_at)
}
