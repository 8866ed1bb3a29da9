//! Wallet attestation as client authentication (draft-ietf-oauth-attestation-based-client-auth,
//! HAIP 1.0 §4.3): the wallet presents a Client Attestation, a JWT from a wallet provider the
//! operator trusts naming the wallet's `client_id` (`sub`) and its instance key (`cnf.jwk`), and a
//! Client Attestation PoP signed by that key for this issuer, at the PAR and token endpoints.
//! Each PoP is accepted once across every instance (its `jti`, through the store); challenges from
//! the challenge endpoint are stateless, like DPoP nonces.

use serde::Serialize;
use serde_json::Value;
use vellum_formats::jose::{Algorithm, Jwk, UnverifiedJws};
use vellum_formats::x509;

use super::nonces;
use crate::clock::Millis;
use crate::context::Context;
use crate::errors::OAuthError;
use crate::secrets::{Purpose, hash_secret};
use crate::store::Applied;

/// The `typ` of a Client Attestation.
pub const ATTESTATION_TYP: &str = "oauth-client-attestation+jwt";
/// The `typ` of a Client Attestation PoP.
pub const POP_TYP: &str = "oauth-client-attestation-pop+jwt";
/// The response header carrying a fresh challenge.
pub const CHALLENGE_HEADER: &str = "OAuth-Client-Attestation-Challenge";

/// The two headers as a request carried them.
#[derive(Debug, Default)]
pub struct Presented {
    pub attestation: Option<String>,
    pub pop: Option<String>,
}

/// A wallet that proved its attestation: the client it is, and its instance key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedClient {
    pub client_id: String,
    /// RFC 7638 thumbprint of the attested key (`cnf.jwk`).
    pub key_thumbprint: String,
}

/// The challenge endpoint's answer.
#[derive(Debug, Serialize)]
pub struct ChallengeResponse {
    pub attestation_challenge: String,
}

/// `POST /challenge`: a challenge valid for `client_attestation.challenge_ttl_seconds`.
pub fn challenge(ctx: &Context) -> ChallengeResponse {
    let ttl = i64::from(ctx.config.client_attestation.challenge_ttl_seconds) * 1000;
    ChallengeResponse {
        attestation_challenge: nonces::issue(
            &ctx.secrets,
            Purpose::AttestationChallenge,
            ctx.clock.now() + ttl,
        ),
    }
}

/// The client a request authenticates as: `None` for a request without attestation headers (a
/// public client, which the caller may refuse), the attested client when both headers pass
/// every check, an error otherwise.
pub async fn authenticate(
    ctx: &Context,
    presented: Presented,
    now: Millis,
) -> Result<Option<AttestedClient>, OAuthError> {
    let invalid = |why: String| OAuthError::InvalidClientAttestation(why);
    let (attestation, pop) = match (presented.attestation, presented.pop) {
        (None, None) => return Ok(None),
        (Some(attestation), Some(pop)) => (attestation, pop),
        _ => {
            return Err(invalid(
                "send both OAuth-Client-Attestation and OAuth-Client-Attestation-PoP".into(),
            ));
        }
    };
    let (client_id, key) = check_attestation(ctx, &attestation, now)?;
    let checked = check_pop(ctx, &pop, &client_id, &key, now)?;
    match ctx
        .store
        .record_use(&checked.jti_hash, checked.remember_until)
        .await?
    {
        Applied::Yes => Ok(Some(AttestedClient {
            client_id,
            key_thumbprint: key.thumbprint(),
        })),
        Applied::Stale => Err(invalid(
            "this client attestation PoP has already been used; send a new one with every request"
                .into(),
        )),
    }
}

/// The client a request of the authorization code flow authenticates as, refusing a public
/// client unless the operator allows them, and a client_id other than the attested one.
pub async fn require(
    ctx: &Context,
    presented: Presented,
    client_id: Option<&str>,
    now: Millis,
) -> Result<Option<AttestedClient>, OAuthError> {
    let attested = authenticate(ctx, presented, now).await?;
    match &attested {
        None if !ctx.config.client_attestation.allow_public_clients => {
            Err(OAuthError::InvalidClientAttestation(
                "this issuer requires wallet attestation: send OAuth-Client-Attestation and \
                 OAuth-Client-Attestation-PoP"
                    .into(),
            ))
        }
        Some(attested) if client_id.is_some_and(|id| id != attested.client_id) => {
            Err(OAuthError::InvalidClientAttestation(
                "client_id is not the client the wallet attestation names (sub)".into(),
            ))
        }
        _ => Ok(attested),
    }
}

