//! Credential profiles: create, read, version, deactivate, every validation rule, request
//! hygiene of the management API, and what a profile puts into credentials.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::wallet::{Wallet, check_sd_jwt};
use crate::support::{API_KEY, TestApp, spawn_app, spawn_app_with};
use crate::support::{
    CONFIGURATION, DEMO_KEY, DEMO_PROFILE, Reply, create_profile, generate_key, offer_id,
    profile_body,
};

const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----";

async fn send(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Reply {
    let mut request = app.api(method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    Reply::of(request.send().await.expect("request")).await
}

async fn post_profile(app: &TestApp, body: Value) -> Reply {
    send(app, Method::POST, "/api/v1/profiles", Some(body)).await
}

async fn issue(app: &TestApp, created: &Value) -> serde_json::Map<String, Value> {
    let credential = Wallet::new().complete(app, created).await;
    check_sd_jwt(app, &credential).await.claims
}

#[tokio::test]
async fn a_profile_created_with_an_id_is_201_and_readable_under_that_id() {
    let app = spawn_app().await;
    let reply = post_profile(&app, profile_body(json!({"id": "employee-badge"}))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let profile = &reply.body;
    // Named as Issuer2 names it; the request's `id` is not echoed under that name.
    assert_eq!(profile["profileId"], "employee-badge");
    assert!(profile.get("id").is_none(), "{profile}");
    assert_eq!(profile["version"], 1);
    assert_eq!(profile["active"], true);
    assert_eq!(profile["name"], "Test profile");
    assert_eq!(profile["credentialConfigurationId"], CONFIGURATION);
    assert_eq!(profile["issuerKeyId"], DEMO_KEY);
    assert_eq!(profile["credentialData"]["given_name"], "Ada");
    assert!(profile["createdAt"].is_i64());

    let read = send(&app, Method::GET, "/api/v1/profiles/employee-badge", None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, reply.body);
}

#[tokio::test]
async fn a_profile_created_without_an_id_gets_a_generated_one() {
    let app = spawn_app().await;
    let first = create_profile(&app, profile_body(json!({}))).await;
    let second = create_profile(&app, profile_body(json!({}))).await;
    let id = first["profileId"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    assert_ne!(first["profileId"], second["profileId"]);
    let read = send(&app, Method::GET, &format!("/api/v1/profiles/{id}"), None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["profileId"], id);
}

#[tokio::test]
async fn a_duplicate_profile_id_is_409_and_leaves_the_first_one_alone() {
    let app = spawn_app().await;
    create_profile(&app, profile_body(json!({"id": "twice"}))).await;
    let reply = post_profile(&app, profile_body(json!({"id": "twice", "name": "Second"}))).await;
    reply.assert_api_error(StatusCode::CONFLICT, "profile_exists");
    post_profile(&app, profile_body(json!({"id": DEMO_PROFILE})))
        .await
        .assert_api_error(StatusCode::CONFLICT, "profile_exists");
    let read = send(&app, Method::GET, "/api/v1/profiles/twice", None).await;
    assert_eq!(read.body["name"], "Test profile");
    assert_eq!(read.body["version"], 1);
}

#[tokio::test]
async fn profiles_are_listed_and_unknown_ones_are_404() {
    let app = spawn_app().await;
    create_profile(&app, profile_body(json!({"id": "listed"}))).await;
    let list = send(&app, Method::GET, "/api/v1/profiles", None).await;
    assert_eq!(list.status, StatusCode::OK);
    let ids: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|profile| profile["profileId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [DEMO_PROFILE, "listed"]);
    for path in [
        "/api/v1/profiles/missing",
        "/api/v1/profiles/not%20a%20slug",
    ] {
        send(&app, Method::GET, path, None)
            .await
            .assert_api_error(StatusCode::NOT_FOUND, "not_found");
    }
    send(&app, Method::DELETE, "/api/v1/profiles/missing", None)
        .await
        .assert_api_error(StatusCode::NOT_FOUND, "not_found");
    send(
        &app,
        Method::PUT,
        "/api/v1/profiles/missing",
        Some(profile_body(json!({}))),
    )
    .await
    .assert_api_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn an_update_creates_version_two_while_earlier_offers_keep_issuing_version_one() {
    let app = spawn_app().await;
    create_profile(&app, profile_body(json!({"id": "pinned"}))).await;
    let before = app.create_offer(json!({"profileId": "pinned"})).await;
    assert_eq!(before["profileVersion"], 1);

    app.clock.advance_seconds(10);
    let reply = send(
        &app,
        Method::PUT,
        "/api/v1/profiles/pinned",
        Some(profile_body(json!({
            "name": "Renamed",
            "credentialData": {"given_name": "Grace", "family_name": "Hopper"}
        }))),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["version"], 2);
    assert_eq!(reply.body["name"], "Renamed");
    assert!(reply.body["updatedAt"].as_i64() > reply.body["createdAt"].as_i64());
    let after = app.create_offer(json!({"profileId": "pinned"})).await;
    assert_eq!(after["profileVersion"], 2);

    let claims = issue(&app, &before).await;
    assert_eq!(claims["given_name"], "Ada");
    assert_eq!(claims["family_name"], "Lovelace");
    let claims = issue(&app, &after).await;
    assert_eq!(claims["given_name"], "Grace");
    assert_eq!(claims["family_name"], "Hopper");
    assert_eq!(app.session(&offer_id(&before)).await["profileVersion"], 1);
    assert_eq!(app.session(&offer_id(&after)).await["profileVersion"], 2);

    // An id in the body must be the path's.
    send(
        &app,
        Method::PUT,
        "/api/v1/profiles/pinned",
        Some(profile_body(json!({"id": "other"}))),
    )
    .await
    .assert_api_error(StatusCode::BAD_REQUEST, "invalid_profile");
}

#[tokio::test]
async fn an_earlier_version_stays_readable_with_the_version_query() {
    let app = spawn_app().await;
    create_profile(&app, profile_body(json!({"id": "versioned"}))).await;
    send(
        &app,
        Method::PUT,
        "/api/v1/profiles/versioned",
        Some(profile_body(json!({"name": "Version two"}))),
    )
    .await;
    let latest = send(&app, Method::GET, "/api/v1/profiles/versioned", None).await;
    assert_eq!(latest.body["version"], 2);
    assert_eq!(latest.body["name"], "Version two");
    let first = send(
        &app,
        Method::GET,
        "/api/v1/profiles/versioned?version=1",
        None,
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.body["version"], 1);
    assert_eq!(first.body["name"], "Test profile");
    send(
        &app,
        Method::GET,
        "/api/v1/profiles/versioned?version=3",
        None,
    )
    .await
    .assert_api_error(StatusCode::NOT_FOUND, "not_found");
    for query in ["version=one", "revision=1"] {
        send(
            &app,
            Method::GET,
            &format!("/api/v1/profiles/versioned?{query}"),
            None,
        )
        .await
        .assert_api_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
}

#[tokio::test]
async fn a_deleted_profile_stays_readable_as_inactive_and_makes_no_new_offers() {
    let app = spawn_app().await;
    create_profile(&app, profile_body(json!({"id": "short-lived"}))).await;
    let earlier = app.create_offer(json!({"profileId": "short-lived"})).await;
    let reply = send(&app, Method::DELETE, "/api/v1/profiles/short-lived", None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.text.is_empty());

    let read = send(&app, Method::GET, "/api/v1/profiles/short-lived", None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["active"], false);
    assert_eq!(read.body["version"], 1);
    let list = send(&app, Method::GET, "/api/v1/profiles", None).await;
    let listed = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|profile| profile["profileId"] == "short-lived")
        .cloned()
        .unwrap();
    assert_eq!(listed["active"], false);

    send(
        &app,
        Method::POST,
        "/api/v1/offers",
        Some(json!({"profileId": "short-lived"})),
    )
    .await
    .assert_api_error(StatusCode::CONFLICT, "profile_inactive");
    // An offer made before still completes: it carries its own copy of the profile.
    let claims = issue(&app, &earlier).await;
    assert_eq!(claims["given_name"], "Ada");
}

#[tokio::test]
async fn updating_a_deleted_profile_is_409() {
    let app = spawn_app().await;
    create_profile(&app, profile_body(json!({"id": "gone"}))).await;
    send(&app, Method::DELETE, "/api/v1/profiles/gone", None).await;
    let reply = send(
        &app,
        Method::PUT,
        "/api/v1/profiles/gone",
        Some(profile_body(json!({"name": "Revived"}))),
    )
    .await;
    reply.assert_api_error(StatusCode::CONFLICT, "profile_inactive");
    let read = send(&app, Method::GET, "/api/v1/profiles/gone", None).await;
    assert_eq!(read.body["version"], 1);
    assert_eq!(read.body["name"], "Test profile");
}

#[tokio::test]
async fn an_unknown_credential_configuration_is_rejected() {
    let app = spawn_app().await;
    post_profile(
        &app,
        profile_body(json!({"credentialConfigurationId": "passport"})),
    )
    .await
    .assert_api_error(StatusCode::BAD_REQUEST, "unknown_credential_configuration");
}

#[tokio::test]
async fn an_unknown_issuer_key_is_rejected() {
    let app = spawn_app().await;
    post_profile(&app, profile_body(json!({"issuerKeyId": "no-such-key"})))
        .await
        .assert_api_error(StatusCode::BAD_REQUEST, "unknown_key");
}

#[tokio::test]
async fn an_issuer_key_the_configuration_cannot_sign_with_is_rejected() {
    let app = spawn_app().await;
    for key_type in ["P-384", "Ed25519"] {
        let key = generate_key(&app, json!({"keyType": key_type})).await;
        let reply = post_profile(&app, profile_body(json!({"issuerKeyId": key["id"]}))).await;
        reply.assert_api_error(StatusCode::BAD_REQUEST, "invalid_profile");
        assert!(
            reply.body["detail"]
                .as_str()
                .unwrap()
                .contains(key["algorithm"].as_str().unwrap()),
            "{}",
            reply.text
        );
    }
    let key = generate_key(&app, json!({"keyType": "P-256"})).await;
    create_profile(&app, profile_body(json!({"issuerKeyId": key["id"]}))).await;
}

#[tokio::test]
async fn an_unknown_data_function_is_rejected() {
    let app = spawn_app().await;
    for mapping in [
        json!({"jti": "<nope>"}),
        json!({"exp": "<timestamp-in-seconds:soon>"}),
        json!({"holder": {"id": "<subjectDID>"}}),
        json!({"jti": "uuid"}),
    ] {
        post_profile(&app, profile_body(json!({"mapping": mapping})))
            .await
            .assert_api_error(StatusCode::BAD_REQUEST, "invalid_profile");
    }
    create_profile(
        &app,
        profile_body(json!({"mapping": {"jti": "<uuid>", "holder": {"id": "<subjectDid>"}}})),
    )
    .await;
}

#[tokio::test]
async fn a_mapping_using_issuer_did_needs_an_issuer_did() {
    let app = spawn_app().await;
    let mapping = json!({"issuer_ref": "<issuerDid>"});
    let reply = post_profile(&app, profile_body(json!({"mapping": mapping}))).await;
    reply.assert_api_error(StatusCode::BAD_REQUEST, "invalid_profile");
    assert!(reply.body["detail"].as_str().unwrap().contains("issuerDid"));
    create_profile(
        &app,
        profile_body(json!({"mapping": mapping, "issuerDid": "did:web:issuer.example"})),
    )
    .await;
}

#[tokio::test]
async fn claims_the_issuer_sets_cannot_come_from_data_or_mapping() {
    let app = spawn_app().await;
    for claim in ["iss", "cnf", "vct", "status", "_sd"] {
        let reply = post_profile(
            &app,
            profile_body(json!({"credentialData": {claim: "mine", "given_name": "Ada"}})),
        )
        .await;
        reply.assert_api_error(StatusCode::BAD_REQUEST, "invalid_profile");
        assert!(reply.body["detail"].as_str().unwrap().contains(claim));
    }
    post_profile(
        &app,
        profile_body(json!({"mapping": {"iss": "<issuerDid>"}, "issuerDid": "did:web:x"})),
    )
    .await
    .assert_api_error(StatusCode::BAD_REQUEST, "invalid_profile");
}

/// Digests planted in data would let whoever wrote the data add a disclosure of their own that
/// a verifier then accepts as the issuer's: refused at any depth, in arrays too, wherever data
/// enters (profile data, mapping, status, an offer's overrides).
#[tokio::test]
async fn sd_jwt_digest_members_are_refused_at_any_depth_wherever_data_enters() {
    let app = spawn_app().await;
    let planted = [
        (
            json!({"credentialData": {"address": {"street": "x", "_sd": ["forged"]}}}),
            "credentialData.address._sd",
        ),
        (
            json!({"credentialData": {"nationalities": ["DE", {"...": "forged"}]}}),
            "credentialData.nationalities[1]....",
        ),
        (
            json!({"credentialData": {"a": [[{"b": {"_sd": []}}]]}}),
            "credentialData.a[0][0].b._sd",
        ),
        (
            json!({"mapping": {"holder": {"_sd": "<uuid>"}}}),
            "mapping.holder._sd",
        ),
        (
            json!({"credentialStatus": {"status_list": {"...": "x"}}}),
            "credentialStatus.status_list....",
        ),
    ];
    for (overrides, path) in &planted {
        let reply = post_profile(&app, profile_body(overrides.clone())).await;
        reply.assert_api_error(StatusCode::BAD_REQUEST, "invalid_profile");
        let detail = reply.body["detail"].as_str().expect("detail");
        assert!(detail.contains(path), "{path}: {detail}");
    }
    for (overrides, path) in &planted {
        let (status, body) = app
            .api_json(
                Method::POST,
                "/api/v1/offers",
                json!({"profileId": DEMO_PROFILE, "runtimeOverrides": overrides}),
            )
            .await;
        crate::support::assert_api_error(
            status,
            &body,
            StatusCode::BAD_REQUEST,
            "invalid_override",
        );
        assert!(
            body["detail"].as_str().expect("detail").contains(path),
            "{body}"
        );
    }
    // Nested, the issuer's top-level claim names are ordinary data.
    let created = create_profile(
        &app,
        profile_body(json!({"credentialData": {"employer": {"iss": "ACME", "status": "ok"}}})),
    )
    .await;
    let offer = app
        .create_offer(json!({"profileId": created["profileId"]}))
        .await;
    let claims = issue(&app, &offer).await;
    assert_eq!(claims["employer"], json!({"iss": "ACME", "status": "ok"}));
}

/// `{"a": {"a": ... {}}}` with `depth` objects.
fn nested(depth: usize) -> Value {
    (1..depth).fold(json!({}), |inner, _| json!({ "a": inner }))
}

/// Stored documents wrap what was sent a few levels deeper, and a JSON reader has a recursion
/// limit: a profile nested too deep was once accepted, and then no session made from it (nor
/// the session listing) could be read. It is refused where it enters, naming the member.
#[tokio::test]
async fn json_nested_deeper_than_32_levels_is_refused_and_what_was_accepted_stays_readable() {
    let app = spawn_app().await;
    let reply = post_profile(
        &app,
        profile_body(json!({"credentialData": {"given_name": "Ada", "deep": nested(125)}})),
    )
    .await;
    reply.assert_api_error(StatusCode::BAD_REQUEST, "invalid_request");
    let detail = reply.body["detail"].as_str().expect("detail");
    assert!(detail.starts_with("credentialData.deep.a.a"), "{detail}");
    assert!(detail.contains("deeper than 32"), "{detail}");
    let (status, body) = app
        .api_json(
            Method::POST,
            "/api/v1/offers",
            json!({"profileId": DEMO_PROFILE,
                   "runtimeOverrides": {"credentialData": {"deep": nested(30)}}}),
        )
        .await;
    crate::support::assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .starts_with("runtimeOverrides.credentialData.deep.a"),
        "{body}"
    );

    // At the limit (the body is level 1, credentialData 2, deep 3): stored, listed, read,
    // resolved and issued.
    let profile = create_profile(
        &app,
        profile_body(json!({"credentialData": {"given_name": "Ada", "deep": nested(30)}})),
    )
    .await;
    let created = app
        .create_offer(json!({"profileId": profile["profileId"]}))
        .await;
    let id = offer_id(&created);
    let (status, page) = app.api_get("/api/v1/sessions").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.get("unreadable").is_none(), "{page}");
    assert_eq!(app.session(&id).await["status"], "ACTIVE");
    let claims = issue(&app, &created).await;
    assert_eq!(claims["deep"], nested(30));
    assert_eq!(app.session(&id).await["status"], "SUCCESSFUL");
}

#[tokio::test]
async fn issuer_did_and_x5_chain_together_are_rejected() {
    let app = spawn_app().await;
    post_profile(
        &app,
        profile_body(json!({"issuerDid": "did:web:issuer.example", "x5Chain": [CERTIFICATE]})),
    )
    .await
    .assert_api_error(StatusCode::BAD_REQUEST, "invalid_profile");
    // Each alone is fine.
    create_profile(
        &app,
        profile_body(json!({"issuerDid": "did:web:issuer.example"})),
    )
    .await;
    let chain = crate::support::x5_chain_for(&app, DEMO_KEY, "SD_JWT_SIGNER").await;
    create_profile(&app, profile_body(json!({"x5Chain": chain}))).await;
    // ("did:web", "did:jwk" and "did:key" alone are shorthands; see tests/api/w3c.rs.)
    for did in [
        "did:",
        "did:web:",
        "web:issuer.example",
        "",
        "did:jwk:not-base64!",
        "did:key:zBad",
    ] {
        post_profile(&app, profile_body(json!({"issuerDid": did})))
            .await
            .assert_api_error(StatusCode::BAD_REQUEST, "invalid_profile");
    }
    post_profile(
        &app,
        profile_body(json!({"x5Chain": ["not a certificate"]})),
    )
    .await
    .assert_api_error(StatusCode::BAD_REQUEST, "invalid_profile");
}

#[tokio::test]
async fn an_sd_jwt_vc_profile_needs_an_issuer_identity() {
    let app = spawn_app().await;
    let reply = post_profile(&app, profile_body(json!({"x5Chain": null}))).await;
    reply.assert_api_error(StatusCode::BAD_REQUEST, "invalid_profile");
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap()
            .contains("needs an issuer identity"),
        "{}",
        reply.text
    );
    for chain in [json!("self-signed"), json!(5), json!([5])] {
        let reply = post_profile(&app, profile_body(json!({"x5Chain": chain}))).await;
        reply.assert_api_error(StatusCode::BAD_REQUEST, "invalid_profile");
        assert!(reply.text.contains("x5Chain"), "{}", reply.text);
    }
}

#[tokio::test]
async fn an_sd_jwt_vc_chain_must_name_the_issuer_url() {
    let app = spawn_app().await;
    // A document signer certifies the key but names no issuer URL.
    let chain = crate::support::x5_chain_for(&app, DEMO_KEY, "MDOC_DOCUMENT_SIGNER").await;
    let reply = post_profile(&app, profile_body(json!({"x5Chain": chain}))).await;
    reply.assert_api_error(StatusCode::BAD_REQUEST, "invalid_profile");
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("must name the issuer {}", app.url)),
        "{}",
        reply.text
    );
    // Vellum's SD-JWT signer certificates name it.
    let chain = crate::support::x5_chain_for(&app, DEMO_KEY, "SD_JWT_SIGNER").await;
    let leaf = vellum_formats::x509::from_pem(&chain[0]).unwrap();
    assert_eq!(
        vellum_formats::x509::alt_names(&leaf).unwrap(),
        [vellum_formats::x509::AltName::Uri(app.url.clone())],
        "127.0.0.1 is no DNS name, so the URI alone"
    );
    create_profile(&app, profile_body(json!({"x5Chain": chain}))).await;
}

#[tokio::test]
async fn a_development_chain_is_made_once_and_is_the_same_after_a_restart() {
    use vellum_formats::x509;
    let dir = std::sync::Arc::new(crate::support::database::TestDir::new().await);
    let port = crate::support::free_port();
    let config = json!({"http": {"port": port}});
    let app = crate::support::spawn_app_in(dir.clone(), config.clone()).await;
    let first = create_profile(&app, profile_body(json!({"id": "first"}))).await;
    let second = create_profile(&app, profile_body(json!({"id": "second"}))).await;
    let chain: Vec<String> = serde_json::from_value(first["x5Chain"].clone()).unwrap();
    assert_eq!(first["x5Chain"], second["x5Chain"], "one key, one chain");
    assert_eq!(chain.len(), 2, "{chain:?}");
    let der: Vec<Vec<u8>> = chain
        .iter()
        .map(|pem| x509::from_pem(pem).unwrap())
        .collect();
    x509::verify_chain(&der, Some(crate::support::now_millis(&app) / 1000))
        .expect("the chain verifies");
    assert!(x509::is_self_issued(&der[1]).unwrap(), "the root is last");
    let ca = app
        .api_get(&format!(
            "/api/v1/keys/{}",
            vellum::keys::DEVELOPMENT_CA_KEY
        ))
        .await
        .1;
    let root_key = x509::leaf_public_jwk(&der[1]).unwrap().to_value();
    for member in ["kty", "crv", "x", "y"] {
        assert_eq!(ca["publicJwk"][member], root_key[member], "{ca}");
    }
    let demo = app.api_get("/api/v1/keys/demo-es256").await.1;
    let leaf_key = x509::leaf_public_jwk(&der[0]).unwrap().to_value();
    assert_eq!(demo["publicJwk"]["x"], leaf_key["x"]);
    assert_eq!(
        x509::alt_names(&der[0]).unwrap(),
        [x509::AltName::Uri(app.url.clone())]
    );
    // The demo profile (from configuration) uses the same chain, and a restart, which expands
    // the configured shorthand again, does not make a new version.
    let demo_profile = app
        .api_get(&format!("/api/v1/profiles/{DEMO_PROFILE}"))
        .await
        .1;
    assert_eq!(demo_profile["x5Chain"], first["x5Chain"]);
    drop(app);
    // The restarted app needs the same port (the issuer URL is in the certificate).
    for _ in 0..100 {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let app = crate::support::spawn_app_in(dir, config).await;
    let again = app
        .api_get(&format!("/api/v1/profiles/{DEMO_PROFILE}"))
        .await
        .1;
    assert_eq!(again["version"], 1, "{again}");
    assert_eq!(again["x5Chain"], first["x5Chain"]);

    // The credential's x5c is the leaf alone: the root is the verifier's trust anchor.
    let created = app.create_offer(json!({"profileId": "first"})).await;
    let credential = Wallet::new().complete(&app, &created).await;
    let checked = check_sd_jwt(&app, &credential).await;
    use base64::Engine;
    assert_eq!(
        checked.header["x5c"],
        json!([base64::engine::general_purpose::STANDARD.encode(&der[0])])
    );
    assert_eq!(checked.header["kid"], DEMO_KEY);
    assert_eq!(checked.claims["iss"], app.url.as_str());
}

#[tokio::test]
async fn bad_selective_disclosure_settings_are_rejected() {
    let app = spawn_app().await;
    let data = json!({"given_name": "Ada", "nationalities": ["GB"]});
    for disclosure in [
        json!({"fields": {"cnf": {"sd": true}}}),
        json!({"fields": {"iss": {"sd": true}}}),
        json!({"decoyMode": "FIXED", "decoys": 0}),
        json!({"decoyMode": "RANDOM", "decoys": 33}),
        json!({"decoyMode": "FIXED", "decoys": 300}),
        json!({"decoyMode": "SOMETIMES", "decoys": 2}),
        json!({"fields": {"nationalities": {"children": {"first": {"sd": true}}}}}),
        json!({"fields": {"given_name": {"sd": true, "hidden": true}}}),
    ] {
        let reply = post_profile(
            &app,
            profile_body(json!({"credentialData": data, "selectiveDisclosure": disclosure})),
        )
        .await;
        reply.assert_api_error(StatusCode::BAD_REQUEST, "invalid_profile");
    }
    create_profile(
        &app,
        profile_body(json!({
            "credentialData": data,
            "selectiveDisclosure": {
                "fields": {"given_name": {"sd": true}, "nationalities": {"children": {"*": {"sd": true}}}},
                "decoyMode": "RANDOM",
                "decoys": 32
            }
        })),
    )
    .await;
}

#[tokio::test]
async fn an_unknown_field_is_rejected() {
    let app = spawn_app().await;
    for body in [
        profile_body(json!({"nmae": "typo"})),
        profile_body(json!({"active": false})),
        json!({"name": "No configuration", "issuerKeyId": DEMO_KEY}),
        profile_body(json!({"id": 7})),
        profile_body(json!({"id": "not/a/slug"})),
        profile_body(json!({"name": ""})),
    ] {
        post_profile(&app, body)
            .await
            .assert_api_error(StatusCode::BAD_REQUEST, "invalid_profile");
    }
    // As every management body, a profile is a JSON object.
    post_profile(&app, json!([]))
        .await
        .assert_api_error(StatusCode::BAD_REQUEST, "invalid_request");
    let list = send(&app, Method::GET, "/api/v1/profiles", None).await;
    assert_eq!(
        list.body.as_array().unwrap().len(),
        1,
        "only the demo profile"
    );
}

#[tokio::test]
async fn invalid_json_is_rejected_with_400() {
    let app = spawn_app().await;
    let response = app
        .api(Method::POST, "/api/v1/profiles")
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    Reply::of(response)
        .await
        .assert_api_error(StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn a_body_without_json_content_type_is_415() {
    let app = spawn_app().await;
    let text = profile_body(json!({"id": "untyped"})).to_string();
    for content_type in [None, Some("text/plain")] {
        let mut request = app.api(Method::POST, "/api/v1/profiles").body(text.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        Reply::of(request.send().await.unwrap())
            .await
            .assert_api_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    }
    send(&app, Method::GET, "/api/v1/profiles/untyped", None)
        .await
        .assert_api_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_body_over_one_mib_is_413() {
    let app = spawn_app().await;
    let body = profile_body(json!({
        "id": "huge",
        "credentialData": {"blob": "x".repeat(1024 * 1024)}
    }));
    post_profile(&app, body)
        .await
        .assert_api_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Just under the limit is accepted.
    let body = profile_body(json!({
        "id": "large",
        "credentialData": {"blob": "x".repeat(1000 * 1024)}
    }));
    create_profile(&app, body).await;
}

#[tokio::test]
async fn every_management_route_requires_the_api_key() {
    let app = spawn_app().await;
    let session = offer_id(&app.create_offer(json!({"profileId": DEMO_PROFILE})).await);
    let routes = [
        (Method::GET, "/api/v1/keys".to_owned(), None),
        (
            Method::POST,
            "/api/v1/keys".to_owned(),
            Some(json!({"id": "sneaky"})),
        ),
        (
            Method::POST,
            "/api/v1/keys/import".to_owned(),
            Some(json!({"jwk": Wallet::new().key.private_jwk().to_value()})),
        ),
        (Method::GET, format!("/api/v1/keys/{DEMO_KEY}"), None),
        (Method::GET, "/api/v1/profiles".to_owned(), None),
        (
            Method::POST,
            "/api/v1/profiles".to_owned(),
            Some(profile_body(json!({"id": "sneaky"}))),
        ),
        (
            Method::GET,
            format!("/api/v1/profiles/{DEMO_PROFILE}"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v1/profiles/{DEMO_PROFILE}"),
            Some(profile_body(json!({}))),
        ),
        (
            Method::DELETE,
            format!("/api/v1/profiles/{DEMO_PROFILE}"),
            None,
        ),
        (
            Method::POST,
            "/api/v1/offers".to_owned(),
            Some(json!({"profileId": DEMO_PROFILE})),
        ),
        (Method::GET, "/api/v1/sessions".to_owned(), None),
        (Method::GET, format!("/api/v1/sessions/{session}"), None),
        (
            Method::GET,
            format!("/api/v1/sessions/{session}/events"),
            None,
        ),
        (Method::GET, "/api/v1/no-such-route".to_owned(), None),
    ];
    let wrong_key = format!("{API_KEY}x");
    for (method, path, body) in &routes {
        for authorization in [
            None,
            Some(format!("Bearer {wrong_key}")),
            Some(format!("Basic {API_KEY}")),
        ] {
            let mut request = app.client.request(method.clone(), app.endpoint(path));
            if let Some(authorization) = &authorization {
                request = request.header("authorization", authorization);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let reply = Reply::of(request.send().await.unwrap()).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {authorization:?}: {}",
                reply.text
            );
            reply.assert_api_error(StatusCode::UNAUTHORIZED, "unauthorized");
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        }
    }
    // Nothing happened.
    send(&app, Method::GET, "/api/v1/profiles/sneaky", None)
        .await
        .assert_api_error(StatusCode::NOT_FOUND, "not_found");
    send(&app, Method::GET, "/api/v1/keys/sneaky", None)
        .await
        .assert_api_error(StatusCode::NOT_FOUND, "not_found");
    let demo = send(
        &app,
        Method::GET,
        &format!("/api/v1/profiles/{DEMO_PROFILE}"),
        None,
    )
    .await;
    assert_eq!(demo.body["active"], true);
    assert_eq!(demo.body["version"], 1);
    let sessions = send(&app, Method::GET, "/api/v1/sessions", None).await;
    assert_eq!(sessions.body["items"].as_array().unwrap().len(), 1);
    // The OpenAPI description is public.
    let response = app
        .client
        .get(app.endpoint("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_profile_with_an_issuer_did_issues_credentials_with_that_did_as_iss() {
    let app = spawn_app().await;
    let did = "did:web:issuer.example:tenant";
    create_profile(
        &app,
        profile_body(json!({
            "id": "did-issuer",
            "issuerDid": did,
            "mapping": {"issued_by": "<issuerDid>", "holder": "<subjectDid>"}
        })),
    )
    .await;
    let wallet = Wallet::new();
    let created = app.create_offer(json!({"profileId": "did-issuer"})).await;
    let credential = wallet.complete(&app, &created).await;
    let checked = check_sd_jwt(&app, &credential).await;
    assert_eq!(
        checked.header["kid"],
        format!("{did}#demo-es256"),
        "the DID URL of the key"
    );
    let claims = checked.claims;
    assert_eq!(claims["iss"], did);
    assert_eq!(claims["issued_by"], did);
    let holder = format!(
        "did:jwk:{}",
        vellum_formats::jose::b64(wallet.key.public_jwk().to_value().to_string())
    );
    assert_eq!(claims["holder"], holder);
    assert_eq!(claims["given_name"], "Ada");
    assert_eq!(claims["vct"], "urn:vellum:demo:identity_credential:1");

    // Without a DID the issuer URL is iss.
    let created = app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    let claims = issue(&app, &created).await;
    assert_eq!(claims["iss"], app.url.as_str());
}

#[tokio::test]
async fn exp_and_nbf_must_be_numeric_dates() {
    let app = spawn_app().await;
    for overrides in [
        json!({"credentialData": {"given_name": "Ada", "exp": "2030-01-01T00:00:00Z"}}),
        json!({"credentialData": {"given_name": "Ada", "nbf": 1.5}}),
        json!({"mapping": {"exp": "<timestamp-in:365d>"}}),
        json!({"mapping": {"nbf": "<timestamp>"}}),
        json!({"mapping": {"exp": "<uuid>"}}),
        json!({"mapping": {"exp": {"at": "<timestamp-seconds>"}}}),
    ] {
        let reply = post_profile(&app, profile_body(overrides.clone())).await;
        reply.assert_api_error(StatusCode::BAD_REQUEST, "invalid_profile");
    }
    create_profile(
        &app,
        profile_body(json!({
            "id": "thirty-days",
            "mapping": {"exp": "<timestamp-in-seconds:30d>", "nbf": "<timestamp-before-seconds:1h>"}
        })),
    )
    .await;
    let created = app.create_offer(json!({"profileId": "thirty-days"})).await;
    let claims = issue(&app, &created).await;
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["exp"].as_i64(), Some(iat + 30 * 86_400));
    assert_eq!(claims["nbf"].as_i64(), Some(iat - 3600));
    create_profile(
        &app,
        profile_body(json!({"credentialData": {"given_name": "Ada", "exp": 4_102_444_800_i64}})),
    )
    .await;
}

#[tokio::test]
async fn webhook_secrets_are_redacted_in_responses_and_kept_when_sent_back() {
    let app =
        spawn_app_with(json!({"notifications": {"allow_private_targets": ["127.0.0.1/32"]}})).await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let webhook =
        json!({"url": "http://127.0.0.1:9/hook", "bearerToken": "token-1", "secret": secret});
    let created = create_profile(
        &app,
        profile_body(json!({"notifications": {"webhook": webhook}})),
    )
    .await;
    let shown = created.to_string();
    assert!(
        !shown.contains("token-1") && !shown.contains(secret),
        "{shown}"
    );
    assert_eq!(
        created["notifications"]["webhook"]["bearerToken"],
        "[redacted]"
    );
    let id = created["profileId"].as_str().expect("profileId").to_owned();

    // GET, change the name, PUT it back: the secrets stay what they were.
    let (_, mut fetched) = app.api_get(&format!("/api/v1/profiles/{id}")).await;
    fetched["name"] = json!("Renamed");
    for member in ["profileId", "version", "active", "createdAt", "updatedAt"] {
        fetched.as_object_mut().expect("object").remove(member);
    }
    let (status, updated) = app
        .api_json(Method::PUT, &format!("/api/v1/profiles/{id}"), fetched)
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let stored = app
        .ctx
        .store
        .profile(&vellum::ids::ProfileId::parse(&id).expect("id"), None)
        .await
        .expect("store")
        .expect("profile");
    assert_eq!(
        stored.definition["notifications"]["webhook"]["bearerToken"],
        "token-1"
    );
    assert_eq!(
        stored.definition["notifications"]["webhook"]["secret"],
        secret
    );
    assert_eq!(stored.definition["name"], "Renamed");
}
