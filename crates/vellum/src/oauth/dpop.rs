//! DPoP (RFC 9449): proofs of possession of the wallet's key, checked at the token endpoint (which
//! then binds the access token to that key) and wherever a bound token is presented; server
//! nonces (`DPoP-Nonce`), stateless like key-proof nonces; each proof's `jti` used once, across
//! every instance, through the store.

use serde_json::Value;
use sha2::{Digest, Sha256};
use vellum_formats::jose::{self, Jwk, UnverifiedJws};

use super::nonces;
use crate::clock::Millis;
use crate::context::Context;
use crate::errors::Internal;
use crate::secrets::{Purpose, hash_secret};
use crate::store::{Applied, StoreError};

/// The `typ` of a DPoP proof (RFC 9449 §4.2).
pub const DPOP_TYP: &str = "dpop+jwt";

/// The header carrying a server nonce (RFC 9449 §8).
pub const NONCE_HEADER: &str = "DPoP-Nonce";

/// Why a proof is refused: the wallet fixes the proof (`invalid_dpop_proof`), or retries with the
/// nonce of the `DPoP-Nonce` header (`use_dpop_nonce`).
#[derive(Debug)]
pub enum DpopFailure {
    Invalid(String),
    UseNonce(String),
    Internal(Internal),
}

impl From<StoreError> for DpopFailure {
    fn from(error: StoreError) -> Self {
        DpopFailure::Internal(error.into())
    }
}

/// The request a proof must be made for.
pub struct Target<'a> {
    pub method: &'static str,
    /// The endpoint's absolute URL, as wallets are told it.
    pub url: &'a str,
    /// The access token presented with the proof, whose hash the proof must carry (`ath`).
    pub access_token: Option<&'a str>,
}

/// A proof that has passed every check but the single use of its `jti`.
pub struct Proof {
    /// RFC 7638 thumbprint of the proof's key: what an access token is bound to (`cnf.jkt`).
    pub jkt: String,
    jti_hash: String,
    /// Until when a replay must be recognised: after it, `iat` alone refuses the proof.
    remember_until: Millis,
}

/// A fresh DPoP nonce, for the `DPoP-Nonce` header.
pub fn nonce(ctx: &Context) -> String {
    let ttl = i64::from(ctx.config.dpop.nonce_ttl_seconds) * 1000;
    nonces::issue(&ctx.secrets, Purpose::DpopNonce, ctx.clock.now() + ttl)
}

/// Checks a proof (RFC 9449 §4.3) for `target`, then records its `jti` as used.
pub async fn verify(
    ctx: &Context,
    proof: &str,
    target: &Target<'_>,
    now: Millis,
) -> Result<String, DpopFailure> {
    let proof = check(ctx, proof, target, now)?;
    match ctx
        .store
        .record_use(&proof.jti_hash, proof.remember_until)
        .await?
    {
        Applied::Yes => Ok(proof.jkt),
        Applied::Stale => Err(DpopFailure::Invalid(
            "this DPoP proof has already been used; send a new one for every request".into(),
        )),
    }
}

