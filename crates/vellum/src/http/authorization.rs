//! The authorization server: the token endpoint (the authorization endpoint, PAR and DPoP
//! nonces join it).

use axum::extract::{DefaultBodyLimit, State};
use axum::response::Response;

use super::AppState;
use super::extract::Token;
use super::responses::json_no_store;
use super::routes::Routes;
use crate::context::Context;
use crate::errors::OAuthError;
use crate::oauth;

pub fn routes(ctx: &Context) -> Routes {
    Routes::new()
        .post("/token", token)
        .map(|router| router.layer(DefaultBodyLimit::max(ctx.config.http.protocol_body_limit)))
}

async fn token(
    State(ctx): State<AppState>,
    Token { request, headers }: Token,
) -> Result<Response, OAuthError> {
    Ok(json_no_store(oauth::token(&ctx, request, &headers).await?))
}
