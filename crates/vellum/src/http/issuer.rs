//! The credential issuer: credential offers by reference, nonces for key proofs, and the
//! credential endpoint.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::extract::CredentialRequest;
use super::responses::{json_no_store, no_store, with_dpop_nonce};
use super::routes::Routes;
use crate::errors::{CredentialError, OAuthError};
use crate::issuance::CredentialResponse;
use crate::{issuance, oauth, offers};

pub fn routes(ctx: &AppState) -> Routes {
    let dpop_nonces = Routes::new()
        .post("/nonce", nonce)
        .post("/credential", credential)
        .post("/deferred-credential", deferred_credential)
        .post("/notification", notification)
        .map(|router| router.layer(middleware::from_fn_with_state(ctx.clone(), with_dpop_nonce)));
    Routes::new()
        .get("/credential-offer/{handle}", get_credential_offer)
        .merge(dpop_nonces)
        .map(|router| router.layer(DefaultBodyLimit::max(ctx.config.http.protocol_body_limit)))
}

async fn get_credential_offer(
    State(ctx): State<AppState>,
    Path(handle): Path<String>,
) -> Result<Response, OAuthError> {
    Ok(json_no_store(offers::resolve_offer(&ctx, &handle).await?))
}

async fn nonce(State(ctx): State<AppState>) -> Response {
    json_no_store(oauth::nonce(&ctx))
}

async fn credential(
    State(ctx): State<AppState>,
    CredentialRequest(request): CredentialRequest,
) -> Result<Response, CredentialError> {
    Ok(credential_response(
        issuance::request_credential(&ctx, request).await?,
    ))
}

async fn deferred_credential(
    State(ctx): State<AppState>,
    CredentialRequest(request): CredentialRequest,
) -> Result<Response, CredentialError> {
    Ok(credential_response(
        issuance::request_deferred(&ctx, request).await?,
    ))
}

async fn notification(
    State(ctx): State<AppState>,
    CredentialRequest(request): CredentialRequest,
) -> Result<Response, CredentialError> {
    issuance::notify(&ctx, request).await?;
    Ok(no_store(StatusCode::NO_CONTENT.into_response()))
}

/// 200 with the credentials, or 202 with the transaction to ask about again.
fn credential_response(response: CredentialResponse) -> Response {
    let deferred = matches!(response, CredentialResponse::Deferred { .. });
    let mut response = json_no_store(response);
    if deferred {
        *response.status_mut() = StatusCode::ACCEPTED;
    }
    response
}
