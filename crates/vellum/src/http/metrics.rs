//! `GET /metrics`: this instance's counters in the Prometheus text format, for the management
//! API key or the scraper's own token (`metrics.token`); and the middleware that counts every
//! request by its route template.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::extract::MetricsKey;
use super::responses::{ErrorCode, no_store};
use super::routes::Routes;
use crate::errors::ApiError;
use crate::metrics::Answered;
use crate::operator;

pub fn routes() -> Routes {
    Routes::new().get("/metrics", metrics)
}

async fn metrics(State(ctx): State<AppState>, _: MetricsKey) -> Result<Response, ApiError> {
    let backlog = operator::backlog(&ctx).await?;
    Ok(no_store(
        (
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            ctx.metrics.render(&backlog),
        )
            .into_response(),
    ))
}

/// The template of the route that served a request, carried out on its response.
#[derive(Clone)]
pub(super) struct RouteTemplate(String);

/// After routing: names the route on the response (the outer [`count`] sees no routing).
pub(super) async fn name_route(request: Request, next: Next) -> Response {
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let mut response = next.run(request).await;
    if let Some(template) = template {
        response.extensions_mut().insert(RouteTemplate(template));
    }
    response
}

/// Counts every answered request: route template (`unmatched` for a path no route serves),
/// method, status, the time to its headers, and the error code it carries.
pub(super) async fn count(State(ctx): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let response = next.run(request).await;
    let route = response.extensions().get::<RouteTemplate>();
    ctx.metrics.record(&Answered {
        route: route.map_or("unmatched", |route| route.0.as_str()),
        method: method.as_str(),
        status: response.status().as_u16(),
        error: response.extensions().get::<ErrorCode>().map(|code| code.0),
        took: started.elapsed(),
    });
    response
}
