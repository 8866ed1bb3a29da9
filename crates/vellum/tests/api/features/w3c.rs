//! W3C Verifiable Credentials as JWT (`jwt_vc_json`) with a DID issuer identity.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vellum_formats::jose::{self, Jwk, UnverifiedJws};

use crate::support::wallet::Wallet;
use crate::support::{TestApp, spawn_app_with};
use crate::support::{
    create_profile, credential_reply, events_of, offer_id, proof_payload, session_status,
    session_with_token, signed,
};

const CONFIGURATION: &str = "university_degree";

async fn w3c_app() -> TestApp {
    spawn_app_with(json!({"credential_configurations": {CONFIGURATION: {
        "format": "jwt_vc_json",
        "scope": "degree",
        "credential_definition": {"type": ["VerifiableCredential", "UniversityDegreeCredential"]},
        "credential_signing_alg_values_supported": ["ES256"],
        "cryptographic_binding_methods_supported": ["did:jwk"],
        "proof_signing_alg_values_supported": ["ES256", "EdDSA"],
        "credential_metadata": {"display": [{"name": "University degree", "locale": "en"}]}
    }}}))
    .await
}

/// The did:jwk of the demo key, as the profile names its issuer.
async fn demo_key_did(app: &TestApp) -> String {
    let (status, key) = app.api_get("/api/v1/keys/demo-es256").await;
    assert_eq!(status, StatusCode::OK, "{key}");
    let jwk = Jwk::from_value(&key["publicJwk"]).expect("jwk");
    vellum_formats::did::did_jwk(&jwk)
}

fn degree_profile(did: &str) -> Value {
    json!({
        "name": "Degree",
        "credentialConfigurationId": CONFIGURATION,
        "issuerKeyId": "demo-es256",
        "issuerDid": did,
        "credentialData": {
            "@context": ["https://www.w3.org/2018/credentials/v1"],
            "credentialSubject": {"degree": {"type": "BachelorDegree", "name": "BSc Physics"}}
        }
    })
}

#[tokio::test]
async fn a_jwt_vc_json_credential_is_signed_by_the_issuer_did_and_bound_to_the_holder_did() {
    let app = w3c_app().await;
    let did = demo_key_did(&app).await;
    let profile = create_profile(&app, degree_profile(&did)).await;
    let created = app
        .create_offer(json!({"profileId": profile["profileId"]}))
        .await;
    let wallet = Wallet::new();
    let jwt = wallet.complete(&app, &created).await;

    let jws = UnverifiedJws::parse(&jwt).expect("a compact JWS");
    assert_eq!(jws.header["typ"], "JWT");
    assert_eq!(jws.header["kid"], format!("{did}#0"));
    // Resolve the issuer's key from the DID itself, as a verifier would.
    let encoded = did.strip_prefix("did:jwk:").expect("did:jwk");
    let issuer_jwk: Value =
        serde_json::from_slice(&vellum_formats::jose::b64_decode(encoded).expect("base64url"))
            .expect("JSON");
    jws.verify_with(&Jwk::from_value(&issuer_jwk).expect("jwk"))
        .expect("signed by the DID's key");
    let claims = &jws.payload;
    let holder = vellum_formats::did::did_jwk(&wallet.key.public_jwk());
    assert_eq!(claims["iss"], did.as_str());
    assert_eq!(claims["sub"], holder.as_str());
    assert_eq!(claims["vc"]["issuer"], did.as_str());
    assert_eq!(claims["vc"]["credentialSubject"]["id"], holder.as_str());
    assert_eq!(
        claims["vc"]["credentialSubject"]["degree"]["name"],
        "BSc Physics"
    );
    assert_eq!(
        claims["vc"]["type"],
        json!(["VerifiableCredential", "UniversityDegreeCredential"])
    );
    assert_eq!(claims["jti"], claims["vc"]["id"]);
    let iat = claims["iat"].as_i64().expect("iat");
    assert_eq!(claims["nbf"].as_i64(), Some(iat));
    assert_eq!(claims["exp"].as_i64(), Some(iat + 31_536_000));

    let issued = events_of(&app, &offer_id(&created), "jwt_issue").await;
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0]["data"]["jwt"], jwt.as_str());
}

