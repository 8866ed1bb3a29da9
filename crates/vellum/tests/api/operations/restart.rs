//! Durability: the real `vellum` binary, killed with SIGKILL between (and during) protocol
//! steps, restarted on the same database, loses nothing it acknowledged.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Map, Value, json};
use vellum_formats::jose::{self, Algorithm, SigningKey};

use crate::support::API_KEY;
use crate::support::free_port;
use crate::support::process::start;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:pre-authorized_code";

async fn json_ok(response: reqwest::Response) -> Value {
    let status = response.status();
    let body: Value = response.json().await.expect("JSON");
    assert!(status.is_success(), "{status}: {body}");
    body
}

async fn create_offer(client: &Client, url: &str) -> Value {
    json_ok(
        client
            .post(format!("{url}/api/v1/offers"))
            .bearer_auth(API_KEY)
            .json(&json!({"profileId": "demo-identity", "txCode": {"length": 6}}))
            .send()
            .await
            .expect("create offer"),
    )
    .await
}

#[tokio::test]
async fn a_flow_survives_sigkill_between_every_step() {
    crate::support::install_tls();
    let dir = crate::support::database::TestDir::new().await;
    let port = free_port();
    let client = Client::new();

    let server = start(&dir, port, &[]).await;
    let created = create_offer(&client, &server.url).await;
    server.kill_9().await;

    let server = start(&dir, port, &[]).await;
    let offer_uri = created["credentialOfferUri"].as_str().expect("uri");
    let offer = json_ok(client.get(offer_uri).send().await.expect("resolve")).await;
    server.kill_9().await;

    let server = start(&dir, port, &[]).await;
    let code = offer["grants"][GRANT]["pre-authorized_code"]
        .as_str()
        .expect("code");
    let tx_code = created["txCodeValue"].as_str().expect("tx code");
    let token = json_ok(
        client
            .post(format!("{}/token", server.url))
            .form(&[
                ("grant_type", GRANT),
                ("pre-authorized_code", code),
                ("tx_code", tx_code),
            ])
            .send()
            .await
            .expect("token"),
    )
    .await;
    let nonce = json_ok(
        client
            .post(format!("{}/nonce", server.url))
            .send()
            .await
            .expect("nonce"),
    )
    .await;
    server.kill_9().await;

    // The code was spent before the crash: it stays spent.
    let server = start(&dir, port, &[]).await;
    let replay = client
        .post(format!("{}/token", server.url))
        .form(&[
            ("grant_type", GRANT),
            ("pre-authorized_code", code),
            ("tx_code", tx_code),
        ])
        .send()
        .await
        .expect("replayed token request");
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);

    // The token and the nonce issued before the crash still work after it.
    let holder = SigningKey::generate(Algorithm::ES256);
    let mut header = Map::new();
    header.insert("typ".into(), Value::from("openid4vci-proof+jwt"));
    header.insert("jwk".into(), holder.public_jwk().to_value());
    let iat = time::OffsetDateTime::now_utc().unix_timestamp();
    let proof = jose::sign_compact(
        header,
        &json!({"aud": server.url, "iat": iat, "nonce": nonce["c_nonce"]}),
        &holder,
    );
    let credential = json_ok(
        client
            .post(format!("{}/credential", server.url))
            .bearer_auth(token["access_token"].as_str().expect("token"))
            .json(&json!({"credential_configuration_id": "identity_credential", "proofs": {"jwt": [proof]}}))
            .send()
            .await
            .expect("credential"),
    )
    .await;
    assert!(
        credential["credentials"][0]["credential"]
            .as_str()
            .is_some()
    );
    server.kill_9().await;

    let server = start(&dir, port, &[]).await;
    let id = created["offerId"].as_str().expect("offer id");
    let session = json_ok(
        client
            .get(format!("{}/api/v1/sessions/{id}", server.url))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("session"),
    )
    .await;
    assert_eq!(session["status"], "SUCCESSFUL");
    let events = json_ok(
        client
            .get(format!("{}/api/v1/sessions/{id}/events", server.url))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("events"),
    )
    .await;
    let types: Vec<&str> = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|event| event["type"].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "credential_offer_created",
            "resolved_credential_offer",
            "requested_token",
            "token_request_failed",
            "sdjwt_issue",
            "issuance_status_changed"
        ]
    );
    server.kill_9().await;
}

#[tokio::test]
async fn every_offer_acknowledged_before_a_sigkill_exists_after_restart() {
    crate::support::install_tls();
    let dir = crate::support::database::TestDir::new().await;
    let port = free_port();
    let server = start(&dir, port, &[]).await;
    let client = Client::new();

    // Sixteen clients create offers back to back; the server is killed once 200 have been
    // acknowledged, so requests are always in flight at the moment of the kill.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (client, url, acknowledged) =
                (client.clone(), server.url.clone(), acknowledged.clone());
            tokio::spawn(async move {
                loop {
                    let Ok(response) = client
                        .post(format!("{url}/api/v1/offers"))
                        .bearer_auth(API_KEY)
                        .json(&json!({"profileId": "demo-identity"}))
                        .send()
                        .await
                    else {
                        return;
                    };
                    let Ok(body) = response.json::<Value>().await else {
                        return;
                    };
                    if let Some(id) = body["offerId"].as_str() {
                        acknowledged.lock().expect("lock").push(id.to_owned());
                    }
                }
            })
        })
        .collect();
    for _ in 0..600 {
        if acknowledged.lock().expect("lock").len() >= 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill_9().await;
    for worker in workers {
        worker.await.expect("worker");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(
        acknowledged.len() >= 200,
        "only {} offers acknowledged",
        acknowledged.len()
    );

    let server = start(&dir, port, &[]).await;
    for id in &acknowledged {
        let response = client
            .get(format!("{}/api/v1/sessions/{id}", server.url))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("session");
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "acknowledged offer {id} was lost"
        );
    }
    server.kill_9().await;
}
