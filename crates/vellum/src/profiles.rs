//! Credential profiles: a credential configuration bound to an issuer key, an issuer identity
//! and default data. Every update is a new version; offers stay pinned to the one they used.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use vellum_formats::jose::Jwk;
use vellum_formats::sdjwt::{self, SelectiveDisclosure};
use vellum_formats::{did, x509};

use crate::clock::Millis;
use crate::config::Config;
use crate::context::Context;
use crate::credentials::{Configurations, Configured, DEVELOPMENT_CHAIN, Issuer, x5_chain_der};
use crate::errors::{ApiError, Internal};
use crate::events;
use crate::ids::{KeyId, ProfileId, ProviderId, SessionId};
use crate::keys;
use crate::limits;
use crate::mapping::{self, DataFunction};
use crate::notifications::Notifications;
use crate::secrets::{hash_secret, random_token};
use crate::status;
use crate::store::{ProfileRecord, SessionRecord, SessionStatus, StoreError};

/// The fields of a profile, named as in the product Vellum replaces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileDefinition {
    pub name: String,
    pub credential_configuration_id: String,
    pub issuer_key_id: KeyId,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "limits::not_null"
    )]
    pub issuer_did: Option<String>,
    /// PEM certificates, leaf first; the leaf certifies `issuerKeyId`. The shorthand
    /// `"development"` asks for a development chain ([`DEVELOPMENT_CHAIN`]).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "x5_chain_or_shorthand"
    )]
    pub x5_chain: Option<Vec<String>>,
    #[serde(default)]
    pub credential_data: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub mapping: Map<String, Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "limits::not_null"
    )]
    pub selective_disclosure: Option<SelectiveDisclosure>,
    /// Copied into the credential as its `status` claim (e.g. a Token Status List reference).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "limits::not_null"
    )]
    pub credential_status: Option<Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "limits::not_null"
    )]
    pub notifications: Option<Notifications>,
    /// The OpenID provider (`[authorization.providers.<id>]`) holders log in at in the
    /// authorization code flow.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "limits::not_null"
    )]
    pub identity_provider: Option<ProviderId>,
    /// ID token claim (JSON Pointer) -> where its value goes in credentialData (JSON Pointer).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub id_token_claims_mapping: Map<String, Value>,
    /// A wallet that asks for this profile's credential configuration without an offer
    /// (wallet-initiated issuance, or an offer without issuer_state) gets a session from this
    /// profile; at most one active profile per configuration.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wallet_initiated: bool,
    /// The credential data comes later (deferred issuance): the wallet gets a transaction id,
    /// the operator's backend completes the transaction with the data, or fails it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deferred: bool,
}

/// Everything issuance needs, fixed when the offer is made (the profile version with the offer's
/// overrides) and stored with the session; the holder's login may add claims to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuanceTemplate {
    pub definition: ProfileDefinition,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_proof_key_thumbprint: Option<String>,
    /// The offer's authorization code grant carries no issuer_state (`issuerStateMode: OMIT`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub omit_issuer_state: bool,
}

/// `x5Chain` is a list of PEM certificates, or the string [`DEVELOPMENT_CHAIN`] (held as a
/// one-element list until [`expand_shorthands`] replaces it).
pub(crate) fn x5_chain_or_shorthand<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(deserializer)? {
        None => Err(D::Error::custom(limits::NULL_REFUSED)),
        Some(Value::String(text)) if text == DEVELOPMENT_CHAIN => Ok(Some(vec![text])),
        Some(value @ Value::Array(_)) => serde_json::from_value(value)
            .map(Some)
            .map_err(|_| D::Error::custom("x5Chain must be a list of PEM certificates")),
        Some(_) => Err(D::Error::custom(format!(
            "x5Chain must be a list of PEM certificates (leaf first) or {DEVELOPMENT_CHAIN:?}"
        ))),
    }
}