#[tokio::test]
async fn the_metadata_describes_the_w3c_configuration() {
    let app = w3c_app().await;
    let metadata = app.get_json("/.well-known/openid-credential-issuer").await;
    let entry = &metadata["credential_configurations_supported"][CONFIGURATION];
    assert_eq!(entry["format"], "jwt_vc_json");
    assert_eq!(
        entry["credential_definition"]["type"],
        json!(["VerifiableCredential", "UniversityDegreeCredential"])
    );
    assert!(entry.get("vct").is_none());
}

#[tokio::test]
async fn a_jwt_vc_json_profile_without_a_did_is_refused() {
    let app = w3c_app().await;
    let mut body = degree_profile("did:example:unused");
    body.as_object_mut().expect("object").remove("issuerDid");
    let (status, error) = app.api_json(Method::POST, "/api/v1/profiles", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["code"], "invalid_profile");
    assert!(
        error["detail"]
            .as_str()
            .expect("detail")
            .contains("issuerDid")
    );
}

#[tokio::test]
async fn the_did_key_shorthand_becomes_the_keys_did_and_names_the_signing_key() {
    let app = w3c_app().await;
    let profile = create_profile(&app, degree_profile("did:key")).await;
    let did = profile["issuerDid"].as_str().expect("issuerDid").to_owned();
    assert!(did.starts_with("did:key:zDn"), "{did}");
    let created = app
        .create_offer(json!({"profileId": profile["profileId"]}))
        .await;
    let jwt = Wallet::new().complete(&app, &created).await;
    let jws = UnverifiedJws::parse(&jwt).expect("jws");
    let kid = jws.header["kid"].as_str().expect("kid");
    assert_eq!(kid, format!("{did}#{}", did.trim_start_matches("did:key:")));
    let key = vellum_formats::did::jwk_from_did(kid).expect("resolvable");
    jws.verify_with(&key).expect("signed by the did:key");
    assert_eq!(jws.payload["iss"], did.as_str());
}

#[tokio::test]
async fn an_issuer_did_of_another_key_is_refused() {
    let app = w3c_app().await;
    let other = vellum_formats::jose::SigningKey::generate(vellum_formats::jose::Algorithm::ES256);
    let did = vellum_formats::did::did_jwk(&other.public_jwk());
    let (status, error) = app
        .api_json(Method::POST, "/api/v1/profiles", degree_profile(&did))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(
        error["detail"]
            .as_str()
            .expect("detail")
            .contains("not a DID of key")
    );
}

#[tokio::test]
async fn a_did_web_issuer_is_resolvable_through_the_served_did_document() {
    let app = w3c_app().await;
    let profile = create_profile(&app, degree_profile("did:web")).await;
    let did = profile["issuerDid"].as_str().expect("issuerDid").to_owned();
    let port = app.url.rsplit(':').next().expect("port");
    assert_eq!(did, format!("did:web:127.0.0.1%3A{port}"));
    let created = app
        .create_offer(json!({"profileId": profile["profileId"]}))
        .await;
    let jwt = Wallet::new().complete(&app, &created).await;
    let jws = UnverifiedJws::parse(&jwt).expect("jws");
    let kid = jws.header["kid"].as_str().expect("kid");
    assert_eq!(kid, format!("{did}#demo-es256"));

    // Resolve as did:web does: host -> /.well-known/did.json, then the method by its id.
    let document = app.get_json("/.well-known/did.json").await;
    assert_eq!(document["id"], did.as_str());
    let method = document["verificationMethod"]
        .as_array()
        .expect("methods")
        .iter()
        .find(|method| method["id"] == kid)
        .expect("the kid is a verification method");
    assert!(
        document["assertionMethod"]
            .as_array()
            .expect("assertion")
            .contains(&Value::from(kid))
    );
    let jwk = Jwk::from_value(&method["publicKeyJwk"]).expect("jwk");
    jws.verify_with(&jwk).expect("signed by the did:web key");
}

