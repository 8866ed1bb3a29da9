//! The only place that knows axum: the router, extractors, and error -> response mapping.
//! Handlers extract, call one feature function, and shape the response.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Uri;
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::context::Context;
use crate::errors::ApiError;
use extract::ApiKey;

mod extract;
mod management;
mod protocol;
mod responses;
mod sse;

pub type AppState = Arc<Context>;

/// The whole HTTP surface. Wallet-facing endpoints live under the issuer URL's path; the
/// well-known documents at `/.well-known/<name><path>` as RFC 8615 and OID4VCI require.
pub fn router(ctx: Arc<Context>) -> Router {
    let endpoints = protocol::router(&ctx).merge(management::router(&ctx));
    Router::new()
        .merge(protocol::well_known_router(&ctx))
        .merge(under_issuer_path(&ctx, endpoints))
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("method not allowed on this endpoint".into())
        })
        .layer(middleware::from_fn(log_request))
        .with_state(ctx)
}

/// 404 for a path no route serves; under `/api/v1`, 401 first without the API key.
async fn no_such_endpoint(
    State(ctx): State<AppState>,
    uri: Uri,
    key: Result<ApiKey, ApiError>,
) -> ApiError {
    match key {
        Err(unauthorized) if management::is_management_path(&ctx.base_path, uri.path()) => {
            unauthorized
        }
        _ => ApiError::NotFound("no such endpoint".into()),
    }
}

/// An instance without the api role: only `/health` (under the issuer URL's path).
pub fn health_router(ctx: Arc<Context>) -> Router {
    Router::new()
        .merge(under_issuer_path(&ctx, protocol::health_router()))
        .fallback(|| async {
            ApiError::NotFound("this instance serves no API (roles.api = false)".into())
        })
        .with_state(ctx)
}

/// `endpoints` under the issuer URL's path (e.g. `/tenant/token`), or at the root without one.
fn under_issuer_path(ctx: &Context, endpoints: Router<AppState>) -> Router<AppState> {
    if ctx.base_path.is_empty() {
        endpoints
    } else {
        Router::new().nest(&ctx.base_path, endpoints)
    }
}

/// One line per request, naming the route template, never the concrete path: offer handles
/// and other secrets can sit in paths, and they must not reach logs.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "<unmatched>".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        route,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// Every route the service serves, as (method, path template): the OpenAPI test compares the
/// served description against this list.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/.well-known/openid-credential-issuer"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("GET", "/.well-known/jwt-vc-issuer"),
    ("GET", "/.well-known/did.json"),
    ("GET", "/jwks"),
    ("GET", "/did.json"),
    ("GET", "/health"),
    ("GET", "/credential-offer/{handle}"),
    ("POST", "/token"),
    ("POST", "/nonce"),
    ("POST", "/credential"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/keys"),
    ("POST", "/api/v1/keys"),
    ("POST", "/api/v1/keys/import"),
    ("GET", "/api/v1/keys/{keyId}"),
    ("POST", "/api/v1/keys/{keyId}/certificates"),
    ("GET", "/api/v1/profiles"),
    ("POST", "/api/v1/profiles"),
    ("GET", "/api/v1/profiles/{profileId}"),
    ("PUT", "/api/v1/profiles/{profileId}"),
    ("DELETE", "/api/v1/profiles/{profileId}"),
    ("POST", "/api/v1/offers"),
    ("GET", "/api/v1/sessions"),
    ("GET", "/api/v1/sessions/{sessionId}"),
    ("GET", "/api/v1/sessions/{sessionId}/events"),
    ("GET", "/api/v1/events"),
    ("POST", "/api/v1/events/tokens"),
    ("POST", "/api/v1/sessions/{sessionId}/events/redeliver"),
    (
        "POST",
        "/api/v1/sessions/{sessionId}/events/{eventId}/redeliver",
    ),
];
