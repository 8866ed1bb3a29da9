//! Status lists, served publicly where credentials reference them: a Token Status List as a JWT
//! or, on `Accept: application/statuslist+cwt`, a CWT; each purpose of a Bitstring Status List as
//! a credential. Cacheable for the list's ttl, with an ETag (304 on If-None-Match).

use axum::extract::{Path, State};
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::routes::Routes;
use crate::errors::OAuthError;
use crate::status::{self, Form};

pub fn routes() -> Routes {
    Routes::new()
        .get("/status-lists/{listId}", token_list)
        .get("/status-lists/{listId}/{purpose}", bitstring_list)
}

async fn token_list(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    let cwt = headers.get_all(ACCEPT).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|text| text.contains(Form::Cwt.media_type()))
    });
    let form = if cwt { Form::Cwt } else { Form::Jwt };
    served(&ctx, &id, form, &headers).await
}

async fn bitstring_list(
    State(ctx): State<AppState>,
    Path((id, purpose)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    let form = Form::purpose(&purpose).ok_or_else(unknown)?;
    served(&ctx, &id, form, &headers).await
}

fn unknown() -> OAuthError {
    OAuthError::NotFound("no such status list".into())
}

async fn served(
    ctx: &AppState,
    id: &str,
    form: Form,
    headers: &HeaderMap,
) -> Result<Response, OAuthError> {
    let served = status::serve(ctx, id, form).await?.ok_or_else(unknown)?;
    let document = served.document;
    let etag = HeaderValue::from_str(&document.etag).map_err(crate::errors::Internal::new)?;
    let unchanged = headers
        .get(IF_NONE_MATCH)
        .is_some_and(|value| value.as_bytes() == etag.as_bytes());
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = document.body.into_response();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(form.media_type()));
        response
    };
    let headers = response.headers_mut();
    headers.insert(ETAG, etag);
    headers.insert(VARY, HeaderValue::from_static("accept"));
    if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={}", served.max_age)) {
        headers.insert(CACHE_CONTROL, value);
    }
    Ok(response)
}
