//! The secrets scan: after complete flows with a third-party wallet (which also sends the tx
//! code as `user_pin`) and a hand-driven one with the usual mistakes, no event, webhook body,
//! management listing or line of the real binary's log (at trace level) holds a pre-authorized
//! code, an offer handle, a tx code, an access token, a nonce, a DPoP proof, the API key, the
//! master key, a webhook's bearer token or signing secret, a stream token, or a private key
//! member; and after an authorization code flow with a real OpenID provider, wallet attestation,
//! DPoP and refresh tokens, none holds an issuer_state, a request_uri, the provider's code or
//! state, an authorization code, a PKCE verifier, a refresh token, the provider client secret, an
//! attestation PoP or a DPoP proof.

use base64::Engine;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vellum_formats::jose::{self, Algorithm, SigningKey};

use crate::support::attester::{self, WalletProvider};
use crate::support::database::TestDir;
use crate::support::interop::wallet_redeems;
use crate::support::process;
use crate::support::provider::{self, Provider};
use crate::support::wallet::{
    AUTHORIZATION_CODE_GRANT, Authorization, PRE_AUTHORIZED_GRANT, WALLET_CLIENT, WALLET_REDIRECT,
    Wallet, authorization_response,
};
use crate::support::webhooks::Receiver;
use crate::support::{API_KEY, MASTER_KEY};
use crate::support::{free_port, profile_body, signed};

struct Issuer {
    client: Client,
    url: String,
}

impl Issuer {
    async fn api(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(API_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON");
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}/token", self.url))
            .form(form)
            .send()
            .await
            .expect("POST /token");
        (response.status(), response.json().await.expect("JSON"))
    }

    /// The offer object and its handle (empty for an offer by value).
    async fn offer(&self, created: &Value) -> (Value, String) {
        let uri = created["credentialOffer"]
            .as_str()
            .expect("credentialOffer");
        let query = uri
            .strip_prefix("openid-credential-offer://?")
            .expect("scheme");
        let (name, value) = url::form_urlencoded::parse(query.as_bytes())
            .next()
            .expect("parameter");
        if name == "credential_offer" {
            return (serde_json::from_str(&value).expect("offer"), String::new());
        }
        let handle = value.rsplit('/').next().expect("handle").to_owned();
        let offer = self
            .client
            .get(value.as_ref())
            .send()
            .await
            .expect("GET offer")
            .json()
            .await
            .expect("offer");
        (offer, handle)
    }
}

fn code(offer: &Value) -> String {
    offer["grants"][PRE_AUTHORIZED_GRANT]["pre-authorized_code"]
        .as_str()
        .expect("code")
        .to_owned()
}

