//! The refresh token grant (RFC 6749 §6): a wallet that logged in once gets new access tokens,
//! and so new credentials of the same data, without the holder logging in again. Each refresh
//! token is used once and replaced (rotation, RFC 9700 §4.14.2); all of one authorization's
//! refresh tokens end when its lifetime does, which rotation never extends. A refresh token used
//! twice may have been stolen: every token of the authorization is revoked. It is bound as the
//! code was: to its client (the attested wallet instance) and to the DPoP key of the tokens it
//! replaces (RFC 9449 §5).

use serde_json::{Value, json};

use super::{Failure, TokenResponse, attestation, authorization};
use crate::clock::Millis;
use crate::context::Context;
use crate::errors::OAuthError;
use crate::events;
use crate::secrets::{hash_secret, random_token};
use crate::store::{
    Applied, AuthorizationRequestRecord, GrantKind, GrantRecord, GrantState, NewAccessToken,
    NewGrant, SessionRecord,
};

/// A refresh token to give the wallet, and its grant to store.
pub struct Issued {
    pub token: String,
    pub grant: NewGrant,
}

impl Issued {
    /// A new refresh token of authorization request `request`, usable until `expires_at`, bound
    /// to the DPoP key `dpop_jkt` (if any).
    pub fn new(request: &str, expires_at: Millis, dpop_jkt: Option<String>) -> Issued {
        let token = random_token();
        Issued {
            grant: NewGrant {
                kind: GrantKind::RefreshToken,
                secret_hash: hash_secret(&token),
                tx_code: None,
                tx_code_mac: None,
                expires_at: Some(expires_at),
                request_id: Some(request.to_owned()),
                dpop_jkt,
            },
            token,
        }
    }
}

/// What the token request brings to use the refresh token.
pub(super) struct Exchange<'a> {
    pub client_id: Option<&'a str>,
    pub attestation: attestation::Presented,
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
    if grant.state != GrantState::Unused {
        let error = invalid(
            "the refresh token has already been used; every token of this authorization is revoked",
        );
        let event = super::failed(session, &error, now);
        ctx.store.revoke_request(&request.id, &[event]).await?;
        return Err(Failure {
            error,
            recorded: true,
        });
    }
    let Some(expires_at) = grant.expires_at.filter(|expires_at| *expires_at > now) else {
        return Err(invalid("the refresh token has expired: the holder must log in again").into());
    };
    let parameters = authorization::kept_parameters(request)?;
    attestation::same_client(
        ctx,
        exchange.attestation,
        exchange.client_id,
        &request.client_id,
        parameters.attested_key.as_deref(),
        "refresh token",
        now,
    )
    .await?;
    let dpop_jkt = super::key_binding(ctx, exchange.dpop, grant.dpop_jkt.as_deref(), now).await?;
    let next = Issued::new(&request.id, expires_at, dpop_jkt.clone());
    let token = random_token();
    let ttl = ctx.config.protocol.access_token_ttl_seconds;
    let token_type = if dpop_jkt.is_some() { "DPoP" } else { "Bearer" };
    let new_token = NewAccessToken {
        hash: hash_secret(&token),
        expires_at: now + i64::from(ttl) * 1000,
        dpop_jkt,
        refresh: Some(next.grant),
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
            authorization_details: None,
            refresh_token: Some(next.token),
        }),
        Applied::Stale => Err(invalid(
            "the refresh token cannot be used: it was used, or its session ended without success",
        )
        .into()),
    }
}
