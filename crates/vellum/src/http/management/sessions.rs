//! `/api/v1/sessions`: issuance sessions, their events (pages or a live stream) and
//! redelivery of those events.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::events::require_api_key;
use crate::errors::ApiError;
use crate::http::AppState;
use crate::http::extract::{ApiKey, ApiQuery, StreamAuth};
use crate::http::routes::Routes;
use crate::http::sse;
use crate::sessions::{self, SessionQuery};
use crate::streams::{Scope, StreamQuery};

pub fn routes() -> Routes {
    Routes::new()
        .get("/sessions", list_sessions)
        .get("/sessions/{sessionId}", get_session)
        .get("/sessions/{sessionId}/events", list_session_events)
        .post("/sessions/{sessionId}/events/redeliver", redeliver_failed)
        .post(
            "/sessions/{sessionId}/events/{eventId}/redeliver",
            redeliver_event,
        )
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
