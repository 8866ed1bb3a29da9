//! Server-Sent Events: a session's and the issuer's events from the log, history then live,
//! resumed with Last-Event-ID without gaps or duplicates; stream tokens for browsers; heartbeats;
//! and slow clients that delay nobody.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::Rng;
use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::streams::*;
use crate::support::wallet::Wallet;
use crate::support::{API_KEY, TestApp, spawn_app, spawn_app_with, status_and_json};
use crate::support::{DEMO_PROFILE, Reply, offer_id};

#[tokio::test]
async fn a_session_stream_sends_its_history_then_live_events_in_order() {
    let app = spawn_app().await;
    let created = app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    let id = offer_id(&created);
    let other = app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    let path = format!("/api/v1/sessions/{id}/events");
    let mut stream = open(&app, &path, None).await;

    let first = stream.event().await;
    assert_eq!(first.event, "credential_offer_created");
    assert_eq!(first.data["id"], id.as_str());
    assert_eq!(first.data["type"], "credential_offer_created");

    // Live: the flow's events arrive as they are committed; the other session's never do.
    Wallet::new().complete(&app, &other).await;
    Wallet::new().complete(&app, &created).await;
    let logged = logged_events(&app, &path).await;
    assert!(logged.len() >= 5, "{logged:?}");
    let mut received = vec![first];
    received.extend(stream.events(logged.len() - 1).await);
    assert_eq!(received, logged);
    let members: BTreeSet<&str> = received[0]
        .data
        .as_object()
        .expect("envelope")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(members, BTreeSet::from(["id", "type", "timestamp", "data"]));
    assert!(received.windows(2).all(|pair| pair[0].id < pair[1].id));
    assert_eq!(
        received.last().map(|e| e.event.as_str()),
        Some("issuance_status_changed")
    );
}

#[tokio::test]
async fn resuming_with_last_event_id_after_random_disconnects_loses_and_repeats_nothing() {
    let app = std::sync::Arc::new(spawn_app().await);
    let driver = {
        let app = app.clone();
        tokio::spawn(async move {
            for _ in 0..6 {
                let created = app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
                Wallet::new().complete(&app, &created).await;
            }
        })
    };
    let mut received: Vec<Received> = Vec::new();
    let mut connections = 0;
    let mut expected = None;
    while expected.is_none_or(|total| received.len() < total) {
        let last = received.last().map(|event| event.id);
        // Every third connection resumes with ?after= instead of the header.
        let mut stream = if connections % 3 == 2 {
            let after = last.unwrap_or(0);
            let response = stream_request(&app, &format!("/api/v1/events?after={after}"))
                .bearer_auth(API_KEY)
                .send()
                .await
                .expect("connect");
            EventStream::new(response)
        } else {
            open(&app, "/api/v1/events", last).await
        };
        connections += 1;
        let wanted = rand::thread_rng().gen_range(1..=4);
        for _ in 0..wanted {
            match expected {
                Some(total) if received.len() >= total => break,
                Some(_) => received.push(stream.event().await),
                // While the flows may still be running, wait a little and then look again.
                None => {
                    match tokio::time::timeout(Duration::from_millis(200), stream.event()).await {
                        Ok(event) => received.push(event),
                        Err(_) => break,
                    }
                }
            }
        }
        drop(stream);
        if expected.is_none() && driver.is_finished() {
            expected = Some(logged_events(&app, "/api/v1/events").await.len());
        }
    }
    driver.await.expect("the flows ran");
    let logged = logged_events(&app, "/api/v1/events").await;
    assert!(logged.len() >= 6 * 5, "{} events", logged.len());
    // At most 4 events per connection over at least 30 events: 8 or more reconnections.
    assert!(connections >= 8, "{connections} connections");
    assert_eq!(received, logged, "no gap, no duplicate, same content");
}

