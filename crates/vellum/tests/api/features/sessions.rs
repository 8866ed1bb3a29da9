//! Issuance sessions as operators see them: listing, filters, paging, expiry and retention as
//! real state changes, and the event log.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::wallet::Wallet;
use crate::support::{
    DEMO_PROFILE, create_profile, events, events_of, now_millis, offer_id, offer_with_code,
    profile_body, session_status, token_form, token_reply,
};
use crate::support::{TestApp, spawn_app};

async fn sweep(app: &TestApp) {
    vellum::sessions::sweep(&app.ctx).await.expect("sweep");
}

async fn list(app: &TestApp, query: &str) -> Value {
    let (status, page) = app.api_get(&format!("/api/v1/sessions{query}")).await;
    assert_eq!(status, StatusCode::OK, "{query}: {page}");
    page
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["sessionId"].as_str().expect("sessionId").to_owned())
        .collect()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn sessions_can_be_filtered_by_status_and_profile() {
    let app = spawn_app().await;
    create_profile(&app, profile_body(json!({"id": "other"}))).await;

    let expiring = offer_id(
        &app.create_offer(json!({"profileId": DEMO_PROFILE, "expiresInSeconds": 10}))
            .await,
    );
    app.clock.advance_seconds(11);
    sweep(&app).await;
    let active = offer_id(&app.create_offer(json!({"profileId": DEMO_PROFILE})).await);
    let successful = {
        let created = app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
        Wallet::new().complete(&app, &created).await;
        offer_id(&created)
    };
    let unsuccessful = {
        let (created, _, code) =
            offer_with_code(&app, json!({"profileId": "other", "txCodeValue": "1234"})).await;
        for _ in 0..5 {
            token_reply(&app, &token_form(&code, Some("9999"))).await;
        }
        offer_id(&created)
    };
    let other_active = offer_id(&app.create_offer(json!({"profileId": "other"})).await);

    let all = list(&app, "").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
    assert!(all.get("nextCursor").is_none(), "{all}");
    for (status, expected) in [
        ("ACTIVE", vec![active.clone(), other_active.clone()]),
        ("SUCCESSFUL", vec![successful.clone()]),
        ("UNSUCCESSFUL", vec![unsuccessful.clone()]),
        ("EXPIRED", vec![expiring.clone()]),
    ] {
        let page = list(&app, &format!("?status={status}")).await;
        assert_eq!(sorted(ids(&page)), sorted(expected), "status {status}");
        for item in page["items"].as_array().unwrap() {
            assert_eq!(item["status"], status);
        }
    }
    let page = list(&app, "?profileId=other").await;
    assert_eq!(
        sorted(ids(&page)),
        sorted(vec![unsuccessful.clone(), other_active.clone()])
    );
    let page = list(&app, &format!("?profileId={DEMO_PROFILE}&status=ACTIVE")).await;
    assert_eq!(ids(&page), [active.as_str()]);
    let page = list(&app, "?profileId=nobody").await;
    assert_eq!(page["items"], json!([]));

    let item = &list(&app, "?status=UNSUCCESSFUL").await["items"][0];
    assert_eq!(item["profileId"], "other");
    assert_eq!(item["statusReason"], "tx_code_attempts_exhausted");
    assert_eq!(item["txCodeFailures"], 5);
    assert_eq!(item["txCodeRequired"], true);
}

#[tokio::test]
async fn paging_with_limit_and_next_cursor_visits_every_session_once_newest_first() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for index in 0..7 {
        // Some share a creation time, some do not: both orderings are exercised.
        if index % 3 == 0 {
            app.clock.advance_seconds(1);
        }
        created.push(offer_id(
            &app.create_offer(json!({"profileId": DEMO_PROFILE})).await,
        ));
    }
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut query = "?limit=3".to_owned();
    loop {
        let page = list(&app, &query).await;
        pages += 1;
        let items = ids(&page);
        assert!(!items.is_empty() && items.len() <= 3, "{page}");
        seen.extend(items);
        match page["nextCursor"].as_str() {
            Some(cursor) => {
                let cursor: String =
                    url::form_urlencoded::byte_serialize(cursor.as_bytes()).collect();
                query = format!("?limit=3&cursor={cursor}");
            }
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 7);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        7,
        "no session twice"
    );
    assert_eq!(sorted(seen.clone()), sorted(created.clone()));

    let everything = list(&app, "?limit=200").await;
    assert_eq!(ids(&everything), seen, "pages follow the one-page order");
    let times: Vec<i64> = everything["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["createdAt"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] >= pair[1]),
        "newest first: {times:?}"
    );
    assert_eq!(times.first(), Some(&now_millis(&app)));

    // A page size that divides the total ends without an empty page.
    let page = list(&app, "?limit=7").await;
    assert!(page.get("nextCursor").is_none(), "{page}");
}

