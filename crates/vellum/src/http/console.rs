//! `/console`: the operator console, a page and its script compiled into the binary (no build
//! step, no third-party request), which drives the management API with the session cookie
//! [`operator::sign_in`] makes. Its own endpoints: `/console/session` to sign in (POST, the
//! API key as JSON), read the sign-in's CSRF token (GET) and sign out (DELETE). Every other
//! path under `/console` is the page, which routes itself.

use std::sync::LazyLock;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    SET_COOKIE, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, middleware};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::AppState;
use super::extract::{ApiJson, CONSOLE_COOKIE, CSRF_HEADER, console_cookie};
use super::responses::no_store;
use crate::context::Context;
use crate::errors::ApiError;
use crate::operator;

const PAGE: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/app.js");
const STYLE: &str = include_str!("../../console/app.css");
const ICON: &str = include_str!("../../console/icon.svg");

/// The page allows only this origin's script, styles, images and connections.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// A compiled-in file and its validator.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: String,
}

impl Asset {
    fn new(body: &'static str, content_type: &'static str) -> Asset {
        let digest = Sha256::digest(body.as_bytes());
        let etag = format!("\"{}\"", hex(&digest[..12]));
        Asset {
            body,
            content_type,
            etag,
        }
    }

    /// The file, or 304 when the browser has it; revalidated on every use, so that a new
    /// binary's console is never mixed with an old cached script.
    fn serve(&self, headers: &HeaderMap) -> Response {
        let fresh = headers
            .get(IF_NONE_MATCH)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == self.etag));
        let validators = [
            (CACHE_CONTROL, "no-cache".to_owned()),
            (ETAG, self.etag.clone()),
        ];
        if fresh {
            return (StatusCode::NOT_MODIFIED, validators).into_response();
        }
        (validators, [(CONTENT_TYPE, self.content_type)], self.body).into_response()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

static SCRIPT_ASSET: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(SCRIPT, "text/javascript; charset=utf-8"));
static STYLE_ASSET: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(STYLE, "text/css; charset=utf-8"));
static ICON_ASSET: LazyLock<Asset> = LazyLock::new(|| Asset::new(ICON, "image/svg+xml"));

/// The console's routes (under the issuer URL's path), or none when `console.enabled` is off.
pub fn router(ctx: &Context) -> Router<AppState> {
    if !ctx.config.console.enabled {
        return Router::new();
    }
    let page = Bytes::from(PAGE.replace("{{BASE}}", &ctx.base_path));
    let page = move || {
        let page = page.clone();
        async move { ([(CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response() }
    };
    Router::new()
        .route("/console", get(page.clone()))
        .route("/console/", get(page.clone()))
        .route("/console/{*page}", get(page))
        .route(
            "/console/assets/app.js",
            get(|headers: HeaderMap| async move { SCRIPT_ASSET.serve(&headers) }),
        )
        .route(
            "/console/assets/app.css",
            get(|headers: HeaderMap| async move { STYLE_ASSET.serve(&headers) }),
        )
        .route(
            "/console/assets/icon.svg",
            get(|headers: HeaderMap| async move { ICON_ASSET.serve(&headers) }),
        )
        .route(
            "/console/session",
            get(current).post(sign_in).delete(sign_out),
        )
        .layer(middleware::map_response(page_headers))
}

/// Headers of every console response: its content policy, no framing, no referrer.
async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SignIn {
    api_key: String,
}

async fn sign_in(
    State(ctx): State<AppState>,
    ApiJson(request): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    let signed_in = operator::sign_in(&ctx, &request.api_key).await?;
    let max_age = ctx.config.console.session_lifetime.as_secs();
    let cookie = cookie(&ctx, &signed_in.cookie, max_age);
    Ok(no_store(
        ([(SET_COOKIE, cookie)], Json(signed_in.session)).into_response(),
    ))
}

async fn current(State(ctx): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let cookie = console_cookie(&headers).ok_or(ApiError::Unauthorized)?;
    let session = operator::session(&ctx, cookie)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    Ok(no_store(Json(session).into_response()))
}

/// Ends the sign-in (with its CSRF token, so that no other page can sign the operator out) and
/// tells the browser to forget the cookie.
async fn sign_out(State(ctx): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let cookie = console_cookie(&headers).ok_or(ApiError::Unauthorized)?;
    let csrf = headers
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !operator::csrf_matches(&ctx, cookie, csrf) {
        return Err(ApiError::Forbidden(format!(
            "signing out needs the session's {CSRF_HEADER}"
        )));
    }
    operator::sign_out(&ctx, cookie).await?;
    Ok(no_store(
        (
            StatusCode::NO_CONTENT,
            [(SET_COOKIE, self::cookie(&ctx, "", 0))],
        )
            .into_response(),
    ))
}

/// The session cookie: HttpOnly, SameSite=Strict, Secure when the issuer is served over https,
/// for every path under the issuer URL's path (the console and the management API).
fn cookie(ctx: &Context, value: &str, max_age: u64) -> String {
    let secure = if ctx.issuer_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let path = if ctx.base_path.is_empty() {
        "/"
    } else {
        ctx.base_path.as_str()
    };
    format!(
        "{CONSOLE_COOKIE}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    )
}