/// Every check that needs no store: shape, header, signature, method, URL, time, token hash and
/// nonce.
pub fn check(
    ctx: &Context,
    proof: &str,
    target: &Target<'_>,
    now: Millis,
) -> Result<Proof, DpopFailure> {
    let invalid = |why: &str| DpopFailure::Invalid(format!("the DPoP proof {why}"));
    let jws =
        UnverifiedJws::parse(proof).map_err(|error| invalid(&format!("is malformed: {error}")))?;
    if jws.header.get("typ").and_then(Value::as_str) != Some(DPOP_TYP) {
        return Err(invalid(&format!("must have typ {DPOP_TYP}")));
    }
    // The client's alg is not repeated back: it reaches the event log.
    let algorithm = jws
        .algorithm()
        .map_err(|_| invalid("has an alg this issuer does not support"))?;
    if !ctx.config.dpop.algorithms().contains(&algorithm) {
        return Err(invalid(&format!(
            "uses alg {algorithm}, not one of dpop_signing_alg_values_supported"
        )));
    }
    let jwk = jws
        .header
        .get("jwk")
        .ok_or_else(|| invalid("has no jwk header"))
        .and_then(|jwk| Jwk::from_value(jwk).map_err(|error| invalid(&format!("jwk: {error}"))))?;
    if jwk.is_private() {
        return Err(invalid("carries a private key"));
    }
    jws.verify_with(&jwk)
        .map_err(|error| invalid(&format!("signature does not verify: {error}")))?;

    let claims = &jws.payload;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let jti = text("jti")
        .filter(|jti| !jti.is_empty() && jti.len() <= 256)
        .ok_or_else(|| invalid("needs a jti of 1-256 characters"))?;
    if text("htm") != Some(target.method) {
        return Err(invalid(&format!(
            "is not for this method (htm must be {})",
            target.method
        )));
    }
    if !same_resource(text("htu"), target.url) {
        return Err(invalid(&format!(
            "is not for this endpoint (htu must be {})",
            target.url
        )));
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid("has no numeric iat"))?;
    let now_seconds = now.div_euclid(1000);
    if iat > now_seconds + i64::from(ctx.config.dpop.proof_max_future_seconds) {
        return Err(invalid("has an iat in the future"));
    }
    let max_age = i64::from(ctx.config.dpop.proof_max_age_seconds);
    if iat < now_seconds - max_age {
        return Err(invalid("is too old (iat)"));
    }
    match (target.access_token, text("ath")) {
        (Some(token), Some(ath)) if ath == jose::b64(Sha256::digest(token.as_bytes())) => {}
        (Some(_), Some(_)) => return Err(invalid("ath is not the hash of this access token")),
        (Some(_), None) => return Err(invalid("has no ath (the access token's hash)")),
        (None, _) => {}
    }
    if ctx.config.dpop.require_nonce {
        let nonce = text("nonce").ok_or_else(|| {
            DpopFailure::UseNonce("a DPoP nonce is required: use the DPoP-Nonce header's".into())
        })?;
        nonces::check(&ctx.secrets, Purpose::DpopNonce, nonce, now)
            .map_err(|why| DpopFailure::UseNonce(format!("{why}: use the DPoP-Nonce header's")))?;
    }
    let jkt = jwk.thumbprint();
    Ok(Proof {
        jti_hash: hash_secret(&format!("dpop:{jkt}:{jti}")),
        jkt,
        remember_until: (iat.max(now_seconds) + max_age + 1) * 1000,
    })
}

/// RFC 9449 §4.3 step 9: the URIs compared without query and fragment, after normalisation
/// (scheme and host case, default ports, dot segments).
fn same_resource(htu: Option<&str>, expected: &str) -> bool {
    let parse = |text: &str| {
        url::Url::parse(text).ok().map(|mut url| {
            url.set_query(None);
            url.set_fragment(None);
            url
        })
    };
    match (htu.and_then(parse), parse(expected)) {
        (Some(htu), Some(expected)) => htu == expected,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::same_resource;

    #[test]
    fn htu_is_compared_without_query_and_after_normalisation() {
        let expected = "https://issuer.example/tenant/token";
        assert!(same_resource(
            Some("https://ISSUER.example:443/tenant/token"),
            expected
        ));
        assert!(same_resource(
            Some("https://issuer.example/tenant/token?x=1#f"),
            expected
        ));
        assert!(same_resource(
            Some("https://issuer.example/tenant/./token"),
            expected
        ));
        assert!(!same_resource(
            Some("http://issuer.example/tenant/token"),
            expected
        ));
        assert!(!same_resource(
            Some("https://issuer.example/token"),
            expected
        ));
        assert!(!same_resource(
            Some("https://other.example/tenant/token"),
            expected
        ));
        assert!(!same_resource(Some("/tenant/token"), expected));
        assert!(!same_resource(None, expected));
    }
}
