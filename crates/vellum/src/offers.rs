//! Credential offers: made by the operator from a profile (plus per-offer overrides), fetched by
//! wallets by reference. Creating an offer creates its issuance session.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use vellum_formats::sdjwt::SelectiveDisclosure;

use crate::clock::Millis;
use crate::context::Context;
use crate::errors::{ApiError, Internal, OAuthError};
use crate::events;
use crate::ids::{KeyId, ProfileId, SessionId};
use crate::keys;
use crate::limits;
use crate::mapping;
use crate::metrics::Step;
use crate::notifications::Notifications;
use crate::oauth::authorization;
use crate::oauth::pre_authorized::{self, TxCodeSpec};
use crate::profiles::{self, IssuanceTemplate, ProfileDefinition};
use crate::protocol::{AUTHORIZATION_CODE_GRANT, PRE_AUTHORIZED_GRANT};
use crate::qr;
use crate::secrets::hash_secret;
use crate::sessions;
use crate::store::{GrantKind, GrantState, SessionLookup, SessionRecord, SessionStatus};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthMethod {
    #[default]
    PreAuthorized,
    Authorized,
}

/// Whether an AUTHORIZED offer carries `issuer_state` (Issuer2's `issuerStateMode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IssuerStateMode {
    #[default]
    Include,
    Omit,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ValueMode {
    #[default]
    ByReference,
    ByValue,
}

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
    #[serde(default, deserialize_with = "limits::not_null")]
    pub deferred: Option<bool>,
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
    pub issuer_state_mode: Option<IssuerStateMode>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer_state_mode: Option<IssuerStateMode>,
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
    let issuer_state_mode = match (request.auth_method, request.issuer_state_mode) {
        (AuthMethod::PreAuthorized, None) => None,
        (AuthMethod::PreAuthorized, Some(_)) => {
            return Err(invalid(
                "invalid_offer",
                "issuerStateMode is for AUTHORIZED offers",
            ));
        }
        (AuthMethod::Authorized, mode) => Some(mode.unwrap_or_default()),
    };
    if issuer_state_mode.is_some() && (request.tx_code.is_some() || request.tx_code_value.is_some())
    {
        return Err(invalid(
            "invalid_tx_code",
            "txCode is for PRE_AUTHORIZED offers: in the authorization code flow the holder logs in",
        ));
    }
    let omit_issuer_state = issuer_state_mode == Some(IssuerStateMode::Omit);
    if omit_issuer_state {
        // Without issuer_state the wallet's request cannot name this offer's session: it gets a
        // session of its own from the configuration's wallet-initiated profile, so the offer can
        // carry no overrides (Issuer2's rule) and must name that profile.
        if request.runtime_overrides.is_some() {
            return Err(invalid(
                "invalid_offer",
                "issuerStateMode OMIT cannot carry runtimeOverrides: the wallet's request could not name this offer",
            ));
        }
        if profile.definition.get("walletInitiated") != Some(&Value::Bool(true)) {
            return Err(invalid(
                "invalid_offer",
                format!(
                    "issuerStateMode OMIT: the wallet's request gets a session from the wallet-initiated \
                     profile of the configuration, and profile {} is not one (walletInitiated)",
                    profile.id
                ),
            ));
        }
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
    let tx_code = pre_authorized::tx_code(request.tx_code, request.tx_code_value)?;

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
    if issuer_state_mode.is_some() && definition.identity_provider.is_none() {
        return Err(invalid(
            "invalid_offer",
            format!(
                "profile {} names no identityProvider for holders to log in at: AUTHORIZED offers need one",
                profile.id
            ),
        ));
    }
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
        omit_issuer_state,
    };
    let mut session = profiles::new_session(ctx, id, &profile, &template, expires_at, now)?;
    session.offer_handle_hash = hash_secret(&pre_authorized::offer_handle(&ctx.secrets, id));
    session.by_value = request.value_mode == ValueMode::ByValue;
    let grant = match request.auth_method {
        AuthMethod::PreAuthorized => pre_authorized::new_grant(&ctx.secrets, id, tx_code.as_ref()),
        AuthMethod::Authorized => authorization::new_grant(&ctx.secrets, id),
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
            "issuerStateMode": issuer_state_mode,
            "valueMode": request.value_mode,
            "txCodeRequired": tx_code.is_some(),
            "expiresAt": expires_at,
        }),
    );
    ctx.store
        .create_session(&session, Some(&grant), &event)
        .await?;

    let OfferLinks {
        credential_offer,
        credential_offer_uri,
        ..
    } = links(ctx, &session, grant.kind, grant.tx_code.as_ref());
    ctx.metrics.step(Step::Offer {
        auth_method: match request.auth_method {
            AuthMethod::PreAuthorized => "PRE_AUTHORIZED",
            AuthMethod::Authorized => "AUTHORIZED",
        },
    });
    Ok(OfferCreated {
        offer_id: id,
        profile_id: profile.id,
        profile_version: profile.version,
        auth_method: request.auth_method,
        issuer_state_mode,
        value_mode: request.value_mode,
        credential_offer,
        credential_offer_uri,
        tx_code_value: tx_code.map(|tx_code| tx_code.value),
        expires_at,
    })
}

