//! A database made by the previous schema (migrations up to 0003: codes and tokens on the
//! session row), with sessions in every state, upgrades in place when the app starts, and the
//! flows it held finish afterwards: an offer not yet redeemed, a token not yet used.

use std::path::Path;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;
use vellum::clock::Clock;
use vellum::ids::{KeyId, SessionId};
use vellum::oauth::pre_authorized;
use vellum::profiles::IssuanceTemplate;
use vellum::profiles::ProfileDefinition;
use vellum::secrets::{Purpose, Secrets, hash_secret};
use vellum_formats::did::did_jwk;
use vellum_formats::jose::{self, Algorithm, SigningKey};

use crate::support::database::TestDir;
use crate::support::wallet::{Wallet, check_sd_jwt};
use crate::support::{CONFIGURATION, credential_reply, token_form, token_reply};
use crate::support::{MASTER_KEY, spawn_app_in};

/// The migrations the previous release had, applied as it applied them.
const PREVIOUS: [&str; 3] = [
    "0001_initial.sql",
    "0002_notifications.sql",
    "0003_deliveries_pending.sql",
];

async fn previous_schema(dir: &TestDir) {
    let backend = if dir.postgres_url().is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let mut sql = String::from(
        "CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL);\n",
    );
    for name in PREVIOUS {
        sql.push_str(&std::fs::read_to_string(folder.join(name)).expect("migration"));
        sql.push_str(&format!(
            "\nINSERT INTO schema_migrations (name, applied_at) VALUES ('{name}', 0);\n"
        ));
    }
    dir.execute_sql(&sql).await;
}

/// A session row as the previous release wrote it.
struct Legacy {
    id: SessionId,
    status: &'static str,
    reason: Option<&'static str>,
    code_state: &'static str,
    tx_code: Option<&'static str>,
    tx_code_failures: u32,
    token: Option<String>,
    finished: bool,
}

fn quoted(value: Option<&str>) -> String {
    value.map_or_else(
        || "NULL".to_owned(),
        |text| format!("'{}'", text.replace('\'', "''")),
    )
}

