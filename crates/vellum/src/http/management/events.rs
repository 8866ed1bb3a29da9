//! `/api/v1/events`: the issuer's whole event log (pages or a live stream) and the stream
//! tokens that let a browser open a stream.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::created;
use crate::errors::ApiError;
use crate::http::AppState;
use crate::http::extract::{ApiJson, ApiKey, ApiQuery, StreamAuth};
use crate::http::routes::Routes;
use crate::http::sse;
use crate::sessions;
use crate::streams::{self, Access, Scope, StreamQuery, TokenRequest};

pub fn routes() -> Routes {
    Routes::new()
        .get("/events", list_events)
        .post("/events/tokens", create_stream_token)
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

async fn create_stream_token(
    _: ApiKey,
    State(ctx): State<AppState>,
    ApiJson(request): ApiJson<TokenRequest>,
) -> Result<Response, ApiError> {
    Ok(created(streams::create_token(&ctx, request).await?))
}

/// Stream tokens open streams only; the JSON listings need the API key.
pub(super) fn require_api_key(access: Access) -> Result<(), ApiError> {
    match access {
        Access::ApiKey => Ok(()),
        Access::Token(_) => Err(ApiError::Unauthorized),
    }
}
