//! Extractors whose rejections speak each surface's error format.

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::AppState;
use crate::errors::{ApiError, CredentialError, OAuthError};
use crate::limits;
use crate::secrets::hash_secret;
use crate::streams::{self, Access};
use crate::{encryption, issuance, oauth, operator};

fn body_detail(status: StatusCode, text: String, limit: usize) -> String {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("request body is larger than {limit} bytes")
    } else {
        text
    }
}

/// JSON for the management API; failures are `{code, detail}`. The body is read as a JSON
/// value first, so that it must be an object (as every management body is), the limits of
/// [`limits`] hold at every depth (naming the member that breaks one) and integral numbers
/// such as `5.0` count as integers, as the OpenAPI description says; then it becomes `T`,
/// whose errors name the field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let mut value = match axum::Json::<Value>::from_request(request, state).await {
            Ok(axum::Json(value)) => value,
            Err(rejection) => {
                return Err(match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => {
                        ApiError::PayloadTooLarge(state.config.http.management_body_limit)
                    }
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                        ApiError::UnsupportedMediaType("send Content-Type: application/json".into())
                    }
                    _ => ApiError::invalid("invalid_request", rejection.body_text()),
                });
            }
        };
        // Every management body is an object; serde would also read a struct from an array
        // of its members in order (`[]` as `{}`), which no client means.
        if !value.is_object() {
            return Err(ApiError::invalid(
                "invalid_request",
                "the body must be a JSON object",
            ));
        }
        limits::check("", &value)
            .map_err(|error| ApiError::invalid("invalid_request", error.to_string()))?;
        limits::normalize_integers(&mut value);
        limits::deserialize(value)
            .map(ApiJson)
            .map_err(|detail| ApiError::invalid("invalid_request", detail))
    }
}

/// Query strings for the management API. A parameter given empty (`cursor=`) counts as not
/// given; one given twice is refused (rather than one of the values silently winning).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let given: Vec<_> =
            url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
                .filter(|(_, value)| !value.is_empty())
                .collect();
        let mut names = std::collections::HashSet::new();
        if let Some((name, _)) = given.iter().find(|(name, _)| !names.insert(name)) {
            return Err(ApiError::invalid(
                "invalid_query",
                format!("{name} is given more than once"),
            ));
        }
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(given)
            .finish();
        serde_urlencoded::from_str(&query)
            .map(ApiQuery)
            .map_err(|error| ApiError::invalid("invalid_query", error.to_string()))
    }
}

/// The operator: `Authorization: Bearer <management API key>`, or, without that header, the
/// console's session cookie; a cookie-authenticated request that is not GET or HEAD must also
/// carry its session's `X-CSRF-Token` (the cookie is SameSite=Strict besides).
pub struct ApiKey;

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if !parts.headers.contains_key(AUTHORIZATION)
            && let Some(cookie) = console_cookie(&parts.headers)
        {
            if operator::session(state, cookie).await?.is_none() {
                return Err(ApiError::Unauthorized);
            }
            let safe = parts.method == Method::GET || parts.method == Method::HEAD;
            let csrf = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|value| value.to_str().ok());
            if !safe && !csrf.is_some_and(|csrf| operator::csrf_matches(state, cookie, csrf)) {
                return Err(ApiError::Forbidden(format!(
                    "a console request that changes something needs its session's {CSRF_HEADER}"
                )));
            }
            return Ok(ApiKey);
        }
        let presented = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let matches = hash_secret(presented)
            .as_bytes()
            .ct_eq(state.api_key_hash.as_bytes());
        if bool::from(matches) {
            Ok(ApiKey)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// The console's session cookie.
pub const CONSOLE_COOKIE: &str = "vellum_console";
/// The header that carries a console session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The value of the console's session cookie, when the request carries one.
pub fn console_cookie(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == CONSOLE_COOKIE)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// `GET /metrics`: `metrics.token` when one is configured, or what [`ApiKey`] takes.
pub struct MetricsKey;

impl FromRequestParts<AppState> for MetricsKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = &state.config.metrics.token;
        let scraper = !token.is_empty()
            && bearer(&parts.headers).is_some_and(|presented| {
                bool::from(
                    hash_secret(presented)
                        .as_bytes()
                        .ct_eq(hash_secret(token).as_bytes()),
                )
            });
        if scraper {
            return Ok(MetricsKey);
        }
        ApiKey::from_request_parts(parts, state)
            .await
            .map(|_| MetricsKey)
    }
}

