//! Encrypted credential requests and responses with an independent JOSE library: PyPI jwcrypto
//! (interop/jwe.py) encrypts the request to the key the issuer's metadata publishes and
//! decrypts the response the issuer encrypted to the wallet's key.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::Command;
use vellum_formats::jwe::DecryptionKey;

use crate::support::interop::{interop_dir, require_installed, run};
use crate::support::wallet::{Wallet, check_sd_jwt};
use crate::support::{CONFIGURATION, Reply, TestApp, demo_session_with_token, spawn_app};

/// `interop/jwe.py <mode>` with `input` on stdin: its stdout.
async fn jwcrypto(mode: &str, input: Value) -> String {
    let dir = interop_dir();
    let python = require_installed(&dir.join(".venv/bin/python"), "PyPI jwcrypto");
    let mut command = Command::new(python);
    command.arg(dir.join("jwe.py")).arg(mode);
    let output = run(command, Some(&input.to_string()), "interop/jwe.py").await;
    assert!(
        output.status.success(),
        "jwcrypto {mode} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

async fn credential_request(app: &TestApp, token: &str, body: String) -> Reply {
    Reply::of(
        app.client
            .post(app.endpoint("/credential"))
            .bearer_auth(token)
            .header("Content-Type", "application/jwt")
            .body(body)
            .send()
            .await
            .expect("credential request"),
    )
    .await
}

#[tokio::test]
async fn jwcrypto_encrypts_the_request_and_decrypts_the_response() {
    let app = spawn_app().await;
    let metadata = app.get_json("/.well-known/openid-credential-issuer").await;
    let request_key = metadata["credential_request_encryption"]["jwks"]["keys"][0].clone();
    for (enc, zip) in [("A128GCM", false), ("A256GCM", true)] {
        let (_, token) = demo_session_with_token(&app).await;
        let wallet = Wallet::new();
        let nonce = wallet.nonce(&app).await;
        let holder_key = DecryptionKey::generate();
        let mut response_jwk = holder_key.public_jwk().to_value();
        response_jwk["kid"] = json!("holder-enc");
        let mut request = Wallet::request_body(CONFIGURATION, &wallet.proof(&app, &nonce));
        request["credential_response_encryption"] = json!({"jwk": response_jwk, "enc": enc});
        if zip {
            request["credential_response_encryption"]["zip"] = json!("DEF");
        }
        let encrypted = jwcrypto(
            "encrypt",
            json!({"jwk": request_key, "enc": enc, "zip": zip,
                   "plaintext": request.to_string()}),
        )
        .await;
        let reply = credential_request(&app, &token, encrypted).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.header("content-type"), Some("application/jwt"));
        let decrypted: Value = serde_json::from_str(
            &jwcrypto(
                "decrypt",
                json!({"jwk": holder_key.private_jwk().to_value(), "jwe": reply.text}),
            )
            .await,
        )
        .expect("JSON");
        assert_eq!(decrypted["header"]["enc"], enc);
        assert_eq!(decrypted["header"]["kid"], "holder-enc");
        let response: Value =
            serde_json::from_str(decrypted["plaintext"].as_str().expect("plaintext"))
                .expect("JSON response");
        let credential = response["credentials"][0]["credential"]
            .as_str()
            .expect("credential");
        let checked = check_sd_jwt(&app, credential).await;
        assert_eq!(
            checked.claims["cnf"]["jwk"],
            wallet.key.public_jwk().to_value()
        );
    }
}
