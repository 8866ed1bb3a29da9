//! Encrypted credential requests and responses (OID4VCI 1.0 §8.2, §10): a wallet asks for its
//! response as a JWE to its key (`credential_response_encryption`), and may send its request as
//! a JWE to the issuer's request key; bad parameters are `invalid_encryption_parameters`, never
//! encrypted; `encryption.required` refuses anything else.

use reqwest::StatusCode;
use serde_json::{Value, json};
use vellum_formats::jose::Jwk;
use vellum_formats::jwe::{self, ContentEncryption, DecryptionKey};

use crate::support::wallet::{Wallet, check_sd_jwt};
use crate::support::{
    CONFIGURATION, Reply, TestApp, demo_session_with_token, session_status, session_with_token,
    spawn_app, spawn_app_with,
};

/// The wallet's response encryption key, as its request names it.
fn response_encryption(key: &DecryptionKey, enc: &str, zip: Option<&str>) -> Value {
    let mut jwk = key.public_jwk().to_value();
    jwk["kid"] = json!("wallet-enc-1");
    jwk["alg"] = json!("ECDH-ES");
    let mut asked = json!({"jwk": jwk, "enc": enc});
    if let Some(zip) = zip {
        asked["zip"] = json!(zip);
    }
    asked
}

/// A credential request for the demo configuration with a fresh proof of `wallet`.
async fn request_body(app: &TestApp, wallet: &Wallet) -> Value {
    let nonce = wallet.nonce(app).await;
    Wallet::request_body(CONFIGURATION, &wallet.proof(app, &nonce))
}

/// The issuer's request key from its metadata, and its kid.
async fn request_key(app: &TestApp) -> (Jwk, String) {
    let metadata = app.get_json("/.well-known/openid-credential-issuer").await;
    let key = &metadata["credential_request_encryption"]["jwks"]["keys"][0];
    (
        Jwk::from_value(key).expect("request key"),
        key["kid"].as_str().expect("kid").to_owned(),
    )
}

async fn send(app: &TestApp, token: &str, content_type: &str, body: String) -> Reply {
    Reply::of(
        app.client
            .post(app.endpoint("/credential"))
            .bearer_auth(token)
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .expect("credential request"),
    )
    .await
}

/// `request` as a JWE to the issuer's request key.
async fn encrypted(app: &TestApp, request: &Value, enc: ContentEncryption, zip: bool) -> String {
    let (key, kid) = request_key(app).await;
    jwe::encrypt(
        request.to_string().as_bytes(),
        &key,
        enc,
        Some(&kid),
        zip,
        None,
    )
    .expect("encrypt")
}

#[tokio::test]
async fn metadata_offers_both_directions_and_a_response_comes_encrypted_as_asked() {
    let app = spawn_app().await;
    let metadata = app.get_json("/.well-known/openid-credential-issuer").await;
    assert_eq!(
        metadata["credential_response_encryption"],
        json!({"alg_values_supported": ["ECDH-ES"], "enc_values_supported": ["A128GCM", "A256GCM"],
               "zip_values_supported": ["DEF"], "encryption_required": false})
    );
    let requests = &metadata["credential_request_encryption"];
    assert_eq!(requests["encryption_required"], false);
    let key = &requests["jwks"]["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert_eq!(
        (key["use"].as_str(), key["alg"].as_str()),
        (Some("enc"), Some("ECDH-ES"))
    );
    assert!(key.get("d").is_none(), "the public key only");
    // The same key after a restart on the same master key.
    let again = spawn_app().await;
    let (_, kid) = request_key(&again).await;
    assert_eq!(Some(kid.as_str()), key["kid"].as_str());

    for (enc, zip) in [("A128GCM", None), ("A256GCM", Some("DEF"))] {
        let (session, token) = demo_session_with_token(&app).await;
        let wallet = Wallet::new();
        let holder_key = DecryptionKey::generate();
        let mut request = request_body(&app, &wallet).await;
        request["credential_response_encryption"] = response_encryption(&holder_key, enc, zip);
        let reply = Reply::of(wallet.credential_request(&app, &token, &request).await).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.header("content-type"), Some("application/jwt"));
        reply.assert_no_store();
        let decrypted = jwe::decrypt(&reply.text, &holder_key, 1 << 20).expect("decrypts");
        assert_eq!(decrypted.header["enc"], enc);
        assert_eq!(decrypted.header["kid"], "wallet-enc-1");
        assert_eq!(decrypted.header.get("zip").and_then(Value::as_str), zip);
        let response: Value = serde_json::from_slice(&decrypted.plaintext).expect("JSON");
        let credential = response["credentials"][0]["credential"]
            .as_str()
            .expect("credential");
        let checked = check_sd_jwt(&app, credential).await;
        assert_eq!(
            checked.claims["cnf"]["jwk"],
            wallet.key.public_jwk().to_value()
        );
        assert!(response["notification_id"].is_string());
        assert_eq!(session_status(&app, &session).await, "SUCCESSFUL");
    }
}

