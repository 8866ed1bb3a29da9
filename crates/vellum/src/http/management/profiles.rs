//! `/api/v1/profiles`: credential profiles and their versions.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::{created, profile_id};
use crate::errors::ApiError;
use crate::http::AppState;
use crate::http::extract::{ApiJson, ApiKey, ApiQuery};
use crate::http::routes::Routes;
use crate::profiles;

pub fn routes() -> Routes {
    Routes::new()
        .get("/profiles", list_profiles)
        .post("/profiles", create_profile)
        .get("/profiles/{profileId}", get_profile)
        .put("/profiles/{profileId}", update_profile)
        .delete("/profiles/{profileId}", delete_profile)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionQuery {
    version: Option<i64>,
}

async fn list_profiles(_: ApiKey, State(ctx): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(profiles::list_profiles(&ctx).await?).into_response())
}

async fn create_profile(
    _: ApiKey,
    State(ctx): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    Ok(created(profiles::create_profile(&ctx, body).await?))
}

async fn get_profile(
    _: ApiKey,
    State(ctx): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
) -> Result<Response, ApiError> {
    let profile = profiles::get_profile(&ctx, &profile_id(&id)?, query.version).await?;
    Ok(Json(profile).into_response())
}

async fn update_profile(
    _: ApiKey,
    State(ctx): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let profile = profiles::update_profile(&ctx, &profile_id(&id)?, body).await?;
    Ok(Json(profile).into_response())
}

async fn delete_profile(
    _: ApiKey,
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    profiles::deactivate_profile(&ctx, &profile_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
