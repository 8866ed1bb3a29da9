//! The pre-authorized code grant (OID4VCI 1.0 §4.1.1, §6.1): the code and the offer handle,
//! derived from the session id under server secrets (unguessable, never stored: only their
//! hashes are), the optional transaction code (tx_code) and its attempt limit, and the token
//! request that redeems the code.

use rand::Rng;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use vellum_formats::jose;

use super::{Failure, TokenResponse};
use crate::clock::Millis;
use crate::context::Context;
use crate::errors::{ApiError, OAuthError};
use crate::events;
use crate::ids::SessionId;
use crate::limits;
use crate::secrets::{Purpose, Secrets, hash_secret, random_token};
use crate::sessions;
use crate::store::{
    Applied, GrantKind, GrantRecord, GrantState, NewAccessToken, NewGrant, SessionRecord,
    SessionStatus, TxCodeFailure,
};

/// The offer's `tx_code` object (OID4VCI 1.0 §4.1.1), as wallets see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxCodeSpec {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "limits::not_null"
    )]
    pub input_mode: Option<InputMode>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "limits::not_null"
    )]
    pub length: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "limits::not_null"
    )]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputMode {
    #[default]
    Numeric,
    Text,
}

/// Text tx_codes avoid characters people confuse (0/O, 1/I/L).
const TEXT_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
const DEFAULT_TX_CODE_LENGTH: u32 = 6;

/// An offer's tx_code: what wallets are told, and the value the holder gets another way.
pub struct TxCode {
    pub spec: TxCodeSpec,
    pub value: String,
}

/// Validates an offer's tx_code settings and returns the tx_code, generating the value when
/// none is given.
pub fn tx_code(
    spec: Option<TxCodeSpec>,
    value: Option<String>,
) -> Result<Option<TxCode>, ApiError> {
    let bad = |detail: String| ApiError::invalid("invalid_tx_code", detail);
    let mut spec = match (spec, &value) {
        (None, None) => return Ok(None),
        (Some(spec), _) => spec,
        (None, Some(value)) => TxCodeSpec {
            input_mode: Some(if value.bytes().all(|b| b.is_ascii_digit()) {
                InputMode::Numeric
            } else {
                InputMode::Text
            }),
            ..TxCodeSpec::default()
        },
    };
    let mode = *spec.input_mode.get_or_insert(InputMode::Numeric);
    if let Some(description) = &spec.description
        && description.chars().count() > 300
    {
        return Err(bad(
            "txCode.description must be at most 300 characters".into()
        ));
    }
    if let Some(length) = spec.length
        && !(4..=32).contains(&length)
    {
        return Err(bad("txCode.length must be between 4 and 32".into()));
    }
    let value = match value {
        Some(value) => {
            let length = u32::try_from(value.chars().count()).unwrap_or(u32::MAX);
            if !(4..=32).contains(&length) {
                return Err(bad("txCodeValue must be 4-32 characters".into()));
            }
            if spec.length.is_some_and(|expected| expected != length) {
                return Err(bad(
                    "txCodeValue does not have txCode.length characters".into()
                ));
            }
            let fits = match mode {
                InputMode::Numeric => value.bytes().all(|b| b.is_ascii_digit()),
                InputMode::Text => value.bytes().all(|b| b.is_ascii_graphic()),
            };
            if !fits {
                return Err(bad(format!(
                    "txCodeValue does not fit input_mode {}",
                    if mode == InputMode::Numeric {
                        "numeric"
                    } else {
                        "text"
                    }
                )));
            }
            value
        }
        None => {
            let length = spec.length.unwrap_or(DEFAULT_TX_CODE_LENGTH);
            let alphabet: &[u8] = match mode {
                InputMode::Numeric => b"0123456789",
                InputMode::Text => TEXT_ALPHABET,
            };
            (0..length)
                .map(|_| char::from(alphabet[OsRng.gen_range(0..alphabet.len())]))
                .collect()
        }
    };
    spec.length = Some(u32::try_from(value.chars().count()).unwrap_or(u32::MAX));
    Ok(Some(TxCode { spec, value }))
}

