//! Shared helpers of the feature tests: replies with their headers, sessions taken one step
//! along the flow, hand-made proofs, events, and free ports.

use reqwest::header::{CACHE_CONTROL, HeaderMap};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use vellum_formats::jose::{self, SigningKey};

use crate::support::TestApp;
use crate::support::wallet::{PRE_AUTHORIZED_GRANT, Wallet};

pub const CONFIGURATION: &str = "identity_credential";
pub const DEMO_PROFILE: &str = "demo-identity";
pub const DEMO_KEY: &str = "demo-es256";

/// The events of a complete SD-JWT VC flow, in order.
pub const SD_JWT_FLOW_EVENTS: [&str; 5] = [
    "credential_offer_created",
    "resolved_credential_offer",
    "requested_token",
    "sdjwt_issue",
    "issuance_status_changed",
];

/// A response taken apart: status, headers, raw text and JSON (`Null` when empty or not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Reply {
    pub async fn of(response: Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn assert_no_store(&self) {
        assert_eq!(
            self.headers
                .get(CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "{} {}",
            self.status,
            self.text
        );
    }

    /// Asserts an OAuth-style error: status, `error`, a non-empty `error_description`.
    pub fn assert_oauth_error(&self, status: StatusCode, error: &str) {
        crate::support::assert_oauth_error(self.status, &self.body, status, error);
    }

    /// Asserts a management API error: status, `code`, a non-empty `detail`.
    pub fn assert_api_error(&self, status: StatusCode, code: &str) {
        crate::support::assert_api_error(self.status, &self.body, status, code);
    }
}

pub fn offer_id(created: &Value) -> String {
    created["offerId"].as_str().expect("offerId").to_owned()
}

/// Creates an offer and resolves it as a wallet would; returns the creation response, the
/// offer object and its pre-authorized code.
pub async fn offer_with_code(app: &TestApp, body: Value) -> (Value, Value, String) {
    let created = app.create_offer(body).await;
    let offer = Wallet::new()
        .resolve(app, created["credentialOffer"].as_str().expect("uri"))
        .await;
    let code = Wallet::code(&offer);
    (created, offer, code)
}

pub async fn token_reply(app: &TestApp, form: &[(&str, &str)]) -> Reply {
    Reply::of(Wallet::new().token_request(app, form).await).await
}

/// The form of a pre-authorized code token request.
pub fn token_form<'a>(code: &'a str, tx_code: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", PRE_AUTHORIZED_GRANT),
        ("pre-authorized_code", code),
    ];
    if let Some(tx_code) = tx_code {
        form.push(("tx_code", tx_code));
    }
    form
}

/// An offer of the demo profile exchanged for an access token: (session id, token).
pub async fn session_with_token(app: &TestApp, offer: Value) -> (String, String) {
    let (created, _, code) = offer_with_code(app, offer).await;
    let token = Wallet::new()
        .token(app, &code, created["txCodeValue"].as_str())
        .await;
    (offer_id(&created), token)
}

pub async fn demo_session_with_token(app: &TestApp) -> (String, String) {
    session_with_token(app, json!({"profileId": DEMO_PROFILE})).await
}

pub async fn credential_reply(app: &TestApp, token: &str, body: &Value) -> Reply {
    Reply::of(Wallet::new().credential_request(app, token, body).await).await
}

/// A fresh nonce and a valid proof of `wallet` over it.
pub async fn fresh_proof(app: &TestApp, wallet: &Wallet) -> String {
    let nonce = wallet.nonce(app).await;
    wallet.proof(app, &nonce)
}

/// A JWS over any header and payload (`alg` is set from the key).
pub fn signed(header: Value, payload: &Value, key: &SigningKey) -> String {
    let Value::Object(header) = header else {
        panic!("header must be an object")
    };
    jose::sign_compact(header, payload, key)
}

/// The payload of a valid proof for `nonce`.
pub fn proof_payload(app: &TestApp, nonce: &str) -> Value {
    json!({"aud": app.url, "iat": app.clock_seconds(), "nonce": nonce})
}

