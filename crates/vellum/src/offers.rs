//! Credential offers: made by the operator from a profile (plus per-offer overrides), fetched by
//! wallets by reference. Creating an offer creates its issuance session.

use rand::Rng;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use vellum_formats::jose;
use vellum_formats::sdjwt::SelectiveDisclosure;

use crate::clock::Millis;
use crate::context::Context;
use crate::errors::{ApiError, Internal, OAuthError};
use crate::events;
use crate::ids::{KeyId, ProfileId, SessionId};
use crate::keys;
use crate::limits;
use crate::mapping;
use crate::notifications::Notifications;
use crate::profiles::{self, ProfileDefinition};
use crate::secrets::{Purpose, hash_secret};
use crate::sessions;
use crate::store::{CodeState, SessionLookup, SessionRecord, SessionStatus};

pub const PRE_AUTHORIZED_GRANT: &str = "urn:ietf:params:oauth:grant-type:pre-authorized_code";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthMethod {
    #[default]
    PreAuthorized,
    Authorized,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ValueMode {
    #[default]
    ByReference,
    ByValue,
}

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

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeOverrides {
    #[serde(default, deserialize_with = "limits::not_null")]
    pub issuer_key_id: Option<KeyId>,
    #[serde(default, deserialize_with = "limits::not_null")]
    pub issuer_did: Option<String>,
    #[serde(default, deserialize_with = "profiles::x5_chain_or_shorthand")]
    pub x5_chain: Option<Vec<String>>,
    /// Deep-merged over the profile's data; every other field replaces the profile's.
    #[serde(default, deserialize_with = "limits::not_null")]
    pub credential_data: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "limits::not_null")]
    pub mapping: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "limits::not_null")]
    pub selective_disclosure: Option<SelectiveDisclosure>,
    #[serde(default, deserialize_with = "limits::not_null")]
    pub credential_status: Option<Value>,
    #[serde(default, deserialize_with = "limits::not_null")]
    pub notifications: Option<Notifications>,
    /// Pins the holder key: a proof signed by any other key is refused.
    #[serde(default, deserialize_with = "limits::not_null")]
    pub expected_credential_proof_key_jwk: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateOfferRequest {
    pub profile_id: ProfileId,
    #[serde(default)]
    pub auth_method: AuthMethod,
    #[serde(default, deserialize_with = "limits::not_null")]
    pub tx_code: Option<TxCodeSpec>,
    #[serde(default, deserialize_with = "limits::not_null")]
    pub tx_code_value: Option<String>,
    #[serde(default)]
    pub value_mode: ValueMode,
    #[serde(default, deserialize_with = "limits::not_null")]
    pub expires_in_seconds: Option<i64>,
    #[serde(default, deserialize_with = "limits::not_null")]
    pub runtime_overrides: Option<RuntimeOverrides>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferCreated {
    pub offer_id: SessionId,
    pub profile_id: ProfileId,
    pub profile_version: i64,
    pub auth_method: AuthMethod,
    pub value_mode: ValueMode,
    /// The `openid-credential-offer://` URI to show as a QR code or deep link.
    pub credential_offer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_offer_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_code_value: Option<String>,
    /// Unix milliseconds.
    pub expires_at: Millis,
}

/// Everything issuance needs, fixed at offer time and stored with the session.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuanceTemplate {
    pub definition: ProfileDefinition,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_proof_key_thumbprint: Option<String>,
    pub value_mode: ValueMode,
}

fn invalid(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::invalid(code, detail)
}

