//! The authorization code flow across instances: an attested wallet using DPoP pushes its
//! request to one instance, the holder is sent to the OpenID provider by another, the provider's
//! callback reaches a third, and so on to the credential. What one instance hands out (a DPoP
//! nonce, a request_uri, the login it sent the holder to, a code, a token) another accepts, and
//! what is used once (a DPoP proof, a request_uri, a code) is refused by every other instance.
//! Instances read their provider and the trusted wallet provider from one configuration file.

use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vellum_formats::jose::{self, Algorithm, SigningKey};

use super::{Cluster, json_of, on, types, unix_seconds};
use crate::support::attester::{self, Instance, WalletProvider};
use crate::support::process::Server;
use crate::support::provider::{self, Provider};
use crate::support::wallet::{
    AUTHORIZATION_CODE_GRANT, Authorization, WALLET_CLIENT, Wallet, authorization_response,
    check_sd_jwt_against, code_form,
};
use crate::support::{API_KEY, CONFIGURATION, DEMO_KEY, Reply, free_port, profile_body, signed};

/// `settings` (a JSON object) as a TOML file: each top-level member one key, inline tables below.
fn toml_file(settings: &Value) -> String {
    let members = settings.as_object().expect("settings are an object");
    members
        .iter()
        .map(|(name, value)| format!("{name} = {}\n", toml(value)))
        .collect()
}

fn toml(value: &Value) -> String {
    let joined = |items: Vec<String>| items.join(", ");
    match value {
        Value::Object(members) => format!(
            "{{ {} }}",
            joined(
                members
                    .iter()
                    .map(|(name, member)| format!(
                        "{} = {}",
                        Value::from(name.as_str()),
                        toml(member)
                    ))
                    .collect()
            )
        ),
        Value::Array(items) => format!("[{}]", joined(items.iter().map(toml).collect())),
        // A JSON string, number or boolean is written the same way in TOML.
        Value::String(_) | Value::Number(_) | Value::Bool(_) => value.to_string(),
        Value::Null => panic!("TOML has no null"),
    }
}

/// The wallet's DPoP key (RFC 9449) and its proofs for the issuer's endpoints.
struct Dpop {
    key: SigningKey,
}

impl Dpop {
    /// A proof for `POST <public URL><path>`, with a server nonce and the hash of
    /// `access_token` when given.
    fn proof(
        &self,
        cluster: &Cluster,
        path: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> String {
        let mut claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "htm": "POST",
            "htu": format!("{}{path}", cluster.public_url),
            "iat": unix_seconds(),
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = Value::from(nonce);
        }
        if let Some(token) = access_token {
            claims["ath"] = Value::from(jose::b64(Sha256::digest(token.as_bytes())));
        }
        signed(
            json!({"typ": "dpop+jwt", "jwk": self.key.public_jwk().to_value()}),
            &claims,
            &self.key,
        )
    }
}

/// `request` with the wallet instance's attestation and a fresh PoP for the issuer.
fn attested(cluster: &Cluster, instance: &Instance, request: RequestBuilder) -> RequestBuilder {
    let pop = instance.pop_for(&cluster.public_url, unix_seconds(), json!({}));
    attester::headers(request, &instance.attestation, &pop)
}

/// The DPoP nonce an answer carries.
fn dpop_nonce(reply: &Reply) -> String {
    reply
        .header("DPoP-Nonce")
        .unwrap_or_else(|| panic!("a DPoP-Nonce header: {} {}", reply.status, reply.text))
        .to_owned()
}

/// The authorization endpoint of `server` for a pushed request.
fn authorize_url(server: &Server, request_uri: &str) -> String {
    let mut url = url::Url::parse(&format!("{}/authorize", server.url)).expect("URL");
    url.query_pairs_mut()
        .append_pair("client_id", WALLET_CLIENT)
        .append_pair("request_uri", request_uri);
    url.into()
}

async fn push(
    cluster: &Cluster,
    server: &Server,
    instance: &Instance,
    form: &[(String, String)],
    proof: &str,
) -> Reply {
    let request = cluster
        .client
        .post(format!("{}/par", server.url))
        .header("DPoP", proof)
        .form(form);
    Reply::of(
        attested(cluster, instance, request)
            .send()
            .await
            .expect("PAR"),
    )
    .await
}

