//! The discovery documents: credential issuer metadata, authorization server metadata,
//! SD-JWT VC issuer metadata and the JWKS.

use serde_json::{Map, Value, json};
use vellum_formats::jose::{self, Algorithm};
use vellum_formats::x509::{self, CertificateProfile};

use crate::config::CredentialConfiguration;
use crate::context::Context;
use crate::credentials::{self, Configured};
use crate::errors::Internal;
use crate::ids::KeyId;
use crate::keys;
use crate::protocol::{
    ATTEST_JWT_CLIENT_AUTH, AUTHORIZATION_CODE_GRANT, OPENID_CREDENTIAL, PRE_AUTHORIZED_GRANT,
    REFRESH_TOKEN_GRANT,
};

/// OID4VCI 1.0 §12.2: everything advertised here works.
pub fn credential_issuer(ctx: &Context) -> Value {
    let configurations: Map<String, Value> = ctx
        .credential_configurations
        .iter()
        .map(
            |(
                id,
                Configured {
                    configuration,
                    format,
                },
            )| {
                let signing_algorithms: Vec<Value> = configuration
                    .credential_signing_alg_values_supported
                    .iter()
                    .filter_map(|name| Algorithm::parse(name).ok())
                    .map(|algorithm| format.signing_algorithm(algorithm))
                    .collect();
                let mut entry = json!({
                    "format": configuration.format,
                    "credential_signing_alg_values_supported": signing_algorithms,
                    "cryptographic_binding_methods_supported":
                        configuration.cryptographic_binding_methods_supported,
                    "proof_types_supported": proof_types(ctx, configuration),
                    "credential_metadata": configuration
                        .credential_metadata
                        .clone()
                        .unwrap_or_else(|| json!({})),
                });
                // HAIP: every configuration has a scope; its id serves when none is configured.
                entry["scope"] = Value::from(configuration.scope.as_deref().unwrap_or(id));
                if let Value::Object(entry) = &mut entry {
                    entry.extend(format.metadata());
                }
                (id.clone(), entry)
            },
        )
        .collect();
    let mut metadata = json!({
        "credential_issuer": ctx.issuer_url,
        "credential_endpoint": ctx.endpoint("/credential"),
        "nonce_endpoint": ctx.endpoint("/nonce"),
        "deferred_credential_endpoint": ctx.endpoint("/deferred-credential"),
        "notification_endpoint": ctx.endpoint("/notification"),
        "credential_configurations_supported": configurations,
    });
    let (request_encryption, response_encryption) = crate::encryption::metadata(ctx);
    metadata["credential_request_encryption"] = request_encryption;
    metadata["credential_response_encryption"] = response_encryption;
    let batch_size = ctx.config.protocol.batch_size;
    if batch_size > 1 {
        metadata["batch_credential_issuance"] = json!({"batch_size": batch_size});
    }
    metadata
}

/// The proof types a configuration takes: `jwt` (with a key attestation in its header or not),
/// and `attestation` (a key attestation alone) once a wallet provider is trusted; each with
/// `key_attestations_required` when the configuration has it.
fn proof_types(ctx: &Context, configuration: &CredentialConfiguration) -> Value {
    let proof_type = || {
        let mut entry = json!({
            "proof_signing_alg_values_supported": configuration.proof_signing_alg_values_supported,
        });
        if let Some(required) = &configuration.key_attestations_required {
            entry["key_attestations_required"] = json!(required);
        }
        entry
    };
    let mut types = json!({"jwt": proof_type()});
    if ctx.config.client_attestation.trusts_a_wallet_provider() {
        types["attestation"] = proof_type();
    }
    types
}

/// The `typ` of signed credential issuer metadata (OID4VCI 1.0 §12.2.2).
pub const SIGNED_METADATA_TYP: &str = "openidvci-issuer-metadata+jwt";

/// The credential issuer metadata as a JWT signed by `metadata.signing_key`, with its
/// certificates in `x5c` (OID4VCI 1.0 §12.2.2, HAIP); `None` when no key is configured.
pub async fn signed_credential_issuer(ctx: &Context) -> Result<Option<String>, Internal> {
    let settings = &ctx.config.metadata;
    let Some(key_id) = &settings.signing_key else {
        return Ok(None);
    };
    let key_id = KeyId::parse(key_id).map_err(Internal::msg)?;
    let key = keys::signing_key(ctx, &key_id).await?;
    let chain: Vec<String> = match &settings.x5_chain_file {
        Some(path) => {
            let pem = std::fs::read_to_string(path).map_err(|error| {
                Internal::msg(format!(
                    "metadata.x5_chain_file {}: {error}",
                    path.display()
                ))
            })?;
            x509::from_pem_chain(&pem)
                .map_err(|error| Internal::msg(format!("metadata.x5_chain_file: {error}")))?
                .iter()
                .map(|der| x509::to_pem(der))
                .collect()
        }
        None => keys::development_chain(ctx, &key_id, CertificateProfile::SdJwtSigner, None)
            .await
            .map_err(|error| Internal::msg(format!("metadata development chain: {error}")))?,
    };
    let leaf = chain
        .first()
        .ok_or_else(|| Internal::msg("metadata.x5_chain_file holds no certificate"))
        .and_then(|pem| x509::from_pem(pem).map_err(Internal::new))
        .and_then(|der| x509::leaf_public_jwk(&der).map_err(Internal::new))?;
    if leaf != key.public_jwk() {
        return Err(Internal::msg(format!(
            "the metadata certificate does not certify key {key_id}"
        )));
    }
    let mut header = Map::new();
    header.insert("typ".into(), Value::from(SIGNED_METADATA_TYP));
    header.insert(
        "x5c".into(),
        Value::from(credentials::x5c(&chain).map_err(Internal::msg)?),
    );
    let now = ctx.clock.now().div_euclid(1000);
    let mut claims = credential_issuer(ctx);
    claims["iss"] = Value::from(ctx.issuer_url.as_str());
    claims["sub"] = Value::from(ctx.issuer_url.as_str());
    claims["iat"] = Value::from(now);
    claims["exp"] = Value::from(now + i64::from(settings.validity_seconds));
    Ok(Some(jose::sign_compact(header, &claims, &key)))
}