#[tokio::test]
async fn no_secret_reaches_an_event_a_webhook_a_listing_or_the_log() {
    let receiver = Receiver::start(Vec::new()).await;
    let dir = TestDir::new().await;
    let server = process::start(
        &dir,
        free_port(),
        &[
            ("VELLUM_LOG", "trace".into()),
            (
                "VELLUM_NOTIFICATIONS__ALLOW_PRIVATE_TARGETS",
                "[\"127.0.0.1/32\"]".into(),
            ),
        ],
    )
    .await;
    let issuer = Issuer {
        client: server.client(),
        url: server.url.clone(),
    };
    let bearer = "Webhook-Bearer-Token-7c1e5".to_owned();
    let signing_key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let webhook_secret = format!("whsec_{signing_key}");
    let mut secrets = vec![
        API_KEY.to_owned(),
        MASTER_KEY.to_owned(),
        bearer.clone(),
        webhook_secret.clone(),
        signing_key,
    ];
    let mut profile = profile_body(json!({"notifications": {"webhook": {
        "url": receiver.url, "bearerToken": bearer, "secret": webhook_secret}}}));
    profile["id"] = json!("scanned");
    issuer
        .api(Method::POST, "/api/v1/profiles", Some(profile))
        .await;

    // The third-party wallet, by reference and by value, each with a tx code.
    for (value_mode, parameter) in [
        ("BY_REFERENCE", "credential_offer_uri"),
        ("BY_VALUE", "credential_offer"),
    ] {
        let created = issuer
            .api(
                Method::POST,
                "/api/v1/offers",
                Some(json!({"profileId": "scanned", "txCode": {}, "valueMode": value_mode})),
            )
            .await;
        let (offer, handle) = issuer.offer(&created).await;
        secrets.extend([code(&offer), handle]);
        secrets.push(created["txCodeValue"].as_str().expect("tx code").to_owned());
        wallet_redeems(&created, parameter).await;
    }

    // By hand, with a wallet's mistakes: the tx code only as user_pin, then a wrong one.
    let created = issuer
        .api(
            Method::POST,
            "/api/v1/offers",
            Some(json!({"profileId": "scanned", "txCode": {"input_mode": "text", "length": 12}})),
        )
        .await;
    let tx_code = created["txCodeValue"].as_str().expect("tx code").to_owned();
    let (offer, handle) = issuer.offer(&created).await;
    let code = code(&offer);
    let wrong = "Wrong-Tx-9Q";
    for (form, expected) in [
        (
            vec![("user_pin", tx_code.as_str())],
            StatusCode::BAD_REQUEST,
        ),
        (vec![("tx_code", wrong)], StatusCode::BAD_REQUEST),
        (
            vec![
                ("tx_code", tx_code.as_str()),
                ("user_pin", tx_code.as_str()),
            ],
            StatusCode::OK,
        ),
    ] {
        let mut full = vec![
            ("grant_type", PRE_AUTHORIZED_GRANT),
            ("pre-authorized_code", code.as_str()),
        ];
        full.extend(form);
        let (status, body) = issuer.token(&full).await;
        assert_eq!(status, expected, "{body}");
        if status == StatusCode::OK {
            secrets.push(body["access_token"].as_str().expect("token").to_owned());
        }
    }
    let token = secrets.last().expect("token").clone();
    let nonce: Value = issuer
        .client
        .post(format!("{}/nonce", issuer.url))
        .send()
        .await
        .expect("nonce")
        .json()
        .await
        .expect("JSON");
    let nonce = nonce["c_nonce"].as_str().expect("c_nonce").to_owned();
    let holder = SigningKey::generate(Algorithm::ES256);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let proof = signed(
        json!({"typ": "openid4vci-proof+jwt", "jwk": holder.public_jwk().to_value()}),
        &json!({"aud": issuer.url, "iat": now, "nonce": nonce}),
        &holder,
    );
    let response = issuer
        .client
        .post(format!("{}/credential", issuer.url))
        .bearer_auth(&token)
        .json(
            &json!({"credential_configuration_id": "identity_credential",
                      "proofs": {"jwt": [proof.clone()]}}),
        )
        .send()
        .await
        .expect("credential");
    assert_eq!(response.status(), StatusCode::OK);
    secrets.extend([tx_code, wrong.to_owned(), handle, code, nonce, proof]);
    secrets.push(jose::b64(
        holder
            .private_jwk()
            .d
            .as_deref()
            .expect("private")
            .as_bytes(),
    ));
    // With DPoP: a proof for the wrong endpoint (refused and recorded), then a bound token and
    // a credential request with its proof. No proof may be copied anywhere.
    let created = issuer
        .api(
            Method::POST,
            "/api/v1/offers",
            Some(json!({"profileId": "scanned"})),
        )
        .await;
    let (offer, dpop_handle) = issuer.offer(&created).await;
    let dpop_code = self::code(&offer);
    let dpop_key = SigningKey::generate(Algorithm::ES256);
    let dpop_proof = |url: String, nonce: Option<&str>, token: Option<&str>| {
        let mut claims = json!({"jti": uuid::Uuid::new_v4().to_string(), "htm": "POST",
                                "htu": url, "iat": now});
        if let Some(nonce) = nonce {
            claims["nonce"] = Value::from(nonce);
        }
        if let Some(token) = token {
            claims["ath"] = Value::from(jose::b64(Sha256::digest(token.as_bytes())));
        }
        signed(
            json!({"typ": "dpop+jwt", "jwk": dpop_key.public_jwk().to_value()}),
            &claims,
            &dpop_key,
        )
    };
    let form = [
        ("grant_type", PRE_AUTHORIZED_GRANT),
        ("pre-authorized_code", dpop_code.as_str()),
    ];
    let dpop_nonce = issuer
        .client
        .post(format!("{}/nonce", issuer.url))
        .send()
        .await
        .expect("nonce")
        .headers()["DPoP-Nonce"]
        .to_str()
        .expect("DPoP-Nonce")
        .to_owned();
    let refused = dpop_proof(format!("{}/nonce", issuer.url), Some(&dpop_nonce), None);
    let accepted = dpop_proof(format!("{}/token", issuer.url), Some(&dpop_nonce), None);
    let mut bound = String::new();
    for (proof, expected) in [
        (&refused, StatusCode::BAD_REQUEST),
        (&accepted, StatusCode::OK),
    ] {
        let response = issuer
            .client
            .post(format!("{}/token", issuer.url))
            .header("DPoP", proof)
            .form(&form)
            .send()
            .await
            .expect("POST /token");
        assert_eq!(response.status(), expected);
        let body: Value = response.json().await.expect("JSON");
        if expected == StatusCode::OK {
            bound = body["access_token"].as_str().expect("token").to_owned();
        }
    }
    let credential_proof = dpop_proof(
        format!("{}/credential", issuer.url),
        Some(&dpop_nonce),
        Some(&bound),
    );
    let response = issuer
        .client
        .post(format!("{}/credential", issuer.url))
        .header("Authorization", format!("DPoP {bound}"))
        .header("DPoP", &credential_proof)
        .json(&json!({"credential_configuration_id": "identity_credential"}))
        .send()
        .await
        .expect("credential");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "no key proof");
    secrets.extend([
        refused,
        accepted,
        credential_proof,
        bound,
        dpop_code,
        dpop_handle,
    ]);

    let stream = issuer
        .api(Method::POST, "/api/v1/events/tokens", Some(json!({})))
        .await;
    secrets.push(stream["token"].as_str().expect("stream token").to_owned());

    // Every event reaches the webhook; then everything an operator or receiver can see.
    let events = issuer
        .api(Method::GET, "/api/v1/events?limit=1000", None)
        .await;
    let count = events["items"].as_array().expect("items").len();
    assert!(count >= 15, "{events}");
    let received = receiver.wait_for(count).await;
    let mut seen = vec![("events".to_owned(), events.to_string())];
    let sessions = issuer.api(Method::GET, "/api/v1/sessions", None).await;
    for session in sessions["items"].as_array().expect("items") {
        let id = session["sessionId"].as_str().expect("sessionId");
        let listed = issuer
            .api(Method::GET, &format!("/api/v1/sessions/{id}/events"), None)
            .await;
        seen.push((format!("session {id}"), listed.to_string()));
    }
    seen.push(("sessions".into(), sessions.to_string()));
    for path in ["/api/v1/profiles", "/api/v1/keys"] {
        let listed = issuer.api(Method::GET, path, None).await;
        seen.push((path.into(), listed.to_string()));
    }
    for delivery in received {
        seen.push((
            "webhook body".into(),
            String::from_utf8_lossy(&delivery.raw).into_owned(),
        ));
    }
    let log = std::fs::read_to_string(&server.log).expect("log");
    assert!(
        log.contains("request"),
        "the log holds the debug lines:\n{log}"
    );
    seen.push(("log".into(), log));

    // An offer by value has no handle.
    secrets.retain(|secret| !secret.is_empty());
    assert_hidden(&seen, &secrets);
}