async fn exchange(
    cluster: &Cluster,
    server: &Server,
    instance: &Instance,
    form: &[(&str, &str)],
    proof: &str,
) -> Reply {
    let request = cluster
        .client
        .post(format!("{}/token", server.url))
        .header("DPoP", proof)
        .form(form);
    Reply::of(
        attested(cluster, instance, request)
            .send()
            .await
            .expect("token"),
    )
    .await
}

async fn get(cluster: &Cluster, url: &str) -> Reply {
    Reply::of(cluster.client.get(url).send().await.expect("GET")).await
}

async fn credential(
    cluster: &Cluster,
    server: &Server,
    token: &str,
    proof: &str,
    body: &Value,
) -> Reply {
    let request = cluster
        .client
        .post(format!("{}/credential", server.url))
        .header("Authorization", format!("DPoP {token}"))
        .header("DPoP", proof)
        .json(body);
    Reply::of(request.send().await.expect("credential")).await
}

#[tokio::test]
async fn each_step_of_the_code_flow_can_land_on_another_instance_and_what_is_used_once_stays_used()
{
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let provider = Provider::start(free_port(), &cluster.public_url).await;
    let wallet_provider = WalletProvider::new();
    let config = cluster.dir.path().join("code-flow.toml");
    let settings = json!({
        "authorization": provider.settings(),
        "client_attestation": wallet_provider.settings(json!({})),
    });
    std::fs::write(&config, toml_file(&settings)).expect("write the configuration");
    let env = [("VELLUM_CONFIG", config.to_str().expect("a UTF-8 path"))];
    let a = cluster.first(&env).await;
    let (b, c) = tokio::join!(cluster.another(&env), cluster.another(&env));

    let response = cluster
        .client
        .post(format!("{}/api/v1/profiles", a.url))
        .bearer_auth(API_KEY)
        .json(&profile_body(json!({
            "issuerKeyId": DEMO_KEY,
            "identityProvider": provider::PROVIDER,
            "idTokenClaimsMapping": {
                "/given_name": "/given_name",
                "/family_name": "/family_name",
                "/address/locality": "/address/locality",
            },
        })))
        .send()
        .await
        .expect("create profile");
    let (status, profile) = json_of(response).await;
    assert_eq!(status, StatusCode::CREATED, "{profile}");
    let created = cluster
        .create_offer(
            &a,
            json!({"profileId": profile["profileId"], "authMethod": "AUTHORIZED"}),
        )
        .await;
    let session = created["offerId"].as_str().expect("offerId");
    let offer = cluster.resolve(&b, &created).await;
    let issuer_state = offer["grants"][AUTHORIZATION_CODE_GRANT]["issuer_state"]
        .as_str()
        .expect("issuer_state");

    // The wallet's first proof has no nonce: A tells it one, and C accepts it.
    let instance = wallet_provider.instance_at(unix_seconds(), WALLET_CLIENT);
    let dpop = Dpop {
        key: SigningKey::generate(Algorithm::ES256),
    };
    let authorization = Authorization::new();
    let form = authorization.form(issuer_state);
    let without_nonce = dpop.proof(&cluster, "/par", None, None);
    let told = push(&cluster, &a, &instance, &form, &without_nonce).await;
    told.assert_oauth_error(StatusCode::BAD_REQUEST, "use_dpop_nonce");
    let proof = dpop.proof(&cluster, "/par", Some(&dpop_nonce(&told)), None);
    let pushed = push(&cluster, &c, &instance, &form, &proof).await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{}", pushed.text);
    let request_uri = pushed.body["request_uri"].as_str().expect("request_uri");

    // A sends the holder to the provider; the provider sends them back to the public URL, and
    // that request reaches B.
    let sent = get(&cluster, &authorize_url(&a, request_uri)).await;
    assert_eq!(sent.status, StatusCode::FOUND, "{}", sent.text);
    let login = sent.header("location").expect("Location");
    assert!(login.starts_with(&provider.issuer), "{login}");
    let callback = format!("{}/authorize/callback", cluster.public_url);
    let back = provider::log_in(login, "alice", &callback).await;
    let answered = get(&cluster, &on(&cluster, &b, &back)).await;
    assert_eq!(answered.status, StatusCode::FOUND, "{}", answered.text);
    let response = authorization_response(answered.header("location").expect("Location"));
    assert_eq!(
        response["state"],
        authorization.state.as_str(),
        "{response}"
    );
    assert_eq!(response["iss"], cluster.public_url.as_str(), "{response}");
    let code = response["code"].as_str().expect("code");

    let form = code_form(code, &authorization.verifier);
    let proof = dpop.proof(&cluster, "/token", Some(&dpop_nonce(&pushed)), None);
    let token = exchange(&cluster, &c, &instance, &form, &proof).await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text);
    assert_eq!(token.body["token_type"], "DPoP", "{}", token.text);
    let access_token = token.body["access_token"].as_str().expect("access_token");

    let nonces = Reply::of(
        cluster
            .client
            .post(format!("{}/nonce", a.url))
            .send()
            .await
            .expect("nonce"),
    )
    .await;
    assert_eq!(nonces.status, StatusCode::OK, "{}", nonces.text);
    let c_nonce = nonces.body["c_nonce"].as_str().expect("c_nonce");
    let wallet = Wallet::new();
    let body = json!({"credential_identifier": CONFIGURATION,
                      "proofs": {"jwt": [cluster.proof(&wallet, c_nonce)]}});
    let proof = dpop.proof(
        &cluster,
        "/credential",
        Some(&dpop_nonce(&nonces)),
        Some(access_token),
    );
    let issued = credential(&cluster, &b, access_token, &proof, &body).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.text);

    let (_, jwks) = json_of(
        cluster
            .client
            .get(format!("{}/jwks", c.url))
            .send()
            .await
            .expect("jwks"),
    )
    .await;
    let compact = issued.body["credentials"][0]["credential"]
        .as_str()
        .expect("credential");
    let claims = check_sd_jwt_against(&jwks, compact).claims;
    assert_eq!(claims["iss"], cluster.public_url.as_str());
    assert_eq!(claims["cnf"]["jwk"], wallet.key.public_jwk().to_value());
    assert_eq!(
        (
            &claims["given_name"],
            &claims["family_name"],
            &claims["address"]["locality"]
        ),
        (&json!("Erika"), &json!("Mustermann"), &json!("Köln")),
        "the holder's ID token claims: {claims:?}"
    );
    let (_, state) = cluster
        .api(
            &c,
            reqwest::Method::GET,
            &format!("/api/v1/sessions/{session}"),
        )
        .await;
    assert_eq!(state["status"], "SUCCESSFUL", "{state}");
    let events = cluster.events(&c, session).await;
    let kinds = types(&events);
    for expected in [
        "pushed_authorization_request_succeeded",
        "authorization_request_succeeded",
        "requested_token",
        "sdjwt_issue",
    ] {
        assert!(kinds.contains(&expected), "{expected} in {kinds:?}");
    }
    // The nonce round was a step of the exchange, not a failure.
    assert!(
        !kinds.iter().any(|kind| kind.ends_with("_failed")),
        "{kinds:?}"
    );
    let pushed_event = events
        .iter()
        .find(|event| event["type"] == "pushed_authorization_request_succeeded")
        .expect("pushed");
    assert_eq!(pushed_event["data"]["dpopBound"], true, "{pushed_event}");
    assert_eq!(
        pushed_event["data"]["clientAttested"], true,
        "{pushed_event}"
    );

    // The credential request again, on C: its DPoP proof was used at B.
    let replayed = credential(&cluster, &c, access_token, &proof, &body).await;
    replayed.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_dpop_proof");
    assert!(
        replayed.text.contains("already been used"),
        "{}",
        replayed.text
    );
    // The request_uri A used, on B.
    let again = get(&cluster, &authorize_url(&b, request_uri)).await;
    again.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    // The code C exchanged, on A, with a fresh proof by the bound key: refused, and the token it
    // gave is revoked for every instance.
    let proof = dpop.proof(&cluster, "/token", Some(&dpop_nonce(&token)), None);
    let reused = exchange(&cluster, &a, &instance, &form, &proof).await;
    reused.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(reused.text.contains("already been used"), "{}", reused.text);
    let proof = dpop.proof(
        &cluster,
        "/credential",
        Some(&dpop_nonce(&reused)),
        Some(access_token),
    );
    let revoked = credential(&cluster, &b, access_token, &proof, &body).await;
    revoked.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
}
