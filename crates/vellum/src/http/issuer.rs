//! The credential issuer: credential offers by reference, nonces for key proofs, and the
//! credential endpoint.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::middleware;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::extract::CredentialRequest;
use super::responses::{json_no_store, no_store, with_dpop_nonce};
use super::routes::Routes;
use crate::errors::{CredentialError, OAuthError};
use crate::issuance::{Answer, CredentialResponse};
use crate::{encryption, issuance, oauth, offers};

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
    credential_response(issuance::request_credential(&ctx, request).await?)
}

async fn deferred_credential(
    State(ctx): State<AppState>,
    CredentialRequest(request): CredentialRequest,
) -> Result<Response, CredentialError> {
    credential_response(issuance::request_deferred(&ctx, request).await?)
}

async fn notification(
    State(ctx): State<AppState>,
    CredentialRequest(request): CredentialRequest,
) -> Result<Response, CredentialError> {
    issuance::notify(&ctx, request).await?;
    Ok(no_store(StatusCode::NO_CONTENT.into_response()))
}

/// 200 with the credentials, or 202 with the transaction to ask about again; as JSON, or as the
/// JWE the wallet asked for (`application/jwt`).
fn credential_response(answer: Answer) -> Result<Response, CredentialError> {
    let status = match answer.response {
        CredentialResponse::Deferred { .. } => StatusCode::ACCEPTED,
        CredentialResponse::Issued { .. } => StatusCode::OK,
    };
    let mut response = match &answer.encryption {
        Some(encryption) => {
            let sealed = encryption::seal(encryption, &answer.response)?;
            no_store(([(CONTENT_TYPE, encryption::MEDIA_TYPE)], sealed).into_response())
        }
        None => json_no_store(answer.response),
    };
    *response.status_mut() = status;
    Ok(response)
}