#[tokio::test]
async fn a_bad_status_limit_cursor_or_parameter_is_invalid_query() {
    let app = spawn_app().await;
    for query in [
        "status=active",
        "status=DONE",
        "limit=0",
        "limit=201",
        "limit=-1",
        "limit=ten",
        "cursor=garbage",
        "cursor=123_not-a-uuid",
        "cursor=abc_0b8a5a0e-7d0f-4f55-9a53-0e4a5c6b1f7e",
        // Only the form the API writes, as the description's pattern says.
        "cursor=%2B5_0b8a5a0e-7d0f-4f55-9a53-0e4a5c6b1f7e",
        "cursor=5_0B8A5A0E-7D0F-4F55-9A53-0E4A5C6B1F7E",
        "cursor=5_0b8a5a0e7d0f4f559a530e4a5c6b1f7e",
        "cursor=1234567890123456789_0b8a5a0e-7d0f-4f55-9a53-0e4a5c6b1f7e",
        "limit=5&limit=6",
        "status=ACTIVE&status=EXPIRED",
        "profileId=not%20a%20slug",
        "sort=asc",
    ] {
        let (status, body) = app.api_get(&format!("/api/v1/sessions?{query}")).await;
        crate::support::assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_query");
    }
    let page = list(&app, "?limit=200&status=EXPIRED").await;
    assert_eq!(page["items"], json!([]));
}

#[tokio::test]
async fn a_query_parameter_given_empty_counts_as_not_given() {
    let app = spawn_app().await;
    app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    let page = list(&app, "?status=&profileId=&limit=&cursor=").await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
    let page = list(
        &app,
        "?limit=&limit=1&cursor=5_0b8a5a0e-7d0f-4f55-9a53-0e4a5c6b1f7e",
    )
    .await;
    assert_eq!(page["items"], json!([]), "older than any session");
}

