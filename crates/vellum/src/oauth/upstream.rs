//! The OpenID providers holders log in at (`[authorization.providers.<id>]`): discovery and
//! signing keys fetched on first use and kept (metadata for an hour; keys until an ID token names
//! one that is not known, then fetched again: ID tokens come only from the provider's own token
//! endpoint, over a connection the issuer opened, so no client can make it fetch), the authorization
//! request the holder is sent with (state, nonce, PKCE S256), and the code exchanged for an ID
//! token that is checked (signature, iss, aud, azp, exp, iat, nonce) before its claims are used.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use vellum_formats::jose::{self, Jwk, UnverifiedJws};

use crate::clock::Millis;
use crate::config::{self, ProviderConfig};
use crate::context::{Context, KnownProvider, ProviderMetadata};
use crate::ids::ProviderId;

/// Metadata older than this is fetched again before use.
const METADATA_TTL: Millis = 3_600_000;
/// Clock difference tolerated in an ID token's `exp` and `iat`.
const SKEW_SECONDS: i64 = 60;
/// How much of a provider's answer is kept in an error (events and logs).
const MAX_QUOTED: usize = 200;

/// Why the provider could not be used or its answer was refused. `Refused` carries the
/// provider's own OAuth error (the holder refused, the code was bad); `Failed` everything else.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the OpenID provider answered {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        error: String,
        description: Option<String>,
    },
    #[error("{0}")]
    Failed(String),
}

/// What the holder is sent to the provider with.
pub struct LoginRequest<'a> {
    /// Our callback, registered at the provider.
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    pub code_verifier: &'a str,
}

fn provider<'a>(ctx: &'a Context, id: &ProviderId) -> Result<&'a ProviderConfig, UpstreamError> {
    ctx.config
        .authorization
        .providers
        .get(id.as_str())
        .ok_or_else(|| UpstreamError::Failed(format!("provider {id} is not configured")))
}

/// The URL of the provider's authorization endpoint for this login.
pub async fn login_url(
    ctx: &Context,
    id: &ProviderId,
    login: &LoginRequest<'_>,
) -> Result<String, UpstreamError> {
    let config = provider(ctx, id)?;
    let known = known(ctx, id, config).await?;
    let mut url = url::Url::parse(&known.metadata.authorization_endpoint)
        .map_err(|error| UpstreamError::Failed(format!("authorization_endpoint: {error}")))?;
    let challenge = jose::b64(Sha256::digest(login.code_verifier.as_bytes()));
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &config.client_id)
        .append_pair("redirect_uri", login.redirect_uri)
        .append_pair("scope", &config.scopes.join(" "))
        .append_pair("state", login.state)
        .append_pair("nonce", login.nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    Ok(url.into())
}

/// Exchanges the provider's code for an ID token and returns the token's claims, once checked.
pub async fn redeem(
    ctx: &Context,
    id: &ProviderId,
    code: &str,
    login: &LoginRequest<'_>,
    now: Millis,
) -> Result<Map<String, Value>, UpstreamError> {
    let config = provider(ctx, id)?;
    let known = known(ctx, id, config).await?;
    let response = ctx
        .provider_client
        .post(&known.metadata.token_endpoint)
        .basic_auth(
            form_encode(&config.client_id),
            Some(form_encode(config.client_secret.expose())),
        )
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", login.redirect_uri),
            ("code_verifier", login.code_verifier),
        ])
        .send()
        .await
        .map_err(|error| failed("token request", &error))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|error| failed("token response", &error))?;
    if !status.is_success() {
        return Err(refusal(&body).unwrap_or_else(|| {
            UpstreamError::Failed(format!("the token endpoint answered {status}"))
        }));
    }
    let id_token = body
        .get("id_token")
        .and_then(Value::as_str)
        .ok_or_else(|| UpstreamError::Failed("the token response has no id_token".into()))?;
    check_id_token(ctx, id, config, &known, id_token, login.nonce, now).await
}