/// The pre-authorized code of a session: derived, so it is never stored (only its hash is).
pub fn code(secrets: &Secrets, session: SessionId) -> String {
    jose::b64(secrets.mac(Purpose::PreAuthorizedCode, &[session.as_bytes()]))
}

/// The last path segment of the offer's `credential_offer_uri`, derived the same way.
pub fn offer_handle(secrets: &Secrets, session: SessionId) -> String {
    jose::b64(secrets.mac(Purpose::OfferHandle, &[session.as_bytes()]))
}

fn tx_code_mac(secrets: &Secrets, session: SessionId, value: &str) -> String {
    jose::b64(secrets.mac(Purpose::TxCode, &[session.as_bytes(), value.as_bytes()]))
}

/// The grant a new offer's session is created with.
pub fn new_grant(secrets: &Secrets, session: SessionId, tx_code: Option<&TxCode>) -> NewGrant {
    NewGrant {
        kind: GrantKind::PreAuthorizedCode,
        secret_hash: hash_secret(&code(secrets, session)),
        tx_code: tx_code.map(|tx_code| serde_json::to_value(&tx_code.spec).unwrap_or(Value::Null)),
        tx_code_mac: tx_code.map(|tx_code| tx_code_mac(secrets, session, &tx_code.value)),
        expires_at: None,
        request_id: None,
        dpop_jkt: None,
    }
}

/// The offer's `grants` member for this grant: the code, and the grant's tx_code object
/// (never its value).
pub fn offer_grant(secrets: &Secrets, session: SessionId, tx_code: Option<&Value>) -> Value {
    let mut grant = json!({ "pre-authorized_code": code(secrets, session) });
    if let Some(tx_code) = tx_code {
        grant["tx_code"] = tx_code.clone();
    }
    grant
}

/// What a token request brings to redeem the code.
pub(super) struct Redemption<'a> {
    pub tx_code: Option<&'a str>,
    /// The key the access token is bound to (DPoP), if any.
    pub dpop_jkt: Option<String>,
    /// The request as the `requested_token` event records it.
    pub recorded: Value,
}

/// Redeems the code for an access token, checking the tx_code (each wrong one counted against
/// the limit, exactly once however many race).
pub(super) async fn redeem(
    ctx: &Context,
    mut session: SessionRecord,
    request: Redemption<'_>,
    now: Millis,
) -> Result<TokenResponse, Failure> {
    let Redemption {
        tx_code,
        dpop_jkt,
        recorded,
    } = request;
    let max_attempts = ctx.config.protocol.max_tx_code_attempts;
    loop {
        let grant = redeemable(&session)?;
        if session.expires_at <= now {
            let error = OAuthError::InvalidGrant("the pre-authorized_code has expired".into());
            sessions::expire(ctx, &session, vec![super::failed(&session, &error, now)]).await?;
            return Err(Failure {
                error,
                recorded: true,
            });
        }
        match (&grant.tx_code_mac, tx_code) {
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
                let given = tx_code_mac(&ctx.secrets, session.id, given);
                if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                    match wrong_tx_code(ctx, &session, grant, max_attempts, now).await? {
                        Some(failure) => return Err(failure),
                        // Another attempt was counted meanwhile: count this one on the new state.
                        None => {
                            session = super::reload(ctx, &session).await?;
                            continue;
                        }
                    }
                }
            }
        }
        let token = random_token();
        let ttl = ctx.config.protocol.access_token_ttl_seconds;
        let token_type = if dpop_jkt.is_some() { "DPoP" } else { "Bearer" };
        let new_token = NewAccessToken {
            refresh: None,
            hash: hash_secret(&token),
            expires_at: now + i64::from(ttl) * 1000,
            dpop_jkt: dpop_jkt.clone(),
        };
        let event = events::new(
            session.id,
            events::REQUESTED_TOKEN,
            now,
            json!({ "tokenRequest": recorded }),
        );
        return match ctx
            .store
            .redeem_grant(session.id, grant.id, &new_token, now, &[event])
            .await?
        {
            Applied::Yes => Ok(TokenResponse {
                access_token: token,
                token_type,
                authorization_details: None,
                refresh_token: None,
                expires_in: ttl,
            }),
            Applied::Stale => {
                session = super::reload(ctx, &session).await?;
                redeemable(&session)?;
                Err(
                    OAuthError::InvalidGrant("the pre-authorized_code cannot be redeemed".into())
                        .into(),
                )
            }
        };
    }
}

