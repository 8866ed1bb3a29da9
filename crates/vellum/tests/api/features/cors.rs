//! CORS for wallets in a browser: the wallet-facing endpoints answer preflights and mark their
//! responses for the origins of `http.cors_origins` (any by default); the management API never.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{API_KEY, TestApp, spawn_app, spawn_app_with};

const WALLET: &str = "https://wallet.example";

/// A browser's preflight for `method path` from `origin`.
async fn preflight(app: &TestApp, path: &str, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.endpoint(path))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type, dpop",
        )
        .send()
        .await
        .expect("preflight")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

#[tokio::test]
async fn wallet_endpoints_answer_any_origin_by_default_and_the_management_api_none() {
    let app = spawn_app().await;
    for path in ["/credential", "/token", "/nonce", "/par"] {
        let answer = preflight(&app, path, WALLET).await;
        assert_eq!(answer.status(), StatusCode::NO_CONTENT, "{path}");
        assert_eq!(header(&answer, "access-control-allow-origin"), Some("*"));
        let methods = header(&answer, "access-control-allow-methods").expect("methods");
        assert!(methods.contains("POST"), "{methods}");
        let headers = header(&answer, "access-control-allow-headers").expect("headers");
        for needed in ["Authorization", "Content-Type", "DPoP"] {
            assert!(headers.contains(needed), "{path}: {headers}");
        }
        assert_eq!(header(&answer, "access-control-max-age"), Some("600"));
        assert!(
            header(&answer, "access-control-allow-credentials").is_none(),
            "never credentials mode"
        );
    }
    let nonce = app
        .client
        .post(app.endpoint("/nonce"))
        .header("Origin", WALLET)
        .send()
        .await
        .expect("nonce");
    assert_eq!(nonce.status(), StatusCode::OK);
    assert_eq!(header(&nonce, "access-control-allow-origin"), Some("*"));
    let exposed = header(&nonce, "access-control-expose-headers").expect("exposed");
    assert!(exposed.contains("DPoP-Nonce"), "{exposed}");
    let metadata = app
        .client
        .get(app.endpoint("/.well-known/openid-credential-issuer"))
        .header("Origin", WALLET)
        .send()
        .await
        .expect("metadata");
    assert_eq!(header(&metadata, "access-control-allow-origin"), Some("*"));
    // An error a browser wallet must be able to read carries the headers too.
    let refused = app
        .client
        .post(app.endpoint("/credential"))
        .header("Origin", WALLET)
        .json(&json!({}))
        .send()
        .await
        .expect("credential");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&refused, "access-control-allow-origin"), Some("*"));

    // The management API: no preflight answer, no CORS header, whoever asks.
    let answer = preflight(&app, "/api/v1/offers", WALLET).await;
    assert_ne!(answer.status(), StatusCode::NO_CONTENT);
    assert!(header(&answer, "access-control-allow-origin").is_none());
    let listed = app
        .client
        .get(app.endpoint("/api/v1/profiles"))
        .bearer_auth(API_KEY)
        .header("Origin", WALLET)
        .send()
        .await
        .expect("profiles");
    assert_eq!(listed.status(), StatusCode::OK);
    assert!(header(&listed, "access-control-allow-origin").is_none());
}

#[tokio::test]
async fn configured_origins_are_answered_by_name_and_others_refused() {
    let app = spawn_app_with(json!({"http": {"cors_origins": [WALLET]}})).await;
    let answer = preflight(&app, "/credential", WALLET).await;
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&answer, "access-control-allow-origin"), Some(WALLET));
    assert!(
        answer
            .headers()
            .get_all("vary")
            .iter()
            .any(|value| value == "origin")
    );
    let other = preflight(&app, "/credential", "https://elsewhere.example").await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    assert!(header(&other, "access-control-allow-origin").is_none());
    let read = app
        .client
        .post(app.endpoint("/nonce"))
        .header("Origin", "https://elsewhere.example")
        .send()
        .await
        .expect("nonce");
    assert_eq!(
        read.status(),
        StatusCode::OK,
        "served; the browser keeps it"
    );
    assert!(header(&read, "access-control-allow-origin").is_none());

    let closed = spawn_app_with(json!({"http": {"cors_origins": []}})).await;
    let answer = preflight(&closed, "/credential", WALLET).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
}
