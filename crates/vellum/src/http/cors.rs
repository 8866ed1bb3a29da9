//! CORS for wallets that run in a browser: the wallet-facing endpoints answer the origins of
//! `http.cors_origins` (preflights included); the management API never does. No credentials
//! mode: tokens travel in headers, never cookies.

use axum::extract::{Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
    VARY,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::management::is_management_path;
use crate::errors::OAuthError;

/// The request headers a wallet sends beside the simple ones.
const ALLOWED_HEADERS: &str = "Authorization, Content-Type, Accept, DPoP, If-None-Match, \
     OAuth-Client-Attestation, OAuth-Client-Attestation-PoP";
/// The response headers a wallet reads.
const EXPOSED_HEADERS: &str =
    "DPoP-Nonce, WWW-Authenticate, ETag, Retry-After, OAuth-Client-Attestation-Challenge";

/// The value of `Access-Control-Allow-Origin` for a request from `origin`, if it may.
fn allowed(origins: &[String], origin: &str) -> Option<HeaderValue> {
    if origins.iter().any(|allowed| allowed == "*") {
        Some(HeaderValue::from_static("*"))
    } else if origins.iter().any(|allowed| allowed == origin) {
        HeaderValue::from_str(origin).ok()
    } else {
        None
    }
}

/// Middleware: answers preflights of allowed origins, and marks the responses they may read.
pub async fn cors(State(ctx): State<AppState>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(ORIGIN)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let Some(origin) = origin else {
        return next.run(request).await;
    };
    if is_management_path(&ctx.base_path, request.uri().path()) {
        return next.run(request).await;
    }
    let settings = &ctx.config.http;
    let allow_origin = allowed(&settings.cors_origins, &origin);
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let Some(allow_origin) = allow_origin else {
            let mut refused =
                OAuthError::InvalidRequest("this origin may not call this issuer".into())
                    .into_response();
            *refused.status_mut() = StatusCode::FORBIDDEN;
            vary_origin(refused.headers_mut());
            return refused;
        };
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        headers.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        headers.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        headers.insert(
            ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from(settings.cors_max_age_seconds),
        );
        vary_origin(headers);
        return response;
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Some(allow_origin) = allow_origin {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        headers.insert(
            ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
    vary_origin(headers);
    response
}

/// Caches keep answers per origin (an allowed and a refused one differ).
fn vary_origin(headers: &mut HeaderMap) {
    headers.append(VARY, HeaderValue::from_static("origin"));
}
