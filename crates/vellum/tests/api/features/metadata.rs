//! The discovery documents and the nonce endpoint, at the root and under an issuer path.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::wallet::{PRE_AUTHORIZED_GRANT, Wallet, check_sd_jwt};
use crate::support::{CONFIGURATION, DEMO_KEY, DEMO_PROFILE, Reply, free_port};
use crate::support::{TestApp, spawn_app, spawn_app_with};

/// GET on the server's origin (no issuer path), e.g. `/.well-known/...`.
async fn get_origin(app: &TestApp, path: &str) -> Reply {
    let url = url::Url::parse(&app.url).expect("issuer URL");
    let origin = url.origin().ascii_serialization();
    Reply::of(
        app.client
            .get(format!("{origin}{path}"))
            .send()
            .await
            .expect("request"),
    )
    .await
}

async fn json_document(app: &TestApp, path: &str) -> Value {
    let reply = get_origin(app, path).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|value| value.starts_with("application/json")),
        "{path}"
    );
    reply.body
}

#[tokio::test]
async fn credential_issuer_metadata_describes_the_demo_configuration() {
    let app = spawn_app().await;
    let metadata = json_document(&app, "/.well-known/openid-credential-issuer").await;
    assert_eq!(metadata["credential_issuer"], app.url.as_str());
    assert!(!app.url.ends_with('/'));
    assert_eq!(
        metadata["credential_endpoint"],
        format!("{}/credential", app.url)
    );
    assert_eq!(metadata["nonce_endpoint"], format!("{}/nonce", app.url));
    assert_eq!(metadata["batch_credential_issuance"]["batch_size"], 10);
    assert_eq!(
        metadata["deferred_credential_endpoint"],
        format!("{}/deferred-credential", app.url)
    );
    assert_eq!(
        metadata["notification_endpoint"],
        format!("{}/notification", app.url)
    );
    let configurations = metadata["credential_configurations_supported"]
        .as_object()
        .unwrap();
    assert_eq!(configurations.len(), 1);
    let configuration = &configurations[CONFIGURATION];
    assert_eq!(configuration["format"], "dc+sd-jwt");
    assert_eq!(
        configuration["vct"],
        "urn:vellum:demo:identity_credential:1"
    );
    assert_eq!(configuration["scope"], "identity_credential");
    assert_eq!(
        configuration["credential_signing_alg_values_supported"],
        json!(["ES256"])
    );
    assert_eq!(
        configuration["cryptographic_binding_methods_supported"],
        json!(["jwk"])
    );
    assert_eq!(
        configuration["proof_types_supported"],
        json!({"jwt": {"proof_signing_alg_values_supported": ["ES256", "ES384", "EdDSA"]}})
    );
    let display = &configuration["credential_metadata"]["display"][0];
    assert_eq!(display["name"], "Demo identity credential");
    assert_eq!(display["locale"], "en");
    let claims = configuration["credential_metadata"]["claims"]
        .as_array()
        .unwrap();
    assert_eq!(claims.len(), 7);
    assert!(
        claims
            .iter()
            .any(|claim| claim["path"] == json!(["address", "locality"]))
    );
}

#[tokio::test]
async fn a_configured_credential_configuration_appears_as_configured() {
    let app = spawn_app_with(json!({
        "credential_configurations": {"membership": {
            "format": "dc+sd-jwt",
            "vct": "https://credentials.example/membership",
            "credential_signing_alg_values_supported": ["ES256"],
            "cryptographic_binding_methods_supported": ["jwk"],
            "proof_signing_alg_values_supported": ["EdDSA"]
        }}
    }))
    .await;
    let metadata = json_document(&app, "/.well-known/openid-credential-issuer").await;
    let configurations = metadata["credential_configurations_supported"]
        .as_object()
        .unwrap();
    assert_eq!(configurations.len(), 2);
    let membership = &configurations["membership"];
    assert_eq!(membership["vct"], "https://credentials.example/membership");
    assert_eq!(
        membership["scope"], "membership",
        "HAIP: a scope for every configuration"
    );
    assert_eq!(membership["credential_metadata"], json!({}));
    assert_eq!(
        membership["proof_types_supported"]["jwt"]["proof_signing_alg_values_supported"],
        json!(["EdDSA"])
    );
}

