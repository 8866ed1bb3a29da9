//! One error enum per wire surface, carrying the spec's codes verbatim. Features return these;
//! `http::responses` turns them into responses (features never see axum).

use crate::store::StoreError;

/// A failure nobody asked for: logged once at the HTTP boundary, answered with an opaque 500.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Internal(#[from] Box<dyn std::error::Error + Send + Sync>);

impl Internal {
    pub fn msg(message: impl Into<String>) -> Self {
        Internal(message.into().into())
    }

    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Internal(Box::new(error))
    }
}

impl From<StoreError> for Internal {
    fn from(error: StoreError) -> Self {
        Internal(Box::new(error))
    }
}

impl Internal {
    /// The database did not answer: every surface says 503 (retry later), not 500.
    fn is_unavailable(&self) -> bool {
        matches!(
            self.0.downcast_ref::<StoreError>(),
            Some(StoreError::Unavailable(_))
        )
    }
}

/// `From<Internal>` and `From<StoreError>` for a wire enum: an unreachable database becomes its
/// `Unavailable`, whatever path the error took; anything else its `Internal`.
macro_rules! internal_errors {
    ($($surface:ident),*) => {$(
        impl From<Internal> for $surface {
            fn from(error: Internal) -> Self {
                if error.is_unavailable() {
                    $surface::Unavailable
                } else {
                    $surface::Internal(error)
                }
            }
        }

        impl From<StoreError> for $surface {
            fn from(error: StoreError) -> Self {
                Internal::from(error).into()
            }
        }
    )*};
}

internal_errors!(ApiError, OAuthError, CredentialError);

/// The management API: `{"code": ..., "detail": ...}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    Invalid { code: &'static str, detail: String },
    #[error("missing or invalid API key")]
    Unauthorized,
    /// A console request that changes something without its session's CSRF token.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("the database is unavailable; retry later")]
    Unavailable,
    #[error("internal error")]
    Internal(Internal),
}

impl ApiError {
    pub fn invalid(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::Invalid {
            code,
            detail: detail.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Invalid { code, .. } | ApiError::Conflict { code, .. } => code,
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }
}

/// The token endpoint (RFC 6749 §5.2) and the other OAuth-style protocol endpoints.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    UnsupportedGrantType(String),
    /// RFC 9449 §5: the DPoP proof is missing, malformed or fails a check.
    #[error("{0}")]
    InvalidDpopProof(String),
    /// RFC 6749 §4.1.2.1: the holder or the identity provider refused (sent by redirect).
    #[error("{0}")]
    AccessDenied(String),
    /// RFC 6749 §4.1.2.1: the identity provider could not be used (sent by redirect).
    #[error("{0}")]
    TemporarilyUnavailable(String),
    /// RFC 9449 §8: retry with the nonce in the response's `DPoP-Nonce` header.
    #[error("{0}")]
    UseDpopNonce(String),
    /// RFC 6749 §4.1.2.1: the scope names no credential configuration this issuer can issue.
    #[error("{0}")]
    InvalidScope(String),
    /// RFC 9396 §5: an `authorization_details` entry this issuer cannot grant.
    #[error("{0}")]
    InvalidAuthorizationDetails(String),
    /// Attestation-based client authentication: the wallet attestation or its PoP is missing or
    /// fails a check.
    #[error("{0}")]
    InvalidClientAttestation(String),
    /// Attestation-based client authentication: the PoP must carry a challenge from the
    /// challenge endpoint.
    #[error("{0}")]
    UseAttestationChallenge(String),
    /// A resource such as a credential offer that does not exist (404, `invalid_request`).
    #[error("{0}")]
    NotFound(String),
    #[error("the database is unavailable; retry later")]
    Unavailable,
    #[error("internal error")]
    Internal(Internal),
}

