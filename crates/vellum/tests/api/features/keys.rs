//! Managed signing keys: generation, import, what the API shows of them (never the private
//! part), and which of them the JWKS publishes.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vellum_formats::jose::{Algorithm, Jwk, SigningKey, UnverifiedJws};

use crate::support::{TestApp, spawn_app};
use vellum::keys::DEVELOPMENT_CA_KEY;

use crate::support::wallet::{Wallet, check_sd_jwt};
use crate::support::{
    DEMO_KEY, DEMO_PROFILE, Reply, create_profile, generate_key, jwks_kids, member_names,
    profile_body,
};

async fn post(app: &TestApp, path: &str, body: Value) -> Reply {
    Reply::of(
        app.api(Method::POST, path)
            .json(&body)
            .send()
            .await
            .expect("request"),
    )
    .await
}

async fn get(app: &TestApp, path: &str) -> Reply {
    Reply::of(app.api(Method::GET, path).send().await.expect("request")).await
}

/// Checks a key view: id, curve, algorithm, and a public JWK with kid/alg/use and no `d`.
fn assert_key_view(key: &Value, key_type: &str, algorithm: &str) {
    assert_eq!(key["keyType"], key_type, "{key}");
    assert_eq!(key["algorithm"], algorithm, "{key}");
    let jwk = &key["publicJwk"];
    assert_eq!(jwk["crv"], key_type);
    assert_eq!(jwk["kty"], if key_type == "Ed25519" { "OKP" } else { "EC" });
    assert_eq!(jwk["kid"], key["id"]);
    assert_eq!(jwk["alg"], algorithm);
    assert_eq!(jwk["use"], "sig");
    assert!(jwk.get("d").is_none(), "{key}");
    let parsed = Jwk::from_value(jwk).expect("a usable public JWK");
    assert!(!parsed.is_private());
    assert_eq!(parsed.algorithm().expect("algorithm").as_str(), algorithm);
    assert!(key["createdAt"].is_i64());
}

