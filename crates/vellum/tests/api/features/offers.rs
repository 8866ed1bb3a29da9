//! Creating offers (validation, tx codes, runtime overrides) and resolving them by reference.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::wallet::{PRE_AUTHORIZED_GRANT, Wallet, check_sd_jwt};
use crate::support::{
    CONFIGURATION, DEMO_PROFILE, Reply, create_profile, events_of, generate_key, jwks_kids,
    now_millis, offer_id, offer_with_code, profile_body, session_status,
};
use crate::support::{TestApp, spawn_app};

/// The alphabet of generated text tx codes: no 0/O, 1/I/L.
const TEXT_ALPHABET: &str = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";

async fn create(app: &TestApp, body: Value) -> Reply {
    Reply::of(
        app.api(Method::POST, "/api/v1/offers")
            .json(&body)
            .send()
            .await
            .expect("request"),
    )
    .await
}

async fn get_offer(app: &TestApp, uri: &str) -> Reply {
    Reply::of(app.client.get(uri).send().await.expect("GET offer")).await
}

#[tokio::test]
async fn an_offer_for_an_unknown_profile_is_404_not_found() {
    let app = spawn_app().await;
    let reply = create(&app, json!({"profileId": "no-such-profile"})).await;
    reply.assert_api_error(StatusCode::NOT_FOUND, "not_found");
    let reply = create(&app, json!({"profileId": "not a slug"})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
}

#[tokio::test]
async fn an_offer_for_a_deactivated_profile_is_409_profile_inactive() {
    let app = spawn_app().await;
    create_profile(&app, profile_body(json!({"id": "retired"}))).await;
    app.create_offer(json!({"profileId": "retired"})).await;
    let response = app
        .api(Method::DELETE, "/api/v1/profiles/retired")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    create(&app, json!({"profileId": "retired"}))
        .await
        .assert_api_error(StatusCode::CONFLICT, "profile_inactive");
}

#[tokio::test]
async fn an_authorization_code_offer_needs_a_profile_with_an_identity_provider() {
    let app = spawn_app().await;
    let reply = create(
        &app,
        json!({"profileId": DEMO_PROFILE, "authMethod": "AUTHORIZED"}),
    )
    .await;
    reply.assert_api_error(StatusCode::BAD_REQUEST, "invalid_offer");
    let reply = create(
        &app,
        json!({"profileId": DEMO_PROFILE, "authMethod": "MAGIC"}),
    )
    .await;
    reply.assert_api_error(StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn an_expiry_of_minus_one_zero_or_beyond_the_maximum_is_invalid_expiry() {
    let app = spawn_app().await;
    for seconds in [-1, 0, 2_592_001, i64::MAX] {
        let reply = create(
            &app,
            json!({"profileId": DEMO_PROFILE, "expiresInSeconds": seconds}),
        )
        .await;
        reply.assert_api_error(StatusCode::BAD_REQUEST, "invalid_expiry");
    }
    let now = now_millis(&app);
    for seconds in [1, 2_592_000] {
        let created = app
            .create_offer(json!({"profileId": DEMO_PROFILE, "expiresInSeconds": seconds}))
            .await;
        assert_eq!(created["expiresAt"], now + seconds * 1000);
    }
    let created = app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    assert_eq!(created["expiresAt"], now + 300_000, "the default is 300 s");
}

#[tokio::test]
async fn malformed_tx_code_settings_are_invalid_tx_code() {
    let app = spawn_app().await;
    for tx in [
        json!({"txCode": {"length": 2}}),
        json!({"txCode": {"length": 33}}),
        json!({"txCode": {"description": "d".repeat(301)}}),
        json!({"txCode": {"input_mode": "numeric"}, "txCodeValue": "abcd"}),
        json!({"txCode": {"input_mode": "numeric", "length": 6}, "txCodeValue": "1234"}),
        json!({"txCode": {"input_mode": "text"}, "txCodeValue": "has space"}),
        json!({"txCodeValue": "12"}),
        json!({"txCodeValue": "1".repeat(33)}),
    ] {
        let mut body = tx.clone();
        body["profileId"] = json!(DEMO_PROFILE);
        let reply = create(&app, body).await;
        reply.assert_api_error(StatusCode::BAD_REQUEST, "invalid_tx_code");
    }
    let reply = create(
        &app,
        json!({"profileId": DEMO_PROFILE, "txCode": {"input_mode": "alphanumeric"}}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    // The limits themselves are fine.
    let created = app
        .create_offer(json!({
            "profileId": DEMO_PROFILE,
            "txCode": {"length": 4, "description": "d".repeat(300)}
        }))
        .await;
    assert_eq!(created["txCodeValue"].as_str().unwrap().len(), 4);
}

#[tokio::test]
async fn an_unknown_request_field_is_rejected_with_400() {
    let app = spawn_app().await;
    for body in [
        json!({"profileId": DEMO_PROFILE, "credentialConfigurationIds": [CONFIGURATION]}),
        json!({"profileId": DEMO_PROFILE, "txCode": {"input_mode": "numeric", "secret": 1}}),
        json!({}),
    ] {
        let reply = create(&app, body).await;
        reply.assert_api_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let (status, page) = app.api_get("/api/v1/sessions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"], json!([]), "no session was created");
}

#[tokio::test]
async fn malformed_runtime_overrides_are_rejected_with_400() {
    let app = spawn_app().await;
    let cases = [
        (json!({"mapping": {"jti": "<nope>"}}), "invalid_override"),
        (json!({"mapping": {"jti": 5}}), "invalid_override"),
        (
            json!({"credentialData": {"iss": "https://evil.example"}}),
            "invalid_override",
        ),
        (json!({"issuerDid": "not-a-did"}), "invalid_override"),
        (json!({"issuerKeyId": "no-such-key"}), "unknown_key"),
        (
            json!({"expectedCredentialProofKeyJwk": Wallet::new().key.private_jwk().to_value()}),
            "invalid_override",
        ),
        (
            json!({"expectedCredentialProofKeyJwk": {"kty": "RSA"}}),
            "invalid_override",
        ),
        (json!({"unknownOverride": true}), "invalid_request"),
    ];
    for (overrides, code) in cases {
        let reply = create(
            &app,
            json!({"profileId": DEMO_PROFILE, "runtimeOverrides": overrides}),
        )
        .await;
        reply.assert_api_error(StatusCode::BAD_REQUEST, code);
    }
    // DID Core syntax: a lowercase method, idchars, no empty last segment.
    for did in [
        "did:web:has space",
        "did:Web:issuer.example",
        "did:web:issuer.example:",
    ] {
        let overrides = json!({"issuerDid": did});
        create(
            &app,
            json!({"profileId": DEMO_PROFILE, "runtimeOverrides": overrides}),
        )
        .await
        .assert_api_error(StatusCode::BAD_REQUEST, "invalid_override");
    }
}

#[tokio::test]
async fn runtime_credential_data_is_deep_merged_into_the_issued_credential() {
    let app = spawn_app().await;
    let created = app
        .create_offer(json!({
            "profileId": DEMO_PROFILE,
            "runtimeOverrides": {"credentialData": {
                "given_name": "Lisa",
                "address": {"locality": "Berlin"},
                "membership": {"level": "gold"}
            }}
        }))
        .await;
    let credential = Wallet::new().complete(&app, &created).await;
    let claims = check_sd_jwt(&app, &credential).await.claims;
    assert_eq!(claims["given_name"], "Lisa");
    assert_eq!(claims["family_name"], "Mustermann", "untouched claims stay");
    assert_eq!(claims["address"]["locality"], "Berlin");
    assert_eq!(claims["address"]["street_address"], "Heidestraße 17");
    assert_eq!(claims["address"]["country"], "DE");
    assert_eq!(claims["membership"], json!({"level": "gold"}));

    // The profile itself is unchanged: the next offer issues its data.
    let created = app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    let credential = Wallet::new().complete(&app, &created).await;
    let claims = check_sd_jwt(&app, &credential).await.claims;
    assert_eq!(claims["given_name"], "Erika");
    assert_eq!(claims["address"]["locality"], "Köln");
    assert!(!claims.contains_key("membership"));
}

#[tokio::test]
async fn a_runtime_issuer_key_signs_the_credential_and_joins_the_jwks() {
    let app = spawn_app().await;
    let key = generate_key(&app, json!({"id": "rotated-2025"})).await;
    assert!(!jwks_kids(&app).await.contains(&"rotated-2025".to_owned()));
    // The profile's certificate chain certifies the demo key, not this one.
    let (status, refused) = app
        .api_json(
            Method::POST,
            "/api/v1/offers",
            json!({"profileId": DEMO_PROFILE, "runtimeOverrides": {"issuerKeyId": "rotated-2025"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["code"], "invalid_override");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("does not certify issuerKeyId"),
        "{refused}"
    );
    let created = app
        .create_offer(json!({
            "profileId": DEMO_PROFILE,
            "runtimeOverrides": {"issuerKeyId": "rotated-2025", "x5Chain": "development"}
        }))
        .await;
    assert!(
        jwks_kids(&app).await.contains(&"rotated-2025".to_owned()),
        "published as soon as an offer uses it"
    );
    let credential = Wallet::new().complete(&app, &created).await;
    let checked = check_sd_jwt(&app, &credential).await;
    assert_eq!(checked.header["kid"], "rotated-2025");
    let jws =
        vellum_formats::jose::UnverifiedJws::parse(credential.split('~').next().unwrap()).unwrap();
    let public = vellum_formats::jose::Jwk::from_value(&key["publicJwk"]).unwrap();
    jws.verify_with(&public)
        .expect("signed by the generated key");
    assert!(jwks_kids(&app).await.contains(&"demo-es256".to_owned()));
}

#[tokio::test]
async fn an_issuer_key_whose_algorithm_the_configuration_does_not_advertise_is_refused() {
    let app = spawn_app().await;
    generate_key(&app, json!({"id": "edwards", "keyType": "Ed25519"})).await;
    let reply = create(
        &app,
        json!({"profileId": DEMO_PROFILE, "runtimeOverrides": {"issuerKeyId": "edwards"}}),
    )
    .await;
    reply.assert_api_error(StatusCode::BAD_REQUEST, "invalid_override");
    assert!(reply.body["detail"].as_str().unwrap().contains("EdDSA"));
    assert!(!jwks_kids(&app).await.contains(&"edwards".to_owned()));
}

#[tokio::test]
async fn generated_tx_codes_follow_the_input_mode_and_text_ones_use_the_unambiguous_alphabet() {
    let app = spawn_app().await;
    let mut seen = String::new();
    for _ in 0..8 {
        let (created, offer, _) = offer_with_code(
            &app,
            json!({"profileId": DEMO_PROFILE, "txCode": {"input_mode": "text", "length": 32}}),
        )
        .await;
        let value = created["txCodeValue"].as_str().unwrap();
        assert_eq!(value.len(), 32);
        assert!(
            value.chars().all(|c| TEXT_ALPHABET.contains(c)),
            "{value} strays from the alphabet"
        );
        let tx_code = &offer["grants"][PRE_AUTHORIZED_GRANT]["tx_code"];
        assert_eq!(tx_code["input_mode"], "text");
        assert_eq!(tx_code["length"], 32);
        seen.push_str(value);
    }
    // 256 random characters from 31: nearly every one shows up, and the codes differ.
    let distinct = TEXT_ALPHABET.chars().filter(|c| seen.contains(*c)).count();
    assert!(
        distinct >= 20,
        "only {distinct} distinct characters in {seen}"
    );

    let created = app
        .create_offer(json!({"profileId": DEMO_PROFILE, "txCode": {}}))
        .await;
    let value = created["txCodeValue"].as_str().unwrap();
    assert!(
        value.len() == 6 && value.bytes().all(|b| b.is_ascii_digit()),
        "{value}"
    );
}

#[tokio::test]
async fn an_offer_by_reference_resolves_repeatedly_until_redeemed_then_answers_404() {
    let app = spawn_app().await;
    let created = app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    let uri = created["credentialOfferUri"].as_str().unwrap();
    assert!(
        uri.starts_with(&format!("{}/credential-offer/", app.url)),
        "{uri}"
    );
    let encoded: String = url::form_urlencoded::byte_serialize(uri.as_bytes()).collect();
    assert_eq!(
        created["credentialOffer"],
        format!("openid-credential-offer://?credential_offer_uri={encoded}")
    );
    let first = get_offer(&app, uri).await;
    let second = get_offer(&app, uri).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    assert_eq!(first.body, second.body);
    assert!(
        first
            .header("content-type")
            .is_some_and(|value| value.starts_with("application/json"))
    );
    first.assert_no_store();

    Wallet::new()
        .token(&app, &Wallet::code(&first.body), None)
        .await;
    let gone = get_offer(&app, uri).await;
    gone.assert_oauth_error(StatusCode::NOT_FOUND, "invalid_request");
    assert_eq!(
        events_of(&app, &offer_id(&created), "resolved_credential_offer")
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn an_expired_offer_uri_answers_404_and_expires_the_session() {
    let app = spawn_app().await;
    let created = app
        .create_offer(json!({"profileId": DEMO_PROFILE, "expiresInSeconds": 30}))
        .await;
    let uri = created["credentialOfferUri"].as_str().unwrap();
    app.clock.advance_seconds(29);
    assert_eq!(get_offer(&app, uri).await.status, StatusCode::OK);
    app.clock.advance_seconds(1);
    let reply = get_offer(&app, uri).await;
    reply.assert_oauth_error(StatusCode::NOT_FOUND, "invalid_request");
    assert_eq!(session_status(&app, &offer_id(&created)).await, "EXPIRED");
    let again = get_offer(&app, uri).await;
    again.assert_oauth_error(StatusCode::NOT_FOUND, "invalid_request");
}

#[tokio::test]
async fn an_unknown_offer_handle_answers_404_with_an_oauth_error() {
    let app = spawn_app().await;
    let reply = get_offer(&app, &app.endpoint("/credential-offer/unknown-handle")).await;
    reply.assert_oauth_error(StatusCode::NOT_FOUND, "invalid_request");
}

#[tokio::test]
async fn the_offer_names_this_issuer_the_configuration_and_the_tx_code_without_its_value() {
    let app = spawn_app().await;
    let (created, offer, code) = offer_with_code(
        &app,
        json!({
            "profileId": DEMO_PROFILE,
            "txCode": {"input_mode": "numeric", "length": 8, "description": "See your letter"}
        }),
    )
    .await;
    let value = created["txCodeValue"].as_str().unwrap();
    assert_eq!(value.len(), 8);
    assert_eq!(offer["credential_issuer"], app.url.as_str());
    assert_eq!(
        offer["credential_configuration_ids"],
        json!([CONFIGURATION])
    );
    let grants = offer["grants"].as_object().unwrap();
    assert_eq!(grants.len(), 1, "only the pre-authorized grant: {offer}");
    let grant = &grants[PRE_AUTHORIZED_GRANT];
    assert!(code.len() >= 32, "an unguessable code: {code}");
    assert_eq!(
        grant["tx_code"],
        json!({"input_mode": "numeric", "length": 8, "description": "See your letter"})
    );
    assert!(!offer.to_string().contains(value), "{offer}");

    // By value, the same offer object travels in the URI.
    let created = app
        .create_offer(json!({"profileId": DEMO_PROFILE, "valueMode": "BY_VALUE"}))
        .await;
    let by_value = Wallet::new()
        .resolve(&app, created["credentialOffer"].as_str().unwrap())
        .await;
    assert_eq!(by_value["credential_issuer"], app.url.as_str());
    assert_eq!(
        by_value["credential_configuration_ids"],
        json!([CONFIGURATION])
    );
    assert!(
        by_value["grants"][PRE_AUTHORIZED_GRANT]
            .get("tx_code")
            .is_none()
    );
}

#[tokio::test]
async fn the_creation_response_describes_the_offer_and_its_session() {
    let app = spawn_app().await;
    let profile = create_profile(&app, profile_body(json!({"id": "described"}))).await;
    assert_eq!(profile["version"], 1);
    let created = app
        .create_offer(json!({"profileId": "described", "txCodeValue": "4711"}))
        .await;
    assert_eq!(created["profileId"], "described");
    assert_eq!(created["profileVersion"], 1);
    assert_eq!(created["authMethod"], "PRE_AUTHORIZED");
    assert_eq!(created["valueMode"], "BY_REFERENCE");
    assert_eq!(created["txCodeValue"], "4711");
    let session = app.session(&offer_id(&created)).await;
    assert_eq!(session["status"], "ACTIVE");
    assert_eq!(session["profileId"], "described");
    assert_eq!(session["credentialConfigurationId"], CONFIGURATION);
    assert_eq!(session["txCodeRequired"], true);
    assert_eq!(session["expiresAt"], created["expiresAt"]);
    assert!(session["resolvedAt"].is_null());
}

#[tokio::test]
async fn resolving_an_offer_is_recorded_with_the_code_redacted() {
    let app = spawn_app().await;
    let (created, offer, code) = offer_with_code(
        &app,
        json!({"profileId": DEMO_PROFILE, "txCode": {"length": 5}}),
    )
    .await;
    let id = offer_id(&created);
    let resolved = events_of(&app, &id, "resolved_credential_offer").await;
    assert_eq!(resolved.len(), 1);
    let recorded = &resolved[0]["data"]["credentialOffer"];
    assert_eq!(recorded["credential_issuer"], app.url.as_str());
    assert_eq!(
        recorded["credential_configuration_ids"],
        json!([CONFIGURATION])
    );
    let grant = &recorded["grants"][PRE_AUTHORIZED_GRANT];
    assert_eq!(grant["pre-authorized_code"], "[redacted]");
    assert_eq!(
        grant["tx_code"],
        offer["grants"][PRE_AUTHORIZED_GRANT]["tx_code"]
    );
    assert!(!resolved[0].to_string().contains(&code));
    let session = app.session(&id).await;
    assert!(session["resolvedAt"].is_i64(), "{session}");
}

#[tokio::test]
async fn an_issuer_did_override_replaces_the_profiles_x5_chain_for_that_offer() {
    let app = spawn_app().await;
    let chain = crate::support::x5_chain_for(&app, "demo-es256", "SD_JWT_SIGNER").await;
    let profile = create_profile(&app, profile_body(json!({"x5Chain": chain}))).await;
    let created = app
        .create_offer(json!({
            "profileId": profile["profileId"],
            "runtimeOverrides": {"issuerDid": "did:web:issuer.example"}
        }))
        .await;
    let credential = Wallet::new().complete(&app, &created).await;
    let checked = check_sd_jwt(&app, &credential).await;
    assert_eq!(checked.claims["iss"], "did:web:issuer.example");
    assert!(checked.header.get("x5c").is_none(), "{:?}", checked.header);
}

/// A profile's chain is verified when the profile is stored; offers made from it later check
/// that it is still valid, so no credential goes out under an expired certificate.
#[tokio::test]
async fn an_offer_from_a_profile_whose_certificate_has_expired_is_refused() {
    let app = spawn_app().await;
    let chain = crate::support::x5_chain_for(&app, "demo-es256", "SD_JWT_SIGNER").await;
    let profile = create_profile(&app, profile_body(json!({"x5Chain": chain}))).await;
    app.create_offer(json!({"profileId": profile["profileId"]}))
        .await;
    // The signer certificate is valid for 365 days.
    app.clock.advance_seconds(366 * 86_400);
    let (status, refused) = app
        .api_json(
            Method::POST,
            "/api/v1/offers",
            json!({"profileId": profile["profileId"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["code"], "invalid_profile");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("x5Chain is no longer valid"),
        "{refused}"
    );
}