impl ProfileDefinition {
    /// Who the profile issues as, for its format.
    pub fn issuer(&self) -> Issuer<'_> {
        Issuer {
            key_id: &self.issuer_key_id,
            did: self.issuer_did.as_deref(),
            x5_chain: self.x5_chain.as_deref(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileView {
    /// Named as Issuer2 names it (`profileId`); a request body still gives it as `id`.
    #[serde(rename = "profileId")]
    pub id: ProfileId,
    pub version: i64,
    pub active: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// The definition's fields, with webhook secrets redacted.
    #[serde(flatten)]
    pub definition: Map<String, Value>,
}

/// Webhook members that are secrets: shown as [`events::REDACTED`]; sending that marker back
/// in a PUT keeps the stored value.
const WEBHOOK_SECRETS: [&str; 2] = [
    "/notifications/webhook/bearerToken",
    "/notifications/webhook/secret",
];

fn view(record: ProfileRecord) -> Result<ProfileView, Internal> {
    let mut definition = record.definition;
    for pointer in WEBHOOK_SECRETS {
        if let Some(secret) = definition.pointer_mut(pointer) {
            *secret = Value::from(events::REDACTED);
        }
    }
    let Value::Object(definition) = definition else {
        return Err(Internal::msg(format!(
            "profile {} is not an object",
            record.id
        )));
    };
    Ok(ProfileView {
        id: record.id,
        version: record.version,
        active: record.active,
        created_at: record.created_at,
        updated_at: record.updated_at,
        definition,
    })
}

/// Puts the stored secret back wherever the body carries the redaction marker.
fn keep_redacted_secrets(body: &mut Value, current: &Value) -> Result<(), ApiError> {
    for pointer in WEBHOOK_SECRETS {
        if body.pointer(pointer).and_then(Value::as_str) != Some(events::REDACTED) {
            continue;
        }
        let stored = current.pointer(pointer).cloned().ok_or_else(|| {
            invalid(format!(
                "{} is {:?} but the current version has none to keep",
                pointer.trim_start_matches('/').replace('/', "."),
                events::REDACTED
            ))
        })?;
        if let Some(slot) = body.pointer_mut(pointer) {
            *slot = stored;
        }
    }
    Ok(())
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::invalid("invalid_profile", detail)
}

/// Parses a request body into a definition; the message names the member at fault.
pub fn parse_definition(body: Value) -> Result<ProfileDefinition, ApiError> {
    limits::deserialize(body).map_err(invalid)
}

/// Every rule a definition must meet before anything is issued from it, so that issuance
/// itself cannot fail on the profile: [`check_rules`], then what needs the issuer key and the
/// network. `verified` is a definition that passed earlier (the profile version an offer is
/// made from): a certificate chain it shares with `definition`, for the same key, had its
/// signatures checked then, so only its validity period is checked again.
pub async fn validate(
    ctx: &Context,
    definition: &ProfileDefinition,
    verified: Option<&ProfileDefinition>,
) -> Result<(), ApiError> {
    let Configured {
        configuration,
        format,
    } = check_rules(&ctx.config, &ctx.credential_configurations, definition)?;
    // The cached key: validating every offer's profile reads nothing from the store.
    let Some(key) = keys::find_signing_key(ctx, &definition.issuer_key_id).await? else {
        return Err(ApiError::invalid(
            "unknown_key",
            format!("no key {}", definition.issuer_key_id),
        ));
    };
    let algorithm = key.algorithm().as_str();
    // Wallets rely on credential_signing_alg_values_supported: never sign with anything else.
    if !configuration
        .credential_signing_alg_values_supported
        .iter()
        .any(|supported| supported == algorithm)
    {
        return Err(invalid(format!(
            "key {} signs with {}, but credential configuration {} allows only {:?}",
            definition.issuer_key_id,
            algorithm,
            definition.credential_configuration_id,
            configuration.credential_signing_alg_values_supported
        )));
    }
    // A DID that carries its key must carry the issuer key, or verifiers would reject every
    // credential.
    if let Some(did) = &definition.issuer_did
        && (did.starts_with("did:jwk:") || did.starts_with("did:key:"))
    {
        let carried = did::jwk_from_did(did)
            .map_err(|error| invalid(format!("issuerDid {did:?}: {error}")))?;
        if carried.thumbprint() != key.public_jwk().thumbprint() {
            return Err(invalid(format!(
                "issuerDid {did:?} is not a DID of key {}",
                definition.issuer_key_id
            )));
        }
    }
    if let Some(chain) = &definition.x5_chain {
        let unchanged = verified.is_some_and(|verified| {
            verified.x5_chain.as_ref() == Some(chain)
                && verified.issuer_key_id == definition.issuer_key_id
        });
        if unchanged {
            still_valid(chain, ctx.clock.now()).map_err(invalid)?;
        } else {
            check_chain(chain, &key.public_jwk(), ctx.clock.now()).map_err(invalid)?;
        }
        // Also for an unchanged chain: the issuer URL may have changed since (public_url).
        format
            .check_chain(chain, &ctx.issuer_url)
            .map_err(invalid)?;
    }
    if let Some(notifications) = &definition.notifications {
        crate::notifications::check_target(&ctx.config.notifications, &notifications.webhook.url)
            .await
            .map_err(|why| ApiError::invalid("invalid_webhook", why))?;
    }
    Ok(())
}

/// The rules that need neither the store nor the network, so that the profiles of the
/// configuration file are checked before anything is created at start. The identity
/// shorthands (`"did:jwk"`, `x5Chain: "development"`, ...) pass here; they are expanded before
/// [`validate`]. Returns the profile's credential configuration.
pub fn check_rules<'c>(
    config: &Config,
    configurations: &'c Configurations,
    definition: &ProfileDefinition,
) -> Result<&'c Configured, ApiError> {
    if definition.name.trim().is_empty() || definition.name.chars().count() > 200 {
        return Err(invalid("name must be 1-200 characters"));
    }
    let Some(configured) = configurations.get(&definition.credential_configuration_id) else {
        return Err(ApiError::invalid(
            "unknown_credential_configuration",
            format!(
                "no credential configuration {:?}; configured: {:?}",
                definition.credential_configuration_id,
                configurations.iter().map(|(id, _)| id).collect::<Vec<_>>()
            ),
        ));
    };
    if definition.issuer_did.is_some() && definition.x5_chain.is_some() {
        return Err(invalid("give issuerDid or x5Chain, not both"));
    }
    configured
        .format
        .check_profile(&definition.issuer(), &definition.credential_data)
        .map_err(invalid)?;
    if let Some(did) = &definition.issuer_did
        && !did::is_well_formed(did)
        && !DID_SHORTHANDS.contains(&did.as_str())
    {
        return Err(invalid(format!("issuerDid {did:?} is not a DID")));
    }
    check_data(definition, configured.format.issuer_claims())?;
    if status::is_managed(definition.credential_status.as_ref())
        && configured.format.status_list().is_none()
    {
        return Err(invalid(format!(
            "credentialStatus {:?} is not available for credential configuration {} yet",
            status::MANAGED,
            definition.credential_configuration_id
        )));
    }
    check_login(config, definition, configured.format.issuer_claims())?;
    let functions = mapping::validate(&definition.mapping).map_err(invalid)?;
    if functions.contains(&DataFunction::IssuerDid) && definition.issuer_did.is_none() {
        return Err(invalid(
            "mapping uses <issuerDid> but the profile has no issuerDid",
        ));
    }
    // exp and nbf are NumericDates (RFC 7519 §2): verifiers compare them as Unix seconds.
    for claim in ["exp", "nbf"] {
        let data_ok = definition
            .credential_data
            .get(claim)
            .is_none_or(Value::is_i64);
        let mapping_ok = definition.mapping.get(claim).is_none_or(|value| {
            value
                .as_str()
                .and_then(|text| DataFunction::parse(text).ok())
                .is_some_and(DataFunction::is_numeric_date)
        });
        if !data_ok || !mapping_ok {
            return Err(invalid(format!(
                "{claim} must be whole Unix seconds: an integer, or <timestamp-seconds>, \
                 <timestamp-in-seconds:...> or <timestamp-before-seconds:...>"
            )));
        }
    }
    if let Some(disclosure) = &definition.selective_disclosure {
        disclosure
            .validate()
            .and_then(|()| sdjwt::validate_against(disclosure, &definition.credential_data))
            .map_err(|error| invalid(format!("selectiveDisclosure: {error}")))?;
    }
    Ok(configured)
}

/// The `issuerDid` values [`expand_shorthands`] replaces with a full DID.
const DID_SHORTHANDS: [&str; 3] = ["did:jwk", "did:key", "did:web"];

/// The profiles of the configuration file against [`check_rules`], before anything exists: a
/// bad one stops the start with one line naming it.
pub fn check_configured(config: &Config, configurations: &Configurations) -> Result<(), String> {
    configured(config).try_for_each(|profile| {
        let (id, definition) = profile?;
        check_rules(config, configurations, &definition)
            .map(|_| ())
            .map_err(|error| format!("profiles.{id}: {error}"))
    })
}

/// The profiles of the configuration file, parsed; an error names the profile.
fn configured(
    config: &Config,
) -> impl Iterator<Item = Result<(ProfileId, ProfileDefinition), String>> + '_ {
    config.profiles.iter().map(|(id, definition)| {
        let fail = |error: String| format!("profiles.{id}: {error}");
        let id = ProfileId::parse(id).map_err(fail)?;
        let definition =
            parse_definition(definition.clone()).map_err(|error| fail(error.to_string()))?;
        Ok((id, definition))
    })
}

