//! Error enums -> HTTP responses. Unexpected errors are logged here, once, and answered with an
//! opaque body.

use axum::Json;
use axum::http::header::{CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use axum::extract::{Request, State};
use axum::middleware::Next;

use super::AppState;
use crate::errors::{ApiError, CredentialError, OAuthError};
use crate::oauth::{attestation, dpop};

/// The error code a response carries, for the metrics.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(error) => {
                tracing::error!(error = %error, "management API request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut response = (
            status,
            Json(json!({"code": self.code(), "detail": self.to_string()})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(ErrorCode(self.code()));
        response
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = match &self {
            OAuthError::NotFound(_) => StatusCode::NOT_FOUND,
            OAuthError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            OAuthError::Internal(error) => {
                tracing::error!(error = %error, "protocol request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        };
        let body = json!({"error": self.code(), "error_description": self.to_string()});
        let mut response = no_store((status, Json(body)).into_response());
        response.extensions_mut().insert(ErrorCode(self.code()));
        response
    }
}

impl IntoResponse for CredentialError {
    fn into_response(self) -> Response {
        let status = match &self {
            CredentialError::InvalidToken(_)
            | CredentialError::InvalidDpopProof(_)
            | CredentialError::UseDpopNonce(_) => StatusCode::UNAUTHORIZED,
            CredentialError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            CredentialError::Internal(error) => {
                tracing::error!(error = %error, "credential request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        };
        let description = self.to_string();
        let body = json!({"error": self.code(), "error_description": description});
        let mut response = no_store((status, Json(body)).into_response());
        response.extensions_mut().insert(ErrorCode(self.code()));
        let scheme = match &self {
            CredentialError::InvalidToken(_) => Some("Bearer"),
            CredentialError::InvalidDpopProof(_) | CredentialError::UseDpopNonce(_) => Some("DPoP"),
            _ => None,
        };
        if let Some(scheme) = scheme {
            let challenge = format!(
                "{scheme} error=\"{}\", error_description=\"{}\"",
                self.code(),
                description.replace(['"', '\\'], "'")
            );
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

/// Middleware: a fresh `DPoP-Nonce` on every answer of the token, nonce and credential endpoints
/// (errors and refused requests included) when proofs must carry one (RFC 9449 §8, §9): the
/// wallet's next proof uses it, so a stale nonce costs it one retry at most.
pub async fn with_dpop_nonce(
    State(ctx): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if ctx.config.dpop.require_nonce
        && let Ok(value) = HeaderValue::from_str(&dpop::nonce(&ctx))
    {
        response.headers_mut().insert(dpop::NONCE_HEADER, value);
    }
    response
}

/// Middleware: a fresh attestation challenge (`OAuth-Client-Attestation-Challenge`) on every
/// answer of the PAR and token endpoints when PoPs must carry one, so that a wallet told
/// `use_attestation_challenge` has it at hand, as the attestation draft requires.
pub async fn with_attestation_challenge(
    State(ctx): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if ctx.config.client_attestation.require_challenge
        && let Ok(value) =
            HeaderValue::from_str(&attestation::challenge(&ctx).attestation_challenge)
    {
        response
            .headers_mut()
            .insert(attestation::CHALLENGE_HEADER, value);
    }
    response
}

/// Token, nonce and credential responses must not be cached (RFC 6749 §5.1, OID4VCI §7.2).
pub fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// A JSON body with `Cache-Control: no-store`.
pub fn json_no_store<T: Serialize>(value: T) -> Response {
    no_store(Json(value).into_response())
}