/// How a holder's wallet reaches an offer: the `openid-credential-offer://` URI (for a QR code
/// or deep link) and, by reference, the URL it points to.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferLinks {
    pub offer_id: SessionId,
    pub credential_offer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_offer_uri: Option<String>,
    /// Unix milliseconds.
    pub expires_at: Millis,
}

fn links(
    ctx: &Context,
    session: &SessionRecord,
    kind: GrantKind,
    tx_code: Option<&Value>,
) -> OfferLinks {
    let (credential_offer, credential_offer_uri) = if session.by_value {
        (
            format!(
                "openid-credential-offer://?credential_offer={}",
                encode(&offer_json(ctx, session, kind, tx_code).to_string())
            ),
            None,
        )
    } else {
        let handle = pre_authorized::offer_handle(&ctx.secrets, session.id);
        let uri = ctx.endpoint(&format!("/credential-offer/{handle}"));
        (
            format!(
                "openid-credential-offer://?credential_offer_uri={}",
                encode(&uri)
            ),
            Some(uri),
        )
    };
    OfferLinks {
        offer_id: session.id,
        credential_offer,
        credential_offer_uri,
        expires_at: session.expires_at,
    }
}

/// The links of an offer that can still be redeemed (its session ACTIVE, unexpired, its grant
/// unused), to show it again, e.g. on a second screen; never its tx code, which only its
/// creation shows.
pub async fn redeemable_offer(ctx: &Context, id: SessionId) -> Result<OfferLinks, ApiError> {
    let session = ctx
        .store
        .session(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no session {id}")))?;
    let grant = session
        .offer_grant
        .as_ref()
        .filter(|grant| grant.state == GrantState::Unused);
    match grant {
        Some(grant)
            if session.status == SessionStatus::Active && session.expires_at > ctx.clock.now() =>
        {
            Ok(links(ctx, &session, grant.kind, grant.tx_code.as_ref()))
        }
        _ => Err(ApiError::Conflict {
            code: "offer_not_redeemable",
            detail: "the offer can no longer be redeemed (used, expired or finished)".into(),
        }),
    }
}

/// The QR code of an offer that can still be redeemed, as SVG.
pub async fn offer_qr(ctx: &Context, id: SessionId) -> Result<String, ApiError> {
    let links = redeemable_offer(ctx, id).await?;
    qr::svg(&links.credential_offer, "Credential offer").map_err(|qr::TooLong(length)| {
        ApiError::Conflict {
            code: "offer_too_long",
            detail: format!(
                "the offer URI ({length} bytes) does not fit a QR code; offer it by reference"
            ),
        }
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
    if let Some(deferred) = overrides.deferred {
        definition.deferred = deferred;
    }
    definition
}

/// The credential offer object (OID4VCI 1.0 §4.1.1), with its grant: the pre-authorized code
/// and its `tx_code` object, or the authorization code grant with `issuer_state`.
fn offer_json(
    ctx: &Context,
    session: &SessionRecord,
    kind: GrantKind,
    tx_code: Option<&Value>,
) -> Value {
    let grants = match kind {
        GrantKind::IssuerState => {
            // A template that cannot be read shows issuer_state: issuance reports the damage.
            let omitted = serde_json::from_str::<IssuanceTemplate>(&session.template)
                .is_ok_and(|template| template.omit_issuer_state);
            let grant = if omitted {
                json!({})
            } else {
                authorization::offer_grant(&ctx.secrets, session.id)
            };
            json!({ AUTHORIZATION_CODE_GRANT: grant })
        }
        _ => json!({
            PRE_AUTHORIZED_GRANT: pre_authorized::offer_grant(&ctx.secrets, session.id, tx_code)
        }),
    };
    json!({
        "credential_issuer": ctx.issuer_url,
        "credential_configuration_ids": [session.credential_configuration_id],
        "grants": grants,
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
    let Some(grant) = session
        .offer_grant
        .as_ref()
        .filter(|grant| grant.state == GrantState::Unused)
    else {
        return Err(gone());
    };
    if session.status != SessionStatus::Active {
        return Err(gone());
    }
    if session.expires_at <= now {
        sessions::expire(ctx, &session, Vec::new()).await?;
        return Err(gone());
    }
    let offer = offer_json(ctx, &session, grant.kind, grant.tx_code.as_ref());
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
