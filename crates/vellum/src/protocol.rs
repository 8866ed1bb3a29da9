//! Names the protocols fix (OID4VCI 1.0, RFC 6749): grant types and JOSE types. A leaf: every
//! layer may use it.

/// The `type` of an `authorization_details` entry for credentials (OID4VCI 1.0 §5.1.1).
pub const OPENID_CREDENTIAL: &str = "openid_credential";

/// The authorization code grant type (RFC 6749 §4.1.3).
pub const AUTHORIZATION_CODE_GRANT: &str = "authorization_code";

/// The refresh token grant type (RFC 6749 §6).
pub const REFRESH_TOKEN_GRANT: &str = "refresh_token";

/// The pre-authorized code grant type (OID4VCI 1.0 §4.1.1).
pub const PRE_AUTHORIZED_GRANT: &str = "urn:ietf:params:oauth:grant-type:pre-authorized_code";

/// The `typ` of a JWT key proof (OID4VCI 1.0 Appendix F.1).
pub const PROOF_TYP: &str = "openid4vci-proof+jwt";

/// Client authentication by wallet attestation (draft-ietf-oauth-attestation-based-client-auth).
pub const ATTEST_JWT_CLIENT_AUTH: &str = "attest_jwt_client_auth";
