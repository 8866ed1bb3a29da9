//! The console's HTTP side: the sign-in cookie and its CSRF token, the page and its assets, the
//! overview and the offer shown again. (interop::console drives the page in a browser.)

use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, ETAG, IF_NONE_MATCH, SET_COOKIE};
use reqwest::{Method, Response, StatusCode};
use serde_json::json;

use crate::support::wallet::Wallet;
use crate::support::{
    API_KEY, DEMO_PROFILE, TestApp, free_port, offer_id, spawn_app, spawn_app_in, spawn_app_with,
    status_and_json,
};

/// A signed-in console: its cookie header and its CSRF token.
struct SignedIn {
    cookie: String,
    csrf: String,
}

async fn sign_in(app: &TestApp) -> (SignedIn, Response) {
    let response = app
        .client
        .post(app.endpoint("/console/session"))
        .json(&json!({"apiKey": API_KEY}))
        .send()
        .await
        .expect("sign in");
    assert_eq!(response.status(), StatusCode::OK);
    let set = response.headers()[SET_COOKIE]
        .to_str()
        .expect("cookie")
        .to_owned();
    let value = set
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("vellum_console="))
        .expect("the console cookie")
        .to_owned();
    let (_, body) = status_and_json(
        app.client
            .get(app.endpoint("/console/session"))
            .header(COOKIE, format!("vellum_console={value}"))
            .send()
            .await
            .expect("session"),
    )
    .await;
    let signed_in = SignedIn {
        cookie: format!("vellum_console={value}"),
        csrf: body["csrfToken"].as_str().expect("csrf").to_owned(),
    };
    (signed_in, response)
}

impl SignedIn {
    fn request(&self, app: &TestApp, method: Method, path: &str) -> reqwest::RequestBuilder {
        app.client
            .request(method, app.endpoint(path))
            .header(COOKIE, &self.cookie)
    }

    async fn get(&self, app: &TestApp, path: &str) -> StatusCode {
        self.request(app, Method::GET, path)
            .send()
            .await
            .expect("GET")
            .status()
    }
}

