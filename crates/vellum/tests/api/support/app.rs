//! Starting the real app for a test, and calling its management API.

use std::sync::Arc;

use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vellum::app::App;
use vellum::clock::ManualClock;
use vellum::config::Config;
use vellum::context::Context;

use crate::support::database::TestDir;

pub const API_KEY: &str = "test-api-key-0123456789-abcdefghijklmnop";
pub const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// reqwest is built without a TLS provider of its own (the service installs ring at start);
/// tests that make HTTP clients without starting an app in-process call this first.
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub struct TestApp {
    /// The credential issuer identifier, e.g. http://127.0.0.1:41234
    pub url: String,
    pub client: Client,
    /// The app's clock: tests move it instead of sleeping.
    pub clock: ManualClock,
    pub ctx: Arc<Context>,
    pub dir: Arc<TestDir>,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Merges `overrides` into the test defaults: port 0, the directory's database (a fresh SQLite
/// file, or a PostgreSQL database of its own), fixed keys.
pub fn test_config(dir: &TestDir, overrides: Value) -> Config {
    let mut base = json!({
        "api_key": API_KEY,
        "master_key": MASTER_KEY,
        "http": {"port": 0},
        "database": {"url": dir.database_url()},
        "sessions": {"sweep_interval_seconds": 3600},
    });
    merge(&mut base, overrides);
    Config::with_overrides(base, true).expect("valid test configuration")
}

fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (name, value) in overlay {
                merge(base.entry(name).or_insert(Value::Null), value);
            }
        }
        (base, overlay) => *base = overlay,
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(json!({})).await
}

pub async fn spawn_app_with(overrides: Value) -> TestApp {
    let dir = Arc::new(TestDir::new().await);
    spawn_app_in(dir, overrides).await
}

/// Starts an app on an existing directory (its database survives from an earlier app).
pub async fn spawn_app_in(dir: Arc<TestDir>, overrides: Value) -> TestApp {
    start(dir, overrides, ManualClock::starting_now()).await
}

/// An app whose clock runs in real time (still advanceable): for work that is scheduled,
/// such as webhook retries.
pub async fn spawn_running_app_with(overrides: Value) -> TestApp {
    let dir = Arc::new(TestDir::new().await);
    start(dir, overrides, ManualClock::running()).await
}

async fn start(dir: Arc<TestDir>, overrides: Value, clock: ManualClock) -> TestApp {
    let config = test_config(&dir, overrides);
    let app = App::build_with_clock(config, Arc::new(clock.clone()))
        .await
        .expect("app starts");
    let ctx = app.context();
    let url = ctx.issuer_url.clone();
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        url,
        client: Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        clock,
        ctx,
        dir,
        shutdown,
    }
}

impl TestApp {
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// A management API request with the API key.
    pub fn api(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.endpoint(path))
            .bearer_auth(API_KEY)
    }

    pub async fn api_json(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .api(method, path)
            .json(&body)
            .send()
            .await
            .expect("request");
        status_and_json(response).await
    }

    /// GETs a public JSON document (metadata, JWKS, DID document); panics unless 200.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self
            .client
            .get(self.endpoint(path))
            .send()
            .await
            .expect("GET");
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    pub async fn api_get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.api(Method::GET, path).send().await.expect("request");
        status_and_json(response).await
    }

    /// Creates an offer and returns the 201 body; panics on anything else.
    pub async fn create_offer(&self, body: Value) -> Value {
        let (status, offer) = self.api_json(Method::POST, "/api/v1/offers", body).await;
        assert_eq!(status, StatusCode::CREATED, "{offer}");
        offer
    }

    pub async fn session(&self, id: &str) -> Value {
        let (status, session) = self.api_get(&format!("/api/v1/sessions/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{session}");
        session
    }

    pub async fn event_types(&self, session: &str) -> Vec<String> {
        let (status, events) = self
            .api_get(&format!("/api/v1/sessions/{session}/events"))
            .await;
        assert_eq!(status, StatusCode::OK, "{events}");
        events["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|event| event["type"].as_str().expect("type").to_owned())
            .collect()
    }
}

pub async fn status_and_json(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    (status, body)
}

/// Asserts a management API error: status and `{code, detail}` with a non-empty detail.
pub fn assert_api_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|detail| !detail.is_empty()),
        "{body}"
    );
}

/// Asserts an OAuth-style error body (token, credential, offer endpoints).
pub fn assert_oauth_error(status: StatusCode, body: &Value, expected: StatusCode, error: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}
