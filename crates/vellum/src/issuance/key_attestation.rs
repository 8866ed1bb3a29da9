//! Key attestations (OID4VCI 1.0 Annex D): a wallet provider, trusted as for wallet
//! attestations, vouches for the holder keys and how they are kept. One comes in a JWT proof's
//! `key_attestation` header (the proof signed by one of the keys it attests) or as the
//! `attestation` proof type on its own; either way each attested key gets a credential.

use serde_json::Value;
use vellum_formats::jose::{Jwk, UnverifiedJws};

use crate::clock::Millis;
use crate::config::KeyAttestationsRequired;
use crate::context::Context;
use crate::errors::CredentialError;
use crate::oauth::attestation::signed_by_wallet_provider;

/// The `typ` of a key attestation.
pub const TYP: &str = "key-attestation+jwt";

/// A key attestation that passed every check: the keys it attests and the nonce it carries.
pub struct Attested {
    pub keys: Vec<Jwk>,
    pub nonce: String,
}

fn invalid(why: impl AsRef<str>) -> CredentialError {
    CredentialError::InvalidProof(format!("the key attestation {}", why.as_ref()))
}

/// Checks a key attestation for a request of `configuration_id`: typed, signed by a trusted
/// wallet provider with an accepted alg, issued (and, as a JWT proof's header, with an expiry)
/// and not expired, attesting 1 to `batch_size` public keys, carrying a nonce, and meeting the
/// configuration's `key_attestations_required`.
pub fn check(
    ctx: &Context,
    configuration_id: &str,
    compact: &str,
    needs_exp: bool,
    now: Millis,
) -> Result<Attested, CredentialError> {
    let jws = UnverifiedJws::parse(compact).map_err(|_| invalid("is not a compact JWS"))?;
    if jws.header.get("typ").and_then(Value::as_str) != Some(TYP) {
        return Err(invalid(format!("must have typ {TYP}")));
    }
    let configuration = ctx.config.credential_configurations.get(configuration_id);
    let algorithm = jws
        .algorithm()
        .map_err(|_| invalid("has an alg this issuer does not support"))?;
    let allowed = configuration
        .map(|configuration| configuration.proof_algorithms())
        .unwrap_or_default();
    if !allowed.contains(&algorithm) {
        return Err(invalid(format!(
            "uses alg {algorithm}, which is not in proof_signing_alg_values_supported"
        )));
    }
    signed_by_wallet_provider(ctx, &jws, algorithm, now).map_err(invalid)?;

    let claims = &jws.payload;
    let seconds = now.div_euclid(1000);
    let future = i64::from(ctx.config.protocol.proof_max_future_seconds);
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid("has no numeric iat"))?;
    if iat > seconds + future {
        return Err(invalid("is issued in the future"));
    }
    match claims.get("exp") {
        Some(exp) => {
            let exp = exp
                .as_i64()
                .ok_or_else(|| invalid("has an exp that is not a number"))?;
            if exp <= seconds {
                return Err(invalid("has expired"));
            }
        }
        None if needs_exp => return Err(invalid("in a JWT proof needs an exp")),
        None => {}
    }
    let batch_size = usize::try_from(ctx.config.protocol.batch_size).unwrap_or(1);
    let keys = claims
        .get("attested_keys")
        .and_then(Value::as_array)
        .filter(|keys| !keys.is_empty() && keys.len() <= batch_size)
        .ok_or_else(|| {
            invalid(format!(
                "needs attested_keys: 1 to {batch_size} keys (batch_credential_issuance)"
            ))
        })?
        .iter()
        .map(|key| match Jwk::from_value(key) {
            Ok(jwk) if !jwk.is_private() => Ok(jwk),
            Ok(_) => Err(invalid("attests a private key")),
            Err(_) => Err(invalid("has an attested key that is no usable JWK")),
        })
        .collect::<Result<Vec<Jwk>, _>>()?;
    if let Some(required) = configuration.and_then(|c| c.key_attestations_required.as_ref()) {
        meets(claims, required)?;
    }
    // This issuer has a nonce endpoint: the attestation carries one of its nonces.
    let nonce = claims
        .get("nonce")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("has no nonce; fetch one from the nonce endpoint"))?
        .to_owned();
    Ok(Attested { keys, nonce })
}

/// The attack potential resistance the configuration accepts: for each list it names, the
/// attestation names one of its values.
fn meets(
    claims: &serde_json::Map<String, Value>,
    required: &KeyAttestationsRequired,
) -> Result<(), CredentialError> {
    for (name, accepted) in [
        ("key_storage", &required.key_storage),
        ("user_authentication", &required.user_authentication),
    ] {
        let Some(accepted) = accepted else { continue };
        let asserted = claims.get(name).and_then(Value::as_array);
        let meets = asserted.is_some_and(|asserted| {
            asserted
                .iter()
                .filter_map(Value::as_str)
                .any(|value| accepted.iter().any(|accepted| accepted == value))
        });
        if !meets {
            return Err(invalid(format!(
                "does not assert a {name} this credential configuration accepts ({})",
                accepted.join(", ")
            )));
        }
    }
    Ok(())
}
