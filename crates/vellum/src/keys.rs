//! Managed signing keys: generated or imported, sealed at rest, public JWK only on the way out.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use vellum_formats::jose::{Algorithm, Jwk, SigningKey};
use vellum_formats::x509::{self, AltName, CertificateProfile, Leaf, Subject, Validity};

use crate::clock::Millis;
use crate::context::Context;
use crate::errors::{ApiError, Internal};
use crate::ids::KeyId;
use crate::limits;
use crate::store::{KeyRecord, StoreError};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerateKeyRequest {
    #[serde(default, deserialize_with = "limits::not_null")]
    pub id: Option<KeyId>,
    /// `P-256` (default), `P-384` or `Ed25519`.
    #[serde(default, deserialize_with = "limits::not_null")]
    pub key_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportKeyRequest {
    #[serde(default, deserialize_with = "limits::not_null")]
    pub id: Option<KeyId>,
    /// A private JWK (EC P-256/P-384 or OKP Ed25519).
    pub jwk: Value,
}

/// What the API shows of a key: never the private part.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    pub id: KeyId,
    pub key_type: &'static str,
    pub algorithm: Algorithm,
    pub public_jwk: Value,
    pub created_at: Millis,
}

fn view(record: &KeyRecord) -> Result<KeyView, Internal> {
    let algorithm = Algorithm::parse(&record.algorithm)
        .map_err(|_| Internal::msg(format!("key {} has an unknown algorithm", record.id)))?;
    Ok(KeyView {
        id: record.id.clone(),
        key_type: algorithm.curve(),
        algorithm,
        public_jwk: with_kid(&record.id, algorithm, &record.public_jwk),
        created_at: record.created_at,
    })
}

/// A public JWK as published in the JWKS: `kid`, `alg` and `use` added.
pub fn with_kid(id: &KeyId, algorithm: Algorithm, public_jwk: &Value) -> Value {
    let mut jwk = public_jwk.clone();
    if let Value::Object(members) = &mut jwk {
        members.insert("kid".into(), Value::from(id.as_str()));
        members.insert("alg".into(), Value::from(algorithm.as_str()));
        members.insert("use".into(), Value::from("sig"));
    }
    jwk
}

fn algorithm_for_key_type(key_type: &str) -> Option<Algorithm> {
    Algorithm::ALL
        .into_iter()
        .find(|algorithm| algorithm.curve() == key_type)
}

pub async fn generate_key(ctx: &Context, request: GenerateKeyRequest) -> Result<KeyView, ApiError> {
    let key_type = request.key_type.as_deref().unwrap_or("P-256");
    let algorithm = algorithm_for_key_type(key_type).ok_or_else(|| {
        ApiError::invalid(
            "invalid_key_type",
            format!("keyType must be P-256, P-384 or Ed25519 (got {key_type:?})"),
        )
    })?;
    let id = request.id.unwrap_or_else(KeyId::generate);
    store_key(ctx, id, &SigningKey::generate(algorithm)).await
}

/// A JWK a management request carries. As everywhere in the API, a member given as null is
/// refused rather than read as left out (`y` of an OKP key, `d` of a public one).
pub fn jwk_from_request(value: &Value) -> Result<Jwk, String> {
    let null = ["kty", "crv", "x", "y", "d"]
        .into_iter()
        .find(|name| value.get(name).is_some_and(Value::is_null));
    if let Some(name) = null {
        return Err(format!("{name}: {}", limits::NULL_REFUSED));
    }
    Jwk::from_value(value).map_err(|error| error.to_string())
}

pub async fn import_key(ctx: &Context, request: ImportKeyRequest) -> Result<KeyView, ApiError> {
    let invalid = |detail: String| ApiError::invalid("invalid_jwk", detail);
    let jwk = jwk_from_request(&request.jwk).map_err(invalid)?;
    if !jwk.is_private() {
        return Err(invalid(
            "the JWK has no private part (d): Vellum signs with the keys it holds".into(),
        ));
    }
    let key = SigningKey::from_jwk(&jwk).map_err(|error| invalid(error.to_string()))?;
    let id = request.id.unwrap_or_else(KeyId::generate);
    store_key(ctx, id, &key).await
}