#[tokio::test]
async fn a_generated_key_defaults_to_p256_for_es256() {
    let app = spawn_app().await;
    let reply = post(&app, "/api/v1/keys", json!({})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_key_view(&reply.body, "P-256", "ES256");
    let id = reply.body["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    let read = get(&app, &format!("/api/v1/keys/{id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, reply.body);
}

#[tokio::test]
async fn p384_and_ed25519_keys_can_be_generated_under_chosen_ids() {
    let app = spawn_app().await;
    for (id, key_type, algorithm) in [
        ("k-p256", "P-256", "ES256"),
        ("k-p384", "P-384", "ES384"),
        ("k-ed25519", "Ed25519", "EdDSA"),
    ] {
        let key = generate_key(&app, json!({"id": id, "keyType": key_type})).await;
        assert_eq!(key["id"], id);
        assert_key_view(&key, key_type, algorithm);
    }
    let list = get(&app, "/api/v1/keys").await;
    assert_eq!(list.status, StatusCode::OK);
    let ids: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["id"].as_str().unwrap())
        .collect();
    // The demo profile's development chain is signed by a key Vellum made for it.
    for id in [
        DEMO_KEY,
        DEVELOPMENT_CA_KEY,
        "k-p256",
        "k-p384",
        "k-ed25519",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    assert_eq!(ids.len(), 5);
}

#[tokio::test]
async fn an_unknown_key_type_is_rejected() {
    let app = spawn_app().await;
    for key_type in ["RSA", "P-521", "secp256k1", "p-256", ""] {
        post(&app, "/api/v1/keys", json!({"keyType": key_type}))
            .await
            .assert_api_error(StatusCode::BAD_REQUEST, "invalid_key_type");
    }
    for body in [
        json!({"keyType": 256}),
        json!({"curve": "P-256"}),
        json!({"id": "a b"}),
    ] {
        post(&app, "/api/v1/keys", body)
            .await
            .assert_api_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    assert_eq!(
        get(&app, "/api/v1/keys")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        2,
        "only the demo key and the development CA key of the demo profile"
    );
}

#[tokio::test]
async fn an_imported_private_jwk_is_stored_and_only_its_public_part_shown() {
    let app = spawn_app().await;
    for algorithm in Algorithm::ALL {
        let key = SigningKey::generate(algorithm);
        let mut jwk = key.private_jwk().to_value();
        jwk["kid"] = json!("ignored-kid");
        let id = format!("imported-{algorithm}");
        let reply = post(&app, "/api/v1/keys/import", json!({"id": id, "jwk": jwk})).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        assert_eq!(reply.body["id"], id.as_str());
        assert_key_view(&reply.body, algorithm.curve(), algorithm.as_str());
        let public = Jwk::from_value(&reply.body["publicJwk"]).unwrap();
        assert_eq!(public, key.public_jwk());
    }
}

#[tokio::test]
async fn an_imported_key_signs_credentials_that_verify_with_its_public_key() {
    let app = spawn_app().await;
    let key = SigningKey::generate(Algorithm::ES256);
    let reply = post(
        &app,
        "/api/v1/keys/import",
        json!({"id": "brought-along", "jwk": key.private_jwk().to_value()}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    create_profile(
        &app,
        profile_body(json!({"id": "imported-signer", "issuerKeyId": "brought-along"})),
    )
    .await;
    let created = app
        .create_offer(json!({"profileId": "imported-signer"}))
        .await;
    let credential = Wallet::new().complete(&app, &created).await;
    let checked = check_sd_jwt(&app, &credential).await;
    assert_eq!(checked.header["kid"], "brought-along");
    let jws = UnverifiedJws::parse(credential.split('~').next().unwrap()).unwrap();
    jws.verify_with(&key.public_jwk())
        .expect("signed by the imported key");
}

#[tokio::test]
async fn importing_a_public_only_jwk_is_invalid_jwk() {
    let app = spawn_app().await;
    let key = SigningKey::generate(Algorithm::ES256);
    let reply = post(
        &app,
        "/api/v1/keys/import",
        json!({"id": "public-only", "jwk": key.public_jwk().to_value()}),
    )
    .await;
    reply.assert_api_error(StatusCode::BAD_REQUEST, "invalid_jwk");
    for jwk in [
        json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQAB"}),
        json!({"kty": "EC", "crv": "P-256", "x": "AA", "d": "AA"}),
        json!("not a jwk"),
    ] {
        post(&app, "/api/v1/keys/import", json!({"jwk": jwk}))
            .await
            .assert_api_error(StatusCode::BAD_REQUEST, "invalid_jwk");
    }
    get(&app, "/api/v1/keys/public-only")
        .await
        .assert_api_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn importing_a_jwk_whose_public_part_does_not_match_d_is_invalid_jwk() {
    let app = spawn_app().await;
    for algorithm in Algorithm::ALL {
        let key = SigningKey::generate(algorithm);
        let other = SigningKey::generate(algorithm);
        let mut jwk = key.private_jwk().to_value();
        jwk["x"] = other.public_jwk().to_value()["x"].clone();
        let reply = post(
            &app,
            "/api/v1/keys/import",
            json!({"id": "mismatched", "jwk": jwk}),
        )
        .await;
        reply.assert_api_error(StatusCode::BAD_REQUEST, "invalid_jwk");
        // A d of the wrong length fails the same way.
        let mut jwk = key.private_jwk().to_value();
        jwk["d"] = json!("AAAA");
        post(&app, "/api/v1/keys/import", json!({"jwk": jwk}))
            .await
            .assert_api_error(StatusCode::BAD_REQUEST, "invalid_jwk");
    }
    get(&app, "/api/v1/keys/mismatched")
        .await
        .assert_api_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_duplicate_key_id_is_409_and_the_first_key_stays() {
    let app = spawn_app().await;
    let first = generate_key(&app, json!({"id": "only-once"})).await;
    post(
        &app,
        "/api/v1/keys",
        json!({"id": "only-once", "keyType": "P-384"}),
    )
    .await
    .assert_api_error(StatusCode::CONFLICT, "key_exists");
    let jwk = SigningKey::generate(Algorithm::ES256)
        .private_jwk()
        .to_value();
    post(
        &app,
        "/api/v1/keys/import",
        json!({"id": "only-once", "jwk": jwk}),
    )
    .await
    .assert_api_error(StatusCode::CONFLICT, "key_exists");
    post(&app, "/api/v1/keys", json!({"id": DEMO_KEY}))
        .await
        .assert_api_error(StatusCode::CONFLICT, "key_exists");
    let read = get(&app, "/api/v1/keys/only-once").await;
    assert_eq!(read.body, first);
}

#[tokio::test]
async fn an_unknown_key_id_is_404() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/keys/nope",
        "/api/v1/keys/.hidden",
        "/api/v1/keys/a%20b",
    ] {
        get(&app, path)
            .await
            .assert_api_error(StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn no_key_endpoint_ever_reveals_a_private_key() {
    let app = spawn_app().await;
    let imported = SigningKey::generate(Algorithm::ES384);
    let private = imported.private_jwk().to_value();
    let d = private["d"].as_str().unwrap().to_owned();
    let mut replies = vec![
        post(
            &app,
            "/api/v1/keys/import",
            json!({"id": "secretive", "jwk": private}),
        )
        .await,
        post(
            &app,
            "/api/v1/keys/import",
            json!({"id": "secretive", "jwk": private}),
        )
        .await,
        post(&app, "/api/v1/keys", json!({"id": "generated"})).await,
        post(&app, "/api/v1/keys", json!({"keyType": "Ed25519"})).await,
    ];
    let mut mismatched = private.clone();
    mismatched["x"] = SigningKey::generate(Algorithm::ES384)
        .public_jwk()
        .to_value()["x"]
        .clone();
    replies.push(post(&app, "/api/v1/keys/import", json!({"jwk": mismatched})).await);
    replies.push(get(&app, "/api/v1/keys").await);
    for id in ["secretive", "generated", DEMO_KEY, DEVELOPMENT_CA_KEY] {
        replies.push(get(&app, &format!("/api/v1/keys/{id}")).await);
    }
    create_profile(&app, profile_body(json!({"issuerKeyId": "generated"}))).await;
    replies.push(Reply::of(app.client.get(app.endpoint("/jwks")).send().await.unwrap()).await);

    assert_eq!(replies[0].status, StatusCode::CREATED);
    assert_eq!(replies[1].status, StatusCode::CONFLICT);
    for reply in &replies {
        assert!(
            !member_names(&reply.body).contains(&"d".to_owned()),
            "a d member in {}",
            reply.text
        );
        assert!(
            !reply.text.contains(&d),
            "the private scalar in {}",
            reply.text
        );
    }
    // And every stored key is in the list, so the check covered them all.
    assert_eq!(replies[5].body.as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn the_jwks_lists_keys_in_use_by_profiles_and_nothing_else() {
    let app = spawn_app().await;
    assert_eq!(
        jwks_kids(&app).await,
        [DEMO_KEY],
        "the demo profile's key, before any flow"
    );
    generate_key(&app, json!({"id": "for-profile"})).await;
    generate_key(&app, json!({"id": "unused"})).await;
    assert_eq!(jwks_kids(&app).await, [DEMO_KEY]);
    create_profile(&app, profile_body(json!({"issuerKeyId": "for-profile"}))).await;
    let kids = jwks_kids(&app).await;
    assert!(kids.contains(&"for-profile".to_owned()), "{kids:?}");
    assert!(!kids.contains(&"unused".to_owned()), "{kids:?}");
    assert_eq!(kids.len(), 2);

    let response = app.client.get(app.endpoint("/jwks")).send().await.unwrap();
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/jwk-set+json"
    );
    let jwks: Value = response.json().await.unwrap();
    for key in jwks["keys"].as_array().unwrap() {
        assert_eq!(key["use"], "sig");
        assert!(key["alg"].is_string());
        assert!(key.get("d").is_none());
        Jwk::from_value(key).expect("a public JWK");
    }
    // A key stays published after its profile moves on: its credentials still verify.
    let (status, _) = app
        .api_json(
            Method::PUT,
            &format!("/api/v1/profiles/{DEMO_PROFILE}"),
            json!({
                "name": "Demo on a new key",
                "credentialConfigurationId": "identity_credential",
                "issuerKeyId": "for-profile",
                "x5Chain": "development",
                "credentialData": {"given_name": "Erika"}
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(jwks_kids(&app).await.contains(&DEMO_KEY.to_owned()));
}

#[tokio::test]
async fn private_keys_are_sealed_at_rest() {
    let app = spawn_app().await;
    let key = SigningKey::generate(Algorithm::ES384);
    let private = key.private_jwk().to_value();
    let d = private["d"].as_str().unwrap().to_owned();
    let raw = vellum_formats::jose::b64_decode(&d).unwrap();
    let public_x = key.public_jwk().x;
    let reply = post(
        &app,
        "/api/v1/keys/import",
        json!({"id": "at-rest", "jwk": private}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let contains = |bytes: &[u8], needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    // On PostgreSQL the data at rest is the database: a dump of it joins the files.
    if let Some(url) = app.dir.postgres_url() {
        let dump = std::process::Command::new("pg_dump")
            .arg("--data-only")
            .arg("--file")
            .arg(app.dir.path().join("database.sql"))
            .arg(url)
            .status()
            .expect("runs pg_dump");
        assert!(dump.success(), "pg_dump failed");
    }
    let mut public_found = false;
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        public_found |= contains(&bytes, public_x.as_bytes());
        assert!(
            !contains(&bytes, d.as_bytes()),
            "{} holds d",
            path.display()
        );
        assert!(
            !contains(&bytes, &raw),
            "{} holds the scalar",
            path.display()
        );
    }
    assert!(public_found, "the key was stored in the files searched");
}

/// Keys are sealed under the master key: an instance given another one (say a second instance
/// that generated its own) must not start on the database, or it could use none of them.
#[tokio::test]
async fn an_instance_with_another_master_key_refuses_to_start_on_the_database() {
    let app = spawn_app().await;
    let dir = app.dir.clone();
    drop(app);
    let other = "ERERERERERERERERERERERERERERERERERERERERERE=";
    let config = crate::support::test_config(&dir, json!({"master_key": other}));
    let Err(error) = vellum::app::App::build(config).await else {
        panic!("an app with another master key started")
    };
    assert!(error.to_string().contains("another master key"), "{error}");
    // The right key still opens it.
    let config = crate::support::test_config(&dir, json!({}));
    vellum::app::App::build(config)
        .await
        .map_err(|error| error.to_string())
        .expect("the original master key starts");
}