/// The whole event log of a session, oldest first.
pub async fn events(app: &TestApp, session: &str) -> Vec<Value> {
    let (status, page) = app
        .api_get(&format!("/api/v1/sessions/{session}/events?limit=1000"))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().expect("items").clone()
}

pub async fn events_of(app: &TestApp, session: &str, event_type: &str) -> Vec<Value> {
    events(app, session)
        .await
        .into_iter()
        .filter(|event| event["type"] == event_type)
        .collect()
}

pub async fn session_status(app: &TestApp, session: &str) -> String {
    app.session(session).await["status"]
        .as_str()
        .expect("status")
        .to_owned()
}

/// The app's clock, in Unix milliseconds.
pub fn now_millis(app: &TestApp) -> i64 {
    use vellum::clock::Clock;
    app.clock.now()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// A valid profile body for the demo configuration and key, with `overrides` merged in (a null
/// override leaves the member out). Its issuer identity is a development chain unless
/// `overrides` names one (`issuerDid` or `x5Chain`, null for none).
pub fn profile_body(overrides: Value) -> Value {
    let mut body = json!({
        "name": "Test profile",
        "credentialConfigurationId": CONFIGURATION,
        "issuerKeyId": DEMO_KEY,
        "x5Chain": "development",
        "credentialData": {"given_name": "Ada", "family_name": "Lovelace"},
    });
    let (Value::Object(base), Value::Object(overrides)) = (&mut body, overrides) else {
        panic!("objects")
    };
    if overrides.contains_key("issuerDid") || overrides.contains_key("x5Chain") {
        base.remove("x5Chain");
    }
    for (name, value) in overrides {
        if value.is_null() {
            base.remove(&name);
        } else {
            base.insert(name, value);
        }
    }
    body
}

/// Creates a profile; panics unless 201. Returns the profile view.
pub async fn create_profile(app: &TestApp, body: Value) -> Value {
    let (status, profile) = app.api_json(Method::POST, "/api/v1/profiles", body).await;
    assert_eq!(status, StatusCode::CREATED, "{profile}");
    profile
}

/// Generates a key; panics unless 201. Returns the key view.
pub async fn generate_key(app: &TestApp, body: Value) -> Value {
    let (status, key) = app.api_json(Method::POST, "/api/v1/keys", body).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    key
}

pub async fn jwks_kids(app: &TestApp) -> Vec<String> {
    let jwks = app.get_json("/jwks").await;
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| key["kid"].as_str().expect("kid").to_owned())
        .collect()
}

/// Every object member name anywhere in `value`.
pub fn member_names(value: &Value) -> Vec<String> {
    let mut names = Vec::new();
    fn walk(value: &Value, names: &mut Vec<String>) {
        match value {
            Value::Object(object) => {
                for (name, member) in object {
                    names.push(name.clone());
                    walk(member, names);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, names)),
            _ => {}
        }
    }
    walk(value, &mut names);
    names
}

/// A real development chain for `key`: a fresh IACA key and root, then a certificate of
/// `profile` (`MDOC_DOCUMENT_SIGNER` or `SD_JWT_SIGNER`) for `key`. Returns the x5Chain (PEM,
/// leaf first).
pub async fn x5_chain_for(app: &TestApp, key: &str, profile: &str) -> Vec<String> {
    let ca = generate_key(app, json!({})).await;
    let ca_id = ca["id"].as_str().expect("id").to_owned();
    let (status, root) = app
        .api_json(
            Method::POST,
            &format!("/api/v1/keys/{ca_id}/certificates"),
            json!({"profile": "IACA", "commonName": "Vellum Test IACA", "country": "DE"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{root}");
    let (status, leaf) = app
        .api_json(
            Method::POST,
            &format!("/api/v1/keys/{key}/certificates"),
            json!({"profile": profile, "commonName": "Vellum Test Signer", "country": "DE",
                   "issuerKeyId": ca_id, "issuerCertificate": root["certificate"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{leaf}");
    serde_json::from_value(leaf["x5Chain"].clone()).expect("chain")
}
