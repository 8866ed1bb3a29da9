//! Credential status: credentials of a profile with `credentialStatus: "STATUS_LIST"` carry an
//! entry of their own in a status list of this issuer (indices unique, not in issue order), and
//! the lists are served publicly, signed as their credentials are: a Token Status List as a JWT
//! or a CWT, a Bitstring Status List per purpose as a credential; cacheable, with an ETag.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vellum_formats::jose::{Jwk, UnverifiedJws};
use vellum_formats::status_list::StatusList;

use crate::support::wallet::Wallet;
use crate::support::{
    CONFIGURATION, DEMO_KEY, DEMO_PROFILE, Reply, TestApp, create_profile, credential_reply,
    events_of, offer_id, profile_body, session_with_token, spawn_app_in, spawn_app_with,
};

/// A status list the issuer serves, fetched with `accept`.
async fn fetch(app: &TestApp, uri: &str, accept: &str) -> Reply {
    Reply::of(
        app.client
            .get(uri)
            .header("Accept", accept)
            .send()
            .await
            .expect("status list"),
    )
    .await
}

/// The signing key a JWS's `x5c` certifies.
fn x5c_key(jws: &UnverifiedJws) -> Jwk {
    use base64::Engine as _;
    let leaf = jws.header["x5c"][0].as_str().expect("x5c");
    let der = base64::engine::general_purpose::STANDARD
        .decode(leaf)
        .expect("DER");
    vellum_formats::x509::leaf_public_jwk(&der).expect("leaf key")
}

/// The SD-JWT VC's issuer-signed payload.
fn sd_jwt_payload(credential: &str) -> (UnverifiedJws, Value) {
    let jwt = credential.split('~').next().expect("issuer-signed JWT");
    let jws = UnverifiedJws::parse(jwt).expect("JWS");
    let payload = Value::Object(jws.payload.clone());
    (jws, payload)
}

#[tokio::test]
async fn sd_jwt_vcs_reference_an_entry_of_their_own_in_a_signed_token_status_list() {
    let app = spawn_app_with(json!({"status_lists": {"size": 64}})).await;
    let profile = create_profile(
        &app,
        profile_body(json!({"issuerKeyId": DEMO_KEY, "x5Chain": "development",
                            "credentialStatus": "STATUS_LIST"})),
    )
    .await;
    let mut indices = Vec::new();
    let mut uris = Vec::new();
    let mut signer = None;
    for _ in 0..20 {
        let created = app
            .create_offer(json!({"profileId": profile["profileId"]}))
            .await;
        let credential = Wallet::new().complete(&app, &created).await;
        let (jws, payload) = sd_jwt_payload(&credential);
        signer.get_or_insert_with(|| x5c_key(&jws));
        let reference = &payload["status"]["status_list"];
        indices.push(reference["idx"].as_u64().expect("idx"));
        uris.push(reference["uri"].as_str().expect("uri").to_owned());
    }
    let mut distinct = indices.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 20, "{indices:?}");
    assert!(indices.iter().all(|index| *index < 64), "{indices:?}");
    let ascending = indices.windows(2).filter(|pair| pair[0] < pair[1]).count();
    assert!(ascending < 19, "not in issue order: {indices:?}");
    uris.dedup();
    assert_eq!(uris.len(), 1, "one list: {uris:?}");
    let uri = &uris[0];
    assert!(uri.starts_with(&app.endpoint("/status-lists/")), "{uri}");

    // The JWT: signed by the key the credentials' x5c certifies, naming its uri.
    let reply = fetch(&app, uri, "application/statuslist+jwt").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        reply.header("content-type"),
        Some("application/statuslist+jwt")
    );
    assert_eq!(reply.header("cache-control"), Some("public, max-age=300"));
    let jws = UnverifiedJws::parse(&reply.text).expect("JWS");
    jws.verify_with(signer.as_ref().expect("signer"))
        .expect("signed as the credentials");
    assert_eq!(jws.header["typ"], "statuslist+jwt");
    assert_eq!(jws.payload["sub"], uri.as_str());
    assert_eq!(jws.payload["ttl"], 300);
    let lst = jws.payload["status_list"]["lst"].as_str().expect("lst");
    let list = StatusList::from_lst(2, lst).expect("lst");
    assert_eq!(list.len(), 64);
    for index in &indices {
        assert_eq!(list.get(*index as usize), Ok(0), "entry {index} valid");
    }
    // Unchanged: the same signature, and 304 for a verifier that has it.
    let etag = reply.header("etag").expect("ETag").to_owned();
    let again = fetch(&app, uri, "application/statuslist+jwt").await;
    assert_eq!(
        again.text, reply.text,
        "no new signature for an unchanged list"
    );
    let cached = Reply::of(
        app.client
            .get(uri)
            .header("If-None-Match", &etag)
            .send()
            .await
            .expect("conditional"),
    )
    .await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);

    // The CWT, read with a CBOR decoder of its own: COSE_Sign1, claims 2 (sub) and 65533.
    let reply = fetch(&app, uri, "application/statuslist+cwt").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("content-type"),
        Some("application/statuslist+cwt")
    );
    let bytes = app
        .client
        .get(uri)
        .header("Accept", "application/statuslist+cwt")
        .send()
        .await
        .expect("CWT")
        .bytes()
        .await
        .expect("bytes");
    let sign1: ciborium::Value = ciborium::from_reader(bytes.as_ref()).expect("CBOR");
    let parts = sign1.as_array().expect("COSE_Sign1 array");
    let payload: ciborium::Value =
        ciborium::from_reader(parts[2].as_bytes().expect("payload").as_slice()).expect("claims");
    let claim = |key: i64| {
        payload
            .as_map()
            .expect("map")
            .iter()
            .find(|(label, _)| *label == ciborium::Value::from(key))
            .map(|(_, value)| value.clone())
            .expect("claim")
    };
    assert_eq!(claim(2), ciborium::Value::Text(uri.clone()));
    let status_list = claim(65533);
    let lst = status_list
        .as_map()
        .expect("status_list")
        .iter()
        .find(|(key, _)| *key == ciborium::Value::Text("lst".into()))
        .and_then(|(_, value)| value.as_bytes().cloned())
        .expect("lst");
    assert_eq!(StatusList::from_zlib(2, &lst).expect("lst"), list);

    let missing = fetch(&app, &app.endpoint("/status-lists/no-such-list"), "*/*").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let wrong_form = fetch(&app, &format!("{uri}/revocation"), "*/*").await;
    assert_eq!(
        wrong_form.status,
        StatusCode::NOT_FOUND,
        "a Token list has no purposes"
    );
}