#[tokio::test]
async fn the_issuer_wide_stream_carries_every_session_and_pages_as_json() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(offer_id(
            &app.create_offer(json!({"profileId": DEMO_PROFILE})).await,
        ));
    }
    let mut stream = open(&app, "/api/v1/events", None).await;
    let history = stream.events(3).await;
    let late = app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    ids.push(offer_id(&late));
    let live = stream.event().await;
    let sessions: Vec<&str> = history
        .iter()
        .chain([&live])
        .map(|event| event.data["id"].as_str().expect("id"))
        .collect();
    assert_eq!(sessions, ids);

    let logged = logged_events(&app, "/api/v1/events").await;
    assert_eq!(logged, [history, vec![live]].concat());
    let (status, page) = app.api_get("/api/v1/events?after=2&limit=1").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["items"][0]["sequence"], 3);
    assert!(page["items"][0]["eventId"].is_string());
    let (status, _) = app.api_get("/api/v1/events?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app.api_get("/api/v1/events?cursor=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn create_token(app: &TestApp, body: Value) -> (StatusCode, Value) {
    app.api_json(Method::POST, "/api/v1/events/tokens", body)
        .await
}

async fn with_token(app: &TestApp, path: &str, token: &str) -> Reply {
    let separator = if path.contains('?') { '&' } else { '?' };
    let response = stream_request(app, &format!("{path}{separator}token={token}"))
        .send()
        .await
        .expect("request");
    if response.status() == StatusCode::OK {
        EventStream::new(response);
        return Reply {
            status: StatusCode::OK,
            headers: Default::default(),
            text: String::new(),
            body: Value::Null,
        };
    }
    Reply::of(response).await
}

#[tokio::test]
async fn a_stream_token_opens_the_stream_of_its_scope_and_nothing_else() {
    let app = spawn_app().await;
    let mine = offer_id(&app.create_offer(json!({"profileId": DEMO_PROFILE})).await);
    let theirs = offer_id(&app.create_offer(json!({"profileId": DEMO_PROFILE})).await);
    let (status, token) = create_token(&app, json!({"sessionId": mine})).await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    assert_eq!(token["sessionId"], mine.as_str());
    let now = crate::support::now_millis(&app);
    assert_eq!(token["expiresAt"], now + 300_000);
    let session_token = token["token"].as_str().expect("token").to_owned();

    // Its own session's stream, with history.
    let response = stream_request(&app, &format!("/api/v1/sessions/{mine}/events"))
        .query(&[("token", &session_token)])
        .send()
        .await
        .expect("request");
    let mut stream = EventStream::new(response);
    assert_eq!(stream.event().await.data["id"], mine.as_str());

    // Nothing else: another session, the issuer-wide stream, the JSON listing, other routes.
    for path in [
        format!("/api/v1/sessions/{theirs}/events"),
        "/api/v1/events".to_owned(),
    ] {
        with_token(&app, &path, &session_token)
            .await
            .assert_api_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let response = app
        .client
        .get(app.endpoint(&format!(
            "/api/v1/sessions/{mine}/events?token={session_token}"
        )))
        .send()
        .await
        .expect("request");
    Reply::of(response)
        .await
        .assert_api_error(StatusCode::UNAUTHORIZED, "unauthorized");
    for (method, path) in [
        (Method::GET, format!("/api/v1/sessions/{mine}")),
        (Method::GET, format!("/api/v1/sessions/{mine}/events")),
        (Method::GET, "/api/v1/events".to_owned()),
        (Method::POST, "/api/v1/events/tokens".to_owned()),
    ] {
        let response = app
            .client
            .request(method, app.endpoint(&path))
            .header(ACCEPT, "text/event-stream")
            .bearer_auth(&session_token)
            .json(&json!({}))
            .send()
            .await
            .expect("request");
        Reply::of(response)
            .await
            .assert_api_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }

    // An issuer-wide token opens the issuer-wide stream only.
    let (status, token) = create_token(&app, json!({"expiresInSeconds": 3600})).await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    assert!(token.get("sessionId").is_none(), "{token}");
    let issuer_token = token["token"].as_str().expect("token");
    assert_eq!(
        with_token(&app, "/api/v1/events", issuer_token)
            .await
            .status,
        StatusCode::OK
    );
    with_token(
        &app,
        &format!("/api/v1/sessions/{mine}/events"),
        issuer_token,
    )
    .await
    .assert_api_error(StatusCode::UNAUTHORIZED, "unauthorized");

    // Bad requests for tokens.
    for (body, expected, code) in [
        (
            json!({"expiresInSeconds": 0}),
            StatusCode::BAD_REQUEST,
            "invalid_expiry",
        ),
        (
            json!({"expiresInSeconds": 3601}),
            StatusCode::BAD_REQUEST,
            "invalid_expiry",
        ),
        (
            json!({"sessionId": "nope"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"scope": "all"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"sessionId": "5f0c1f0e-0000-4000-8000-000000000000"}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ] {
        let (status, reply) = create_token(&app, body).await;
        crate::support::assert_api_error(status, &reply, expected, code);
    }
}

#[tokio::test]
async fn expired_forged_and_missing_credentials_get_401() {
    let app = spawn_app().await;
    let session = offer_id(&app.create_offer(json!({"profileId": DEMO_PROFILE})).await);
    let path = format!("/api/v1/sessions/{session}/events");
    let (_, short) = create_token(&app, json!({"sessionId": session})).await;
    let (_, long) = create_token(
        &app,
        json!({"sessionId": session, "expiresInSeconds": 3600}),
    )
    .await;
    let short = short["token"].as_str().expect("token");
    let long = long["token"].as_str().expect("token");
    assert_eq!(with_token(&app, &path, short).await.status, StatusCode::OK);

    app.clock.advance_seconds(301);
    with_token(&app, &path, short)
        .await
        .assert_api_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(with_token(&app, &path, long).await.status, StatusCode::OK);

    // A token changed anywhere, or made with another master key, is refused.
    let mut forged = long.to_owned().into_bytes();
    let middle = forged.len() / 2;
    forged[middle] = if forged[middle] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ASCII");
    for token in [forged.as_str(), "", "not-a-token", &long[..long.len() - 2]] {
        with_token(&app, &path, token)
            .await
            .assert_api_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    for path in [path.as_str(), "/api/v1/events"] {
        let response = stream_request(&app, path).send().await.expect("request");
        Reply::of(response)
            .await
            .assert_api_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let response = stream_request(&app, &path)
        .bearer_auth(API_KEY)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .expect("request");
    Reply::of(response)
        .await
        .assert_api_error(StatusCode::BAD_REQUEST, "invalid_request");
    let response = stream_request(
        &app,
        "/api/v1/sessions/5f0c1f0e-0000-4000-8000-000000000000/events",
    )
    .bearer_auth(API_KEY)
    .send()
    .await
    .expect("request");
    Reply::of(response)
        .await
        .assert_api_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn an_idle_stream_sends_heartbeat_comments() {
    let app = spawn_app_with(json!({"streams": {"heartbeat": "100ms"}})).await;
    let session = offer_id(&app.create_offer(json!({"profileId": DEMO_PROFILE})).await);
    let mut stream = open(&app, &format!("/api/v1/sessions/{session}/events"), None).await;
    assert_eq!(stream.event().await.event, "credential_offer_created");
    for _ in 0..2 {
        match stream.frame().await.expect("the stream stays open") {
            Frame::Comment(text) => assert_eq!(text, "keep-alive"),
            Frame::Event(event) => panic!("an idle session sent {event:?}"),
        }
    }
}

#[tokio::test]
async fn a_client_that_never_reads_delays_neither_the_protocol_nor_other_clients() {
    let app = spawn_app().await;
    // Connected, then never read until the end.
    let mut stalled = open(&app, "/api/v1/events", None).await;
    let mut reader = open(&app, "/api/v1/events", None).await;
    let flows = async {
        for _ in 0..20 {
            let created = app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
            Wallet::new().complete(&app, &created).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), flows)
        .await
        .expect("the flows completed while a client was not reading");
    let logged = logged_events(&app, "/api/v1/events").await;
    assert_eq!(reader.events(logged.len()).await, logged);
    // The stalled client then gets everything from the log, in order.
    assert_eq!(stalled.events(logged.len()).await, logged);
}

#[tokio::test]
async fn streams_end_when_the_server_shuts_down() {
    let app = spawn_app().await;
    app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    let mut stream = open(&app, "/api/v1/events", None).await;
    stream.event().await;
    drop(app);
    loop {
        match stream.frame().await {
            None => break,
            Some(Frame::Comment(_)) => {}
            Some(Frame::Event(event)) => panic!("no more events were written: {event:?}"),
        }
    }
}

#[tokio::test]
async fn last_event_id_resumes_json_pages_as_it_resumes_streams() {
    let app = spawn_app().await;
    let session = offer_id(&app.create_offer(json!({"profileId": DEMO_PROFILE})).await);
    app.create_offer(json!({"profileId": DEMO_PROFILE})).await;
    for path in [
        format!("/api/v1/sessions/{session}/events"),
        "/api/v1/events".into(),
    ] {
        let (_, all) = app.api_get(&path).await;
        let first = all["items"][0]["sequence"].as_i64().expect("sequence");
        let page = |last_event_id: &str| {
            app.api(Method::GET, &format!("{path}?after=0"))
                .header("last-event-id", last_event_id)
                .send()
        };
        let (status, body) = status_and_json(page(&first.to_string()).await.expect("GET")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // The header wins over after=0: every event but the first.
        assert_eq!(
            body["items"].as_array().map(Vec::len),
            all["items"].as_array().map(|items| items.len() - 1),
            "{body}"
        );
        assert!(body["items"][0]["sequence"].as_i64() > Some(first) || body["items"] == json!([]));
        for malformed in ["yesterday", "9223372036854775808"] {
            let (status, body) = status_and_json(page(malformed).await.expect("GET")).await;
            crate::support::assert_api_error(
                status,
                &body,
                StatusCode::BAD_REQUEST,
                "invalid_request",
            );
        }
    }
}

#[tokio::test]
async fn json_listings_of_events_still_need_the_api_key() {
    let app = spawn_app().await;
    let session = offer_id(&app.create_offer(json!({"profileId": DEMO_PROFILE})).await);
    for path in [
        format!("/api/v1/sessions/{session}/events"),
        "/api/v1/events".into(),
    ] {
        let response = app
            .client
            .get(app.endpoint(&path))
            .send()
            .await
            .expect("GET");
        let (status, body) = status_and_json(response).await;
        crate::support::assert_api_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
        let (status, body) = app.api_get(&path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["items"][0]["type"], "credential_offer_created");
    }
}

#[tokio::test]
async fn a_burst_longer_than_the_shared_tail_reaches_every_stream_in_order() {
    let app = spawn_app().await;
    let first = offer_id(&app.create_offer(json!({"profileId": DEMO_PROFILE})).await);
    let second = offer_id(&app.create_offer(json!({"profileId": DEMO_PROFILE})).await);
    let sessions = [first.as_str(), second.as_str()]
        .map(|id| vellum::ids::SessionId::parse(id).expect("session id"));
    // Live before the burst, at the start of the log, and for one session.
    let mut live = open(&app, "/api/v1/events", Some(2)).await;
    let mut from_start = open(&app, "/api/v1/events", None).await;
    let session_path = format!("/api/v1/sessions/{first}/events");
    let mut session = open(&app, &session_path, None).await;
    // Thousands of events in a few commits: more than the shared tail keeps.
    let now = crate::support::now_millis(&app);
    for batch in 0..6 {
        let events: Vec<_> = (0..500)
            .map(|index| {
                let session = sessions[index % 2];
                vellum::events::new(
                    session,
                    "issuance_status_changed",
                    now,
                    json!({"batch": batch, "index": index}),
                )
            })
            .collect();
        app.ctx.store.append_events(&events).await.expect("append");
    }
    let logged = logged_events_paged(&app, "/api/v1/events", 1000).await;
    assert_eq!(logged.len(), 2 + 3000);
    assert_eq!(live.events(3000).await, logged[2..]);
    assert_eq!(from_start.events(logged.len()).await, logged);
    let of_session = logged_events_paged(&app, &session_path, 1000).await;
    assert_eq!(of_session.len(), 1 + 1500);
    assert_eq!(session.events(of_session.len()).await, of_session);
    // And a late reader, from the middle of the burst.
    let mut late = open(&app, "/api/v1/events", Some(logged[700].id)).await;
    assert_eq!(late.events(logged.len() - 701).await, logged[701..]);
}