async fn store_key(ctx: &Context, id: KeyId, key: &SigningKey) -> Result<KeyView, ApiError> {
    let record = seal(ctx, id, key);
    match ctx.store.insert_key(&record).await {
        Ok(()) => Ok(view(&record)?),
        Err(StoreError::Conflict(_)) => Err(ApiError::Conflict {
            code: "key_exists",
            detail: format!("a key with id {} already exists", record.id),
        }),
        Err(error) => Err(error.into()),
    }
}

fn seal(ctx: &Context, id: KeyId, key: &SigningKey) -> KeyRecord {
    let private =
        zeroize::Zeroizing::new(serde_json::to_vec(&key.private_jwk()).expect("a JWK serialises"));
    KeyRecord {
        sealed_private: ctx.secrets.seal(&private, id.as_str().as_bytes()),
        id,
        algorithm: key.algorithm().as_str().to_owned(),
        public_jwk: key.public_jwk().to_value(),
        created_at: ctx.clock.now(),
    }
}

pub async fn get_key(ctx: &Context, id: &KeyId) -> Result<KeyView, ApiError> {
    match ctx.store.key(id).await? {
        Some(record) => Ok(view(&record)?),
        None => Err(ApiError::NotFound(format!("no key {id}"))),
    }
}

pub async fn list_keys(ctx: &Context) -> Result<Vec<KeyView>, ApiError> {
    let records = ctx.store.keys().await?.logged("key");
    Ok(records.iter().map(view).collect::<Result<_, _>>()?)
}