#[tokio::test]
async fn a_full_list_is_followed_by_a_new_one() {
    let app = spawn_app_with(json!({"status_lists": {"size": 16}})).await;
    let profile = create_profile(
        &app,
        profile_body(json!({"issuerKeyId": DEMO_KEY, "credentialStatus": "STATUS_LIST"})),
    )
    .await;
    let mut lists = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..17 {
        let created = app
            .create_offer(json!({"profileId": profile["profileId"]}))
            .await;
        let credential = Wallet::new().complete(&app, &created).await;
        let (_, payload) = sd_jwt_payload(&credential);
        let uri = payload["status"]["status_list"]["uri"]
            .as_str()
            .expect("uri")
            .to_owned();
        *lists.entry(uri).or_default() += 1;
    }
    let mut counts: Vec<usize> = lists.values().copied().collect();
    counts.sort_unstable();
    assert_eq!(counts, [1, 16], "{lists:?}");
}

#[tokio::test]
async fn w3c_vcs_reference_a_bitstring_list_per_purpose() {
    let app = spawn_app_with(json!({"credential_configurations": {"degree": {
        "format": "jwt_vc_json",
        "credential_definition": {"type": ["VerifiableCredential", "UniversityDegreeCredential"]},
        "credential_signing_alg_values_supported": ["ES256"],
        "cryptographic_binding_methods_supported": ["did:jwk"],
        "proof_signing_alg_values_supported": ["ES256"],
    }}}))
    .await;
    let profile = create_profile(
        &app,
        json!({"name": "Degree", "credentialConfigurationId": "degree",
               "issuerKeyId": DEMO_KEY, "issuerDid": "did:jwk",
               "credentialStatus": "STATUS_LIST",
               "credentialData": {"credentialSubject": {"degree": "BSc"}}}),
    )
    .await;
    let created = app
        .create_offer(json!({"profileId": profile["profileId"]}))
        .await;
    let credential = Wallet::new().complete(&app, &created).await;
    let jws = UnverifiedJws::parse(&credential).expect("JWS");
    let entries = jws.payload["vc"]["credentialStatus"]
        .as_array()
        .expect("credentialStatus entries")
        .clone();
    assert_eq!(entries.len(), 2);
    for (entry, purpose) in entries.iter().zip(["revocation", "suspension"]) {
        assert_eq!(entry["type"], "BitstringStatusListEntry");
        assert_eq!(entry["statusPurpose"], purpose);
        let uri = entry["statusListCredential"].as_str().expect("uri");
        assert!(uri.ends_with(&format!("/{purpose}")), "{uri}");
        let index: usize = entry["statusListIndex"]
            .as_str()
            .expect("a string")
            .parse()
            .expect("index");
        let reply = fetch(&app, uri, "*/*").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let list_jws = UnverifiedJws::parse(&reply.text).expect("JWS");
        assert_eq!(
            list_jws.payload["iss"], jws.payload["iss"],
            "signed as the credential"
        );
        let subject = &list_jws.payload["credentialSubject"];
        assert_eq!(subject["statusPurpose"], purpose);
        let list = StatusList::from_encoded_list(subject["encodedList"].as_str().expect("list"))
            .expect("encodedList");
        assert!(list.len() >= 131_072);
        assert_eq!(list.get(index), Ok(0));
    }
    // Only the formats that can carry an entry take the setting.
    let (status, refused) = app
        .api_json(
            Method::POST,
            "/api/v1/profiles",
            profile_body(json!({"issuerKeyId": DEMO_KEY, "credentialStatus": "ELSEWHERE"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .expect("detail")
            .contains("STATUS_LIST")
    );
}

/// The status of entry `index` in the Token Status List at `uri`.
async fn listed_status(app: &TestApp, uri: &str, index: usize) -> u8 {
    let reply = fetch(app, uri, "application/statuslist+jwt").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let jws = UnverifiedJws::parse(&reply.text).expect("JWS");
    let lst = jws.payload["status_list"]["lst"].as_str().expect("lst");
    StatusList::from_lst(2, lst)
        .expect("lst")
        .get(index)
        .expect("index")
}

/// A session that issued one credential of `profile`: its id.
async fn issued_session(app: &TestApp, profile: &Value) -> String {
    let created = app
        .create_offer(json!({"profileId": profile["profileId"]}))
        .await;
    Wallet::new().complete(app, &created).await;
    offer_id(&created)
}

#[tokio::test]
async fn the_operator_revokes_suspends_and_reinstates_and_each_change_is_an_event() {
    let app = spawn_app_with(json!({})).await;
    let profile = create_profile(
        &app,
        profile_body(json!({"issuerKeyId": DEMO_KEY, "credentialStatus": "STATUS_LIST"})),
    )
    .await;
    let session = issued_session(&app, &profile).await;
    let (status, listed) = app
        .api_get(&format!("/api/v1/sessions/{session}/credentials"))
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let credential = &listed["items"][0];
    assert_eq!(credential["status"], "VALID", "{credential}");
    let id = credential["id"].as_str().expect("id").to_owned();
    let uri = credential["statusList"]["uri"]
        .as_str()
        .expect("uri")
        .to_owned();
    let index = credential["statusList"]["index"].as_u64().expect("index") as usize;
    assert_eq!(listed_status(&app, &uri, index).await, 0);

    let credential_path = format!("/api/v1/credentials/{id}/status");
    let change = |status: &str, reason: Option<&str>| {
        let mut body = json!({"status": status});
        if let Some(reason) = reason {
            body["reason"] = json!(reason);
        }
        app.api_json(Method::POST, &credential_path, body)
    };
    for (to, reason, listed) in [
        ("SUSPENDED", Some("phone reported lost"), 2),
        ("VALID", None, 0),
        ("REVOKED", Some("holder left the company"), 1),
    ] {
        let before = fetch(&app, &uri, "application/statuslist+jwt").await;
        let (status, view) = change(to, reason).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        assert_eq!(view["status"], to);
        // Within the publish delay (2 s) the list as signed; after it, the change.
        let within = fetch(&app, &uri, "application/statuslist+jwt").await;
        assert_eq!(within.text, before.text, "within the delay after {to}");
        app.clock.advance_seconds(2);
        assert_eq!(listed_status(&app, &uri, index).await, listed, "after {to}");
    }
    for (to, code) in [
        ("VALID", "credential_revoked"),
        ("SUSPENDED", "credential_revoked"),
    ] {
        let (status, refused) = change(to, None).await;
        assert_eq!(
            (status, refused["code"].as_str()),
            (StatusCode::CONFLICT, Some(code)),
            "{refused}"
        );
    }
    let changes = events_of(&app, &session, "credential_status_changed").await;
    assert_eq!(changes.len(), 3);
    assert_eq!(
        changes[0]["data"],
        json!({"credentialId": id, "sessionId": session, "previousStatus": "VALID",
               "status": "SUSPENDED", "reason": "phone reported lost"})
    );
    assert_eq!(changes[2]["data"]["previousStatus"], "VALID");

    // Every credential of a session at once; the same status twice is a conflict per credential.
    let other = issued_session(&app, &profile).await;
    let path = format!("/api/v1/sessions/{other}/credentials/status");
    let (status, changed) = app
        .api_json(Method::POST, &path, json!({"status": "SUSPENDED"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["items"].as_array().expect("items").len(), 1);
    let (status, again) = app
        .api_json(Method::POST, &path, json!({"status": "SUSPENDED"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert!(again["items"].as_array().expect("items").is_empty());
    let (status, unchanged) = app
        .api_json(
            Method::POST,
            &format!(
                "/api/v1/credentials/{}/status",
                changed["items"][0]["id"].as_str().expect("id")
            ),
            json!({"status": "SUSPENDED"}),
        )
        .await;
    assert_eq!(
        (status, unchanged["code"].as_str()),
        (StatusCode::CONFLICT, Some("status_unchanged"))
    );

    // Without a status list entry there is nothing to change.
    let plain = issued_session(&app, &json!({"profileId": DEMO_PROFILE})).await;
    let (status, refused) = app
        .api_json(
            Method::POST,
            &format!("/api/v1/sessions/{plain}/credentials/status"),
            json!({"status": "REVOKED"}),
        )
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (StatusCode::CONFLICT, Some("status_not_managed"))
    );
    let (status, _) = app
        .api_json(
            Method::POST,
            "/api/v1/credentials/no-such-credential/status",
            json!({"status": "REVOKED"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for body in [
        json!({"status": "GONE"}),
        json!({"status": "REVOKED", "reason": ""}),
        json!({"status": "REVOKED", "reason": "x".repeat(201)}),
        json!({"status": "REVOKED", "extra": 1}),
    ] {
        let (status, refused) = app
            .api_json(
                Method::POST,
                &format!("/api/v1/credentials/{id}/status"),
                body.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {refused}");
    }
}

#[tokio::test]
async fn an_offer_can_ask_for_a_status_entry_its_profile_does_not_give() {
    let app = spawn_app_with(json!({})).await;
    let overridden = app
        .create_offer(json!({"profileId": DEMO_PROFILE,
                             "runtimeOverrides": {"credentialStatus": "STATUS_LIST"}}))
        .await;
    let credential = Wallet::new().complete(&app, &overridden).await;
    let (_, payload) = sd_jwt_payload(&credential);
    let reference = &payload["status"]["status_list"];
    assert!(reference["idx"].is_u64(), "{payload}");
    let (status, listed) = app
        .api_get(&format!(
            "/api/v1/sessions/{}/credentials",
            offer_id(&overridden)
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["items"][0]["status"], "VALID");
    assert_eq!(listed["items"][0]["statusList"]["uri"], reference["uri"]);

    // The profile's other offers stay without one.
    let plain = app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    let credential = Wallet::new().complete(&app, &plain).await;
    let (_, payload) = sd_jwt_payload(&credential);
    assert!(payload.get("status").is_none(), "{payload}");

    let (status, refused) = app
        .api_json(
            Method::POST,
            "/api/v1/offers",
            json!({"profileId": DEMO_PROFILE,
                   "runtimeOverrides": {"credentialStatus": "ELSEWHERE"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["code"], "invalid_override", "{refused}");
}

/// Credentials issued through complete flows for the scale test below.
const MANY: usize = 10_000;
/// Credentials per flow in the scale test (batch issuance).
const BATCH: usize = 10;
/// Entries per list in the scale test: 10,000 credentials fill two lists and start a third.
const MANY_LIST_SIZE: usize = 4096;

#[tokio::test]
async fn ten_thousand_credentials_get_ten_thousand_entries_in_no_issue_order() {
    use futures_util::StreamExt as _;
    let app = spawn_app_with(json!({"status_lists": {"size": MANY_LIST_SIZE}})).await;
    let profile = create_profile(
        &app,
        profile_body(json!({"issuerKeyId": DEMO_KEY, "credentialStatus": "STATUS_LIST"})),
    )
    .await;
    // Batches of ten credentials, one flow each, several flows at once.
    let batches: Vec<Vec<(String, usize)>> = futures_util::stream::iter(0..MANY / BATCH)
        .map(|_| async {
            let (_, token) =
                session_with_token(&app, json!({"profileId": profile["profileId"]})).await;
            let wallets: Vec<Wallet> = (0..BATCH).map(|_| Wallet::new()).collect();
            let nonce = wallets[0].nonce(&app).await;
            let proofs: Vec<String> = wallets
                .iter()
                .map(|wallet| wallet.proof(&app, &nonce))
                .collect();
            let body = json!({"credential_configuration_id": CONFIGURATION,
                              "proofs": {"jwt": proofs}});
            let reply = credential_reply(&app, &token, &body).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            reply.body["credentials"]
                .as_array()
                .expect("credentials")
                .iter()
                .map(|issued| {
                    let (_, payload) =
                        sd_jwt_payload(issued["credential"].as_str().expect("credential"));
                    let reference = &payload["status"]["status_list"];
                    (
                        reference["uri"].as_str().expect("uri").to_owned(),
                        reference["idx"].as_u64().expect("idx") as usize,
                    )
                })
                .collect()
        })
        .buffered(8)
        .collect()
        .await;
    let issued: Vec<(String, usize)> = batches.into_iter().flatten().collect();
    assert_eq!(issued.len(), MANY);
    let mut lists = std::collections::BTreeMap::<&str, Vec<usize>>::new();
    for (uri, index) in &issued {
        lists.entry(uri).or_default().push(*index);
    }
    let mut sizes: Vec<usize> = lists.values().map(Vec::len).collect();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        [MANY - 2 * MANY_LIST_SIZE, MANY_LIST_SIZE, MANY_LIST_SIZE],
        "two full lists and the rest in a third"
    );
    for (uri, indices) in &lists {
        let mut distinct = indices.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), indices.len(), "{uri}: an index twice");
        assert!(
            distinct.iter().all(|index| *index < MANY_LIST_SIZE),
            "{uri}"
        );
        // In issue order, most neighbours would ascend; drawn at random, about half do.
        let ascending = indices.windows(2).filter(|pair| pair[0] < pair[1]).count();
        let pairs = indices.len() - 1;
        assert!(
            ascending * 10 < pairs * 6 && ascending * 10 > pairs * 4,
            "{uri}: {ascending} of {pairs} neighbours ascend"
        );
    }
    // The list being filled has its entries spread over every part of it, not its start.
    let (_, partial) = lists
        .iter()
        .find(|(_, indices)| indices.len() < MANY_LIST_SIZE)
        .expect("the third list");
    let quarters = partial.iter().fold([0; 4], |mut counts, index| {
        counts[index * 4 / MANY_LIST_SIZE] += 1;
        counts
    });
    assert!(
        quarters.iter().all(|count| *count > partial.len() / 8),
        "{quarters:?}"
    );
}

#[tokio::test]
async fn a_change_not_yet_published_when_the_issuer_stops_is_published_after_the_restart() {
    let app = spawn_app_with(json!({})).await;
    let profile = create_profile(
        &app,
        profile_body(json!({"issuerKeyId": DEMO_KEY, "credentialStatus": "STATUS_LIST"})),
    )
    .await;
    let session = issued_session(&app, &profile).await;
    let (_, listed) = app
        .api_get(&format!("/api/v1/sessions/{session}/credentials"))
        .await;
    let credential = &listed["items"][0];
    let index = credential["statusList"]["index"].as_u64().expect("index") as usize;
    let uri = credential["statusList"]["uri"].as_str().expect("uri");
    let path = &uri[app.endpoint("").len()..];
    assert_eq!(listed_status(&app, uri, index).await, 0);
    let (status, view) = app
        .api_json(
            Method::POST,
            &format!(
                "/api/v1/credentials/{}/status",
                credential["id"].as_str().expect("id")
            ),
            json!({"status": "REVOKED"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    // Stopped within the publish delay: the list it served still showed the credential valid.
    assert_eq!(listed_status(&app, uri, index).await, 0);
    let dir = app.dir.clone();
    drop(app);
    let restarted = spawn_app_in(dir, json!({})).await;
    assert_eq!(
        listed_status(&restarted, &restarted.endpoint(path), index).await,
        1,
        "the committed change, in the first list signed after the restart"
    );
}