/// The event listings and streams: the API key as for every management route, or, without an
/// Authorization header, a stream token as `?token=` (browsers' EventSource cannot send
/// headers). The handler checks what the access permits (`Access::permits`); a token is never
/// an API key anywhere else.
pub struct StreamAuth(pub Access);

impl FromRequestParts<AppState> for StreamAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(AUTHORIZATION) {
            ApiKey::from_request_parts(parts, state).await?;
            return Ok(StreamAuth(Access::ApiKey));
        }
        let token = parts.uri.query().and_then(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "token")
                .map(|(_, value)| value.into_owned())
        });
        if token.is_none() && console_cookie(&parts.headers).is_some() {
            ApiKey::from_request_parts(parts, state).await?;
            return Ok(StreamAuth(Access::ApiKey));
        }
        token
            .and_then(|token| streams::verify_token(state, &token))
            .map(|scope| StreamAuth(Access::Token(scope)))
            .ok_or(ApiError::Unauthorized)
    }
}

fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// A token request: the form (read as ordered pairs, so that a repeated parameter is refused),
/// typed, and the headers grants and client authentication read.
pub struct Token {
    pub request: oauth::TokenRequest,
    pub headers: oauth::TokenHeaders,
}

impl FromRequest<AppState> for Token {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let headers = oauth::TokenHeaders {
            dpop: dpop_header(request.headers()).map_err(OAuthError::InvalidDpopProof),
            attestation: attestation_headers(request.headers()),
        };
        let pairs = oauth_form(request, state).await?;
        oauth::TokenRequest::parse(pairs)
            .map(|request| Token { request, headers })
            .map_err(IntoResponse::into_response)
    }
}

/// A pushed authorization request (RFC 9126): its parameters, checked, its DPoP proof and the
/// wallet's attestation.
pub struct PushedAuthorization {
    pub parameters: oauth::authorization::AuthorizationParameters,
    pub dpop: Option<String>,
    pub attestation: oauth::attestation::Presented,
}

impl FromRequest<AppState> for PushedAuthorization {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let dpop = dpop_header(request.headers())
            .map_err(|why| OAuthError::InvalidDpopProof(why).into_response())?;
        let attestation = attestation_headers(request.headers());
        let pairs = oauth_form(request, state).await?;
        oauth::authorization::AuthorizationParameters::parse(pairs)
            .map(|parameters| PushedAuthorization {
                parameters,
                dpop,
                attestation,
            })
            .map_err(IntoResponse::into_response)
    }
}

/// A form of an OAuth endpoint as ordered pairs (so that a repeated parameter can be refused);
/// failures in the OAuth error format.
async fn oauth_form(request: Request, state: &AppState) -> Result<Vec<(String, String)>, Response> {
    match axum::Form::<Vec<(String, String)>>::from_request(request, state).await {
        Ok(axum::Form(pairs)) => Ok(pairs),
        Err(rejection) => {
            let status = rejection.status();
            let text = match &rejection {
                FormRejection::InvalidFormContentType(_) => {
                    "send Content-Type: application/x-www-form-urlencoded".to_owned()
                }
                _ => rejection.body_text(),
            };
            let detail = body_detail(status, text, state.config.http.protocol_body_limit);
            let mut response = OAuthError::InvalidRequest(detail).into_response();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                *response.status_mut() = status;
            }
            Err(response)
        }
    }
}

/// The query of a browser-facing OAuth endpoint (authorization, callback) as ordered pairs.
pub struct QueryPairs(pub Vec<(String, String)>);

impl FromRequestParts<AppState> for QueryPairs {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        Ok(QueryPairs(
            url::form_urlencoded::parse(query.as_bytes())
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect(),
        ))
    }
}

