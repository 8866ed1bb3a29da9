//! Nonces, stateless until used: version, expiry and randomness under a MAC, one key per purpose
//! (key proofs' `c_nonce` from `POST /nonce`, DPoP's `DPoP-Nonce`). Any instance that shares the
//! master key checks them. Only a used key-proof nonce is stored (by the credential endpoint, in
//! the issuance transaction), so fetching one costs no write and a replay fails on the unique key.

use serde::Serialize;
use subtle::ConstantTimeEq;
use vellum_formats::jose;

use crate::clock::Millis;
use crate::secrets::{Purpose, Secrets};

#[derive(Debug, Serialize)]
pub struct NonceResponse {
    pub c_nonce: String,
}

const NONCE_VERSION: u8 = 1;
const NONCE_LEN: usize = 1 + 8 + 16 + 16;

/// A new nonce for `purpose`, valid until `expires_at`.
pub fn issue(secrets: &Secrets, purpose: Purpose, expires_at: Millis) -> String {
    let mut body = Vec::with_capacity(NONCE_LEN);
    body.push(NONCE_VERSION);
    body.extend_from_slice(&expires_at.to_be_bytes());
    let mut random = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random);
    body.extend_from_slice(&random);
    let mac = secrets.mac(purpose, &[&body]);
    body.extend_from_slice(&mac[..16]);
    jose::b64(body)
}

/// Checks a nonce's MAC and expiry; returns its expiry (how long to remember it as used).
pub fn check(
    secrets: &Secrets,
    purpose: Purpose,
    nonce: &str,
    now: Millis,
) -> Result<Millis, &'static str> {
    let bytes = jose::b64_decode(nonce).map_err(|_| "the nonce was not issued by this issuer")?;
    if bytes.len() != NONCE_LEN || bytes[0] != NONCE_VERSION {
        return Err("the nonce was not issued by this issuer");
    }
    let (body, mac) = bytes.split_at(NONCE_LEN - 16);
    let expected = secrets.mac(purpose, &[body]);
    if !bool::from(mac.ct_eq(&expected[..16])) {
        return Err("the nonce was not issued by this issuer");
    }
    let expires_at = Millis::from_be_bytes(body[1..9].try_into().map_err(|_| "malformed nonce")?);
    if expires_at <= now {
        return Err("the nonce has expired");
    }
    Ok(expires_at)
}