/// RFC 8414: the pre-authorized code grant, and the authorization code grant with PAR
/// (RFC 9126), PKCE S256 (RFC 7636), `iss` in the response (RFC 9207) and
/// `authorization_details` (RFC 9396); DPoP (RFC 9449 §5.1) for both; wallet attestation as
/// client authentication, with its challenge endpoint.
pub fn authorization_server(ctx: &Context) -> Value {
    let authorization = &ctx.config.authorization;
    let attestation = &ctx.config.client_attestation;
    let mut grant_types = vec![AUTHORIZATION_CODE_GRANT, PRE_AUTHORIZED_GRANT];
    if authorization.refresh_tokens {
        grant_types.push(REFRESH_TOKEN_GRANT);
    }
    let mut auth_methods = vec![ATTEST_JWT_CLIENT_AUTH];
    if attestation.allow_public_clients {
        auth_methods.push("none");
    }
    json!({
        "issuer": ctx.issuer_url,
        "token_endpoint": ctx.endpoint("/token"),
        "authorization_endpoint": ctx.endpoint("/authorize"),
        "pushed_authorization_request_endpoint": ctx.endpoint("/par"),
        "require_pushed_authorization_requests":
            authorization.require_pushed_authorization_requests,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": grant_types,
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "authorization_details_types_supported": [OPENID_CREDENTIAL],
        "pre-authorized_grant_anonymous_access_supported": true,
        "token_endpoint_auth_methods_supported": auth_methods,
        "challenge_endpoint": ctx.endpoint("/challenge"),
        "client_attestation_signing_alg_values_supported":
            attestation.signing_alg_values_supported,
        "client_attestation_pop_signing_alg_values_supported":
            attestation.signing_alg_values_supported,
        "dpop_signing_alg_values_supported": ctx.config.dpop.signing_alg_values_supported,
    })
}

/// Every key a profile or offer ever signed with, so verifiers can always resolve `kid`.
pub async fn jwks(ctx: &Context) -> Result<Value, Internal> {
    let keys = ctx.store.published_keys().await?.logged("key");
    let keys: Vec<Value> = keys
        .iter()
        .map(|record| {
            let algorithm = Algorithm::parse(&record.algorithm).map_err(|_| {
                Internal::msg(format!("key {} has an unknown algorithm", record.id))
            })?;
            Ok(keys::with_kid(&record.id, algorithm, &record.public_jwk))
        })
        .collect::<Result<_, Internal>>()?;
    Ok(json!({ "keys": keys }))
}

/// SD-JWT VC issuer metadata (`/.well-known/jwt-vc-issuer`).
pub async fn jwt_vc_issuer(ctx: &Context) -> Result<Value, Internal> {
    Ok(json!({
        "issuer": ctx.issuer_url,
        "jwks": jwks(ctx).await?,
    }))
}

/// Vellum's own `did:web`: the issuer URL's host (a port as `%3A`), then each segment of its
/// path after a colon. did:web resolution fetches its document from `/.well-known/did.json` for
/// a bare host and from `<path>/did.json` otherwise; Vellum serves it at both `<issuer>/did.json`
/// and (without a path) the well-known URI.
pub fn did_web(ctx: &Context) -> Option<String> {
    let url = url::Url::parse(&ctx.issuer_url).ok()?;
    let mut did = format!("did:web:{}", url.host_str()?);
    if let Some(port) = url.port() {
        did.push_str(&format!("%3A{port}"));
    }
    for segment in ctx
        .base_path
        .split('/')
        .filter(|segment| !segment.is_empty())
    {
        did.push(':');
        did.push_str(&segment.replace(':', "%3A"));
    }
    Some(did)
}

/// The DID document of [`did_web`]: every published key as a JsonWebKey2020 verification
/// method `<did>#<key id>`, usable for assertions (credential signatures).
pub async fn did_document(ctx: &Context) -> Result<Option<Value>, Internal> {
    let Some(did) = did_web(ctx) else {
        return Ok(None);
    };
    let keys = jwks(ctx).await?;
    let methods: Vec<Value> = keys["keys"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|jwk| {
            json!({
                "id": format!("{did}#{}", jwk["kid"].as_str().unwrap_or_default()),
                "type": "JsonWebKey2020",
                "controller": did,
                "publicKeyJwk": jwk,
            })
        })
        .collect();
    let ids: Vec<Value> = methods.iter().map(|method| method["id"].clone()).collect();
    Ok(Some(json!({
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/suites/jws-2020/v1"],
        "id": did,
        "verificationMethod": methods,
        "assertionMethod": ids,
    })))
}