#[tokio::test]
async fn signing_in_exchanges_the_api_key_for_a_strict_http_only_cookie() {
    let app = spawn_app().await;
    let wrong = app
        .client
        .post(app.endpoint("/console/session"))
        .json(&json!({"apiKey": "not-the-key"}))
        .send()
        .await
        .expect("sign in");
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    let (status, body) = status_and_json(wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "unauthorized");
    let form = app
        .client
        .post(app.endpoint("/console/session"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("apiKey={API_KEY}"))
        .send()
        .await
        .expect("sign in");
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let (signed_in, response) = sign_in(&app).await;
    let set = response.headers()[SET_COOKIE]
        .to_str()
        .expect("cookie")
        .to_owned();
    let attributes: Vec<&str> = set.split("; ").skip(1).collect();
    assert_eq!(
        attributes,
        ["Path=/", "Max-Age=28800", "HttpOnly", "SameSite=Strict"]
    );
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let (_, body) = status_and_json(response).await;
    let now = app.ctx.clock.now();
    assert_eq!(body["expiresAt"].as_i64(), Some(now + 8 * 3600 * 1000));
    assert_eq!(body["csrfToken"], signed_in.csrf.as_str());
    assert!(
        !signed_in.cookie.contains(API_KEY),
        "the cookie is not the key"
    );
}

#[tokio::test]
async fn the_cookie_reads_the_api_and_changes_need_its_csrf_token() {
    let app = spawn_app().await;
    let (console, _) = sign_in(&app).await;
    let (other, _) = sign_in(&app).await;
    assert_ne!(console.csrf, other.csrf);
    assert_eq!(console.get(&app, "/api/v1/sessions").await, StatusCode::OK);
    assert_eq!(console.get(&app, "/metrics").await, StatusCode::OK);
    let offer = json!({"profileId": DEMO_PROFILE});
    for csrf in [None, Some("forged"), Some(other.csrf.as_str())] {
        let mut request = console
            .request(&app, Method::POST, "/api/v1/offers")
            .json(&offer);
        if let Some(csrf) = csrf {
            request = request.header("X-CSRF-Token", csrf);
        }
        let (status, body) = status_and_json(request.send().await.expect("POST")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{csrf:?}");
        assert_eq!(body["code"], "forbidden");
    }
    let (status, _) = status_and_json(
        console
            .request(&app, Method::POST, "/api/v1/offers")
            .header("X-CSRF-Token", &console.csrf)
            .json(&offer)
            .send()
            .await
            .expect("POST"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    // An Authorization header is the credential when there is one: a wrong key is refused
    // whatever cookie comes with it.
    let wrong_key = console
        .request(&app, Method::GET, "/api/v1/sessions")
        .bearer_auth("not-the-key")
        .send()
        .await
        .expect("GET");
    assert_eq!(wrong_key.status(), StatusCode::UNAUTHORIZED);
    // A browser's EventSource sends the cookie: the stream opens.
    let stream = console
        .request(&app, Method::GET, "/api/v1/events")
        .header("Accept", "text/event-stream")
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream.headers()[CONTENT_TYPE]
            .to_str()
            .expect("type")
            .starts_with("text/event-stream")
    );
    let forged = app
        .client
        .get(app.endpoint("/api/v1/sessions"))
        .header(COOKIE, "vellum_console=forged")
        .send()
        .await
        .expect("GET");
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_expiry_and_a_new_api_key_each_end_a_sign_in() {
    let app = spawn_app().await;
    let (console, _) = sign_in(&app).await;
    let no_token = console
        .request(&app, Method::DELETE, "/console/session")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
    assert_eq!(console.get(&app, "/api/v1/sessions").await, StatusCode::OK);
    let out = console
        .request(&app, Method::DELETE, "/console/session")
        .header("X-CSRF-Token", &console.csrf)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        out.headers()[SET_COOKIE],
        "vellum_console=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
    );
    assert_eq!(
        console.get(&app, "/api/v1/sessions").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        console.get(&app, "/console/session").await,
        StatusCode::UNAUTHORIZED
    );

    let (console, _) = sign_in(&app).await;
    app.clock.advance_seconds(8 * 3600 - 1);
    assert_eq!(console.get(&app, "/api/v1/sessions").await, StatusCode::OK);
    app.clock.advance_seconds(1);
    assert_eq!(
        console.get(&app, "/api/v1/sessions").await,
        StatusCode::UNAUTHORIZED
    );

    let (console, _) = sign_in(&app).await;
    let dir = app.dir.clone();
    drop(app);
    let rekeyed = spawn_app_in(
        dir,
        json!({"api_key": "another-api-key-0123456789-abcdefghijklmnop"}),
    )
    .await;
    assert_eq!(
        console.get(&rekeyed, "/api/v1/sessions").await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_page_and_its_assets_are_compiled_in_and_locked_down() {
    let app = spawn_app().await;
    for path in ["/console", "/console/", "/console/sessions/anything"] {
        let response = app
            .client
            .get(app.endpoint(path))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        let policy = response.headers()["content-security-policy"]
            .to_str()
            .expect("policy");
        assert!(
            policy.starts_with("default-src 'none'; script-src 'self';"),
            "{policy}"
        );
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert_eq!(response.headers()["x-frame-options"], "DENY");
        let page = response.text().await.expect("page");
        assert!(page.contains(r#"src="/console/assets/app.js""#), "{page}");
        assert!(!page.contains("http"), "no third-party request: {page}");
    }
    for (asset, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let path = format!("/console/assets/{asset}");
        let response = app
            .client
            .get(app.endpoint(&path))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], content_type);
        assert_eq!(response.headers()[CACHE_CONTROL], "no-cache");
        let etag = response.headers()[ETAG].clone();
        let again = app
            .client
            .get(app.endpoint(&path))
            .header(IF_NONE_MATCH, etag)
            .send()
            .await
            .expect("GET");
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{asset}");
    }
    let script = app
        .client
        .get(app.endpoint("/console/assets/app.js"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("script");
    assert!(
        !script.contains("innerHTML"),
        "values reach the page as text"
    );
    assert!(
        !script.contains("localStorage.setItem"),
        "nothing kept in page storage"
    );

    let port = free_port();
    let tenant = spawn_app_with(json!({
        "public_url": format!("https://127.0.0.1:{port}/tenant"),
        "http": {"port": port},
    }))
    .await;
    let page = reqwest::get(format!("http://127.0.0.1:{port}/tenant/console"))
        .await
        .expect("GET");
    let page = page.text().await.expect("page");
    assert!(
        page.contains(r#"src="/tenant/console/assets/app.js""#),
        "{page}"
    );
    assert!(
        page.contains(r#"<meta name="vellum-base" content="/tenant">"#),
        "{page}"
    );
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/tenant/console/session"))
        .json(&json!({"apiKey": API_KEY}))
        .send()
        .await
        .expect("sign in");
    let set = response.headers()[SET_COOKIE].to_str().expect("cookie");
    assert!(
        set.ends_with("; Path=/tenant; Max-Age=28800; HttpOnly; SameSite=Strict; Secure"),
        "{set}"
    );
    drop(tenant);

    let off = spawn_app_with(json!({"console": {"enabled": false}})).await;
    for path in ["/console", "/console/assets/app.js"] {
        let response = off
            .client
            .get(off.endpoint(path))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let response = off
        .client
        .post(off.endpoint("/console/session"))
        .json(&json!({"apiKey": API_KEY}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_overview_counts_a_window_by_configuration_format_and_status() {
    let app = spawn_app().await;
    let (status, empty) = app.api_get("/api/v1/overview").await;
    assert_eq!(status, StatusCode::OK, "{empty}");
    assert_eq!(
        empty,
        json!({
            "windowSeconds": 3600,
            "sessions": [],
            "deliveries": {"DELIVERED": 0, "FAILED": 0, "GONE": 0, "PENDING": 0, "RETRYING": 0},
            "backlog": [],
            "latestSequence": 0,
        })
    );
    let done = app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    Wallet::new().complete(&app, &done).await;
    let (_, overview) = app.api_get("/api/v1/overview").await;
    assert_eq!(
        overview["sessions"],
        json!([
            {"credentialConfigurationId": "identity_credential", "format": "dc+sd-jwt",
             "status": "ACTIVE", "count": 2},
            {"credentialConfigurationId": "identity_credential", "format": "dc+sd-jwt",
             "status": "SUCCESSFUL", "count": 1},
        ])
    );
    // Three offers, one redeemed: its token, its credential, its status change.
    let (_, log) = app.api_get("/api/v1/events?limit=1000").await;
    let newest = log["items"]
        .as_array()
        .expect("items")
        .last()
        .expect("an event")["sequence"]
        .clone();
    assert_eq!(overview["latestSequence"], newest);

    app.clock.advance_seconds(3601);
    let (_, later) = app.api_get("/api/v1/overview").await;
    assert_eq!(later["sessions"], json!([]));
    let (_, day) = app.api_get("/api/v1/overview?windowSeconds=86400").await;
    assert_eq!(day["sessions"].as_array().expect("sessions").len(), 2);
    for window in ["0", "2592001", "-1", "hour"] {
        let (status, body) = app
            .api_get(&format!("/api/v1/overview?windowSeconds={window}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{window}: {body}");
        assert_eq!(body["code"], "invalid_query");
    }
}

#[tokio::test]
async fn an_offer_is_shown_again_while_it_can_be_redeemed() {
    let app = spawn_app().await;
    for value_mode in ["BY_REFERENCE", "BY_VALUE"] {
        let created = app
            .create_offer(json!({"profileId": DEMO_PROFILE, "valueMode": value_mode, "txCode": {}}))
            .await;
        let id = offer_id(&created);
        let (status, links) = app.api_get(&format!("/api/v1/offers/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{links}");
        assert_eq!(links["offerId"], created["offerId"]);
        assert_eq!(links["credentialOffer"], created["credentialOffer"]);
        assert_eq!(links["credentialOfferUri"], created["credentialOfferUri"]);
        assert_eq!(links["expiresAt"], created["expiresAt"]);
        assert!(
            links.get("txCodeValue").is_none(),
            "the tx code is shown once"
        );
        let qr = app
            .api(Method::GET, &format!("/api/v1/offers/{id}/qr"))
            .send()
            .await
            .expect("qr");
        assert_eq!(qr.status(), StatusCode::OK);
        assert_eq!(qr.headers()[CONTENT_TYPE], "image/svg+xml");
        let svg = qr.text().await.expect("svg");
        assert!(svg.starts_with("<svg"), "{svg}");

        Wallet::new().complete(&app, &created).await;
        for path in [
            format!("/api/v1/offers/{id}"),
            format!("/api/v1/offers/{id}/qr"),
        ] {
            let (status, body) = app.api_get(&path).await;
            assert_eq!(status, StatusCode::CONFLICT, "{path}: {body}");
            assert_eq!(body["code"], "offer_not_redeemable");
        }
    }
    for id in ["00000000-0000-4000-8000-000000000000", "not-a-session"] {
        let (status, body) = app.api_get(&format!("/api/v1/offers/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    let unauthenticated = app
        .client
        .get(app.endpoint("/api/v1/overview"))
        .send()
        .await
        .expect("GET");
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
}