#[tokio::test]
async fn bad_encryption_parameters_are_refused_in_the_clear_and_issue_nothing() {
    let app = spawn_app().await;
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    let holder_key = DecryptionKey::generate();
    let p384 = vellum_formats::jose::SigningKey::generate(vellum_formats::jose::Algorithm::ES384)
        .public_jwk()
        .to_value();
    let mut private = holder_key.private_jwk().to_value();
    private["alg"] = json!("ECDH-ES");
    let base = response_encryption(&holder_key, "A128GCM", None);
    let variants = [
        json!("not an object"),
        json!({"enc": "A128GCM"}),
        json!({"jwk": base["jwk"]}),
        json!({"jwk": base["jwk"], "enc": "A192GCM"}),
        json!({"jwk": base["jwk"], "enc": "A128CBC-HS256"}),
        json!({"jwk": base["jwk"], "enc": "A128GCM", "zip": "GZIP"}),
        json!({"jwk": p384, "enc": "A128GCM"}),
        json!({"jwk": private, "enc": "A128GCM"}),
        json!({"jwk": {"kty": "EC", "crv": "P-256", "x": base["jwk"]["x"], "y": base["jwk"]["y"],
                       "alg": "RSA-OAEP"}, "enc": "A128GCM"}),
    ];
    for asked in variants {
        let mut request = request_body(&app, &wallet).await;
        request["credential_response_encryption"] = asked.clone();
        let reply = Reply::of(wallet.credential_request(&app, &token, &request).await).await;
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_encryption_parameters");
        assert!(
            reply
                .header("content-type")
                .is_some_and(|value| value.contains("json")),
            "{asked}: errors are never encrypted"
        );
    }
    // Encrypted requests: without response encryption, to another key, or not a JWE at all.
    let plain = request_body(&app, &wallet).await;
    let body = encrypted(&app, &plain, ContentEncryption::A128Gcm, false).await;
    send(&app, &token, "application/jwt", body)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_encryption_parameters");
    let other = DecryptionKey::generate();
    let stray = jwe::encrypt(
        plain.to_string().as_bytes(),
        &other.public_jwk(),
        ContentEncryption::A128Gcm,
        None,
        false,
        None,
    )
    .expect("encrypt");
    send(&app, &token, "application/jwt", stray)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_encryption_parameters");
    send(
        &app,
        &token,
        "application/jwt",
        "eyJ.not.a.jwe.at-all".into(),
    )
    .await
    .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_encryption_parameters");
    assert_eq!(session_status(&app, &session).await, "ACTIVE");
}

#[tokio::test]
async fn an_encrypted_request_gets_its_encrypted_response_and_required_encryption_refuses_the_rest()
{
    let app = spawn_app_with(json!({"encryption": {"required": true}})).await;
    let metadata = app.get_json("/.well-known/openid-credential-issuer").await;
    assert_eq!(
        metadata["credential_response_encryption"]["encryption_required"],
        true
    );
    assert_eq!(
        metadata["credential_request_encryption"]["encryption_required"],
        true
    );
    let (session, token) = demo_session_with_token(&app).await;
    let wallet = Wallet::new();
    let holder_key = DecryptionKey::generate();
    // In the clear: refused, with or without response encryption.
    let plain = request_body(&app, &wallet).await;
    let reply = Reply::of(wallet.credential_request(&app, &token, &plain).await).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_encryption_parameters");
    let mut asking = request_body(&app, &wallet).await;
    asking["credential_response_encryption"] = response_encryption(&holder_key, "A256GCM", None);
    let reply = Reply::of(wallet.credential_request(&app, &token, &asking).await).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_encryption_parameters");

    let mut request = request_body(&app, &wallet).await;
    request["credential_response_encryption"] =
        response_encryption(&holder_key, "A256GCM", Some("DEF"));
    let body = encrypted(&app, &request, ContentEncryption::A256Gcm, true).await;
    let reply = send(&app, &token, "application/jwt", body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let response: Value = serde_json::from_slice(
        &jwe::decrypt(&reply.text, &holder_key, 1 << 20)
            .expect("decrypts")
            .plaintext,
    )
    .expect("JSON");
    assert_eq!(response["credentials"].as_array().map(Vec::len), Some(1));
    assert_eq!(session_status(&app, &session).await, "SUCCESSFUL");

    // A deferred answer is encrypted too.
    let (_, token) = session_with_token(
        &app,
        json!({"profileId": crate::support::DEMO_PROFILE, "runtimeOverrides": {"deferred": true}}),
    )
    .await;
    let mut request = request_body(&app, &wallet).await;
    request["credential_response_encryption"] = response_encryption(&holder_key, "A128GCM", None);
    let body = encrypted(&app, &request, ContentEncryption::A128Gcm, false).await;
    let reply = send(&app, &token, "application/jwt", body).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    let deferred: Value = serde_json::from_slice(
        &jwe::decrypt(&reply.text, &holder_key, 1 << 20)
            .expect("decrypts")
            .plaintext,
    )
    .expect("JSON");
    assert!(deferred["transaction_id"].is_string(), "{deferred}");
}
