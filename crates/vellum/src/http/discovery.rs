//! Discovery, for wallets and verifiers: the issuer and authorization server metadata, the
//! SD-JWT VC issuer metadata, the JWKS and the did:web document.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, CONTENT_TYPE, VARY};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::routes::Routes;
use crate::context::Context;
use crate::errors::OAuthError;
use crate::metadata;

/// The documents under the issuer URL's path.
pub fn routes() -> Routes {
    Routes::new()
        .get("/jwks", jwks)
        .get("/did.json", did_document)
}

/// RFC 8615 well-known URIs: the issuer's path goes after the well-known segment. The issuer and
/// authorization server metadata follow from the configuration alone, so they are serialized
/// once here, not at every request.
pub fn well_known(ctx: &Context) -> Routes {
    let path = &ctx.base_path;
    let issuer = json_bytes(&metadata::credential_issuer(ctx));
    let authorization_server = json_bytes(&metadata::authorization_server(ctx));
    let routes = Routes::new()
        .get_with_suffix(
            "/.well-known/openid-credential-issuer",
            path,
            move |State(ctx): State<AppState>, headers: HeaderMap| {
                let issuer = issuer.clone();
                async move { credential_issuer_metadata(&ctx, &headers, issuer).await }
            },
        )
        .get_with_suffix("/.well-known/oauth-authorization-server", path, move || {
            let document = authorization_server.clone();
            async move { ([(CONTENT_TYPE, "application/json")], document).into_response() }
        })
        .get_with_suffix("/.well-known/jwt-vc-issuer", path, jwt_vc_issuer_metadata);
    // did:web resolves a DID without a path here, and one with a path to <path>/did.json.
    if path.is_empty() {
        routes.get("/.well-known/did.json", did_document)
    } else {
        routes
    }
}

/// JSON, or (OID4VCI 1.0 §12.2.2) a signed JWT when the wallet accepts `application/jwt` and a
/// signing key is configured.
async fn credential_issuer_metadata(
    ctx: &Context,
    headers: &HeaderMap,
    json: Bytes,
) -> Result<Response, OAuthError> {
    let wants_jwt = headers.get_all(ACCEPT).iter().any(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',')
                .any(|range| range.split(';').next().map(str::trim) == Some("application/jwt"))
        })
    });
    let signed = if wants_jwt {
        metadata::signed_credential_issuer(ctx).await?
    } else {
        None
    };
    let mut response = match signed {
        Some(jwt) => ([(CONTENT_TYPE, "application/jwt")], jwt).into_response(),
        None => ([(CONTENT_TYPE, "application/json")], json).into_response(),
    };
    response
        .headers_mut()
        .insert(VARY, axum::http::HeaderValue::from_static("accept"));
    Ok(response)
}

async fn jwt_vc_issuer_metadata(State(ctx): State<AppState>) -> Result<Response, OAuthError> {
    Ok(Json(metadata::jwt_vc_issuer(&ctx).await?).into_response())
}

fn json_bytes(document: &serde_json::Value) -> Bytes {
    Bytes::from(document.to_string())
}

/// The document of Vellum's did:web.
async fn did_document(State(ctx): State<AppState>) -> Result<Response, OAuthError> {
    match metadata::did_document(&ctx).await? {
        Some(document) => Ok(Json(document).into_response()),
        None => Err(OAuthError::NotFound(
            "this issuer URL has no host to make a did:web of".into(),
        )),
    }
}

async fn jwks(State(ctx): State<AppState>) -> Result<Response, OAuthError> {
    let mut response = Json(metadata::jwks(&ctx).await?).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/jwk-set+json"),
    );
    Ok(response)
}
