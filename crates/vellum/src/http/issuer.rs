//! The credential issuer: credential offers by reference, nonces for key proofs, and the
//! credential endpoint.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::middleware;
use axum::response::Response;

use super::AppState;
use super::extract::CredentialRequest;
use super::responses::{json_no_store, with_dpop_nonce};
use super::routes::Routes;
use crate::errors::{CredentialError, OAuthError};
use crate::{issuance, oauth, offers};

pub fn routes(ctx: &AppState) -> Routes {
    let dpop_nonces = Routes::new()
        .post("/nonce", nonce)
        .post("/credential", credential)
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
    Ok(json_no_store(
        issuance::request_credential(&ctx, request).await?,
    ))
}