/// A credential request for the degree whose proof names the wallet's key by `kid`.
fn proof_by_kid(app: &TestApp, wallet: &Wallet, kid: &str, nonce: &str) -> Value {
    let proof = signed(
        json!({"typ": "openid4vci-proof+jwt", "kid": kid}),
        &proof_payload(app, nonce),
        &wallet.key,
    );
    Wallet::request_body(CONFIGURATION, &proof)
}

#[tokio::test]
async fn a_wallet_that_names_its_key_by_a_did_url_gets_a_credential_bound_to_that_did() {
    let app = w3c_app().await;
    let did = demo_key_did(&app).await;
    let profile = create_profile(&app, degree_profile(&did)).await;
    let wallet = Wallet::new();
    // The wallet's own did:jwk, its JSON members in the wallet's order (not the lexical one
    // this issuer writes): the credential names it exactly as the wallet does.
    let jwk = wallet.key.public_jwk().to_value();
    let own = format!(
        r#"{{"kty":"EC","crv":"P-256","x":{},"y":{}}}"#,
        jwk["x"], jwk["y"]
    );
    let holder = format!("did:jwk:{}", jose::b64(own));
    assert_ne!(
        holder,
        vellum_formats::did::did_jwk(&wallet.key.public_jwk())
    );

    let (session, token) =
        session_with_token(&app, json!({"profileId": profile["profileId"]})).await;
    let nonce = wallet.nonce(&app).await;
    // A DID URL that names no verification method, or another DID method, is refused.
    for kid in [
        holder.clone(),
        format!("{holder}#1"),
        format!(
            "{}#key",
            vellum_formats::did::did_key(&wallet.key.public_jwk()).expect("did:key")
        ),
        "https://wallet.example/keys/1".to_owned(),
    ] {
        let reply =
            credential_reply(&app, &token, &proof_by_kid(&app, &wallet, &kid, &nonce)).await;
        reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_proof");
    }
    let reply = credential_reply(
        &app,
        &token,
        &proof_by_kid(&app, &wallet, &format!("{holder}#0"), &nonce),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let jwt = reply.body["credentials"][0]["credential"]
        .as_str()
        .expect("credential");
    let claims = UnverifiedJws::parse(jwt).expect("JWS").payload;
    assert_eq!(claims["sub"], holder.as_str());
    assert_eq!(claims["vc"]["credentialSubject"]["id"], holder.as_str());
    assert_eq!(session_status(&app, &session).await, "SUCCESSFUL");
}

#[tokio::test]
async fn a_did_key_binding_is_accepted_where_the_configuration_advertises_it() {
    let app = spawn_app_with(json!({"credential_configurations": {CONFIGURATION: {
        "format": "jwt_vc_json",
        "credential_definition": {"type": ["VerifiableCredential", "UniversityDegreeCredential"]},
        "credential_signing_alg_values_supported": ["ES256"],
        "cryptographic_binding_methods_supported": ["did:key"],
        "proof_signing_alg_values_supported": ["ES256"],
    }}}))
    .await;
    let did = demo_key_did(&app).await;
    let profile = create_profile(&app, degree_profile(&did)).await;
    let wallet = Wallet::new();
    let holder = vellum_formats::did::did_key(&wallet.key.public_jwk()).expect("did:key");
    let (_, token) = session_with_token(&app, json!({"profileId": profile["profileId"]})).await;
    let nonce = wallet.nonce(&app).await;
    // did:jwk is not advertised here.
    let jwk_url = format!(
        "{}#0",
        vellum_formats::did::did_jwk(&wallet.key.public_jwk())
    );
    let reply =
        credential_reply(&app, &token, &proof_by_kid(&app, &wallet, &jwk_url, &nonce)).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_proof");
    assert!(
        reply.text.contains("does not bind to did:jwk"),
        "{}",
        reply.text
    );
    let kid = vellum_formats::did::did_key_verification_method(&holder);
    let reply = credential_reply(&app, &token, &proof_by_kid(&app, &wallet, &kid, &nonce)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let jwt = reply.body["credentials"][0]["credential"]
        .as_str()
        .expect("credential");
    let claims = UnverifiedJws::parse(jwt).expect("JWS").payload;
    assert_eq!(claims["sub"], holder.as_str());
    assert_eq!(claims["vc"]["credentialSubject"]["id"], holder.as_str());
}
