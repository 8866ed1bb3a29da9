//! The authorization code grant (RFC 6749 §4.1.3, OID4VCI 1.0 §6): the code is exchanged once,
//! by the client it was issued to, with the redirect_uri of its request and the PKCE verifier of
//! its challenge (RFC 7636), and with a proof by the DPoP key the request was bound to, if any.
//! A code presented again revokes the tokens it produced (RFC 6749 §4.1.2).

use serde_json::{Value, json};

use super::{Failure, TokenResponse};
use super::{attestation, authorization, refresh};
use crate::clock::Millis;
use crate::context::Context;
use crate::errors::OAuthError;
use crate::events;
use crate::protocol::OPENID_CREDENTIAL;
use crate::secrets::{hash_secret, random_token};
use crate::store::{
    Applied, AuthorizationRequestRecord, GrantKind, GrantRecord, GrantState, NewAccessToken,
    SessionRecord,
};

/// What the token request brings to exchange the code.
pub(super) struct Exchange<'a> {
    pub client_id: Option<&'a str>,
    pub attestation: attestation::Presented,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
    pub dpop: Option<String>,
    /// The request as the `requested_token` event records it.
    pub recorded: Value,
}

pub(super) async fn redeem(
    ctx: &Context,
    session: &SessionRecord,
    grant: &GrantRecord,
    request: &AuthorizationRequestRecord,
    exchange: Exchange<'_>,
    now: Millis,
) -> Result<TokenResponse, Failure> {
    let invalid = |why: &str| OAuthError::InvalidGrant(why.to_owned());
    if grant.kind != GrantKind::AuthorizationCode {
        return Err(invalid("unknown authorization code").into());
    }
    if grant.state != GrantState::Unused {
        // RFC 6749 §4.1.2: a code used twice may have been stolen; what it gave is taken back.
        let error = invalid(
            "the authorization code has already been used; the tokens issued with it are revoked",
        );
        let event = super::failed(session, &error, now);
        ctx.store.revoke_request(&request.id, &[event]).await?;
        return Err(Failure {
            error,
            recorded: true,
        });
    }
    if grant.expires_at.is_none_or(|expires_at| expires_at <= now) {
        return Err(invalid("the authorization code has expired").into());
    }
    let parameters = authorization::kept_parameters(request)?;
    attestation::same_client(
        ctx,
        exchange.attestation,
        exchange.client_id,
        &request.client_id,
        parameters.attested_key.as_deref(),
        "authorization code",
        now,
    )
    .await?;
    if exchange.redirect_uri != Some(parameters.redirect_uri.as_str()) {
        return Err(invalid("redirect_uri is not the one of the authorization request").into());
    }
    let verifier = exchange.code_verifier.ok_or_else(|| {
        OAuthError::InvalidRequest("code_verifier is missing (PKCE is required)".into())
    })?;
    if !authorization::verifier_matches(verifier, &parameters.code_challenge) {
        return Err(invalid("code_verifier does not match the code_challenge (PKCE)").into());
    }
    let dpop_jkt =
        super::key_binding(ctx, exchange.dpop, parameters.dpop_jkt.as_deref(), now).await?;

    let settings = &ctx.config.authorization;
    let refresh = settings.refresh_tokens.then(|| {
        let lifetime = i64::from(settings.refresh_token_ttl_seconds) * 1000;
        refresh::Issued::new(&request.id, now + lifetime, dpop_jkt.clone())
    });
    let token = random_token();
    let ttl = ctx.config.protocol.access_token_ttl_seconds;
    let token_type = if dpop_jkt.is_some() { "DPoP" } else { "Bearer" };
    let new_token = NewAccessToken {
        hash: hash_secret(&token),
        expires_at: now + i64::from(ttl) * 1000,
        dpop_jkt,
        refresh: refresh.as_ref().map(|issued| issued.grant.clone()),
    };
    let event = events::new(
        session.id,
        events::REQUESTED_TOKEN,
        now,
        json!({ "tokenRequest": exchange.recorded }),
    );
    match ctx
        .store
        .redeem_grant(session.id, grant.id, &new_token, now, &[event])
        .await?
    {
        Applied::Yes => Ok(TokenResponse {
            access_token: token,
            token_type,
            expires_in: ttl,
            refresh_token: refresh.map(|issued| issued.token),
            authorization_details: parameters
                .authorization_details
                .as_ref()
                .map(|details| with_identifiers(details, &session.credential_configuration_id)),
        }),
        Applied::Stale => Err(invalid(
            "the authorization code cannot be redeemed: it was used, or the session ended",
        )
        .into()),
    }
}

/// The requested `authorization_details`, each with the identifier of the one dataset this
/// session issues (OID4VCI 1.0 §6.2), which the credential request may then name.
fn with_identifiers(details: &Value, configuration: &str) -> Value {
    Value::Array(
        details
            .as_array()
            .into_iter()
            .flatten()
            .filter(|detail| detail["type"] == OPENID_CREDENTIAL)
            .map(|detail| {
                json!({
                    "type": OPENID_CREDENTIAL,
                    "credential_configuration_id": detail["credential_configuration_id"],
                    "credential_identifiers": [configuration],
                })
            })
            .collect(),
    )
}