/// The data a credential is built from: within the JSON limits at every depth, and free of
/// the members only the issuer writes (its claims at the top, and SD-JWT digests at any depth,
/// whatever the format, so that no data source can plant a disclosure digest).
fn check_data(definition: &ProfileDefinition, issuer_claims: &[&str]) -> Result<(), ApiError> {
    let status = match &definition.credential_status {
        Some(Value::Object(status)) => Some(status),
        Some(Value::String(managed)) if managed == status::MANAGED => None,
        Some(_) => {
            return Err(invalid(format!(
                "credentialStatus must be {:?} (an entry in a status list of this issuer) or an \
                 object copied into the credential",
                status::MANAGED
            )));
        }
        None => None,
    };
    let parts = [
        (
            "credentialData",
            Some(&definition.credential_data),
            issuer_claims,
        ),
        ("mapping", Some(&definition.mapping), issuer_claims),
        ("credentialStatus", status, &[][..]),
    ];
    for (what, members, issuer_claims) in parts {
        let Some(members) = members else { continue };
        limits::check_members(what, members).map_err(|error| invalid(error.to_string()))?;
        if let Some(path) = sdjwt::reserved_member(members, issuer_claims) {
            return Err(invalid(format!(
                "{what}.{path} is reserved: the issuer writes it"
            )));
        }
    }
    Ok(())
}

