//! The authorization server: the token endpoint (the authorization endpoint, PAR and DPoP
//! nonces join it).

use axum::extract::{DefaultBodyLimit, State};
use axum::middleware;
use axum::response::Response;

use super::AppState;
use super::extract::Token;
use super::responses::{json_no_store, with_dpop_nonce};
use super::routes::Routes;
use crate::errors::OAuthError;
use crate::oauth;

pub fn routes(ctx: &AppState) -> Routes {
    Routes::new().post("/token", token).map(|router| {
        router
            .layer(DefaultBodyLimit::max(ctx.config.http.protocol_body_limit))
            .layer(middleware::from_fn_with_state(ctx.clone(), with_dpop_nonce))
    })
}

async fn token(
    State(ctx): State<AppState>,
    Token { request, headers }: Token,
) -> Result<Response, OAuthError> {
    Ok(json_no_store(oauth::token(&ctx, request, headers).await?))
}