#[tokio::test]
async fn an_unknown_session_is_404() {
    let app = spawn_app().await;
    app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    let unknown = uuid::Uuid::new_v4();
    for path in [
        format!("/api/v1/sessions/{unknown}"),
        format!("/api/v1/sessions/{unknown}/events"),
        "/api/v1/sessions/not-a-session".to_owned(),
        "/api/v1/sessions/not-a-session/events".to_owned(),
    ] {
        let (status, body) = app.api_get(&path).await;
        crate::support::assert_api_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn an_offer_past_its_expiry_becomes_expired_when_swept() {
    let app = spawn_app().await;
    let id = offer_id(
        &app.create_offer(json!({"profileId": DEMO_PROFILE, "expiresInSeconds": 60}))
            .await,
    );
    app.clock.advance_seconds(59);
    sweep(&app).await;
    assert_eq!(session_status(&app, &id).await, "ACTIVE");
    assert!(app.session(&id).await["finishedAt"].is_null());

    app.clock.advance_seconds(1);
    sweep(&app).await;
    let session = app.session(&id).await;
    assert_eq!(session["status"], "EXPIRED");
    assert_eq!(session["statusReason"], "expired");
    assert_eq!(session["finishedAt"], now_millis(&app));
    assert_eq!(session["updatedAt"], now_millis(&app));
    let changes = events_of(&app, &id, "issuance_status_changed").await;
    assert_eq!(changes.len(), 1);
    assert_eq!(
        changes[0]["data"],
        json!({"previousStatus": "ACTIVE", "status": "EXPIRED", "reason": "expired"})
    );
    assert_eq!(changes[0]["timestamp"], now_millis(&app));
    assert_eq!(changes[0]["id"], id.as_str());

    app.clock.advance_seconds(60);
    sweep(&app).await;
    assert_eq!(
        events_of(&app, &id, "issuance_status_changed").await.len(),
        1,
        "expiry happens once"
    );
    let page = list(&app, "?status=EXPIRED").await;
    assert_eq!(ids(&page), [id]);
}

#[tokio::test]
async fn a_redeemed_offer_stays_active_while_its_access_token_is_valid() {
    let app = spawn_app().await;
    let (created, _, code) = offer_with_code(
        &app,
        json!({"profileId": DEMO_PROFILE, "expiresInSeconds": 60}),
    )
    .await;
    let id = offer_id(&created);
    let wallet = Wallet::new();
    let token = wallet.token(&app, &code, None).await;
    app.clock.advance_seconds(120);
    sweep(&app).await;
    assert_eq!(session_status(&app, &id).await, "ACTIVE");
    app.clock.advance_seconds(180);
    sweep(&app).await;
    assert_eq!(session_status(&app, &id).await, "EXPIRED");
    let nonce = wallet.nonce(&app).await;
    let body = Wallet::request_body("identity_credential", &wallet.proof(&app, &nonce));
    let response = wallet.credential_request(&app, &token, &body).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_finished_session_is_removed_once_the_retention_period_has_passed() {
    let app = spawn_app().await;
    let finished = {
        let created = app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
        Wallet::new().complete(&app, &created).await;
        offer_id(&created)
    };
    let active = offer_id(&app.create_offer(json!({"profileId": DEMO_PROFILE})).await);

    app.clock.advance_seconds(604_800);
    sweep(&app).await;
    assert_eq!(session_status(&app, &finished).await, "SUCCESSFUL");
    assert_eq!(
        session_status(&app, &active).await,
        "EXPIRED",
        "expired by this sweep: its retention starts now"
    );

    app.clock.advance_seconds(1);
    sweep(&app).await;
    let (status, body) = app.api_get(&format!("/api/v1/sessions/{finished}")).await;
    crate::support::assert_api_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = app
        .api_get(&format!("/api/v1/sessions/{finished}/events"))
        .await;
    crate::support::assert_api_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(ids(&list(&app, "").await), [active.as_str()]);
    assert_eq!(events(&app, &active).await.len(), 2);
}

#[tokio::test]
async fn the_retention_period_is_configurable() {
    let app = crate::support::spawn_app_with(json!({"sessions": {"retention_seconds": 60}})).await;
    let id = offer_id(
        &app.create_offer(json!({"profileId": DEMO_PROFILE, "expiresInSeconds": 10}))
            .await,
    );
    app.clock.advance_seconds(10);
    sweep(&app).await;
    assert_eq!(session_status(&app, &id).await, "EXPIRED");
    app.clock.advance_seconds(61);
    sweep(&app).await;
    let (status, _) = app.api_get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn events_page_with_after_and_limit() {
    let app = spawn_app().await;
    let created = app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    let id = offer_id(&created);
    Wallet::new().complete(&app, &created).await;
    let all = events(&app, &id).await;
    assert_eq!(all.len(), 5);
    let sequences: Vec<i64> = all
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert!(
        sequences.windows(2).all(|pair| pair[0] < pair[1]),
        "{sequences:?}"
    );
    for event in &all {
        assert_eq!(event["id"], id.as_str());
        assert!(event["eventId"].as_str().is_some_and(|e| !e.is_empty()));
        assert!(event["timestamp"].is_i64());
        assert!(event["data"].is_object());
    }

    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = app
            .api_get(&format!(
                "/api/v1/sessions/{id}/events?after={after}&limit=2"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        assert!(items.len() <= 2);
        after = items.last().unwrap()["sequence"].as_i64().unwrap();
        paged.extend(items);
    }
    assert_eq!(paged, all);

    let (_, page) = app
        .api_get(&format!(
            "/api/v1/sessions/{id}/events?after={}",
            sequences[2]
        ))
        .await;
    assert_eq!(page["items"].as_array().unwrap()[..], all[3..]);
    for query in ["limit=0", "limit=1001", "after=x", "before=3"] {
        let (status, body) = app
            .api_get(&format!("/api/v1/sessions/{id}/events?{query}"))
            .await;
        crate::support::assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_query");
    }
}

#[tokio::test]
async fn a_session_records_each_step_of_a_successful_flow() {
    let app = spawn_app().await;
    let created = app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    let id = offer_id(&created);
    let start = now_millis(&app);
    let session = app.session(&id).await;
    // Named as Issuer2 names them: the session's own id, and its profile's.
    assert_eq!(session["sessionId"], id.as_str(), "{session}");
    assert!(session.get("id").is_none(), "{session}");
    assert_eq!(session["profileId"], DEMO_PROFILE, "{session}");
    assert_eq!(session["createdAt"], start);
    assert!(session["resolvedAt"].is_null() && session["tokenIssuedAt"].is_null());
    assert_eq!(session["valueMode"], "BY_REFERENCE");
    assert_eq!(session["authMethod"], "PRE_AUTHORIZED");
    assert_eq!(session["txCodeRequired"], false);

    let wallet = Wallet::new();
    app.clock.advance_seconds(1);
    let offer = wallet
        .resolve(&app, created["credentialOffer"].as_str().unwrap())
        .await;
    app.clock.advance_seconds(1);
    let token = wallet.token(&app, &Wallet::code(&offer), None).await;
    app.clock.advance_seconds(1);
    let nonce = wallet.nonce(&app).await;
    let body = Wallet::request_body("identity_credential", &wallet.proof(&app, &nonce));
    assert_eq!(
        wallet
            .credential_request(&app, &token, &body)
            .await
            .status(),
        StatusCode::OK
    );
    let session = app.session(&id).await;
    assert_eq!(session["status"], "SUCCESSFUL");
    assert_eq!(session["resolvedAt"], start + 1000);
    assert_eq!(session["tokenIssuedAt"], start + 2000);
    assert_eq!(session["finishedAt"], start + 3000);
    assert!(session.get("statusReason").is_none(), "{session}");
    let change = &events_of(&app, &id, "issuance_status_changed").await[0];
    assert_eq!(change["data"]["status"], "SUCCESSFUL");
}

#[tokio::test]
async fn reading_a_session_past_its_expiry_shows_it_expired_without_waiting_for_a_sweep() {
    let app = spawn_app().await;
    let created = app
        .create_offer(json!({"profileId": DEMO_PROFILE, "expiresInSeconds": 60}))
        .await;
    let id = offer_id(&created);
    app.clock.advance_seconds(61);
    let session = app.session(&id).await;
    assert_eq!(session["status"], "EXPIRED");
    assert_eq!(session["statusReason"], "expired");
    assert_eq!(
        events_of(&app, &id, "issuance_status_changed").await.len(),
        1
    );
    // Reading again changes nothing more.
    app.session(&id).await;
    assert_eq!(
        events_of(&app, &id, "issuance_status_changed").await.len(),
        1
    );
}

#[tokio::test]
async fn one_unreadable_session_is_reported_and_the_others_are_listed() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for _ in 0..3 {
        created.push(offer_id(
            &app.create_offer(json!({"profileId": DEMO_PROFILE})).await,
        ));
    }
    let damaged = &created[1];
    app.dir
        .execute_sql(&format!(
            "UPDATE sessions SET status = 'NO-SUCH-STATUS' WHERE id = '{damaged}'"
        ))
        .await;
    let page = list(&app, "").await;
    assert_eq!(
        sorted(ids(&page)),
        sorted(vec![created[0].clone(), created[2].clone()])
    );
    assert_eq!(page["unreadable"][0]["id"], damaged.as_str(), "{page}");
    assert!(page["unreadable"][0]["reason"].is_string(), "{page}");
    // Paging still visits every readable session.
    let first = list(&app, "?limit=1").await;
    let cursor = first["nextCursor"].as_str().expect("a next page");
    let rest = list(&app, &format!("?limit=5&cursor={cursor}")).await;
    let mut seen = ids(&first);
    seen.extend(ids(&rest));
    assert_eq!(
        sorted(seen),
        sorted(vec![created[0].clone(), created[2].clone()])
    );
    // The others stay readable one by one.
    assert_eq!(app.session(&created[2]).await["status"], "ACTIVE");
}

/// A backlog larger than one transaction of the sweep (50 sessions at first, at most 500) goes
/// in one sweep, batch after batch; what is not due stays.
#[tokio::test]
async fn one_sweep_removes_a_backlog_of_many_batches() {
    let app = spawn_app().await;
    let created = app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    Wallet::new().complete(&app, &created).await;
    let template = vellum::ids::SessionId::parse(&offer_id(&created)).expect("a session id");
    // 1,200 copies that finished 1 to 1,200 minutes before it.
    let copies = vellum::store::SeedBatch {
        run: 1,
        first: 0,
        count: 1_200,
        step_ms: 60_000,
        events_per_session: 3,
    };
    assert_eq!(
        app.ctx.store.seed(template, &copies).await.expect("seed"),
        3_600
    );
    assert_eq!(count_sessions(&app).await, 1_201);
    // Past the retention of the copies that finished over an hour before the template only:
    // 1,140 go, the template and the 60 newest copies stay.
    app.clock.advance_seconds(604_800 - 3_600);
    sweep(&app).await;
    assert_eq!(count_sessions(&app).await, 61);
}

async fn count_sessions(app: &TestApp) -> usize {
    let mut count = 0;
    let mut query = "?limit=200".to_owned();
    loop {
        let page = list(app, &query).await;
        count += ids(&page).len();
        match page["nextCursor"].as_str() {
            Some(cursor) => query = format!("?limit=200&cursor={cursor}"),
            None => return count,
        }
    }
}