/// The authorization code flow's settings: a configured provider, and a claims mapping whose
/// targets the issuer does not write itself. The mapped values are checked like any
/// credentialData when a holder logs in ([`with_login_claims`]).
fn check_login(
    config: &Config,
    definition: &ProfileDefinition,
    issuer_claims: &[&str],
) -> Result<(), ApiError> {
    if let Some(provider) = &definition.identity_provider
        && !config
            .authorization
            .providers
            .contains_key(provider.as_str())
    {
        return Err(invalid(format!(
            "identityProvider {provider:?} is not configured; configured: {:?}",
            config.authorization.providers.keys().collect::<Vec<_>>()
        )));
    }
    if definition.wallet_initiated && definition.identity_provider.is_none() {
        return Err(invalid(
            "walletInitiated needs an identityProvider: holders log in to get its credential",
        ));
    }
    if definition.id_token_claims_mapping.is_empty() {
        return Ok(());
    }
    if definition.identity_provider.is_none() {
        return Err(invalid(
            "idTokenClaimsMapping needs an identityProvider whose ID token it maps",
        ));
    }
    let targets =
        mapping::validate_claims_mapping(&definition.id_token_claims_mapping).map_err(invalid)?;
    // A stand-in value at every target shows a reserved name wherever it sits.
    let mut probe = Map::new();
    for target in &targets {
        mapping::set_at(&mut probe, target, Value::Null);
    }
    if let Some(path) = sdjwt::reserved_member(&probe, issuer_claims) {
        return Err(invalid(format!(
            "idTokenClaimsMapping writes {path}, which is reserved: the issuer writes it"
        )));
    }
    Ok(())
}

