//! Issued credentials: those of a session, and their status (revoke, suspend, reinstate), one
//! credential or every credential of a session at once; and the credentials still to come, a
//! session's deferred transaction, completed or failed by the operator's backend.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::deferred::{self, Resolution};
use crate::errors::ApiError;
use crate::http::AppState;
use crate::http::extract::{ApiJson, ApiKey};
use crate::http::routes::Routes;
use crate::sessions;
use crate::status::{self, StatusChange};

pub fn routes() -> Routes {
    Routes::new()
        .get("/sessions/{sessionId}/credentials", list_credentials)
        .post("/sessions/{sessionId}/credentials/status", change_session)
        .post("/credentials/{credentialId}/status", change_credential)
        .get("/sessions/{sessionId}/deferred", get_deferred)
        .post("/sessions/{sessionId}/deferred", resolve_deferred)
}

async fn list_credentials(
    _: ApiKey,
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let items = status::credentials(&ctx, sessions::parse_id(&id)?).await?;
    Ok(Json(json!({ "items": items })).into_response())
}

async fn change_session(
    _: ApiKey,
    State(ctx): State<AppState>,
    Path(id): Path<String>,
    ApiJson(change): ApiJson<StatusChange>,
) -> Result<Response, ApiError> {
    let items = status::change_session(&ctx, sessions::parse_id(&id)?, change).await?;
    Ok(Json(json!({ "items": items })).into_response())
}

async fn change_credential(
    _: ApiKey,
    State(ctx): State<AppState>,
    Path(id): Path<String>,
    ApiJson(change): ApiJson<StatusChange>,
) -> Result<Response, ApiError> {
    Ok(Json(status::change(&ctx, &id, change).await?).into_response())
}

async fn get_deferred(
    _: ApiKey,
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(deferred::view(&ctx, sessions::parse_id(&id)?).await?).into_response())
}

async fn resolve_deferred(
    _: ApiKey,
    State(ctx): State<AppState>,
    Path(id): Path<String>,
    ApiJson(resolution): ApiJson<Resolution>,
) -> Result<Response, ApiError> {
    let view = deferred::resolve(&ctx, sessions::parse_id(&id)?, resolution).await?;
    Ok(Json(view).into_response())
}