#[tokio::test]
async fn a_database_of_the_previous_schema_upgrades_in_place_and_its_flows_finish() {
    let dir = Arc::new(TestDir::new().await);
    previous_schema(&dir).await;
    let secrets =
        Secrets::load(MASTER_KEY, &dir.path().join("unused-master.key")).expect("secrets");
    let now = vellum::clock::SystemClock.now();

    // The issuer key the sessions' templates name, sealed as the previous release sealed it.
    let key = SigningKey::generate(Algorithm::ES256);
    let key_id = "legacy-key";
    let private = serde_json::to_vec(&key.private_jwk()).expect("JWK");
    let sealed: String = secrets
        .seal(&private, key_id.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let sealed = if dir.postgres_url().is_some() {
        format!("'\\x{sealed}'::bytea")
    } else {
        format!("X'{sealed}'")
    };
    let did = did_jwk(&key.public_jwk());
    let template = IssuanceTemplate {
        definition: ProfileDefinition {
            name: "Legacy".into(),
            credential_configuration_id: CONFIGURATION.into(),
            issuer_key_id: KeyId::parse(key_id).expect("id"),
            issuer_did: Some(did.clone()),
            x5_chain: None,
            credential_data: json!({"given_name": "Ada", "family_name": "Lovelace"})
                .as_object()
                .cloned()
                .expect("object"),
            mapping: Default::default(),
            selective_disclosure: None,
            credential_status: None,
            notifications: None,
            identity_provider: None,
            id_token_claims_mapping: Default::default(),
            wallet_initiated: false,
            deferred: false,
        },
        expected_proof_key_thumbprint: None,
        omit_issuer_state: false,
    };
    // As the previous schema wrote it: with the offer's valueMode, which templates no longer keep.
    let mut template = serde_json::to_value(&template).expect("template");
    template["valueMode"] = serde_json::Value::from("BY_REFERENCE");
    let template = template.to_string();
    let tx_code = "493536";
    let tx_code_spec = r#"{"input_mode":"numeric","length":6}"#;

    let legacy =
        |status, reason, code_state, tx_code, failures, token: Option<String>, finished| Legacy {
            id: SessionId::generate(),
            status,
            reason,
            code_state,
            tx_code,
            tx_code_failures: failures,
            token,
            finished,
        };
    let unredeemed = legacy("ACTIVE", None, "UNUSED", Some(tx_code), 2, None, false);
    let redeemed = legacy(
        "ACTIVE",
        None,
        "REDEEMED",
        None,
        0,
        Some(jose::b64([7u8; 32])),
        false,
    );
    let successful = legacy(
        "SUCCESSFUL",
        None,
        "REDEEMED",
        None,
        0,
        Some(jose::b64([8u8; 32])),
        true,
    );
    let expired = legacy("EXPIRED", Some("expired"), "UNUSED", None, 0, None, true);
    let locked = legacy(
        "UNSUCCESSFUL",
        Some("tx_code_attempts_exhausted"),
        "LOCKED",
        Some(tx_code),
        5,
        None,
        true,
    );
    let mut sql = format!(
        "INSERT INTO keys (id, algorithm, public_jwk, sealed_private, published, created_at) \
         VALUES ('{key_id}', 'ES256', '{}', {sealed}, TRUE, {now});\n",
        key.public_jwk().to_value()
    );
    for session in [&unredeemed, &redeemed, &successful, &expired, &locked] {
        let id = session.id;
        let mac = session.tx_code.map(|value| {
            jose::b64(secrets.mac(Purpose::TxCode, &[id.as_bytes(), value.as_bytes()]))
        });
        let finished_at = if session.finished {
            (now - 1_000).to_string()
        } else {
            "NULL".into()
        };
        sql.push_str(&format!(
            "INSERT INTO sessions (id, profile_id, profile_version, credential_configuration_id, \
             status, status_reason, offer_handle_hash, code_hash, code_state, tx_code, tx_code_mac, \
             tx_code_failures, token_hash, token_expires_at, by_value, template, issuer_key_id, \
             created_at, updated_at, expires_at, resolved_at, token_issued_at, finished_at) \
             VALUES ('{id}', 'legacy', 1, '{CONFIGURATION}', '{status}', {reason}, '{handle}', \
             '{code}', '{code_state}', {spec}, {mac}, {failures}, {token_hash}, {token_expires}, \
             FALSE, {template}, '{key_id}', {created}, {created}, {expires}, NULL, {issued}, \
             {finished_at});\n",
            status = session.status,
            reason = quoted(session.reason),
            handle = hash_secret(&pre_authorized::offer_handle(&secrets, id)),
            code = hash_secret(&pre_authorized::code(&secrets, id)),
            code_state = session.code_state,
            spec = quoted(session.tx_code.map(|_| tx_code_spec)),
            mac = quoted(mac.as_deref()),
            failures = session.tx_code_failures,
            token_hash = quoted(session.token.as_deref().map(hash_secret).as_deref()),
            token_expires = if session.token.is_some() {
                (now + 300_000).to_string()
            } else {
                "NULL".into()
            },
            template = quoted(Some(&template)),
            created = now - 60_000,
            expires = now + 300_000,
            issued = if session.token.is_some() {
                (now - 30_000).to_string()
            } else {
                "NULL".into()
            },
        ));
    }
    dir.execute_sql(&sql).await;

    // The app migrates at start.
    let app = spawn_app_in(dir.clone(), json!({})).await;

    // Every session kept its state, its tx_code and its count of wrong attempts.
    for (session, status, failures, tx_code_required) in [
        (&unredeemed, "ACTIVE", 2, true),
        (&redeemed, "ACTIVE", 0, false),
        (&successful, "SUCCESSFUL", 0, false),
        (&expired, "EXPIRED", 0, false),
        (&locked, "UNSUCCESSFUL", 5, true),
    ] {
        let view = app.session(&session.id.to_string()).await;
        assert_eq!(view["status"], status, "{view}");
        assert_eq!(view["txCodeFailures"], failures, "{view}");
        assert_eq!(view["txCodeRequired"], tx_code_required, "{view}");
    }
    let (_, page) = app.api_get("/api/v1/sessions?limit=10").await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(5), "{page}");

    // The offer not yet redeemed: resolved by its handle, a wrong tx_code counted on top of
    // the two before, then redeemed and issued.
    let wallet = Wallet::new();
    let handle = pre_authorized::offer_handle(&secrets, unredeemed.id);
    let offer = wallet
        .resolve(
            &app,
            &format!(
                "openid-credential-offer://?credential_offer_uri={}",
                url::form_urlencoded::byte_serialize(
                    app.endpoint(&format!("/credential-offer/{handle}"))
                        .as_bytes()
                )
                .collect::<String>()
            ),
        )
        .await;
    assert_eq!(
        offer["grants"][vellum::protocol::PRE_AUTHORIZED_GRANT]["tx_code"]["length"],
        6
    );
    let code = Wallet::code(&offer);
    let wrong = token_reply(&app, &token_form(&code, Some("000000"))).await;
    wrong.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(
        wrong.body["error_description"]
            .as_str()
            .is_some_and(|text| text.contains("2 attempts left")),
        "{}",
        wrong.text
    );
    let token = wallet.token(&app, &code, Some(tx_code)).await;
    let nonce = wallet.nonce(&app).await;
    let body = Wallet::request_body(CONFIGURATION, &wallet.proof(&app, &nonce));
    let reply = credential_reply(&app, &token, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let credential = reply.body["credentials"][0]["credential"]
        .as_str()
        .expect("credential");
    let checked = check_sd_jwt(&app, credential).await;
    assert_eq!(checked.claims["iss"], did.as_str());
    assert_eq!(
        app.session(&unredeemed.id.to_string()).await["status"],
        "SUCCESSFUL"
    );

    // The token not yet used gets its credential.
    let token = redeemed.token.clone().expect("token");
    let nonce = wallet.nonce(&app).await;
    let body = Wallet::request_body(CONFIGURATION, &wallet.proof(&app, &nonce));
    let reply = credential_reply(&app, &token, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        app.session(&redeemed.id.to_string()).await["status"],
        "SUCCESSFUL"
    );
    let issued = app
        .ctx
        .store
        .issued_credentials(redeemed.id)
        .await
        .expect("records");
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].holder, wallet.key.public_jwk().thumbprint());

    // What finished stays finished: a finished session's token and a locked code are refused.
    let token = successful.token.clone().expect("token");
    let reply = credential_reply(&app, &token, &body).await;
    reply.assert_oauth_error(StatusCode::BAD_REQUEST, "credential_request_denied");
    let locked_code = pre_authorized::code(&secrets, locked.id);
    token_reply(&app, &token_form(&locked_code, Some(tx_code)))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
}