/// The definition with a logged-in holder's ID token claims mapped into its credentialData,
/// held to the rules of any credentialData (size, depth, reserved names at any depth).
pub fn with_login_claims(
    configurations: &Configurations,
    mut definition: ProfileDefinition,
    claims: &Map<String, Value>,
) -> Result<ProfileDefinition, String> {
    mapping::apply_claims_mapping(
        &definition.id_token_claims_mapping,
        claims,
        &mut definition.credential_data,
    );
    let configured = configurations
        .get(&definition.credential_configuration_id)
        .ok_or("the profile's credential configuration is no longer configured")?;
    check_data(&definition, configured.format.issuer_claims())
        .map_err(|error| error.to_string())?;
    Ok(definition)
}

/// Replaces the identity shorthands, so that stored definitions always hold the full DID and
/// the certificates: `"did:jwk"` and `"did:key"` in `issuerDid` become that DID of
/// `issuerKeyId`, `"did:web"` Vellum's own did:web (whose document lists the key), and
/// `x5Chain: "development"` a development chain for the key ([`keys::development_chain`]), its
/// leaf as the format says.
pub async fn expand_shorthands(
    ctx: &Context,
    definition: &mut ProfileDefinition,
) -> Result<(), ApiError> {
    if definition
        .x5_chain
        .as_ref()
        .is_some_and(|chain| chain.len() == 1 && chain[0] == DEVELOPMENT_CHAIN)
    {
        // An unknown configuration is refused by validate, after this.
        let signer = ctx
            .credential_configurations
            .get(&definition.credential_configuration_id)
            .map(|configured| {
                configured
                    .format
                    .development_signer(&definition.credential_data)
            })
            .unwrap_or_default();
        let chain = keys::development_chain(
            ctx,
            &definition.issuer_key_id,
            signer.profile,
            signer.country,
        )
        .await?;
        definition.x5_chain = Some(chain);
    }
    expand_issuer_did(ctx, definition).await
}

async fn expand_issuer_did(
    ctx: &Context,
    definition: &mut ProfileDefinition,
) -> Result<(), ApiError> {
    let method = match definition.issuer_did.as_deref() {
        Some("did:web") => {
            let did = crate::metadata::did_web(ctx).ok_or_else(|| {
                invalid("\"did:web\" needs an issuer URL with a host name (public_url)")
            })?;
            definition.issuer_did = Some(did);
            return Ok(());
        }
        Some(method @ ("did:jwk" | "did:key")) => method.to_owned(),
        _ => return Ok(()),
    };
    let Some(key) = ctx.store.key(&definition.issuer_key_id).await? else {
        return Err(ApiError::invalid(
            "unknown_key",
            format!("no key {}", definition.issuer_key_id),
        ));
    };
    let jwk = keys::public_jwk(&key)?;
    definition.issuer_did = Some(if method == "did:jwk" {
        did::did_jwk(&jwk)
    } else {
        did::did_key(&jwk).map_err(|error| Internal::msg(error.to_string()))?
    });
    Ok(())
}

/// A chain is usable when it verifies (each certificate signed by the next, valid now) and its
/// leaf certifies the issuer key: otherwise every credential would fail verification.
fn check_chain(chain: &[String], issuer: &Jwk, now: Millis) -> Result<(), String> {
    let der = x5_chain_der(chain)?;
    x509::verify_chain(&der, Some(now.div_euclid(1000)))
        .map_err(|error| format!("x5Chain does not verify: {error}"))?;
    let leaf = x509::leaf_public_jwk(&der[0]).map_err(|error| format!("x5Chain[0]: {error}"))?;
    if leaf.thumbprint() != issuer.thumbprint() {
        return Err("x5Chain[0] does not certify issuerKeyId".into());
    }
    Ok(())
}

/// The validity periods of a chain whose signatures were verified before.
fn still_valid(chain: &[String], now: Millis) -> Result<(), String> {
    let der = x5_chain_der(chain)?;
    x509::valid_at(&der, now.div_euclid(1000))
        .map_err(|error| format!("x5Chain is no longer valid: {error}"))
}