/// No text seen holds a secret or a private key member.
fn assert_hidden(seen: &[(String, String)], secrets: &[String]) {
    for (what, text) in seen {
        for secret in secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what} holds the secret {secret}:\n{text}"
            );
        }
        assert!(
            !has_private_member(text),
            "{what} holds a private key member:\n{text}"
        );
    }
}

/// Whether `text` has a JSON member named `d` (a private JWK's scalar).
fn has_private_member(text: &str) -> bool {
    text.match_indices("\"d\"")
        .any(|(at, found)| text[at + found.len()..].trim_start().starts_with(':'))
}

#[tokio::test]
async fn no_secret_of_the_code_flow_reaches_an_event_a_webhook_a_listing_or_the_log() {
    let receiver = Receiver::start(Vec::new()).await;
    let dir = TestDir::new().await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let provider = Provider::start(free_port(), &url).await;
    let wallet_provider = WalletProvider::new();
    let trusted: Vec<String> = wallet_provider
        .key
        .public_jwk()
        .to_value()
        .as_object()
        .expect("JWK")
        .iter()
        .map(|(name, value)| format!("{name} = {value}"))
        .collect();
    let server = process::start(
        &dir,
        port,
        &[
            ("VELLUM_LOG", "trace".into()),
            (
                "VELLUM_NOTIFICATIONS__ALLOW_PRIVATE_TARGETS",
                "[\"127.0.0.1/32\"]".into(),
            ),
            (
                "VELLUM_AUTHORIZATION__PROVIDERS__CORP__ISSUER",
                provider.issuer.clone(),
            ),
            (
                "VELLUM_AUTHORIZATION__PROVIDERS__CORP__CLIENT_ID",
                provider::CLIENT_ID.into(),
            ),
            (
                "VELLUM_AUTHORIZATION__PROVIDERS__CORP__CLIENT_SECRET",
                provider::CLIENT_SECRET.into(),
            ),
            (
                "VELLUM_AUTHORIZATION__PROVIDERS__CORP__SCOPES",
                "[\"openid\", \"profile\"]".into(),
            ),
            ("VELLUM_AUTHORIZATION__REFRESH_TOKENS", "true".into()),
            ("VELLUM_DPOP__REQUIRE_NONCE", "false".into()),
            (
                "VELLUM_CLIENT_ATTESTATION__TRUSTED_KEYS",
                format!("[{{{}}}]", trusted.join(", ")),
            ),
        ],
    )
    .await;
    let issuer = Issuer {
        client: Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        url: server.url.clone(),
    };
    let mut secrets = vec![API_KEY.to_owned(), provider::CLIENT_SECRET.to_owned()];
    let mut profile = profile_body(json!({
        "identityProvider": provider::PROVIDER,
        "idTokenClaimsMapping": {"/given_name": "/given_name"},
        "notifications": {"webhook": {"url": receiver.url}},
    }));
    profile["id"] = json!("scanned-code-flow");
    issuer
        .api(Method::POST, "/api/v1/profiles", Some(profile))
        .await;
    let created = issuer
        .api(
            Method::POST,
            "/api/v1/offers",
            Some(json!({"profileId": "scanned-code-flow", "authMethod": "AUTHORIZED"})),
        )
        .await;
    let (offer, handle) = issuer.offer(&created).await;
    let issuer_state = offer["grants"][AUTHORIZATION_CODE_GRANT]["issuer_state"]
        .as_str()
        .expect("issuer_state")
        .to_owned();

    let now = || time::OffsetDateTime::now_utc().unix_timestamp();
    let instance = wallet_provider.instance_at(now(), WALLET_CLIENT);
    let dpop_key = SigningKey::generate(Algorithm::ES256);
    let dpop = |path: &str, token: Option<&str>| {
        let mut claims = json!({"jti": uuid::Uuid::new_v4().to_string(), "htm": "POST",
                                "htu": format!("{url}{path}"), "iat": now()});
        if let Some(token) = token {
            claims["ath"] = json!(jose::b64(Sha256::digest(token.as_bytes())));
        }
        signed(
            json!({"typ": "dpop+jwt", "jwk": dpop_key.public_jwk().to_value()}),
            &claims,
            &dpop_key,
        )
    };
    let attested = |request: reqwest::RequestBuilder, proofs: &mut Vec<String>| {
        let pop = instance.pop_for(&url, now(), json!({}));
        proofs.push(pop.clone());
        attester::headers(request, &instance.attestation, &pop)
    };
    let mut proofs = Vec::new();

    let authorization = Authorization::new();
    let par_proof = dpop("/par", None);
    let pushed: Value = attested(
        issuer
            .client
            .post(format!("{url}/par"))
            .form(&authorization.form(&issuer_state))
            .header("DPoP", &par_proof),
        &mut proofs,
    )
    .send()
    .await
    .expect("PAR")
    .json()
    .await
    .expect("JSON");
    let request_uri = pushed["request_uri"]
        .as_str()
        .expect("request_uri")
        .to_owned();
    let to_provider = issuer
        .client
        .get(format!("{url}/authorize"))
        .query(&[
            ("client_id", WALLET_CLIENT),
            ("request_uri", request_uri.as_str()),
        ])
        .send()
        .await
        .expect("authorize");
    let to_provider = to_provider.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let callback_prefix = format!("{url}/authorize/callback");
    let callback = provider::log_in(&to_provider, "alice", &callback_prefix).await;
    let callback_url = url::Url::parse(&callback).expect("callback URL");
    for (name, value) in callback_url.query_pairs() {
        if name == "code" || name == "state" {
            secrets.push(value.into_owned());
        }
    }
    let to_wallet = issuer.client.get(&callback).send().await.expect("callback");
    let to_wallet = to_wallet.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let code = authorization_response(&to_wallet)["code"]
        .as_str()
        .expect("code")
        .to_owned();

    let token_proof = dpop("/token", None);
    let form = [
        ("grant_type", AUTHORIZATION_CODE_GRANT),
        ("code", code.as_str()),
        ("redirect_uri", WALLET_REDIRECT),
        ("code_verifier", authorization.verifier.as_str()),
    ];
    let token: Value = attested(
        issuer
            .client
            .post(format!("{url}/token"))
            .form(&form)
            .header("DPoP", &token_proof),
        &mut proofs,
    )
    .send()
    .await
    .expect("token")
    .json()
    .await
    .expect("JSON");
    let access = token["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let refresh = token["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned();
    let refresh_proof = dpop("/token", None);
    let refreshed: Value = attested(
        issuer
            .client
            .post(format!("{url}/token"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
            ])
            .header("DPoP", &refresh_proof),
        &mut proofs,
    )
    .send()
    .await
    .expect("refresh")
    .json()
    .await
    .expect("JSON");
    let second_access = refreshed["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    let second_refresh = refreshed["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();

    let wallet = Wallet::new();
    let nonce: Value = issuer
        .client
        .post(format!("{url}/nonce"))
        .send()
        .await
        .expect("nonce")
        .json()
        .await
        .expect("JSON");
    let c_nonce = nonce["c_nonce"].as_str().expect("c_nonce").to_owned();
    let key_proof = signed(
        json!({"typ": "openid4vci-proof+jwt", "jwk": wallet.key.public_jwk().to_value()}),
        &json!({"aud": url, "iat": now(), "nonce": c_nonce}),
        &wallet.key,
    );
    let credential_proof = dpop("/credential", Some(&second_access));
    let response = issuer
        .client
        .post(format!("{url}/credential"))
        .header("Authorization", format!("DPoP {second_access}"))
        .header("DPoP", &credential_proof)
        .json(&json!({"credential_identifier": "identity_credential",
                      "proofs": {"jwt": [key_proof]}}))
        .send()
        .await
        .expect("credential");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        response.text().await.unwrap_or_default()
    );
    secrets.extend(proofs);
    secrets.extend([
        issuer_state,
        handle,
        request_uri,
        code,
        authorization.verifier.clone(),
        access,
        refresh,
        second_access,
        second_refresh,
        par_proof,
        token_proof,
        refresh_proof,
        credential_proof,
        c_nonce,
    ]);

    let events = issuer
        .api(Method::GET, "/api/v1/events?limit=1000", None)
        .await;
    let count = events["items"].as_array().expect("items").len();
    assert!(count >= 8, "{events}");
    let received = receiver.wait_for(count).await;
    let mut seen = vec![("events".to_owned(), events.to_string())];
    let sessions = issuer.api(Method::GET, "/api/v1/sessions", None).await;
    seen.push(("sessions".into(), sessions.to_string()));
    for delivery in received {
        seen.push((
            "webhook body".into(),
            String::from_utf8_lossy(&delivery.raw).into_owned(),
        ));
    }
    let log = std::fs::read_to_string(&server.log).expect("log");
    assert!(
        log.contains("request"),
        "the log holds the debug lines:\n{log}"
    );
    seen.push(("log".into(), log));
    secrets.retain(|secret| !secret.is_empty());
    assert_hidden(&seen, &secrets);
    provider.stop().await;
}
