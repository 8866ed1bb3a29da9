//! The wallet-facing OID4VCI endpoints and the discovery documents.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use super::extract::{CredentialRequest, Token};
use super::responses::json_no_store;
use crate::context::Context;
use crate::errors::{CredentialError, OAuthError};
use crate::{issuance, metadata, oauth, offers};

pub fn router(ctx: &Context) -> Router<AppState> {
    Router::new()
        .route("/jwks", get(jwks))
        .route("/did.json", get(did_document))
        .route("/credential-offer/{handle}", get(get_credential_offer))
        .route("/token", post(token))
        .route("/nonce", post(nonce))
        .route("/credential", post(credential))
        .layer(DefaultBodyLimit::max(ctx.config.http.protocol_body_limit))
        .merge(health_router())
}

/// Readiness, served by every instance whatever its roles.
pub fn health_router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

/// RFC 8615 well-known URIs: the issuer's path goes after the well-known segment.
pub fn well_known_router(ctx: &Context) -> Router<AppState> {
    let path = &ctx.base_path;
    let router = Router::new()
        .route(
            &format!("/.well-known/openid-credential-issuer{path}"),
            get(credential_issuer_metadata),
        )
        .route(
            &format!("/.well-known/oauth-authorization-server{path}"),
            get(authorization_server_metadata),
        )
        .route(
            &format!("/.well-known/jwt-vc-issuer{path}"),
            get(jwt_vc_issuer_metadata),
        );
    // did:web resolves a DID without a path here, and one with a path to <path>/did.json (the
    // protocol router's /did.json).
    if path.is_empty() {
        router.route("/.well-known/did.json", get(did_document))
    } else {
        router
    }
}

async fn credential_issuer_metadata(State(ctx): State<AppState>) -> Response {
    Json(metadata::credential_issuer(&ctx)).into_response()
}

async fn authorization_server_metadata(State(ctx): State<AppState>) -> Response {
    Json(metadata::authorization_server(&ctx)).into_response()
}

async fn jwt_vc_issuer_metadata(State(ctx): State<AppState>) -> Result<Response, OAuthError> {
    Ok(Json(metadata::jwt_vc_issuer(&ctx).await?).into_response())
}

/// The document of Vellum's did:web.
async fn did_document(State(ctx): State<AppState>) -> Result<Response, OAuthError> {
    match metadata::did_document(&ctx).await? {
        Some(document) => Ok(Json(document).into_response()),
        None => Err(OAuthError::NotFound(
            "this issuer URL has no host to make a did:web of".into(),
        )),
    }
}

async fn jwks(State(ctx): State<AppState>) -> Result<Response, OAuthError> {
    let mut response = Json(metadata::jwks(&ctx).await?).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/jwk-set+json"),
    );
    Ok(response)
}

/// Ready when the database answers.
async fn health(State(ctx): State<AppState>) -> Response {
    match ctx.store.ping().await {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(error) => {
            tracing::warn!(%error, "health check: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}

async fn get_credential_offer(
    State(ctx): State<AppState>,
    Path(handle): Path<String>,
) -> Result<Response, OAuthError> {
    Ok(json_no_store(offers::resolve_offer(&ctx, &handle).await?))
}

async fn token(
    State(ctx): State<AppState>,
    Token { request, headers }: Token,
) -> Result<Response, OAuthError> {
    Ok(json_no_store(oauth::token(&ctx, request, &headers).await?))
}

async fn nonce(State(ctx): State<AppState>) -> Response {
    json_no_store(oauth::nonce(&ctx))
}

async fn credential(
    State(ctx): State<AppState>,
    request: CredentialRequest,
) -> Result<Response, CredentialError> {
    let response =
        issuance::request_credential(&ctx, request.access_token.as_deref(), request.body).await?;
    Ok(json_no_store(response))
}