impl OAuthError {
    /// Whether the wallet's request failed in a way the operator's events record: not an outage
    /// or a bug (logged instead), and not a step of an exchange (a wallet told to use a server's
    /// DPoP nonce or attestation challenge, which it then does).
    pub fn is_failure_event(&self) -> bool {
        !matches!(
            self,
            OAuthError::Internal(_)
                | OAuthError::Unavailable
                | OAuthError::UseDpopNonce(_)
                | OAuthError::UseAttestationChallenge(_)
        )
    }

    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) | OAuthError::NotFound(_) => "invalid_request",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnsupportedGrantType(_) => "unsupported_grant_type",
            OAuthError::InvalidDpopProof(_) => "invalid_dpop_proof",
            OAuthError::UseDpopNonce(_) => "use_dpop_nonce",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::InvalidAuthorizationDetails(_) => "invalid_authorization_details",
            OAuthError::InvalidClientAttestation(_) => "invalid_client_attestation",
            OAuthError::UseAttestationChallenge(_) => "use_attestation_challenge",
            OAuthError::AccessDenied(_) => "access_denied",
            OAuthError::TemporarilyUnavailable(_) => "temporarily_unavailable",
            OAuthError::Unavailable => "temporarily_unavailable",
            OAuthError::Internal(_) => "server_error",
        }
    }
}

/// The credential endpoint: OID4VCI 1.0 §8.3.1.2 codes, plus RFC 6750 `invalid_token`.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{0}")]
    InvalidCredentialRequest(String),
    #[error("{0}")]
    UnknownCredentialConfiguration(String),
    #[error("{0}")]
    UnknownCredentialIdentifier(String),
    #[error("{0}")]
    InvalidProof(String),
    #[error("{0}")]
    InvalidNonce(String),
    #[error("{0}")]
    InvalidEncryptionParameters(String),
    #[error("{0}")]
    CredentialRequestDenied(String),
    /// The deferred credential endpoint: not a transaction of this token, or it is over.
    #[error("{0}")]
    InvalidTransactionId(String),
    /// The notification endpoint (OID4VCI 1.0 §11.3).
    #[error("{0}")]
    InvalidNotificationId(String),
    #[error("{0}")]
    InvalidNotificationRequest(String),
    /// 401 with `WWW-Authenticate: Bearer error="invalid_token"`.
    #[error("{0}")]
    InvalidToken(String),
    /// 401 with `WWW-Authenticate: DPoP error="invalid_dpop_proof"` (RFC 9449 §7.1).
    #[error("{0}")]
    InvalidDpopProof(String),
    /// 401 with `WWW-Authenticate: DPoP error="use_dpop_nonce"` (RFC 9449 §9).
    #[error("{0}")]
    UseDpopNonce(String),
    /// RFC 6750 §3.1, e.g. an access token in the query string.
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the database is unavailable; retry later")]
    Unavailable,
    #[error("internal error")]
    Internal(Internal),
}

impl CredentialError {
    pub fn code(&self) -> &'static str {
        match self {
            CredentialError::InvalidCredentialRequest(_) => "invalid_credential_request",
            CredentialError::UnknownCredentialConfiguration(_) => {
                "unknown_credential_configuration"
            }
            CredentialError::UnknownCredentialIdentifier(_) => "unknown_credential_identifier",
            CredentialError::InvalidProof(_) => "invalid_proof",
            CredentialError::InvalidNonce(_) => "invalid_nonce",
            CredentialError::InvalidEncryptionParameters(_) => "invalid_encryption_parameters",
            CredentialError::CredentialRequestDenied(_) => "credential_request_denied",
            CredentialError::InvalidTransactionId(_) => "invalid_transaction_id",
            CredentialError::InvalidNotificationId(_) => "invalid_notification_id",
            CredentialError::InvalidNotificationRequest(_) => "invalid_notification_request",
            CredentialError::InvalidToken(_) => "invalid_token",
            CredentialError::InvalidDpopProof(_) => "invalid_dpop_proof",
            CredentialError::UseDpopNonce(_) => "use_dpop_nonce",
            CredentialError::InvalidRequest(_) => "invalid_request",
            CredentialError::Unavailable => "temporarily_unavailable",
            CredentialError::Internal(_) => "server_error",
        }
    }
}
