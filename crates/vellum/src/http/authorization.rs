//! The authorization server: pushed authorization requests, the authorization endpoint and the
//! identity provider's callback (browser redirects), the token endpoint (with a DPoP-Nonce on
//! every answer of the endpoints that take DPoP proofs), and the wallet attestation challenge.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::extract::{PushedAuthorization, QueryPairs, Token};
use super::responses::{json_no_store, no_store, with_attestation_challenge, with_dpop_nonce};
use super::routes::Routes;
use crate::errors::OAuthError;
use crate::oauth;

pub fn routes(ctx: &AppState) -> Routes {
    let proven = Routes::new()
        .post("/par", push)
        .post("/token", token)
        .map(|router| {
            router
                .layer(middleware::from_fn_with_state(ctx.clone(), with_dpop_nonce))
                .layer(middleware::from_fn_with_state(
                    ctx.clone(),
                    with_attestation_challenge,
                ))
        });
    Routes::new()
        .get("/authorize", authorize)
        .get("/authorize/callback", callback)
        .post("/challenge", challenge)
        .merge(proven)
        .map(|router| router.layer(DefaultBodyLimit::max(ctx.config.http.protocol_body_limit)))
}

async fn push(
    State(ctx): State<AppState>,
    PushedAuthorization {
        parameters,
        dpop,
        attestation,
    }: PushedAuthorization,
) -> Result<Response, OAuthError> {
    let pushed = oauth::authorization::push(&ctx, parameters, dpop, attestation).await?;
    let mut response = json_no_store(pushed);
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}

async fn authorize(
    State(ctx): State<AppState>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Response, OAuthError> {
    redirect(&oauth::authorization::authorize(&ctx, pairs).await?)
}

async fn callback(
    State(ctx): State<AppState>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Response, OAuthError> {
    redirect(&oauth::authorization::callback(&ctx, pairs).await?)
}

/// 302 to `location`, never cached (it carries codes and states).
fn redirect(location: &str) -> Result<Response, OAuthError> {
    let location = HeaderValue::from_str(location).map_err(|_| {
        OAuthError::Internal(crate::errors::Internal::msg(
            "a redirect URL is not a header value",
        ))
    })?;
    let mut response = StatusCode::FOUND.into_response();
    response.headers_mut().insert(LOCATION, location);
    Ok(no_store(response))
}

async fn challenge(State(ctx): State<AppState>) -> Response {
    json_no_store(oauth::attestation::challenge(&ctx))
}

async fn token(
    State(ctx): State<AppState>,
    Token { request, headers }: Token,
) -> Result<Response, OAuthError> {
    Ok(json_no_store(oauth::token(&ctx, request, headers).await?))
}
