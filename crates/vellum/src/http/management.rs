//! `/api/v1`: one router per resource (keys, profiles, offers, sessions, issued credentials,
//! events, the overview), merged here.
//! Every route requires the API key except the OpenAPI description; event streams also take a
//! stream token (`?token=`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::routes::Routes;
use crate::context::Context;
use crate::errors::ApiError;
use crate::ids::{KeyId, ProfileId};

mod credentials;
mod events;
mod keys;
mod offers;
mod overview;
mod profiles;
mod sessions;

pub const OPENAPI: &str = include_str!("../../openapi.json");

pub fn routes(ctx: &Context) -> Routes {
    let resources = keys::routes()
        .merge(profiles::routes())
        .merge(offers::routes())
        .merge(sessions::routes())
        .merge(credentials::routes())
        .merge(events::routes())
        .merge(overview::routes())
        .map(|router| router.layer(DefaultBodyLimit::max(ctx.config.http.management_body_limit)))
        .nest("/api/v1");
    let description = Bytes::from(description(&ctx.issuer_url));
    Routes::new()
        .get("/api/v1/openapi.json", move || {
            let description = description.clone();
            async move { ([(CONTENT_TYPE, "application/json")], description) }
        })
        .merge(resources)
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

pub(super) fn created<T: serde::Serialize>(value: T) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
}

pub(super) fn key_id(text: &str) -> Result<KeyId, ApiError> {
    KeyId::parse(text).map_err(|_| ApiError::NotFound(format!("no key {text}")))
}

pub(super) fn profile_id(text: &str) -> Result<ProfileId, ApiError> {
    ProfileId::parse(text).map_err(|_| ApiError::NotFound(format!("no profile {text}")))
}