#[tokio::test]
async fn authorization_server_metadata_advertises_both_grants_par_pkce_and_dpop() {
    let app = spawn_app().await;
    let metadata = json_document(&app, "/.well-known/oauth-authorization-server").await;
    assert_eq!(metadata["issuer"], app.url.as_str());
    assert_eq!(metadata["token_endpoint"], format!("{}/token", app.url));
    assert_eq!(
        metadata["grant_types_supported"],
        json!(["authorization_code", PRE_AUTHORIZED_GRANT])
    );
    assert_eq!(
        metadata["pre-authorized_grant_anonymous_access_supported"],
        true
    );
    assert_eq!(
        metadata["authorization_endpoint"],
        format!("{}/authorize", app.url)
    );
    assert_eq!(
        metadata["pushed_authorization_request_endpoint"],
        format!("{}/par", app.url)
    );
    assert_eq!(metadata["require_pushed_authorization_requests"], true);
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(metadata["response_types_supported"], json!(["code"]));
    assert_eq!(
        metadata["authorization_response_iss_parameter_supported"],
        true
    );
    assert_eq!(
        metadata["authorization_details_types_supported"],
        json!(["openid_credential"])
    );
}

#[tokio::test]
async fn jwt_vc_issuer_metadata_names_the_issuer_and_embeds_the_jwks() {
    let app = spawn_app().await;
    let metadata = json_document(&app, "/.well-known/jwt-vc-issuer").await;
    assert_eq!(metadata["issuer"], app.url.as_str());
    let keys = metadata["jwks"]["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], DEMO_KEY);
    assert!(keys[0].get("d").is_none());
    let jwks = get_origin(&app, "/jwks").await;
    assert_eq!(jwks.status, StatusCode::OK);
    assert_eq!(metadata["jwks"], jwks.body);
    // A credential verifies with the key found there.
    let created = app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    let credential = Wallet::new().complete(&app, &created).await;
    let checked = check_sd_jwt(&app, &credential).await;
    assert_eq!(checked.header["kid"], keys[0]["kid"]);
}

#[tokio::test]
async fn the_nonce_endpoint_hands_out_distinct_uncacheable_nonces() {
    let app = spawn_app().await;
    let mut nonces = std::collections::HashSet::new();
    for _ in 0..10 {
        let response = app
            .client
            .post(app.endpoint("/nonce"))
            .send()
            .await
            .unwrap();
        let reply = Reply::of(response).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        reply.assert_no_store();
        let members: Vec<&String> = reply.body.as_object().unwrap().keys().collect();
        assert_eq!(members, ["c_nonce"]);
        let nonce = reply.body["c_nonce"].as_str().unwrap().to_owned();
        assert!(nonce.len() >= 22, "{nonce}");
        nonces.insert(nonce);
    }
    assert_eq!(nonces.len(), 10);
    let response = app.client.get(app.endpoint("/nonce")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn an_issuer_url_with_a_path_serves_metadata_under_the_path_and_the_whole_flow() {
    let port = free_port();
    let app = spawn_app_with(json!({
        "public_url": format!("http://127.0.0.1:{port}/tenant"),
        "http": {"port": port},
    }))
    .await;
    assert_eq!(app.url, format!("http://127.0.0.1:{port}/tenant"));

    let metadata = json_document(&app, "/.well-known/openid-credential-issuer/tenant").await;
    assert_eq!(metadata["credential_issuer"], app.url.as_str());
    assert_eq!(
        metadata["credential_endpoint"],
        format!("{}/credential", app.url)
    );
    assert_eq!(metadata["nonce_endpoint"], format!("{}/nonce", app.url));
    let authorization = json_document(&app, "/.well-known/oauth-authorization-server/tenant").await;
    assert_eq!(authorization["issuer"], app.url.as_str());
    assert_eq!(
        authorization["token_endpoint"],
        format!("{}/token", app.url)
    );
    let sd_jwt = json_document(&app, "/.well-known/jwt-vc-issuer/tenant").await;
    assert_eq!(sd_jwt["issuer"], app.url.as_str());
    // did:web puts the path into the DID, and resolves it to <path>/did.json.
    let did = format!("did:web:127.0.0.1%3A{port}:tenant");
    let document = get_origin(&app, "/tenant/did.json").await;
    assert_eq!(document.status, StatusCode::OK, "{}", document.text);
    assert_eq!(document.body["id"], did.as_str());
    assert_eq!(
        document.body["assertionMethod"][0],
        format!("{did}#{}", crate::support::DEMO_KEY)
    );
    let (status, profile) = app
        .api_json(
            reqwest::Method::POST,
            "/api/v1/profiles",
            crate::support::profile_body(json!({"issuerDid": "did:web"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{profile}");
    assert_eq!(profile["issuerDid"], did.as_str());
    for wrong in [
        "/.well-known/did.json",
        "/.well-known/openid-credential-issuer",
        "/tenant/.well-known/openid-credential-issuer",
        "/.well-known/openid-credential-issuer/other",
        "/token",
    ] {
        assert_eq!(
            get_origin(&app, wrong).await.status,
            StatusCode::NOT_FOUND,
            "{wrong}"
        );
    }

    let created = app
        .create_offer(json!({"profileId": DEMO_PROFILE, "txCode": {}}))
        .await;
    assert!(
        created["credentialOfferUri"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/credential-offer/", app.url))
    );
    let wallet = Wallet::new();
    let offer = wallet
        .resolve(&app, created["credentialOffer"].as_str().unwrap())
        .await;
    assert_eq!(offer["credential_issuer"], app.url.as_str());
    let credential = wallet
        .complete(
            &app,
            &app.create_offer(json!({"profileId": DEMO_PROFILE})).await,
        )
        .await;
    let checked = check_sd_jwt(&app, &credential).await;
    assert_eq!(checked.claims["iss"], app.url.as_str());
    // A proof addressed to the bare origin is not for this issuer.
    let (_, token) = crate::support::demo_session_with_token(&app).await;
    let nonce = wallet.nonce(&app).await;
    let mut claims = wallet.claims(&app, &nonce);
    claims.aud = json!(format!("http://127.0.0.1:{port}"));
    let reply = crate::support::credential_reply(
        &app,
        &token,
        &Wallet::request_body(CONFIGURATION, &wallet.proof_with(&claims)),
    )
    .await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_proof");
}

/// OID4VCI 1.0 §12.2.2: with a signing key, `Accept: application/jwt` gets the metadata as a JWT
/// whose x5c chain certifies the key that signed it; JSON otherwise, and without a key.
#[tokio::test]
async fn signed_metadata_is_served_on_accept_application_jwt() {
    let app = spawn_app_with(json!({"metadata": {"signing_key": DEMO_KEY}})).await;
    let path = "/.well-known/openid-credential-issuer";
    let signed = Reply::of(
        app.client
            .get(app.endpoint(path))
            .header("Accept", "application/jwt, application/json;q=0.5")
            .send()
            .await
            .expect("metadata"),
    )
    .await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.text);
    assert_eq!(signed.header("content-type"), Some("application/jwt"));
    assert_eq!(signed.header("vary"), Some("accept"));
    let jws = vellum_formats::jose::UnverifiedJws::parse(&signed.text).expect("a compact JWS");
    assert_eq!(jws.header["typ"], "openidvci-issuer-metadata+jwt");
    let chain: Vec<Vec<u8>> = jws.header["x5c"]
        .as_array()
        .expect("x5c")
        .iter()
        .map(|der| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(der.as_str().expect("base64"))
                .expect("DER")
        })
        .collect();
    let leaf = vellum_formats::x509::leaf_public_jwk(&chain[0]).expect("leaf key");
    jws.verify_with(&leaf).expect("signed by the certified key");
    let claims = &jws.payload;
    assert_eq!(claims["sub"], app.url.as_str());
    assert!(claims["exp"].as_i64() > claims["iat"].as_i64());
    let plain = app.get_json(path).await;
    assert_eq!(
        claims["credential_configurations_supported"],
        plain["credential_configurations_supported"]
    );
    // Without a key, a wallet asking for a JWT gets the JSON.
    let unsigned = spawn_app().await;
    let reply = Reply::of(
        unsigned
            .client
            .get(unsigned.endpoint(path))
            .header("Accept", "application/jwt")
            .send()
            .await
            .expect("metadata"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.body["credential_issuer"].is_string(),
        "{}",
        reply.text
    );
}
