//! The credential issuer: credential offers by reference, nonces for key proofs, and the
//! credential endpoint.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::response::Response;

use super::AppState;
use super::extract::CredentialRequest;
use super::responses::json_no_store;
use super::routes::Routes;
use crate::context::Context;
use crate::errors::{CredentialError, OAuthError};
use crate::{issuance, oauth, offers};

pub fn routes(ctx: &Context) -> Routes {
    Routes::new()
        .get("/credential-offer/{handle}", get_credential_offer)
        .post("/nonce", nonce)
        .post("/credential", credential)
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
    request: CredentialRequest,
) -> Result<Response, CredentialError> {
    let response =
        issuance::request_credential(&ctx, request.access_token.as_deref(), request.body).await?;
    Ok(json_no_store(response))
}