/// Counts a wrong tx_code; `None` when another attempt was counted first (nothing changed).
async fn wrong_tx_code(
    ctx: &Context,
    session: &SessionRecord,
    grant: &GrantRecord,
    max_attempts: u32,
    now: Millis,
) -> Result<Option<Failure>, Failure> {
    let failures = grant.tx_code_failures + 1;
    let locks = failures >= max_attempts;
    let error = OAuthError::InvalidGrant(if locks {
        format!(
            "wrong tx_code; after {max_attempts} wrong attempts the pre-authorized_code is no longer valid"
        )
    } else {
        format!("wrong tx_code; {} attempts left", max_attempts - failures)
    });
    let mut events = vec![super::failed(session, &error, now)];
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
        seen_failures: grant.tx_code_failures,
        locks,
    };
    Ok(
        match ctx
            .store
            .record_tx_code_failure(session.id, grant.id, &failure, now, &events)
            .await?
        {
            Applied::Yes => Some(Failure {
                error,
                recorded: true,
            }),
            Applied::Stale => None,
        },
    )
}

/// The session's pre-authorized grant, if it can still be redeemed.
fn redeemable(session: &SessionRecord) -> Result<&GrantRecord, OAuthError> {
    let grant = session
        .offer_grant
        .as_ref()
        .filter(|grant| grant.kind == GrantKind::PreAuthorizedCode)
        .ok_or_else(|| OAuthError::InvalidGrant("unknown pre-authorized_code".into()))?;
    match (grant.state, session.status) {
        (GrantState::Redeemed, _) => Err(OAuthError::InvalidGrant(
            "the pre-authorized_code has already been used".into(),
        )),
        (GrantState::Locked, _) => Err(OAuthError::InvalidGrant(
            "too many wrong tx_code attempts; the pre-authorized_code is no longer valid".into(),
        )),
        (GrantState::Unused, SessionStatus::Active) => Ok(grant),
        (GrantState::Unused, SessionStatus::Expired) => Err(OAuthError::InvalidGrant(
            "the pre-authorized_code has expired".into(),
        )),
        (GrantState::Unused, _) => Err(OAuthError::InvalidGrant(
            "the offer is no longer active".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tx_codes_follow_mode_and_length() {
        let tx_code = tx_code(Some(TxCodeSpec::default()), None)
            .expect("ok")
            .expect("some");
        assert_eq!(tx_code.spec.input_mode, Some(InputMode::Numeric));
        assert_eq!(tx_code.spec.length, Some(6));
        assert!(tx_code.value.len() == 6 && tx_code.value.bytes().all(|b| b.is_ascii_digit()));
        let text = TxCodeSpec {
            input_mode: Some(InputMode::Text),
            length: Some(8),
            description: None,
        };
        let value = super::tx_code(Some(text), None)
            .expect("ok")
            .expect("some")
            .value;
        assert!(value.bytes().all(|b| TEXT_ALPHABET.contains(&b)) && value.len() == 8);
    }

    #[test]
    fn given_tx_codes_are_checked_against_the_spec() {
        let numeric = TxCodeSpec {
            input_mode: Some(InputMode::Numeric),
            length: Some(4),
            description: None,
        };
        assert!(tx_code(Some(numeric.clone()), Some("12a4".into())).is_err());
        assert!(tx_code(Some(numeric.clone()), Some("12345".into())).is_err());
        assert!(tx_code(Some(numeric), Some("1234".into())).is_ok());
        let spec = tx_code(None, Some("493536".into()))
            .expect("ok")
            .expect("some")
            .spec;
        assert_eq!(
            (spec.input_mode, spec.length),
            (Some(InputMode::Numeric), Some(6))
        );
        let long = TxCodeSpec {
            description: Some("x".repeat(301)),
            ..TxCodeSpec::default()
        };
        assert!(tx_code(Some(long), None).is_err());
        assert!(tx_code(None, Some("12".into())).is_err());
    }
}