/// The wallet attestation headers, each as text if sent (a value that is not text is as good as
/// none: the pair is then incomplete and refused).
fn attestation_headers(headers: &axum::http::HeaderMap) -> oauth::attestation::Presented {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    oauth::attestation::Presented {
        attestation: header("oauth-client-attestation"),
        pop: header("oauth-client-attestation-pop"),
    }
}

/// The `DPoP` header (RFC 9449 §4.3: exactly one), if sent.
fn dpop_header(headers: &axum::http::HeaderMap) -> Result<Option<String>, String> {
    let mut values = headers.get_all("dpop").iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => value
            .to_str()
            .map(|proof| Some(proof.trim().to_owned()))
            .map_err(|_| "the DPoP header is not a compact JWS".to_owned()),
        (Some(_), Some(_)) => Err("send one DPoP header, not several".to_owned()),
    }
}

/// The access token as presented in the Authorization header (RFC 6750 §2.1, RFC 9449 §7.1).
fn presented_token(headers: &axum::http::HeaderMap) -> Option<issuance::PresentedToken> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    if token.is_empty() {
        return None;
    }
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        issuance::TokenScheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        issuance::TokenScheme::Dpop
    } else {
        return None;
    };
    Some(issuance::PresentedToken {
        scheme,
        token: token.to_owned(),
    })
}

/// The credential request: the access token, the DPoP proof and the JSON body. A body that is
/// not JSON is passed on as its error, so that the token is checked first and the failure is
/// recorded.
pub struct CredentialRequest(pub issuance::CredentialRequest);

impl FromRequest<AppState> for CredentialRequest {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let in_query = request.uri().query().is_some_and(|query| {
            url::form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == "access_token")
        });
        if in_query {
            return Err(CredentialError::InvalidRequest(
                "access tokens in the query string are refused; use the Authorization header"
                    .into(),
            )
            .into_response());
        }
        let access_token = presented_token(request.headers());
        let dpop = dpop_header(request.headers()).map_err(CredentialError::InvalidDpopProof);
        let encrypted = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|media| media.trim().eq_ignore_ascii_case(encryption::MEDIA_TYPE));
        if encrypted {
            // A JWE to the request key (OID4VCI 1.0 §10), read within the body limit.
            let body = match axum::body::Bytes::from_request(request, state).await {
                Ok(bytes) => encryption::decrypt_request(state, &bytes),
                Err(rejection) => {
                    let status = rejection.status();
                    let detail = body_detail(
                        status,
                        rejection.body_text(),
                        state.config.http.protocol_body_limit,
                    );
                    let error = CredentialError::InvalidCredentialRequest(detail);
                    if status == StatusCode::PAYLOAD_TOO_LARGE {
                        let mut response = error.into_response();
                        *response.status_mut() = status;
                        return Err(response);
                    }
                    Err(error)
                }
            };
            return Ok(CredentialRequest(issuance::CredentialRequest {
                access_token,
                dpop,
                body,
                encrypted,
            }));
        }
        match axum::Json::<Value>::from_request(request, state).await {
            Ok(axum::Json(body)) => Ok(CredentialRequest(issuance::CredentialRequest {
                access_token,
                dpop,
                body: limits::check("", &body)
                    .map(|()| body)
                    .map_err(|error| CredentialError::InvalidCredentialRequest(error.to_string())),
                encrypted,
            })),
            Err(rejection) => {
                let status = rejection.status();
                let text = match &rejection {
                    JsonRejection::MissingJsonContentType(_) => {
                        "send Content-Type: application/json".to_owned()
                    }
                    _ => rejection.body_text(),
                };
                let detail = body_detail(status, text, state.config.http.protocol_body_limit);
                let error = CredentialError::InvalidCredentialRequest(detail);
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    let mut response = error.into_response();
                    *response.status_mut() = status;
                    return Err(response);
                }
                Ok(CredentialRequest(issuance::CredentialRequest {
                    access_token,
                    dpop,
                    body: Err(error),
                    encrypted,
                }))
            }
        }
    }
}