fn split_id(mut body: Value) -> Result<(Option<ProfileId>, Value), ApiError> {
    let id = match body.as_object_mut() {
        Some(object) => object.remove("id"),
        None => return Err(invalid("the body must be a JSON object")),
    };
    let id = match id {
        None => None,
        Some(Value::String(text)) => Some(ProfileId::parse(&text).map_err(invalid)?),
        Some(_) => return Err(invalid("id must be a string")),
    };
    Ok((id, body))
}

pub async fn create_profile(ctx: &Context, body: Value) -> Result<ProfileView, ApiError> {
    let (id, body) = split_id(body)?;
    let definition = parse_definition(body)?;
    insert(ctx, id.unwrap_or_else(ProfileId::generate), definition).await
}

async fn insert(
    ctx: &Context,
    id: ProfileId,
    mut definition: ProfileDefinition,
) -> Result<ProfileView, ApiError> {
    expand_shorthands(ctx, &mut definition).await?;
    validate(ctx, &definition, None).await?;
    check_wallet_initiated(ctx, &id, &definition).await?;
    let now = ctx.clock.now();
    let record = ProfileRecord {
        id,
        version: 1,
        active: true,
        issuer_key_id: definition.issuer_key_id.clone(),
        definition: serde_json::to_value(&definition).map_err(Internal::new)?,
        created_at: now,
        updated_at: now,
    };
    match ctx.store.create_profile(&record).await {
        Ok(()) => Ok(view(record)?),
        Err(StoreError::Conflict(_)) => Err(ApiError::Conflict {
            code: "profile_exists",
            detail: format!("a profile with id {} already exists", record.id),
        }),
        Err(error) => Err(error.into()),
    }
}

pub async fn update_profile(
    ctx: &Context,
    id: &ProfileId,
    body: Value,
) -> Result<ProfileView, ApiError> {
    let (body_id, mut body) = split_id(body)?;
    if body_id.as_ref().is_some_and(|body_id| body_id != id) {
        return Err(invalid("the body's id differs from the path's"));
    }
    if let Some(current) = ctx.store.profile(id, None).await? {
        keep_redacted_secrets(&mut body, &current.definition)?;
    }
    let definition = parse_definition(body)?;
    update(ctx, id, definition).await
}

async fn update(
    ctx: &Context,
    id: &ProfileId,
    mut definition: ProfileDefinition,
) -> Result<ProfileView, ApiError> {
    expand_shorthands(ctx, &mut definition).await?;
    validate(ctx, &definition, None).await?;
    check_wallet_initiated(ctx, id, &definition).await?;
    let value = serde_json::to_value(&definition).map_err(Internal::new)?;
    match ctx
        .store
        .update_profile(id, &value, &definition.issuer_key_id, ctx.clock.now())
        .await?
    {
        Some(record) => Ok(view(record)?),
        None => Err(missing_or_inactive(ctx, id).await),
    }
}

async fn missing_or_inactive(ctx: &Context, id: &ProfileId) -> ApiError {
    match ctx.store.profile(id, None).await {
        Ok(Some(_)) => ApiError::Conflict {
            code: "profile_inactive",
            detail: format!("profile {id} is deactivated"),
        },
        Ok(None) => ApiError::NotFound(format!("no profile {id}")),
        Err(error) => error.into(),
    }
}

/// A new ACTIVE session issuing `template` (from `profile`), until `expires_at`. Its offer
/// handle is a random one that leads nowhere; an offer sets its own.
pub fn new_session(
    ctx: &Context,
    id: SessionId,
    profile: &ProfileRecord,
    template: &IssuanceTemplate,
    expires_at: Millis,
    now: Millis,
) -> Result<SessionRecord, Internal> {
    Ok(SessionRecord {
        id,
        profile_id: profile.id.clone(),
        profile_version: profile.version,
        credential_configuration_id: template.definition.credential_configuration_id.clone(),
        status: SessionStatus::Active,
        status_reason: None,
        offer_handle_hash: hash_secret(&random_token()),
        by_value: false,
        issuer_key_id: template.definition.issuer_key_id.clone(),
        webhook: template
            .definition
            .notifications
            .as_ref()
            .map(|notifications| {
                notifications
                    .webhook
                    .target(ctx.config.notifications.signing_secret.as_ref())
            }),
        template: serde_json::to_string(template).map_err(Internal::new)?,
        created_at: now,
        updated_at: now,
        expires_at,
        resolved_at: None,
        token_issued_at: None,
        finished_at: None,
        offer_grant: None,
    })
}

