//! `/api/v1`: profiles, keys, offers, sessions, events. Every route requires the API key except
//! the OpenAPI description; event streams also take a stream token (`?token=`).

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::extract::{ApiJson, ApiKey, ApiQuery, StreamAuth};
use super::sse;
use crate::context::Context;
use crate::errors::ApiError;
use crate::ids::{KeyId, ProfileId};
use crate::keys::{self, CertificateRequest, GenerateKeyRequest, ImportKeyRequest};
use crate::offers::{self, CreateOfferRequest};
use crate::profiles;
use crate::sessions::{self, SessionQuery};
use crate::streams::{self, Access, Scope, StreamQuery, TokenRequest};

pub const OPENAPI: &str = include_str!("../../openapi.json");

pub fn router(ctx: &Context) -> Router<AppState> {
    let authenticated = Router::new()
        .route("/keys", get(list_keys).post(generate_key))
        .route("/keys/import", post(import_key))
        .route("/keys/{keyId}", get(get_key))
        .route("/keys/{keyId}/certificates", post(issue_certificate))
        .route("/profiles", get(list_profiles).post(create_profile))
        .route(
            "/profiles/{profileId}",
            get(get_profile).put(update_profile).delete(delete_profile),
        )
        .route("/offers", post(create_offer))
        .route("/sessions", get(list_sessions))
        .route("/sessions/{sessionId}", get(get_session))
        .route("/sessions/{sessionId}/events", get(list_session_events))
        .route("/events", get(list_events))
        .route("/events/tokens", post(create_stream_token))
        .route(
            "/sessions/{sessionId}/events/redeliver",
            post(redeliver_failed),
        )
        .route(
            "/sessions/{sessionId}/events/{eventId}/redeliver",
            post(redeliver_event),
        )
        .layer(DefaultBodyLimit::max(ctx.config.http.management_body_limit));
    let description = Bytes::from(description(&ctx.issuer_url));
    Router::new()
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let description = description.clone();
                async move { ([(CONTENT_TYPE, "application/json")], description) }
            }),
        )
        .nest("/api/v1", authenticated)
}

/// The OpenAPI description with this instance's issuer URL as its server, so that clients
/// generated from it (and schema fuzzers) reach this issuer whatever its public URL.
fn description(issuer_url: &str) -> String {
    let mut document: Value =
        serde_json::from_str(OPENAPI).expect("openapi.json is JSON (checked by the tests)");
    if let Some(server) = document.pointer_mut("/servers/0/url") {
        *server = Value::from(issuer_url);
    }
    document.to_string()
}

/// Whether `path` is `/api/v1` or under it (below the issuer URL's path). An unknown path there
/// answers 401 without the API key, as every management route does: nothing is learned
/// without the key.
pub fn is_management_path(base_path: &str, path: &str) -> bool {
    path.strip_prefix(base_path)
        .and_then(|rest| rest.strip_prefix("/api/v1"))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn created<T: serde::Serialize>(value: T) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
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

fn key_id(text: &str) -> Result<KeyId, ApiError> {
    KeyId::parse(text).map_err(|_| ApiError::NotFound(format!("no key {text}")))
}

fn profile_id(text: &str) -> Result<ProfileId, ApiError> {
    ProfileId::parse(text).map_err(|_| ApiError::NotFound(format!("no profile {text}")))
}

async fn get_key(
    _: ApiKey,
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(keys::get_key(&ctx, &key_id(&id)?).await?).into_response())
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionQuery {
    version: Option<i64>,
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

async fn create_offer(
    _: ApiKey,
    State(ctx): State<AppState>,
    ApiJson(request): ApiJson<CreateOfferRequest>,
) -> Result<Response, ApiError> {
    Ok(created(offers::create_offer(&ctx, request).await?))
}

async fn list_sessions(
    _: ApiKey,
    State(ctx): State<AppState>,
    ApiQuery(query): ApiQuery<SessionQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(sessions::list_sessions(&ctx, query).await?).into_response())
}

async fn get_session(
    _: ApiKey,
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let session = sessions::get_session(&ctx, sessions::parse_id(&id)?).await?;
    Ok(Json(session).into_response())
}

/// JSON pages, or with `Accept: text/event-stream` the live stream (API key or stream token);
/// both resume after `Last-Event-ID` or `?after=`.
async fn list_session_events(
    StreamAuth(access): StreamAuth,
    State(ctx): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let id = sessions::parse_id(&id)?;
    if sse::wanted(&headers) {
        return sse::respond(ctx, access, Scope::Session(id), &headers, query.after).await;
    }
    require_api_key(access)?;
    let mut page = query.page();
    page.after = sse::resume_after(&headers, page.after)?;
    let events = sessions::session_events(&ctx, id, page).await?;
    Ok(Json(events).into_response())
}

/// The issuer's whole log: JSON pages, or with `Accept: text/event-stream` the live stream.
async fn list_events(
    StreamAuth(access): StreamAuth,
    State(ctx): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    if sse::wanted(&headers) {
        return sse::respond(ctx, access, Scope::Issuer, &headers, query.after).await;
    }
    require_api_key(access)?;
    let mut page = query.page();
    page.after = sse::resume_after(&headers, page.after)?;
    Ok(Json(sessions::all_events(&ctx, page).await?).into_response())
}

/// Stream tokens open streams only; the JSON listings need the API key.
fn require_api_key(access: Access) -> Result<(), ApiError> {
    match access {
        Access::ApiKey => Ok(()),
        Access::Token(_) => Err(ApiError::Unauthorized),
    }
}

async fn create_stream_token(
    _: ApiKey,
    State(ctx): State<AppState>,
    ApiJson(request): ApiJson<TokenRequest>,
) -> Result<Response, ApiError> {
    Ok(created(streams::create_token(&ctx, request).await?))
}

async fn redeliver_failed(
    _: ApiKey,
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let result = sessions::redeliver(&ctx, sessions::parse_id(&id)?, None).await?;
    Ok((StatusCode::ACCEPTED, Json(result)).into_response())
}

async fn redeliver_event(
    _: ApiKey,
    State(ctx): State<AppState>,
    Path((id, event_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let result = sessions::redeliver(&ctx, sessions::parse_id(&id)?, Some(&event_id)).await?;
    Ok((StatusCode::ACCEPTED, Json(result)).into_response())
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