/// A token request for a grant of an authorization request (its code, its refresh token): the
/// client it was issued to (`client_id`, or the attested wallet's `sub`) and, when the request
/// was attested, the same wallet instance. `what` names the grant in the errors.
pub async fn same_client(
    ctx: &Context,
    presented: Presented,
    client_id: Option<&str>,
    issued_to: &str,
    attested_key: Option<&str>,
    what: &str,
    now: Millis,
) -> Result<(), OAuthError> {
    let attested = require(ctx, presented, client_id, now).await?;
    let client_id = client_id.or(attested.as_ref().map(|client| client.client_id.as_str()));
    if client_id != Some(issued_to) {
        return Err(OAuthError::InvalidGrant(format!(
            "the {what} was issued to another client_id"
        )));
    }
    if let Some(key) = attested_key
        && attested
            .as_ref()
            .map(|client| client.key_thumbprint.as_str())
            != Some(key)
    {
        return Err(OAuthError::InvalidClientAttestation(format!(
            "the {what} must be used by the attested wallet instance it was issued to"
        )));
    }
    Ok(())
}

/// The attestation's signature by a trusted wallet provider, its type, lifetime and claims;
/// returns the client_id and the attested key.
fn check_attestation(
    ctx: &Context,
    compact: &str,
    now: Millis,
) -> Result<(String, Jwk), OAuthError> {
    let invalid =
        |why: &str| OAuthError::InvalidClientAttestation(format!("the client attestation {why}"));
    let jws = UnverifiedJws::parse(compact)
        .map_err(|error| invalid(&format!("is malformed: {error}")))?;
    if jws.header.get("typ").and_then(Value::as_str) != Some(ATTESTATION_TYP) {
        return Err(invalid(&format!("must have typ {ATTESTATION_TYP}")));
    }
    let settings = &ctx.config.client_attestation;
    let algorithm = jws
        .algorithm()
        .map_err(|_| invalid("has an alg this issuer does not support"))?;
    if !settings.algorithms().contains(&algorithm) {
        return Err(invalid(&format!(
            "uses alg {algorithm}, which is not accepted"
        )));
    }
    signed_by_wallet_provider(ctx, &jws, algorithm, now).map_err(|why| invalid(&why))?;
    let claims = &jws.payload;
    let seconds = now.div_euclid(1000);
    let future = i64::from(ctx.config.dpop.proof_max_future_seconds);
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid("has no numeric exp"))?;
    if exp <= seconds {
        return Err(invalid("has expired"));
    }
    for name in ["iat", "nbf"] {
        if let Some(value) = claims.get(name) {
            let time = value
                .as_i64()
                .ok_or_else(|| invalid(&format!("has a {name} that is not a number")))?;
            if time > seconds + future {
                return Err(invalid(&format!("is not valid yet ({name})")));
            }
        }
    }
    let client_id = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|sub| printable(sub))
        .ok_or_else(|| invalid("needs a sub (the client_id) of 1-255 printable characters"))?;
    let key = claims
        .get("cnf")
        .and_then(|cnf| cnf.get("jwk"))
        .ok_or_else(|| invalid("has no cnf.jwk (the wallet instance's key)"))
        .and_then(|jwk| {
            Jwk::from_value(jwk).map_err(|error| invalid(&format!("cnf.jwk: {error}")))
        })?;
    if key.is_private() {
        return Err(invalid("carries a private key in cnf.jwk"));
    }
    Ok((client_id.to_owned(), key))
}

/// Checks that `jws` is signed with `algorithm` by a wallet provider this issuer trusts: by the
/// leaf of its `x5c` chain to a trusted certificate, or by one of the trusted keys. The wallet
/// attestations of clients and the key attestations of holder keys are both signed so.
pub fn signed_by_wallet_provider(
    ctx: &Context,
    jws: &UnverifiedJws,
    algorithm: Algorithm,
    now: Millis,
) -> Result<(), String> {
    let settings = &ctx.config.client_attestation;
    let trusted = match jws.header.get("x5c") {
        // A certificate chain to a trusted anchor names the wallet provider's key.
        Some(x5c) => {
            let key = certified_key(settings.anchors(), x5c, now)?;
            key.algorithm().ok() == Some(algorithm) && jws.verify_with(&key).is_ok()
        }
        None => settings
            .keys()
            .iter()
            .any(|key| key.algorithm().ok() == Some(algorithm) && jws.verify_with(key).is_ok()),
    };
    if trusted {
        Ok(())
    } else {
        Err("is not signed by a wallet provider this issuer trusts".into())
    }
}

