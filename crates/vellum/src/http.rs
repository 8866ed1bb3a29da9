//! The only place that knows axum: the router, extractors, and error -> response mapping.
//! Handlers extract, call one feature function, and shape the response.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crate::context::Context;
use crate::errors::{ApiError, OAuthError};
use extract::ApiKey;

mod authorization;
mod console;
mod cors;
mod discovery;
mod extract;
mod health;
mod issuer;
mod management;
mod metrics;
mod responses;
mod routes;
pub mod server;
mod sse;
mod status;

pub use routes::Route;
use routes::Routes;

pub type AppState = Arc<Context>;

/// Every endpoint under the issuer URL's path: one router per resource of the management API,
/// and the wallet-facing endpoints by role (discovery, authorization server, credential
/// issuer), merged here.
fn endpoints(ctx: &AppState) -> Routes {
    management::routes(ctx)
        .merge(discovery::routes())
        .merge(authorization::routes(ctx))
        .merge(issuer::routes(ctx))
        .merge(status::routes())
        .merge(health::routes())
        .merge(metrics::routes())
}

/// Every route the service serves, as the OpenAPI description names them, read from the
/// routers themselves.
pub fn routes(ctx: &AppState) -> Vec<Route> {
    let (_, mut listed) = endpoints(ctx)
        .merge(discovery::well_known(ctx))
        .into_parts();
    listed.sort();
    listed
}

/// The whole HTTP surface. Wallet-facing endpoints live under the issuer URL's path; the
/// well-known documents at `/.well-known/<name><path>` as RFC 8615 and OID4VCI require.
pub fn router(ctx: Arc<Context>) -> Router {
    let (endpoints, _) = endpoints(&ctx).into_parts();
    let (well_known, _) = discovery::well_known(&ctx).into_parts();
    Router::new()
        .merge(well_known)
        .merge(under_issuer_path(&ctx, endpoints))
        .merge(under_issuer_path(&ctx, console::router(&ctx)))
        .route_layer(middleware::from_fn(metrics::name_route))
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("method not allowed on this endpoint".into())
        })
        .layer(middleware::from_fn_with_state(ctx.clone(), cors::cors))
        .layer(middleware::from_fn_with_state(
            ctx.clone(),
            request_deadline,
        ))
        .layer(middleware::from_fn(log_request))
        .layer(middleware::from_fn_with_state(ctx.clone(), surface_headers))
        .layer(middleware::from_fn_with_state(ctx.clone(), metrics::count))
        .with_state(ctx)
}

/// Headers of every response: `X-Content-Type-Options: nosniff` (browsers take the content type
/// as given, so a JSON error that echoes input never becomes a page), and on the management API
/// `Cache-Control: no-store` (offers carry tx codes, stream tokens are credentials, and the
/// rest is the issuer's business), errors and unknown paths included; the OpenAPI description
/// is public.
async fn surface_headers(State(ctx): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let management = management::is_management_path(&ctx.base_path, path)
        && !path.ends_with("/api/v1/openapi.json");
    let response = nosniff(next.run(request).await).await;
    if management {
        responses::no_store(response)
    } else {
        response
    }
}

/// `http.request_timeout` over receiving a request's body and answering it, so that a client
/// that sends its body slowly (or never) cannot hold a connection: 408 in the surface's error
/// format. A stream's response has started when the handler returns, so it is not cut.
async fn request_deadline(State(ctx): State<AppState>, request: Request, next: Next) -> Response {
    let management = request
        .uri()
        .path()
        .strip_prefix(ctx.base_path.as_str())
        .is_some_and(|path| path.starts_with("/api/v1"));
    let timeout = ctx.config.http.request_timeout;
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let detail = format!(
                "the request was not received and answered within {} ms (http.request_timeout)",
                timeout.as_millis()
            );
            let mut response = if management {
                ApiError::invalid("request_timeout", detail).into_response()
            } else {
                OAuthError::InvalidRequest(detail).into_response()
            };
            *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
            response
        }
    }
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
        .merge(under_issuer_path(&ctx, health::routes().into_parts().0))
        .fallback(|| async {
            ApiError::NotFound("this instance serves no API (roles.api = false)".into())
        })
        .layer(middleware::map_response(nosniff))
        .with_state(ctx)
}

/// Every response: browsers must take the content type as given, never guess one (a JSON
/// error that echoes input must not become a page).
async fn nosniff(mut response: Response) -> Response {
    response.headers_mut().insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    response
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
