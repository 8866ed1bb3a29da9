//! Encrypted credential requests and responses (OID4VCI 1.0 §8.2, §10): a wallet may send its
//! request as a JWE to the issuer's request key (`credential_request_encryption`), and ask for
//! the response as a JWE to a key of its own (`credential_response_encryption`). ECDH-ES on
//! P-256, A128GCM or A256GCM, DEFLATE optional. Errors are never encrypted.

use serde::Serialize;
use serde_json::{Map, Value, json};
use vellum_formats::jose::Jwk;
use vellum_formats::jwe::{self, ALG_ECDH_ES, ContentEncryption, JweError, ZIP_DEFLATE};

use crate::context::Context;
use crate::errors::{CredentialError, Internal};
use crate::limits;

/// The media type of an encrypted request or response.
pub const MEDIA_TYPE: &str = "application/jwt";

/// How the wallet wants its response encrypted.
#[derive(Debug, Clone)]
pub struct ResponseEncryption {
    jwk: Jwk,
    /// The jwk's `kid`, repeated in the JWE header so the wallet finds its key.
    kid: Option<String>,
    enc: ContentEncryption,
    compress: bool,
}

fn invalid(why: impl Into<String>) -> CredentialError {
    CredentialError::InvalidEncryptionParameters(why.into())
}

/// The request a wallet encrypted to the request key: its JSON, checked as any request body.
pub fn decrypt_request(ctx: &Context, body: &[u8]) -> Result<Value, CredentialError> {
    let compact = std::str::from_utf8(body)
        .map_err(|_| invalid("an application/jwt request must be a compact JWE"))?
        .trim();
    let header = jwe::protected_header(compact).map_err(|error| invalid(jwe_failure(&error)))?;
    if let Some(kid) = header.get("kid")
        && kid.as_str() != Some(ctx.request_key_id.as_str())
    {
        return Err(invalid(
            "the request is encrypted to a key other than credential_request_encryption's",
        ));
    }
    let limit = ctx.config.http.protocol_body_limit;
    let decrypted = jwe::decrypt(compact, &ctx.request_key, limit)
        .map_err(|error| invalid(jwe_failure(&error)))?;
    let value: Value = serde_json::from_slice(&decrypted.plaintext).map_err(|_| {
        CredentialError::InvalidCredentialRequest("the decrypted request is not JSON".into())
    })?;
    limits::check("", &value)
        .map_err(|error| CredentialError::InvalidCredentialRequest(error.to_string()))?;
    Ok(value)
}

/// Why a JWE was refused, in words that repeat nothing the client sent.
fn jwe_failure(error: &JweError) -> String {
    match error {
        JweError::UnsupportedAlgorithm(_) => format!("alg must be {ALG_ECDH_ES}"),
        JweError::UnsupportedEncryption(_) => "enc must be A128GCM or A256GCM".into(),
        JweError::UnsupportedCompression(_) => format!("zip must be {ZIP_DEFLATE} or absent"),
        JweError::Decryption => "the request does not decrypt with the request key".into(),
        other => format!("the JWE is not usable: {other}"),
    }
}

/// The response encryption a request asks for (`credential_response_encryption`), checked
/// before anything is issued: a request that came encrypted, or any request when encryption is
/// required, must ask for one.
pub fn requested(
    ctx: &Context,
    request: &Map<String, Value>,
    encrypted_request: bool,
) -> Result<Option<ResponseEncryption>, CredentialError> {
    let Some(asked) = request.get("credential_response_encryption") else {
        if ctx.config.encryption.required {
            return Err(invalid(
                "this issuer requires encrypted requests and responses: send the request as a \
                 JWE (credential_request_encryption) with credential_response_encryption",
            ));
        }
        if encrypted_request {
            return Err(invalid(
                "an encrypted request needs credential_response_encryption",
            ));
        }
        return Ok(None);
    };
    if ctx.config.encryption.required && !encrypted_request {
        return Err(invalid(
            "this issuer requires the request to be encrypted (credential_request_encryption)",
        ));
    }
    let asked = asked
        .as_object()
        .ok_or_else(|| invalid("credential_response_encryption must be an object"))?;
    let jwk = asked
        .get("jwk")
        .ok_or_else(|| invalid("credential_response_encryption.jwk is missing"))
        .and_then(|jwk| {
            Jwk::from_value(jwk)
                .map_err(|_| invalid("credential_response_encryption.jwk is no JWK"))
        })?;
    if jwk.kty != "EC" || jwk.crv != "P-256" || jwk.is_private() {
        return Err(invalid(
            "credential_response_encryption.jwk must be a public EC P-256 key",
        ));
    }
    match asked.get("jwk").and_then(|jwk| jwk.get("alg")) {
        None => {}
        Some(alg) if alg.as_str() == Some(ALG_ECDH_ES) => {}
        Some(_) => return Err(invalid(format!("the jwk's alg must be {ALG_ECDH_ES}"))),
    }
    let kid = match asked.get("jwk").and_then(|jwk| jwk.get("kid")) {
        None => None,
        Some(Value::String(kid)) if !kid.is_empty() && kid.len() <= 256 => Some(kid.clone()),
        Some(_) => {
            return Err(invalid(
                "the jwk's kid must be a string of 1-256 characters",
            ));
        }
    };
    let enc = match asked.get("enc").and_then(Value::as_str) {
        Some(enc) => ContentEncryption::parse(enc).map_err(|_| {
            invalid("credential_response_encryption.enc must be A128GCM or A256GCM")
        })?,
        None => return Err(invalid("credential_response_encryption.enc is missing")),
    };
    let compress = match asked.get("zip") {
        None => false,
        Some(zip) if zip.as_str() == Some(ZIP_DEFLATE) => true,
        Some(_) => {
            return Err(invalid(format!(
                "credential_response_encryption.zip must be {ZIP_DEFLATE} or absent"
            )));
        }
    };
    Ok(Some(ResponseEncryption {
        jwk,
        kid,
        enc,
        compress,
    }))
}

/// `response` as the JWE the wallet asked for.
pub fn seal(
    encryption: &ResponseEncryption,
    response: &impl Serialize,
) -> Result<String, Internal> {
    let plaintext = serde_json::to_vec(response).map_err(Internal::new)?;
    jwe::encrypt(
        &plaintext,
        &encryption.jwk,
        encryption.enc,
        encryption.kid.as_deref(),
        encryption.compress,
        None,
    )
    .map_err(|error| Internal::msg(format!("encrypting the response: {error}")))
}

/// The metadata members (OID4VCI 1.0 §12.2.4): `credential_request_encryption` and
/// `credential_response_encryption`.
pub fn metadata(ctx: &Context) -> (Value, Value) {
    let required = ctx.config.encryption.required;
    let encs: Vec<&str> = ContentEncryption::ALL
        .iter()
        .map(|enc| enc.as_str())
        .collect();
    let mut key = ctx.request_key.public_jwk().to_value();
    key["kid"] = Value::from(ctx.request_key_id.as_str());
    key["use"] = Value::from("enc");
    key["alg"] = Value::from(ALG_ECDH_ES);
    (
        json!({
            "jwks": {"keys": [key]},
            "enc_values_supported": encs,
            "zip_values_supported": [ZIP_DEFLATE],
            "encryption_required": required,
        }),
        json!({
            "alg_values_supported": [ALG_ECDH_ES],
            "enc_values_supported": encs,
            "zip_values_supported": [ZIP_DEFLATE],
            "encryption_required": required,
        }),
    )
}
