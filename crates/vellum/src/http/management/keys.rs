//! `/api/v1/keys`: managed signing keys and development certificates for them.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::{created, key_id};
use crate::errors::ApiError;
use crate::http::AppState;
use crate::http::extract::{ApiJson, ApiKey};
use crate::http::routes::Routes;
use crate::keys::{self, CertificateRequest, GenerateKeyRequest, ImportKeyRequest};

pub fn routes() -> Routes {
    Routes::new()
        .get("/keys", list_keys)
        .post("/keys", generate_key)
        .post("/keys/import", import_key)
        .get("/keys/{keyId}", get_key)
        .post("/keys/{keyId}/certificates", issue_certificate)
}

async fn list_keys(_: ApiKey, State(ctx): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(keys::list_keys(&ctx).await?).into_response())
}

async fn generate_key(
    _: ApiKey,
    State(ctx): State<AppState>,
    ApiJson(request): ApiJson<GenerateKeyRequest>,
) -> Result<Response, ApiError> {
    Ok(created(keys::generate_key(&ctx, request).await?))
}

async fn import_key(
    _: ApiKey,
    State(ctx): State<AppState>,
    ApiJson(request): ApiJson<ImportKeyRequest>,
) -> Result<Response, ApiError> {
    Ok(created(keys::import_key(&ctx, request).await?))
}

async fn get_key(
    _: ApiKey,
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(keys::get_key(&ctx, &key_id(&id)?).await?).into_response())
}

async fn issue_certificate(
    _: ApiKey,
    State(ctx): State<AppState>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<CertificateRequest>,
) -> Result<Response, ApiError> {
    Ok(created(
        keys::issue_certificate(&ctx, &key_id(&id)?, request).await?,
    ))
}