/// RFC 6749 §2.3.1: the client id and secret are form-encoded before Basic authentication.
fn form_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn check_id_token(
    ctx: &Context,
    id: &ProviderId,
    config: &ProviderConfig,
    known: &KnownProvider,
    id_token: &str,
    nonce: &str,
    now: Millis,
) -> Result<Map<String, Value>, UpstreamError> {
    let bad = |why: &str| UpstreamError::Failed(format!("the ID token {why}"));
    let jws =
        UnverifiedJws::parse(id_token).map_err(|error| bad(&format!("is malformed: {error}")))?;
    let algorithm = jws.algorithm().map_err(|_| {
        bad("is signed with an algorithm this issuer does not verify (ES256, ES384, EdDSA)")
    })?;
    let kid = jws.header.get("kid").and_then(Value::as_str);
    let key = signing_key(ctx, id, known, kid, algorithm, now).await?;
    jws.verify_with(&key)
        .map_err(|_| bad("signature does not verify with the provider's key"))?;

    let claims = jws.payload;
    if claims.get("iss").and_then(Value::as_str) != Some(known.metadata.issuer.as_str()) {
        return Err(bad("was issued by another issuer (iss)"));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&config.client_id.as_str()) {
        return Err(bad("is not meant for this issuer (aud)"));
    }
    if audiences.len() > 1
        && claims.get("azp").and_then(Value::as_str) != Some(config.client_id.as_str())
    {
        return Err(bad(
            "has several audiences and another authorized party (azp)",
        ));
    }
    let seconds = now.div_euclid(1000);
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("has no exp"))?;
    if exp + SKEW_SECONDS <= seconds {
        return Err(bad("has expired (exp)"));
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("has no iat"))?;
    if iat > seconds + SKEW_SECONDS {
        return Err(bad("was issued in the future (iat)"));
    }
    if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
        return Err(bad("does not carry the nonce of this login"));
    }
    Ok(claims)
}

/// The provider key an ID token names, fetching the keys again when it is not known (the
/// provider has rotated its keys).
async fn signing_key(
    ctx: &Context,
    id: &ProviderId,
    known: &KnownProvider,
    kid: Option<&str>,
    algorithm: jose::Algorithm,
    now: Millis,
) -> Result<Jwk, UpstreamError> {
    let pick = |keys: &[(Option<String>, Jwk)]| {
        let matching: Vec<&Jwk> = keys
            .iter()
            .filter(|(key_id, jwk)| {
                jwk.algorithm() == Ok(algorithm) && (kid.is_none() || key_id.as_deref() == kid)
            })
            .map(|(_, jwk)| jwk)
            .collect();
        // Without a kid, only an unambiguous key will do.
        (matching.len() == 1).then(|| matching[0].clone())
    };
    if let Some(key) = pick(&known.keys) {
        return Ok(key);
    }
    let keys = fetch_keys(ctx, &known.metadata.jwks_uri).await?;
    let key = pick(&keys);
    ctx.providers.insert(
        id.clone(),
        KnownProvider {
            keys,
            keys_fetched_at: now,
            ..known.clone()
        },
    );
    key.ok_or_else(|| {
        UpstreamError::Failed("the ID token names a key the provider does not publish".into())
    })
}

/// The provider's metadata and keys: from the cache, or fetched (again, once stale).
async fn known(
    ctx: &Context,
    id: &ProviderId,
    config: &ProviderConfig,
) -> Result<KnownProvider, UpstreamError> {
    let now = ctx.clock.now();
    if let Some(known) = ctx.providers.get(id)
        && now - known.metadata_fetched_at < METADATA_TTL
    {
        return Ok(known);
    }
    let metadata = discover(ctx, config).await?;
    let keys = fetch_keys(ctx, &metadata.jwks_uri).await?;
    let known = KnownProvider {
        metadata,
        metadata_fetched_at: now,
        keys,
        keys_fetched_at: now,
    };
    ctx.providers.insert(id.clone(), known.clone());
    Ok(known)
}