/// Generates the keys the configuration declares, unless they exist already.
pub async fn ensure_declared_keys(ctx: &Context) -> Result<(), Internal> {
    for (id, declaration) in &ctx.config.keys {
        let id = KeyId::parse(id).map_err(Internal::msg)?;
        if ctx.store.key(&id).await?.is_some() {
            continue;
        }
        let algorithm = Algorithm::parse(&declaration.algorithm)
            .map_err(|error| Internal::msg(error.to_string()))?;
        let record = seal(ctx, id.clone(), &SigningKey::generate(algorithm));
        match ctx.store.insert_key(&record).await {
            Ok(()) => tracing::info!(key = %id, %algorithm, "generated declared key"),
            Err(StoreError::Conflict(_)) => {} // another instance made it first
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// The signing key `id`, unsealed, from the context's cache after first use (keys never
/// change once stored).
pub async fn signing_key(ctx: &Context, id: &KeyId) -> Result<SigningKey, Internal> {
    find_signing_key(ctx, id)
        .await?
        .ok_or_else(|| Internal::msg(format!("key {id} disappeared")))
}

/// [`signing_key`], or `None` when there is no key `id`.
pub async fn find_signing_key(ctx: &Context, id: &KeyId) -> Result<Option<SigningKey>, Internal> {
    if let Some(key) = ctx.keys.get(id) {
        return Ok(Some(key));
    }
    let Some(record) = ctx.store.key(id).await? else {
        return Ok(None);
    };
    let private = ctx
        .secrets
        .open(&record.sealed_private, id.as_str().as_bytes())
        .map_err(|error| Internal::msg(format!("key {id}: {error}")))?;
    let jwk: Jwk = serde_json::from_slice(&private)
        .map_err(|_| Internal::msg(format!("key {id}: unreadable after unsealing")))?;
    let key = SigningKey::from_jwk(&jwk).map_err(|error| Internal::msg(error.to_string()))?;
    ctx.keys.insert(id.clone(), key.clone());
    Ok(Some(key))
}

/// What a certificate is for (ISO 18013-5 Annex B profiles for mdoc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateKind {
    /// A self-signed development IACA root.
    Iaca,
    /// A document signer (EKU 1.0.18013.5.1.2) under an IACA.
    MdocDocumentSigner,
    /// An SD-JWT VC signing certificate under a CA.
    SdJwtSigner,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateRequest {
    pub profile: CertificateKind,
    pub common_name: String,
    #[serde(default, deserialize_with = "limits::not_null")]
    pub country: Option<String>,
    #[serde(default, deserialize_with = "limits::not_null")]
    pub organization: Option<String>,
    /// Default 3650 for an IACA, 365 otherwise.
    #[serde(default, deserialize_with = "limits::not_null")]
    pub valid_days: Option<u32>,
    /// The CA's key (a managed key) and certificate (PEM); not for an IACA.
    #[serde(default, deserialize_with = "limits::not_null")]
    pub issuer_key_id: Option<KeyId>,
    #[serde(default, deserialize_with = "limits::not_null")]
    pub issuer_certificate: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateIssued {
    /// The new certificate, PEM.
    pub certificate: String,
    /// The chain for a profile's `x5Chain`: the new certificate, then its CA (leaf first).
    pub x5_chain: Vec<String>,
}

/// Creates a development certificate for key `id`: a self-signed IACA, or a leaf signed by a
/// managed CA key. CA private keys never leave Vellum; nothing is stored.
pub async fn issue_certificate(
    ctx: &Context,
    id: &KeyId,
    request: CertificateRequest,
) -> Result<CertificateIssued, ApiError> {
    use rand::RngCore;
    let invalid = |detail: String| ApiError::invalid("invalid_certificate_request", detail);
    let subject_record = ctx
        .store
        .key(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no key {id}")))?;
    let days = request.valid_days.unwrap_or(match request.profile {
        CertificateKind::Iaca => 3650,
        _ => 365,
    });
    if !(1..=36_500).contains(&days) {
        return Err(invalid("validDays must be between 1 and 36500".into()));
    }
    let now = ctx.clock.now().div_euclid(1000);
    let validity = Validity {
        not_before: now,
        not_after: now + i64::from(days) * 86_400,
    };
    let subject = Subject {
        common_name: request.common_name,
        country: request.country,
        organization: request.organization,
    };
    let mut serial = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut serial);
    let serial = positive_serial(serial);
    let (der, issuer_pem) = match request.profile {
        CertificateKind::Iaca => {
            if request.issuer_key_id.is_some() || request.issuer_certificate.is_some() {
                return Err(invalid(
                    "an IACA is self-signed: no issuerKeyId or issuerCertificate".into(),
                ));
            }
            let key = signing_key(ctx, id).await?;
            let der = x509::iaca(&key, &subject, &validity, &serial)
                .map_err(|error| invalid(error.to_string()))?;
            (der, None)
        }
        kind => {
            let (Some(ca_key_id), Some(ca_pem)) =
                (request.issuer_key_id, request.issuer_certificate)
            else {
                return Err(invalid(
                    "a leaf certificate needs issuerKeyId and issuerCertificate".into(),
                ));
            };
            if ctx.store.key(&ca_key_id).await?.is_none() {
                return Err(ApiError::invalid(
                    "unknown_key",
                    format!("no key {ca_key_id}"),
                ));
            }
            let ca_key = signing_key(ctx, &ca_key_id).await?;
            let ca_der = x509::from_pem(&ca_pem)
                .map_err(|error| invalid(format!("issuerCertificate: {error}")))?;
            let profile = if kind == CertificateKind::MdocDocumentSigner {
                CertificateProfile::MdocDocumentSigner
            } else {
                CertificateProfile::SdJwtSigner
            };
            let leaf = Leaf {
                subject_key: &public_jwk(&subject_record)?,
                subject: &subject,
                validity: &validity,
                profile,
                serial: &serial,
                alt_names: &alt_names_for(ctx, profile),
            };
            let der = x509::issue_leaf(&ca_key, &ca_der, &leaf)
                .map_err(|error| invalid(error.to_string()))?;
            (der, Some(x509::to_pem(&ca_der)))
        }
    };
    let certificate = x509::to_pem(&der);
    let mut x5_chain = vec![certificate.clone()];
    x5_chain.extend(issuer_pem);
    Ok(CertificateIssued {
        certificate,
        x5_chain,
    })
}

/// The names an SD-JWT VC signer certificate carries: the issuer URL (which is the credential's
/// `iss`) as a URI, and its host as a DNS name, so verifiers can match `iss` either way.
fn alt_names_for(ctx: &Context, profile: CertificateProfile) -> Vec<AltName> {
    if profile != CertificateProfile::SdJwtSigner {
        return Vec::new();
    }
    let mut names = vec![AltName::Uri(ctx.issuer_url.clone())];
    if let Ok(url) = url::Url::parse(&ctx.issuer_url)
        && let Some(url::Host::Domain(host)) = url.host()
    {
        names.push(AltName::Dns(host.to_owned()));
    }
    names
}

/// A serial number RFC 5280 accepts: positive, and not zero.
fn positive_serial(mut serial: [u8; 16]) -> [u8; 16] {
    serial[0] = (serial[0] & 0x7f) | 0x01;
    serial
}

/// A stored key's public JWK.
pub(crate) fn public_jwk(record: &KeyRecord) -> Result<Jwk, Internal> {
    Jwk::from_value(&record.public_jwk)
        .map_err(|error| Internal::msg(format!("key {}: {error}", record.id)))
}

/// The managed key that signs development chains (the `x5Chain` shorthand `"development"`).
pub const DEVELOPMENT_CA_KEY: &str = "vellum-development-ca";

/// Development certificates last as long as their CA: ten years from the CA key's creation.
const DEVELOPMENT_CA_SECONDS: i64 = 10 * 365 * 86_400;

/// A development chain for issuer key `id`, leaf first: a document signer or an SD-JWT VC
/// signer certificate (`profile`), under a development root whose key Vellum creates once and
/// keeps. The chain is a function of stored keys alone (validity from the keys' creation,
/// serials from their thumbprints, deterministic ECDSA and EdDSA signatures), so expanding the
/// shorthand again, e.g. at every start for a configured profile, yields the same certificates.
/// `country` is the subject's C (ISO 18013-5 requires one in an IACA and its signers).
pub async fn development_chain(
    ctx: &Context,
    id: &KeyId,
    profile: CertificateProfile,
    country: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    let issuer = ctx
        .store
        .key(id)
        .await?
        .ok_or_else(|| ApiError::invalid("unknown_key", format!("no key {id}")))?;
    let ca_id = KeyId::parse(DEVELOPMENT_CA_KEY).map_err(Internal::msg)?;
    let ca_record = match ctx.store.key(&ca_id).await? {
        Some(record) => record,
        None => {
            let record = seal(ctx, ca_id.clone(), &SigningKey::generate(Algorithm::ES256));
            match ctx.store.insert_key(&record).await {
                Ok(()) => {
                    tracing::info!(key = %ca_id, "generated the development CA key");
                    record
                }
                // Another request or instance made it first: use theirs.
                Err(StoreError::Conflict(_)) => ctx
                    .store
                    .key(&ca_id)
                    .await?
                    .ok_or_else(|| Internal::msg("the development CA key vanished"))?,
                Err(error) => return Err(error.into()),
            }
        }
    };
    let ca_key = signing_key(ctx, &ca_id).await?;
    let ca_public = public_jwk(&ca_record)?;
    let subject_key = public_jwk(&issuer)?;
    let serial = |what: &str| {
        let mut digest = Sha256::new();
        for part in [what, &ca_public.thumbprint(), &subject_key.thumbprint()] {
            digest.update(part.as_bytes());
            digest.update([0]);
        }
        digest.update(country.unwrap_or_default());
        let mut serial = [0u8; 16];
        serial.copy_from_slice(&digest.finalize()[..16]);
        positive_serial(serial)
    };
    let name = |common_name: String| Subject {
        common_name,
        country: country.map(str::to_owned),
        organization: Some("Vellum development (not for production)".into()),
    };
    let ca_from = ca_record.created_at.div_euclid(1000);
    let ca_validity = Validity {
        not_before: ca_from,
        not_after: ca_from + DEVELOPMENT_CA_SECONDS,
    };
    let fail = |error: x509::X509Error| Internal::msg(format!("development chain: {error}"));
    let root = x509::iaca(
        &ca_key,
        &name("Vellum development IACA".into()),
        &ca_validity,
        &serial("root"),
    )
    .map_err(fail)?;
    let what = if profile == CertificateProfile::MdocDocumentSigner {
        "document signer"
    } else {
        "SD-JWT VC signer"
    };
    let leaf = Leaf {
        subject_key: &subject_key,
        subject: &name(format!("Vellum development {what} {id}")),
        validity: &Validity {
            not_before: issuer.created_at.div_euclid(1000).max(ca_from),
            not_after: ca_validity.not_after,
        },
        profile,
        serial: &serial(what),
        alt_names: &alt_names_for(ctx, profile),
    };
    let leaf = x509::issue_leaf(&ca_key, &root, &leaf).map_err(fail)?;
    Ok(vec![x509::to_pem(&leaf), x509::to_pem(&root)])
}
