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
use crate::metrics::{Answered, Queue};

pub fn routes() -> Routes {
    Routes::new().get("/metrics", metrics)
}

async fn metrics(State(ctx): State<AppState>, _: MetricsKey) -> Result<Response, ApiError> {
    let now = ctx.clock.now();
    let backlog: Vec<Queue> = ctx
        .store
        .delivery_backlog()
        .await?
        .into_iter()
        .map(|queue| Queue {
            url: shown(&queue.url),
            pending: queue.pending,
            #[allow(clippy::cast_precision_loss)]
            oldest_age_seconds: (now - queue.oldest_created_at).max(0) as f64 / 1000.0,
        })
        .collect();
    Ok(no_store(
        (
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            ctx.metrics.render(&backlog),
        )
            .into_response(),
    ))
}

/// A webhook URL as a label: scheme, host, port and path; never its query or user info, which
/// may carry a secret of the receiver's.
fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => {
            format!(
                "{}://{}{}",
                parsed.scheme(),
                parsed.host_str().unwrap_or_default(),
                parsed
                    .port()
                    .map(|port| format!(":{port}"))
                    .unwrap_or_default()
            ) + parsed.path()
        }
        Err(_) => "unparsable".to_owned(),
    }
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