pub async fn create_offer(
    ctx: &Context,
    request: CreateOfferRequest,
) -> Result<OfferCreated, ApiError> {
    let profile = ctx
        .store
        .profile(&request.profile_id, None)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no profile {}", request.profile_id)))?;
    if !profile.active {
        return Err(ApiError::Conflict {
            code: "profile_inactive",
            detail: format!("profile {} is deactivated", profile.id),
        });
    }
    if request.auth_method == AuthMethod::Authorized {
        return Err(invalid(
            "unsupported_auth_method",
            "only PRE_AUTHORIZED offers are supported",
        ));
    }
    let expires_in = request
        .expires_in_seconds
        .unwrap_or(i64::from(ctx.config.offers.default_expires_in_seconds));
    let max = i64::from(ctx.config.offers.max_expires_in_seconds);
    if !(1..=max).contains(&expires_in) {
        return Err(invalid(
            "invalid_expiry",
            format!("expiresInSeconds must be between 1 and {max}"),
        ));
    }
    let tx_code = tx_code(request.tx_code, request.tx_code_value)?;

    let base: ProfileDefinition = serde_json::from_value(profile.definition.clone())
        .map_err(|error| Internal::msg(format!("profile {}: {error}", profile.id)))?;
    let overridden = request.runtime_overrides.is_some();
    let overrides = request.runtime_overrides.unwrap_or_default();
    let expected_proof_key_thumbprint = overrides
        .expected_credential_proof_key_jwk
        .as_ref()
        .map(|value| match keys::jwk_from_request(value) {
            Ok(jwk) if !jwk.is_private() => Ok(jwk.thumbprint()),
            Ok(_) => Err(invalid(
                "invalid_override",
                "expectedCredentialProofKeyJwk must be a public key",
            )),
            Err(error) => Err(invalid(
                "invalid_override",
                format!("expectedCredentialProofKeyJwk: {error}"),
            )),
        })
        .transpose()?;
    let mut definition = apply_overrides(base.clone(), overrides);
    profiles::expand_shorthands(ctx, &mut definition).await?;
    profiles::validate(ctx, &definition, Some(&base))
        .await
        .map_err(|error| match error {
            ApiError::Invalid { code, detail } => ApiError::Invalid {
                // Blame the overrides only when there were some.
                code: if code == "invalid_profile" && overridden {
                    "invalid_override"
                } else {
                    code
                },
                detail,
            },
            other => other,
        })?;

    let now = ctx.clock.now();
    let id = SessionId::generate();
    let expires_at = now + expires_in * 1000;
    let template = IssuanceTemplate {
        definition,
        expected_proof_key_thumbprint,
        value_mode: request.value_mode,
    };
    let session = SessionRecord {
        id,
        profile_id: profile.id.clone(),
        profile_version: profile.version,
        credential_configuration_id: template.definition.credential_configuration_id.clone(),
        status: SessionStatus::Active,
        status_reason: None,
        offer_handle_hash: hash_secret(&offer_handle(ctx, id)),
        code_hash: hash_secret(&pre_authorized_code(ctx, id)),
        code_state: CodeState::Unused,
        tx_code_mac: tx_code
            .as_ref()
            .map(|(_, value)| tx_code_mac(ctx, id, value)),
        tx_code: tx_code
            .as_ref()
            .map(|(spec, _)| serde_json::to_value(spec).unwrap_or(Value::Null)),
        tx_code_failures: 0,
        token_hash: None,
        token_expires_at: None,
        by_value: request.value_mode == ValueMode::ByValue,
        issuer_key_id: template.definition.issuer_key_id.clone(),
        webhook: template
            .definition
            .notifications
            .as_ref()
            .map(|notifications| {
                notifications
                    .webhook
                    .target(ctx.delivery.signing_secret.as_ref())
            }),
        template: serde_json::to_string(&template).map_err(Internal::new)?,
        created_at: now,
        updated_at: now,
        expires_at,
        resolved_at: None,
        token_issued_at: None,
        finished_at: None,
    };
    let event = events::new(
        id,
        events::CREDENTIAL_OFFER_CREATED,
        now,
        json!({
            "profileId": profile.id,
            "profileVersion": profile.version,
            "credentialConfigurationId": session.credential_configuration_id,
            "authMethod": request.auth_method,
            "valueMode": request.value_mode,
            "txCodeRequired": tx_code.is_some(),
            "expiresAt": expires_at,
        }),
    );
    ctx.store.create_session(&session, &event).await?;

    let (credential_offer, credential_offer_uri) = match request.value_mode {
        ValueMode::ByValue => (
            format!(
                "openid-credential-offer://?credential_offer={}",
                encode(&offer_json(ctx, &session).to_string())
            ),
            None,
        ),
        ValueMode::ByReference => {
            let uri = ctx.endpoint(&format!("/credential-offer/{}", offer_handle(ctx, id)));
            (
                format!(
                    "openid-credential-offer://?credential_offer_uri={}",
                    encode(&uri)
                ),
                Some(uri),
            )
        }
    };
    Ok(OfferCreated {
        offer_id: id,
        profile_id: profile.id,
        profile_version: profile.version,
        auth_method: request.auth_method,
        value_mode: request.value_mode,
        credential_offer,
        credential_offer_uri,
        tx_code_value: tx_code.map(|(_, value)| value),
        expires_at,
    })
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn apply_overrides(
    mut definition: ProfileDefinition,
    overrides: RuntimeOverrides,
) -> ProfileDefinition {
    if let Some(key) = overrides.issuer_key_id {
        definition.issuer_key_id = key;
    }
    // The issuer identity is one choice: overriding one kind replaces the other.
    if let Some(did) = overrides.issuer_did {
        definition.issuer_did = Some(did);
        definition.x5_chain = None;
    }
    if let Some(chain) = overrides.x5_chain {
        definition.x5_chain = Some(chain);
        definition.issuer_did = None;
    }
    if let Some(data) = overrides.credential_data {
        mapping::deep_merge(&mut definition.credential_data, data);
    }
    if let Some(mapping) = overrides.mapping {
        definition.mapping = mapping;
    }
    if let Some(disclosure) = overrides.selective_disclosure {
        definition.selective_disclosure = Some(disclosure);
    }
    if let Some(status) = overrides.credential_status {
        definition.credential_status = Some(status);
    }
    if let Some(notifications) = overrides.notifications {
        definition.notifications = Some(notifications);
    }
    definition
}

/// Validates the offer's tx_code settings and returns the spec wallets see plus the value.
fn tx_code(
    spec: Option<TxCodeSpec>,
    value: Option<String>,
) -> Result<Option<(TxCodeSpec, String)>, ApiError> {
    let bad = |detail: String| invalid("invalid_tx_code", detail);
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
    Ok(Some((spec, value)))
}

/// The pre-authorized code, derived from the session id under a server secret: unguessable,
/// and never stored (only its hash is).
pub fn pre_authorized_code(ctx: &Context, id: SessionId) -> String {
    jose::b64(
        ctx.secrets
            .mac(Purpose::PreAuthorizedCode, &[id.as_bytes()]),
    )
}

/// The last path segment of `credential_offer_uri`, derived the same way.
fn offer_handle(ctx: &Context, id: SessionId) -> String {
    jose::b64(ctx.secrets.mac(Purpose::OfferHandle, &[id.as_bytes()]))
}

pub fn tx_code_mac(ctx: &Context, id: SessionId, value: &str) -> String {
    jose::b64(
        ctx.secrets
            .mac(Purpose::TxCode, &[id.as_bytes(), value.as_bytes()]),
    )
}

/// The credential offer object (OID4VCI 1.0 §4.1.1).
pub fn offer_json(ctx: &Context, session: &SessionRecord) -> Value {
    let mut grant = json!({ "pre-authorized_code": pre_authorized_code(ctx, session.id) });
    if let Some(tx_code) = &session.tx_code {
        grant["tx_code"] = tx_code.clone();
    }
    json!({
        "credential_issuer": ctx.issuer_url,
        "credential_configuration_ids": [session.credential_configuration_id],
        "grants": { PRE_AUTHORIZED_GRANT: grant },
    })
}

/// A wallet fetches an offer by reference: the offer while it can still be redeemed.
pub async fn resolve_offer(ctx: &Context, handle: &str) -> Result<Value, OAuthError> {
    let gone = || OAuthError::NotFound("no such credential offer, or it is no longer valid".into());
    let session = ctx
        .store
        .session_by(SessionLookup::OfferHandle(&hash_secret(handle)))
        .await?
        .ok_or_else(gone)?;
    let now = ctx.clock.now();
    if session.status != SessionStatus::Active || session.code_state != CodeState::Unused {
        return Err(gone());
    }
    if session.expires_at <= now {
        sessions::expire(ctx, &session, Vec::new()).await?;
        return Err(gone());
    }
    let offer = offer_json(ctx, &session);
    let event = events::new(
        session.id,
        events::RESOLVED_CREDENTIAL_OFFER,
        now,
        json!({ "credentialOffer": events::redact(&offer) }),
    );
    ctx.store
        .record_offer_resolved(session.id, now, &[event])
        .await?;
    Ok(offer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tx_codes_follow_mode_and_length() {
        let (spec, value) = tx_code(Some(TxCodeSpec::default()), None)
            .expect("ok")
            .expect("some");
        assert_eq!(spec.input_mode, Some(InputMode::Numeric));
        assert_eq!(spec.length, Some(6));
        assert!(value.len() == 6 && value.bytes().all(|b| b.is_ascii_digit()));
        let text = TxCodeSpec {
            input_mode: Some(InputMode::Text),
            length: Some(8),
            description: None,
        };
        let (_, value) = tx_code(Some(text), None).expect("ok").expect("some");
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
        let (spec, _) = tx_code(None, Some("493536".into()))
            .expect("ok")
            .expect("some");
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