/// The key of the leaf of `x5c` (standard base64 DER certificates, leaf first), once the chain
/// verifies up to one of the trust anchors and every certificate is valid now.
fn certified_key(anchors: &[Vec<u8>], x5c: &Value, now: Millis) -> Result<Jwk, String> {
    use base64::Engine as _;
    let entries = x5c
        .as_array()
        .filter(|entries| !entries.is_empty() && entries.len() <= 8)
        .ok_or("has an x5c that is not a list of 1-8 certificates")?;
    let chain = entries
        .iter()
        .map(|entry| {
            entry
                .as_str()
                .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
                .ok_or("has an x5c entry that is not base64 DER")
        })
        .collect::<Result<Vec<Vec<u8>>, _>>()?;
    let seconds = now.div_euclid(1000);
    let chains_to = |anchor: &Vec<u8>| {
        let mut path = chain.clone();
        if path.last() != Some(anchor) {
            path.push(anchor.clone());
        }
        x509::verify_chain(&path, Some(seconds)).is_ok()
    };
    if !anchors.iter().any(chains_to) {
        return Err(
            "has an x5c chain to no certificate this issuer trusts, or one not valid now".into(),
        );
    }
    x509::leaf_public_jwk(&chain[0]).map_err(|_| "has an x5c leaf with an unsupported key".into())
}

/// A PoP that passed every check but the single use of its `jti`.
struct CheckedPop {
    jti_hash: String,
    remember_until: Millis,
}

/// The PoP's signature by the attested key, its audience (this issuer), freshness and challenge.
fn check_pop(
    ctx: &Context,
    compact: &str,
    client_id: &str,
    key: &Jwk,
    now: Millis,
) -> Result<CheckedPop, OAuthError> {
    let invalid = |why: &str| {
        OAuthError::InvalidClientAttestation(format!("the client attestation PoP {why}"))
    };
    let jws = UnverifiedJws::parse(compact)
        .map_err(|error| invalid(&format!("is malformed: {error}")))?;
    if jws.header.get("typ").and_then(Value::as_str) != Some(POP_TYP) {
        return Err(invalid(&format!("must have typ {POP_TYP}")));
    }
    let settings = &ctx.config.client_attestation;
    let algorithm = jws
        .algorithm()
        .map_err(|_| invalid("has an alg this issuer does not support"))?;
    if !settings.algorithms().contains(&algorithm) {
        return Err(invalid(&format!(
            "uses alg {algorithm}, which is not accepted"
        )));
    }
    jws.verify_with(key)
        .map_err(|_| invalid("is not signed by the key the attestation names (cnf.jwk)"))?;
    let claims = &jws.payload;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let audience_matches = match claims.get("aud") {
        Some(Value::String(aud)) => *aud == ctx.issuer_url,
        Some(Value::Array(values)) => values.iter().any(|aud| *aud == *ctx.issuer_url),
        _ => false,
    };
    if !audience_matches {
        return Err(invalid(&format!(
            "is not for this issuer (aud must be {})",
            ctx.issuer_url
        )));
    }
    let jti = text("jti")
        .filter(|jti| !jti.is_empty() && jti.len() <= 256)
        .ok_or_else(|| invalid("needs a jti of 1-256 characters"))?;
    // Earlier drafts name the client in iss and bound the PoP with exp; when sent, they must agree.
    if claims.get("iss").is_some() && text("iss") != Some(client_id) {
        return Err(invalid(
            "names another client in iss than the attestation's sub",
        ));
    }
    let seconds = now.div_euclid(1000);
    if let Some(exp) = claims.get("exp")
        && exp.as_i64().is_none_or(|exp| exp <= seconds)
    {
        return Err(invalid("has expired"));
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid("has no numeric iat"))?;
    if iat > seconds + i64::from(ctx.config.dpop.proof_max_future_seconds) {
        return Err(invalid("has an iat in the future"));
    }
    let max_age = i64::from(settings.pop_max_age_seconds);
    if iat < seconds - max_age {
        return Err(invalid("is too old (iat)"));
    }
    match text("challenge") {
        Some(challenge) => {
            nonces::check(&ctx.secrets, Purpose::AttestationChallenge, challenge, now).map_err(
                |why| {
                    OAuthError::UseAttestationChallenge(format!(
                        "{why}: fetch a new challenge from the challenge endpoint"
                    ))
                },
            )?;
        }
        None if settings.require_challenge => {
            return Err(OAuthError::UseAttestationChallenge(
                "the client attestation PoP must carry a challenge from the challenge endpoint"
                    .into(),
            ));
        }
        None => {}
    }
    Ok(CheckedPop {
        jti_hash: hash_secret(&format!("attestation-pop:{}:{jti}", key.thumbprint())),
        remember_until: (iat.max(seconds) + max_age + 1) * 1000,
    })
}

fn printable(text: &str) -> bool {
    !text.is_empty() && text.len() <= 255 && text.bytes().all(|byte| (0x20..=0x7e).contains(&byte))
}