/// OpenID Connect Discovery 1.0 §4: the document's issuer must be the configured one, and every
/// endpoint as trustworthy as it (https, or http on a loopback address).
async fn discover(
    ctx: &Context,
    config: &ProviderConfig,
) -> Result<ProviderMetadata, UpstreamError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        config.issuer.trim_end_matches('/')
    );
    let document = get_json(ctx, &url, "discovery").await?;
    let member = |name: &str| {
        document
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| UpstreamError::Failed(format!("the provider's discovery has no {name}")))
    };
    let metadata = ProviderMetadata {
        issuer: member("issuer")?,
        authorization_endpoint: member("authorization_endpoint")?,
        token_endpoint: member("token_endpoint")?,
        jwks_uri: member("jwks_uri")?,
    };
    if metadata.issuer != config.issuer {
        return Err(UpstreamError::Failed(format!(
            "the provider's discovery names issuer {:?}, not {:?}",
            quote(&metadata.issuer),
            config.issuer
        )));
    }
    for (name, url) in [
        ("authorization_endpoint", &metadata.authorization_endpoint),
        ("token_endpoint", &metadata.token_endpoint),
        ("jwks_uri", &metadata.jwks_uri),
    ] {
        if !config::trusted_url(url) {
            return Err(UpstreamError::Failed(format!(
                "the provider's {name} is not an https URL"
            )));
        }
    }
    Ok(metadata)
}

/// The keys of a JWK Set that this issuer can verify with (others, such as RSA keys, are
/// skipped), with their `kid`.
async fn fetch_keys(ctx: &Context, url: &str) -> Result<Vec<(Option<String>, Jwk)>, UpstreamError> {
    let set = get_json(ctx, url, "keys").await?;
    let keys = set
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| UpstreamError::Failed("the provider's JWK Set has no keys".into()))?;
    Ok(keys
        .iter()
        .filter(|key| {
            key.get("use")
                .and_then(Value::as_str)
                .is_none_or(|usage| usage == "sig")
        })
        .filter_map(|key| {
            let jwk = Jwk::from_value(key).ok().filter(|jwk| !jwk.is_private())?;
            let kid = key.get("kid").and_then(Value::as_str).map(str::to_owned);
            Some((kid, jwk))
        })
        .collect())
}

async fn get_json(ctx: &Context, url: &str, what: &str) -> Result<Value, UpstreamError> {
    let response = ctx
        .provider_client
        .get(url)
        .header("Accept", "application/json")
        .send()
        .await
        .map_err(|error| failed(what, &error))?;
    let status = response.status();
    if !status.is_success() {
        return Err(UpstreamError::Failed(format!(
            "the provider's {what} answered {status}"
        )));
    }
    response.json().await.map_err(|error| failed(what, &error))
}

fn failed(what: &str, error: &reqwest::Error) -> UpstreamError {
    let why = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else if error.is_decode() {
        "is not JSON".to_owned()
    } else {
        "failed".to_owned()
    };
    UpstreamError::Failed(format!("the provider's {what} {why}"))
}

/// The provider's OAuth error, from a token response or the callback's parameters.
pub fn refusal(parameters: &Value) -> Option<UpstreamError> {
    let error = parameters.get("error").and_then(Value::as_str)?;
    Some(UpstreamError::Refused {
        error: quote(error),
        description: parameters
            .get("error_description")
            .and_then(Value::as_str)
            .map(quote),
    })
}

/// A provider's text as it may be kept: printable ASCII, at most [`MAX_QUOTED`] characters.
fn quote(text: &str) -> String {
    text.chars()
        .filter(|c| (' '..='~').contains(c))
        .take(MAX_QUOTED)
        .collect()
}