/// The active profile for wallet-initiated issuance of `configuration`, if one is.
pub async fn wallet_initiated(
    ctx: &Context,
    configuration: &str,
) -> Result<Option<(ProfileRecord, ProfileDefinition)>, Internal> {
    let profiles = ctx.store.profiles().await?.logged("profile");
    for record in profiles {
        if !record.active
            || record.definition.get("walletInitiated") != Some(&Value::Bool(true))
            || record
                .definition
                .get("credentialConfigurationId")
                .and_then(Value::as_str)
                != Some(configuration)
        {
            continue;
        }
        let definition = serde_json::from_value(record.definition.clone())
            .map_err(|error| Internal::msg(format!("profile {}: {error}", record.id)))?;
        return Ok(Some((record, definition)));
    }
    Ok(None)
}

/// A configuration has at most one profile for wallet-initiated issuance: which one a wallet
/// gets must never be a guess.
async fn check_wallet_initiated(
    ctx: &Context,
    id: &ProfileId,
    definition: &ProfileDefinition,
) -> Result<(), ApiError> {
    if !definition.wallet_initiated {
        return Ok(());
    }
    match wallet_initiated(ctx, &definition.credential_configuration_id).await? {
        Some((other, _)) if other.id != *id => Err(ApiError::Conflict {
            code: "wallet_initiated_taken",
            detail: format!(
                "profile {} is already the walletInitiated profile of {:?}; set it to false (or \
                 deactivate it) first",
                other.id, definition.credential_configuration_id
            ),
        }),
        _ => Ok(()),
    }
}

pub async fn get_profile(
    ctx: &Context,
    id: &ProfileId,
    version: Option<i64>,
) -> Result<ProfileView, ApiError> {
    match ctx.store.profile(id, version).await? {
        Some(record) => Ok(view(record)?),
        None => Err(ApiError::NotFound(match version {
            Some(version) => format!("no version {version} of profile {id}"),
            None => format!("no profile {id}"),
        })),
    }
}

pub async fn list_profiles(ctx: &Context) -> Result<Vec<ProfileView>, ApiError> {
    let records = ctx.store.profiles().await?.logged("profile");
    Ok(records.into_iter().map(view).collect::<Result<_, _>>()?)
}

pub async fn deactivate_profile(ctx: &Context, id: &ProfileId) -> Result<(), ApiError> {
    if ctx.store.deactivate_profile(id, ctx.clock.now()).await? {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("no profile {id}")))
    }
}

/// Creates or versions the profiles declared in configuration. A deactivated profile stays
/// deactivated: the operator's API call outranks a restart.
pub async fn load_configured_profiles(ctx: &Context) -> Result<(), String> {
    for profile in configured(&ctx.config) {
        let (id, definition) = profile?;
        let fail = |error: ApiError| format!("profiles.{id}: {error}");
        match ctx
            .store
            .profile(&id, None)
            .await
            .map_err(|e| e.to_string())?
        {
            None => match insert(ctx, id.clone(), definition.clone()).await {
                Ok(_) => tracing::info!(profile = %id, "created profile from configuration"),
                // Another instance starting on the same database created it first.
                Err(ApiError::Conflict { .. }) => {
                    tracing::info!(profile = %id, "profile created by another instance");
                }
                Err(error) => return Err(fail(error)),
            },
            Some(current) if !current.active => {
                tracing::warn!(profile = %id, "configured profile is deactivated; left as is");
            }
            Some(current) => {
                let mut expanded = definition.clone();
                expand_shorthands(ctx, &mut expanded).await.map_err(fail)?;
                let wanted = serde_json::to_value(&expanded).map_err(|e| e.to_string())?;
                if current.definition != wanted {
                    let updated = update(ctx, &id, expanded).await.map_err(fail)?;
                    tracing::info!(profile = %id, version = updated.version, "configuration changed the profile");
                }
            }
        }
    }
    Ok(())
}
