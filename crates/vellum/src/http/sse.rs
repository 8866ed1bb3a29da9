//! Event streams as Server-Sent Events: `id:` = sequence, `event:` = type, `data:` = the
//! envelope, a comment as heartbeat, and `Last-Event-ID` as the resume point.

use std::convert::Infallible;
use std::sync::Arc;

use axum::http::header::ACCEPT;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::context::Context;
use crate::errors::ApiError;
use crate::streams::{self, Access, Scope};

/// Whether the client asked for `text/event-stream` (EventSource always does).
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|range| range.split(';').next())
        .any(|media| media.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// Where a listing or stream resumes: after `Last-Event-ID` (sent by a reconnecting
/// EventSource, so it wins over the URL), else after `?after=`. The JSON pages read the header
/// too, so that it means one thing, and is checked, whatever the representation.
pub fn resume_after(headers: &HeaderMap, after: Option<i64>) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(after);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid(
                "invalid_request",
                "Last-Event-ID must be the id (sequence) of an event",
            )
        })
}

/// The stream of `scope` after the resume point ([`resume_after`]), else the start of the log.
pub async fn respond(
    ctx: Arc<Context>,
    access: Access,
    scope: Scope,
    headers: &HeaderMap,
    after: Option<i64>,
) -> Result<Response, ApiError> {
    if !access.permits(scope) {
        return Err(ApiError::Unauthorized);
    }
    let after = resume_after(headers, after)?.unwrap_or(0);
    let heartbeat = ctx.config.streams.heartbeat;
    let open = ctx.metrics.stream_opened();
    let events = streams::open(ctx, scope, after).await?.map(move |event| {
        // The stream holds the gauge's count while it is open.
        let _open = &open;
        Ok::<_, Infallible>(
            Event::default()
                .id(event.sequence.to_string())
                .event(&event.event_type)
                .data(&event.envelope),
        )
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(heartbeat).text("keep-alive"))
        .into_response();
    // nginx and similar proxies buffer responses unless told not to.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}
