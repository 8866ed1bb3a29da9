//! Headers every response carries: `X-Content-Type-Options: nosniff` everywhere, and
//! `Cache-Control: no-store` on the management API (offers carry tx codes, stream tokens are
//! credentials) as on the token, nonce, credential and offer endpoints.

use reqwest::header::{CACHE_CONTROL, X_CONTENT_TYPE_OPTIONS};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::spawn_app;
use crate::support::{DEMO_PROFILE, Reply};

fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "x"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_response_says_nosniff_and_management_responses_are_never_stored() {
    let app = spawn_app().await;
    let mut checked = 0;
    for route in vellum::http::routes(&app.ctx) {
        let method = route.method;
        let path = concrete(&route.path);
        let management = path.starts_with("/api/v1/") && path != "/api/v1/openapi.json";
        // With the key and without: successes, 4xx and 401 alike.
        for keyed in [true, false] {
            let request = if keyed {
                app.api(method.clone(), &path)
            } else {
                app.client.request(method.clone(), app.endpoint(&path))
            };
            let reply = Reply::of(request.send().await.expect("request")).await;
            let context = format!("{method} {path} (key: {keyed}) -> {}", reply.status);
            assert_eq!(
                reply.header(X_CONTENT_TYPE_OPTIONS.as_str()),
                Some("nosniff"),
                "{context}"
            );
            if management {
                assert_eq!(
                    reply.header(CACHE_CONTROL.as_str()),
                    Some("no-store"),
                    "{context}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 40);
    for path in ["/no/such/path", "/api/v1/no/such/path"] {
        let reply = Reply::of(
            app.client
                .get(app.endpoint(path))
                .send()
                .await
                .expect("GET"),
        )
        .await;
        assert_eq!(
            reply.header(X_CONTENT_TYPE_OPTIONS.as_str()),
            Some("nosniff"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn an_offer_with_its_tx_code_and_a_stream_token_are_never_stored() {
    let app = spawn_app().await;
    let offer = app
        .api(Method::POST, "/api/v1/offers")
        .json(&json!({"profileId": DEMO_PROFILE, "txCode": {}}))
        .send()
        .await
        .expect("POST");
    let reply = Reply::of(offer).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert!(reply.body["txCodeValue"].is_string());
    reply.assert_no_store();
    let token = app
        .api(Method::POST, "/api/v1/events/tokens")
        .json(&json!({}))
        .send()
        .await
        .expect("POST");
    let reply = Reply::of(token).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.assert_no_store();
}
