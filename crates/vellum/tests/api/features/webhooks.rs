//! Webhook delivery to real HTTP receivers: the envelope, headers, retries, faults.
//! (interop/webhooks.rs runs third-party receivers and verifiers against the same machinery.)

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::http::header::{LOCATION, RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::wallet::Wallet;
use crate::support::webhooks::*;
use crate::support::{TestApp, spawn_app, spawn_app_in};
use crate::support::{create_profile, events, offer_id, profile_body};

#[tokio::test]
async fn a_full_flow_reaches_the_webhook_with_the_seed_envelope_and_bearer_token() {
    let receiver = Receiver::start(Vec::new()).await;
    let app = webhook_app(json!({})).await;
    let created = app
        .create_offer(json!({
            "profileId": "demo-identity",
            "txCode": {},
            "runtimeOverrides": {"notifications": {"webhook": {
                "url": receiver.url, "bearerToken": "your-secret-token"}}}
        }))
        .await;
    Wallet::new().complete(&app, &created).await;
    let received = receiver.wait_for(5).await;
    let mut got = types(&received);
    got.sort();
    let mut expected = crate::support::SD_JWT_FLOW_EVENTS.to_vec();
    expected.sort_unstable();
    assert_eq!(got, expected);
    let offer_id = created["offerId"].as_str().expect("id");
    for request in &received {
        assert_eq!(request.headers["authorization"], "Bearer your-secret-token");
        assert_eq!(request.headers["content-type"], "application/json");
        let members: Vec<&String> = request.body.as_object().expect("object").keys().collect();
        assert_eq!(members, ["data", "id", "timestamp", "type"]);
        assert_eq!(request.body["id"], offer_id);
        assert!(request.body["timestamp"].as_i64().is_some());
        assert!(request.headers.contains_key("webhook-id"));
        assert!(request.headers.contains_key("webhook-timestamp"));
        assert!(!request.headers.contains_key("webhook-signature"));
    }
    let issued = received
        .iter()
        .find(|r| r.body["type"] == "sdjwt_issue")
        .expect("sdjwt_issue");
    assert!(
        issued.body["data"]["sdjwt"]
            .as_str()
            .is_some_and(|c| c.contains('~'))
    );
    let resolved = received
        .iter()
        .find(|r| r.body["type"] == "resolved_credential_offer")
        .expect("resolved");
    let raw = String::from_utf8_lossy(&resolved.raw);
    assert!(raw.contains("[redacted]"), "{raw}");
    // The session's events show each delivery as DELIVERED with its attempt.
    let (_, events) = app
        .api_get(&format!("/api/v1/sessions/{offer_id}/events"))
        .await;
    for event in events["items"].as_array().expect("items") {
        assert_eq!(event["deliveries"][0]["status"], "DELIVERED", "{event}");
        assert_eq!(event["deliveries"][0]["attempts"][0]["statusCode"], 200);
    }
}

#[tokio::test]
async fn five_hundreds_then_success_takes_exactly_four_attempts_with_one_webhook_id() {
    let failures = (0..3)
        .map(|_| (StatusCode::INTERNAL_SERVER_ERROR, "no").into_response())
        .collect();
    let receiver = Receiver::start(failures).await;
    let app = webhook_app(json!({})).await;
    let created = app
        .create_offer(json!({
            "profileId": "demo-identity",
            "runtimeOverrides": {"notifications": {"webhook": {
                "url": receiver.url, "events": ["credential_offer_created"]}}}
        }))
        .await;
    let received = receiver.wait_for(4).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let received_later = receiver.received();
    assert_eq!(received_later.len(), 4, "no attempt after the success");
    let ids: Vec<_> = received
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] == pair[1]), "{ids:?}");
    let offer_id = created["offerId"].as_str().expect("id");
    let (_, events) = app
        .api_get(&format!("/api/v1/sessions/{offer_id}/events"))
        .await;
    let delivery = &events["items"][0]["deliveries"][0];
    assert_eq!(delivery["status"], "DELIVERED");
    let codes: Vec<_> = delivery["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|attempt| attempt["statusCode"].clone())
        .collect();
    assert_eq!(codes, [json!(500), json!(500), json!(500), json!(200)]);
}

#[tokio::test]
async fn an_offer_override_sends_to_its_own_url_only_and_other_offers_keep_the_profile_webhook() {
    let profile_receiver = Receiver::start(Vec::new()).await;
    let offer_receiver = Receiver::start(Vec::new()).await;
    let app = webhook_app(json!({})).await;
    let profile = create_profile(
        &app,
        profile_body(json!({"notifications": {"webhook": {
            "url": profile_receiver.url, "bearerToken": "profile-secret-token"}}})),
    )
    .await;
    let profile_id = profile["profileId"].as_str().expect("profile id");
    let overridden = app
        .create_offer(json!({
            "profileId": profile_id,
            "runtimeOverrides": {"notifications": {"webhook": {
                "url": offer_receiver.url, "bearerToken": "offer-specific-token"}}}
        }))
        .await;
    let plain = app.create_offer(json!({"profileId": profile_id})).await;
    Wallet::new().complete(&app, &overridden).await;
    Wallet::new().complete(&app, &plain).await;
    let (overridden, plain) = (offer_id(&overridden), offer_id(&plain));
    let overridden_events =
        wait_for_events(&app, &overridden, "all delivered", all_delivered).await;
    let plain_events = wait_for_events(&app, &plain, "all delivered", all_delivered).await;
    assert_eq!(overridden_events.len(), 5, "{overridden_events:?}");
    assert_eq!(plain_events.len(), 5, "{plain_events:?}");
    for event in &overridden_events {
        let deliveries = event["deliveries"].as_array().expect("deliveries");
        assert_eq!(deliveries.len(), 1, "{event}");
        assert_eq!(deliveries[0]["url"], offer_receiver.url, "{event}");
    }
    for event in &plain_events {
        let deliveries = event["deliveries"].as_array().expect("deliveries");
        assert_eq!(deliveries.len(), 1, "{event}");
        assert_eq!(deliveries[0]["url"], profile_receiver.url, "{event}");
    }
    let to_offer = offer_receiver.received();
    let to_profile = profile_receiver.received();
    assert_eq!(to_offer.len(), 5, "{:?}", types(&to_offer));
    assert_eq!(to_profile.len(), 5, "{:?}", types(&to_profile));
    for request in &to_offer {
        assert_eq!(request.body["id"], overridden.as_str());
        assert_eq!(
            request.header("authorization"),
            "Bearer offer-specific-token"
        );
    }
    for request in &to_profile {
        assert_eq!(request.body["id"], plain.as_str());
        assert_eq!(
            request.header("authorization"),
            "Bearer profile-secret-token"
        );
    }
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_every_event_once_it_comes_up() {
    // A port with no listener, held by a socket that is bound but does not listen: connections
    // to it are refused, and no other test can take it meanwhile.
    let reserved = tokio::net::TcpSocket::new_v4().expect("socket");
    reserved
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind");
    let address = reserved.local_addr().expect("a free port");
    let url = format!("http://{address}/webhook/issuance");
    // Enough retries to outlast the outage (about 20 s), however slow the machine.
    let mut schedule = vec!["100ms", "200ms", "400ms"];
    schedule.extend(["1s"; 20]);
    let app = webhook_app(json!({"notifications": {"retry_schedule": schedule}})).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let created = app.create_offer(offer_to(json!({"url": url}))).await;
        Wallet::new().complete(&app, &created).await;
        sessions.push(offer_id(&created));
    }
    let mut event_ids = BTreeSet::new();
    for session in &sessions {
        let items = wait_for_events(&app, session, "a failed attempt per event", |items| {
            items.iter().all(|item| !attempt_codes(item).is_empty())
        })
        .await;
        for item in &items {
            let attempt = &delivery(item)["attempts"][0];
            assert_eq!(attempt["statusCode"], Value::Null, "{item}");
            assert!(
                attempt["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{item}"
            );
            assert_eq!(delivery_status(item), "PENDING", "{item}");
            event_ids.insert(item["eventId"].as_str().expect("eventId").to_owned());
        }
    }
    assert_eq!(event_ids.len(), 15);
    drop(reserved);
    let receiver = Receiver::serve(&address.to_string(), Vec::new(), ok).await;
    for session in &sessions {
        wait_for_events(&app, session, "all delivered", all_delivered).await;
    }
    let arrived: BTreeSet<String> = receiver
        .received()
        .iter()
        .map(|request| request.header("webhook-id").to_owned())
        .collect();
    assert_eq!(arrived, event_ids, "every event arrived");
}

#[tokio::test]
async fn retry_after_from_a_429_is_honoured_over_a_shorter_schedule() {
    let too_many = (
        StatusCode::TOO_MANY_REQUESTS,
        [(RETRY_AFTER, "1")],
        "slow down",
    );
    let in_seconds = Receiver::start(vec![too_many.into_response()]).await;
    // Retry-After as an HTTP-date, three seconds after the 429 is sent: at least two whole
    // seconds remain when the dispatcher reads it.
    let as_date: Reply = Box::pin(async {
        let format = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
        let date = at.format(&format).expect("HTTP-date");
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(RETRY_AFTER, date)],
            "later",
        )
            .into_response()
    });
    let at_date = Receiver::serve("127.0.0.1:0", vec![as_date], ok).await;
    let app = webhook_app(json!({})).await;
    let mut sessions = Vec::new();
    for receiver in [&in_seconds, &at_date] {
        let created = app
            .create_offer(offer_to(
                json!({"url": receiver.url, "events": ["credential_offer_created"]}),
            ))
            .await;
        sessions.push(offer_id(&created));
    }
    for (receiver, session) in [&in_seconds, &at_date].into_iter().zip(&sessions) {
        let received = receiver.wait_for(2).await;
        let gap = received[1].at - received[0].at;
        assert!(
            gap >= Duration::from_millis(900),
            "{}: the retry came {gap:?} after the 429 (schedule: 100 ms)",
            receiver.url
        );
        assert_eq!(
            received[0].header("webhook-id"),
            received[1].header("webhook-id")
        );
        let items = wait_for_events(&app, session, "delivered", all_delivered).await;
        assert_eq!(attempt_codes(&items[0]), [Some(429), Some(200)]);
    }
}

#[tokio::test]
async fn a_410_stops_deliveries_to_that_url_until_they_are_redelivered() {
    let receiver = Receiver::start(vec![(StatusCode::GONE, "gone").into_response()]).await;
    let app = webhook_app(json!({})).await;
    let first = app
        .create_offer(offer_to(json!({"url": receiver.url})))
        .await;
    let first_id = offer_id(&first);
    let items = wait_for_events(&app, &first_id, "GONE", |items| {
        delivery_status(&items[0]) == "GONE"
    })
    .await;
    assert_eq!(attempt_codes(&items[0]), [Some(410)]);
    // Later events of the same session, and of another session to the same URL: never sent.
    Wallet::new().complete(&app, &first).await;
    let second = app
        .create_offer(offer_to(json!({"url": receiver.url})))
        .await;
    let second_id = offer_id(&second);
    let first_items = events(&app, &first_id).await;
    let second_items = events(&app, &second_id).await;
    assert_eq!(first_items.len(), 5);
    assert_eq!(second_items.len(), 1);
    for item in first_items.iter().skip(1).chain(&second_items) {
        assert_eq!(delivery_status(item), "GONE", "{item}");
        assert!(attempt_codes(item).is_empty(), "{item}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "only the request that got 410"
    );
    // Redelivering the session's GONE deliveries sends them all again.
    let (status, answer) = app
        .api_json(
            Method::POST,
            &format!("/api/v1/sessions/{first_id}/events/redeliver"),
            json!({}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["redelivered"], 5);
    let first_items = wait_for_events(&app, &first_id, "all delivered", all_delivered).await;
    assert_eq!(attempt_codes(&first_items[0]), [Some(410), Some(200)]);
    // The other session's event is still GONE until it is redelivered too, by event id.
    assert_eq!(delivery_status(&events(&app, &second_id).await[0]), "GONE");
    let event_id = second_items[0]["eventId"].as_str().expect("eventId");
    let (status, answer) = app
        .api_json(
            Method::POST,
            &format!("/api/v1/sessions/{second_id}/events/{event_id}/redeliver"),
            json!({}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["redelivered"], 1);
    wait_for_events(&app, &second_id, "delivered", all_delivered).await;
    let arrived: Vec<String> = receiver
        .received()
        .iter()
        .skip(1)
        .map(|request| request.header("webhook-id").to_owned())
        .collect();
    let mut expected: Vec<String> = first_items
        .iter()
        .chain(&second_items)
        .map(|item| item["eventId"].as_str().expect("eventId").to_owned())
        .collect();
    expected.sort();
    let mut arrived_sorted = arrived.clone();
    arrived_sorted.sort();
    assert_eq!(arrived_sorted, expected, "each event arrived once");
}

#[tokio::test]
async fn a_slow_receiver_times_out_without_delaying_another_sessions_deliveries() {
    let slow =
        Receiver::answering(|| after(Duration::from_secs(120), "late".into_response())).await;
    let fast = Receiver::start(Vec::new()).await;
    // Two slots per URL and four in all: the slow receiver may hold two, never all four.
    let app = webhook_app(json!({"notifications": {
        "timeout": "4s", "max_in_flight": 4, "max_in_flight_per_url": 2}}))
    .await;
    let mut slow_sessions = Vec::new();
    for _ in 0..3 {
        let created = app
            .create_offer(offer_to(
                json!({"url": slow.url, "events": ["credential_offer_created"]}),
            ))
            .await;
        slow_sessions.push(offer_id(&created));
    }
    slow.wait_for(2).await;
    let created = app.create_offer(offer_to(json!({"url": fast.url}))).await;
    Wallet::new().complete(&app, &created).await;
    let fast_events =
        wait_for_events(&app, &offer_id(&created), "all delivered", all_delivered).await;
    assert_eq!(fast_events.len(), 5);
    assert_eq!(fast.received().len(), 5);
    // All that happened while the slow receiver still held its first two deliveries.
    let slow_attempts: usize = {
        let mut recorded = 0;
        for session in &slow_sessions {
            recorded += attempt_codes(&events(&app, session).await[0]).len();
        }
        recorded
    };
    assert_eq!(slow_attempts, 0, "the slow attempts had not finished yet");
    assert_eq!(slow.received().len(), 2, "two in flight per URL, no more");
    for session in &slow_sessions {
        let items = wait_for_events(&app, session, "a timed-out attempt", |items| {
            !attempt_codes(&items[0]).is_empty()
        })
        .await;
        let attempt = &delivery(&items[0])["attempts"][0];
        assert_eq!(attempt["statusCode"], Value::Null, "{attempt}");
        let error = attempt["error"].as_str().expect("error");
        assert!(error.contains("timed out after 4000 ms"), "{error}");
        assert_eq!(delivery_status(&items[0]), "PENDING", "retried later");
    }
}

#[tokio::test]
async fn a_redirect_is_recorded_and_never_followed_to_an_internal_address() {
    // Linux routes all of 127.0.0.0/8 to loopback; only 127.0.0.1 is allowlisted.
    let internal = ConnectionCounter::start("127.0.0.2:0").await;
    let location = format!("http://{}/webhook/issuance", internal.address);
    let receiver = Receiver::answering(move || {
        now((StatusCode::FOUND, [(LOCATION, location.clone())], "").into_response())
    })
    .await;
    let app = webhook_app(json!({})).await;
    let created = app
        .create_offer(offer_to(
            json!({"url": receiver.url, "events": ["credential_offer_created"]}),
        ))
        .await;
    let items = wait_for_events(&app, &offer_id(&created), "FAILED", |items| {
        delivery_status(&items[0]) == "FAILED"
    })
    .await;
    assert_eq!(attempt_codes(&items[0]), [Some(302); 4]);
    assert_eq!(receiver.received().len(), 4);
    assert_eq!(internal.count(), 0, "no connection to the redirect target");
    // The target was there all along: a connection does reach it.
    drop(
        tokio::net::TcpStream::connect(internal.address)
            .await
            .expect("connect"),
    );
    let deadline = Instant::now() + WAIT;
    while internal.count() == 0 {
        assert!(Instant::now() < deadline, "the counter saw no connection");
        tokio::time::sleep(STEP).await;
    }
}

/// A proxy from the environment would resolve target names past the address check and see
/// every bearer token: the real binary, started with every proxy variable set, still delivers
/// straight to the receiver, and the proxy is never contacted.
#[tokio::test]
async fn proxy_variables_in_the_environment_are_ignored() {
    let proxy = ConnectionCounter::start("127.0.0.1:0").await;
    let receiver = Receiver::start(Vec::new()).await;
    let dir = crate::support::database::TestDir::new().await;
    let proxy_url = format!("http://{}", proxy.address);
    let mut env: Vec<(&str, String)> = [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .into_iter()
    .map(|name| (name, proxy_url.clone()))
    .collect();
    env.push((
        "VELLUM_NOTIFICATIONS__ALLOW_PRIVATE_TARGETS",
        "[\"127.0.0.1/32\"]".into(),
    ));
    let server = crate::support::process::start(&dir, crate::support::free_port(), &env).await;
    let created = server
        .client()
        .post(format!("{}/api/v1/offers", server.url))
        .bearer_auth(crate::support::API_KEY)
        .json(&offer_to(
            json!({"url": receiver.url, "bearerToken": "proxy-must-not-see-this"}),
        ))
        .send()
        .await
        .expect("POST");
    assert_eq!(created.status(), StatusCode::CREATED);
    let received = receiver.wait_for(1).await;
    assert_eq!(received[0].body["type"], "credential_offer_created");
    assert_eq!(proxy.count(), 0, "the proxy was contacted");
}

/// `notifications.proxy` is the one way to send through a proxy: then every delivery does.
#[tokio::test]
async fn a_configured_proxy_carries_every_delivery() {
    // An axum receiver understands the proxy's absolute-form request line as its own path.
    let proxy = Receiver::start(Vec::new()).await;
    let proxy_address = proxy.url.trim_end_matches("/webhook/issuance").to_owned();
    let target = Receiver::start(Vec::new()).await;
    let app = webhook_app(json!({"notifications": {"proxy": proxy_address}})).await;
    app.create_offer(offer_to(
        json!({"url": target.url, "events": ["credential_offer_created"]}),
    ))
    .await;
    let through = proxy.wait_for(1).await;
    assert_eq!(through[0].body["type"], "credential_offer_created");
    assert!(
        target.received().is_empty(),
        "a delivery went around the proxy"
    );
}

/// POSTs a profile and an offer with `url` as webhook; returns both answers.
async fn create_with_webhook(app: &TestApp, webhook: Value) -> [(reqwest::StatusCode, Value); 2] {
    let notifications = json!({"webhook": webhook});
    let profile = app
        .api_json(
            Method::POST,
            "/api/v1/profiles",
            profile_body(json!({"notifications": notifications})),
        )
        .await;
    let offer = app
        .api_json(
            Method::POST,
            "/api/v1/offers",
            json!({"profileId": "demo-identity",
                   "runtimeOverrides": {"notifications": notifications}}),
        )
        .await;
    [profile, offer]
}

/// A bearer token is sent as a header: one that could not be (a space, a control character)
/// is refused when the webhook is set, not found out at every delivery.
#[tokio::test]
async fn a_bearer_token_that_is_no_valid_header_value_is_refused_at_creation() {
    let app = webhook_app(json!({})).await;
    let url = "http://127.0.0.1:9/webhook";
    for token in [
        "",
        "two words",
        "tab\there",
        "nul\u{0}byte",
        "é",
        &"x".repeat(4097),
    ] {
        let [profile, offer] =
            create_with_webhook(&app, json!({"url": url, "bearerToken": token})).await;
        for ((status, body), code) in [(profile, "invalid_profile"), (offer, "invalid_request")] {
            crate::support::assert_api_error(status, &body, StatusCode::BAD_REQUEST, code);
            assert!(
                body["detail"]
                    .as_str()
                    .expect("detail")
                    .contains("bearerToken"),
                "{body}"
            );
        }
    }
    for (status, body) in
        create_with_webhook(&app, json!({"url": url, "bearerToken": "abc.DEF-123_~+/="})).await
    {
        assert!(status.is_success(), "{body}");
    }
}

#[tokio::test]
async fn webhook_urls_pointing_at_private_or_special_addresses_are_refused_at_creation() {
    let app = webhook_app(json!({})).await;
    for url in [
        "http://10.0.0.1/webhook",
        "http://172.16.0.1/webhook",
        "http://192.168.1.1/webhook",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/webhook",
        "http://[fc00::1]/webhook",
        "http://[fe80::1]/webhook",
        "http://[::ffff:127.0.0.1]/webhook",
        // Only 127.0.0.1/32 is allowlisted.
        "http://127.0.0.2/webhook",
        "https://0.0.0.0/webhook",
    ] {
        for (status, body) in create_with_webhook(&app, json!({"url": url})).await {
            crate::support::assert_api_error(
                status,
                &body,
                reqwest::StatusCode::BAD_REQUEST,
                "invalid_webhook",
            );
        }
    }
    // What the allowlist opens is accepted: the refusals above are about the address.
    for (status, body) in create_with_webhook(&app, json!({"url": "http://127.0.0.1:9/hook"})).await
    {
        assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    }
    // Without the allowlist, a name that resolves to loopback is refused too.
    let strict = spawn_app().await;
    for (status, body) in
        create_with_webhook(&strict, json!({"url": "http://localhost:3000/webhook"})).await
    {
        crate::support::assert_api_error(
            status,
            &body,
            reqwest::StatusCode::BAD_REQUEST,
            "invalid_webhook",
        );
    }
}

#[tokio::test]
async fn a_target_accepted_under_an_allowlist_is_refused_at_delivery_once_the_allowlist_is_gone() {
    let receiver =
        Receiver::answering(|| now(StatusCode::SERVICE_UNAVAILABLE.into_response())).await;
    // One attempt now, the next an hour later: nothing is due when the app restarts.
    let app = webhook_app(json!({"notifications": {"retry_schedule": ["1h"]}})).await;
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let mut sessions = Vec::new();
    for url in [&receiver.url, &by_name] {
        let created = app
            .create_offer(offer_to(
                json!({"url": url, "events": ["credential_offer_created"]}),
            ))
            .await;
        let session = offer_id(&created);
        wait_for_events(&app, &session, "a first attempt", |items| {
            attempt_codes(&items[0]) == [Some(503)]
        })
        .await;
        sessions.push(session);
    }
    assert_eq!(receiver.received().len(), 2);
    // The same database, without the allowlist; the retries come due.
    let dir = app.dir.clone();
    drop(app);
    let restarted = spawn_app_in(dir, json!({"notifications": {"poll_interval": "20ms"}})).await;
    restarted.clock.advance_seconds(2 * 3600);
    for session in &sessions {
        let items = wait_for_events(&restarted, session, "a refused attempt", |items| {
            attempt_codes(&items[0]).len() == 2
        })
        .await;
        let attempt = &delivery(&items[0])["attempts"][1];
        assert_eq!(attempt["statusCode"], Value::Null, "{attempt}");
        let error = attempt["error"].as_str().expect("error");
        assert!(
            error.contains("non-public") || error.contains("not a public"),
            "{error}"
        );
    }
    assert_eq!(
        receiver.received().len(),
        2,
        "no connection after the restart"
    );
}

#[tokio::test]
async fn an_events_filter_sends_only_the_listed_types_and_unknown_types_are_refused() {
    let receiver = Receiver::start(Vec::new()).await;
    let app = webhook_app(json!({})).await;
    let created = app
        .create_offer(offer_to(
            json!({"url": receiver.url, "events": ["sdjwt_issue"]}),
        ))
        .await;
    Wallet::new().complete(&app, &created).await;
    let items = wait_for_events(
        &app,
        &offer_id(&created),
        "sdjwt_issue delivered",
        |items| {
            items
                .iter()
                .any(|item| item["type"] == "sdjwt_issue" && delivery_status(item) == "DELIVERED")
        },
    )
    .await;
    assert_eq!(items.len(), 5);
    for item in &items {
        let deliveries = item["deliveries"].as_array().expect("deliveries");
        let expected = usize::from(item["type"] == "sdjwt_issue");
        assert_eq!(deliveries.len(), expected, "{item}");
    }
    assert_eq!(types(&receiver.received()), ["sdjwt_issue"]);
    for (status, body) in
        create_with_webhook(&app, json!({"url": receiver.url, "events": ["sdjwt_isue"]})).await
    {
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("sdjwt_isue"), "{body}");
    }
}

#[tokio::test]
async fn a_huge_response_body_is_read_only_up_to_max_response_bytes() {
    const CHUNK: usize = 64 * 1024;
    const TOTAL: usize = 64 * 1024 * 1024;
    let served = Arc::new(AtomicUsize::new(0));
    let counted = served.clone();
    let receiver = Receiver::answering(move || {
        let counted = counted.clone();
        let chunks = futures_util::stream::iter((0..TOTAL / CHUNK).map(move |_| {
            counted.fetch_add(CHUNK, Ordering::SeqCst);
            Ok::<_, Infallible>(Bytes::from(vec![b'x'; CHUNK]))
        }));
        now(Response::new(Body::from_stream(chunks)))
    })
    .await;
    let app = webhook_app(json!({})).await;
    let created = app
        .create_offer(offer_to(
            json!({"url": receiver.url, "events": ["credential_offer_created"]}),
        ))
        .await;
    let items = wait_for_events(&app, &offer_id(&created), "delivered", all_delivered).await;
    assert_eq!(attempt_codes(&items[0]), [Some(200)]);
    let response = delivery(&items[0])["attempts"][0]["response"]
        .as_str()
        .expect("response");
    assert_eq!(
        response,
        "x".repeat(512),
        "the first 512 characters are kept"
    );
    // The connection was dropped after max_response_bytes: the rest was never pulled (socket
    // buffers hold a few MiB at most).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pulled = served.load(Ordering::SeqCst);
    assert!(pulled < TOTAL / 2, "{pulled} of {TOTAL} bytes were served");
}

/// A receiver's answer is kept for the operator; bytes that are not text (a NUL, which
/// PostgreSQL text cannot hold, or invalid UTF-8) must not stop the attempt being recorded.
#[tokio::test]
async fn a_response_body_with_nul_and_invalid_utf8_is_recorded_as_text() {
    let receiver =
        Receiver::answering(|| now(Response::new(Body::from(&b"ok\0done\xff\x01\nend"[..])))).await;
    let app = webhook_app(json!({})).await;
    let created = app
        .create_offer(offer_to(
            json!({"url": receiver.url, "events": ["credential_offer_created"]}),
        ))
        .await;
    let items = wait_for_events(&app, &offer_id(&created), "delivered", all_delivered).await;
    assert_eq!(attempt_codes(&items[0]), [Some(200)]);
    assert_eq!(
        delivery(&items[0])["attempts"][0]["response"],
        "ok\u{fffd}done\u{fffd}\u{fffd}\nend"
    );
}

#[tokio::test]
async fn a_trickling_response_body_is_cut_off_at_the_timeout() {
    // One byte every 200 ms for two minutes: far longer than any wait below.
    let receiver = Receiver::answering(|| {
        let trickle = futures_util::stream::unfold(0_u32, |sent| async move {
            if sent == 600 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            Some((Ok::<_, Infallible>(Bytes::from_static(b"x")), sent + 1))
        });
        now(Response::new(Body::from_stream(trickle)))
    })
    .await;
    let app = webhook_app(json!({"notifications": {"timeout": "2s"}})).await;
    let created = app
        .create_offer(offer_to(
            json!({"url": receiver.url, "events": ["credential_offer_created"]}),
        ))
        .await;
    let items = wait_for_events(&app, &offer_id(&created), "an attempt", |items| {
        !attempt_codes(&items[0]).is_empty()
    })
    .await;
    let attempt = &delivery(&items[0])["attempts"][0];
    let error = attempt["error"].as_str().expect("error");
    assert!(error.contains("timed out after 2000 ms"), "{attempt}");
    let duration = attempt["durationMs"].as_i64().expect("durationMs");
    assert!(duration >= 2000, "{attempt}");
}

#[tokio::test]
async fn deliveries_never_carry_the_flows_secrets() {
    let receiver = Receiver::start(Vec::new()).await;
    let app = webhook_app(json!({})).await;
    let bearer = "receiver-bearer-token-5f2c";
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let created = app
        .create_offer(json!({
            "profileId": "demo-identity",
            "txCode": {"input_mode": "text", "length": 16},
            "runtimeOverrides": {"notifications": {"webhook": {
                "url": receiver.url, "bearerToken": bearer, "secret": secret}}}
        }))
        .await;
    let wallet = Wallet::new();
    let offer = wallet
        .resolve(&app, created["credentialOffer"].as_str().expect("uri"))
        .await;
    let code = Wallet::code(&offer);
    let tx_code = created["txCodeValue"].as_str().expect("txCodeValue");
    let token = wallet.token(&app, &code, Some(tx_code)).await;
    let nonce = wallet.nonce(&app).await;
    let body = Wallet::request_body(
        offer["credential_configuration_ids"][0]
            .as_str()
            .expect("id"),
        &wallet.proof(&app, &nonce),
    );
    let response = wallet.credential_request(&app, &token, &body).await;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let session = offer_id(&created);
    let items = wait_for_events(&app, &session, "all delivered", all_delivered).await;
    assert_eq!(items.len(), 5);
    let received = receiver.wait_for(5).await;
    let (_, listing) = app
        .api_get(&format!("/api/v1/sessions/{session}/events"))
        .await;
    let mut texts: Vec<String> = received
        .iter()
        .map(|request| String::from_utf8_lossy(&request.raw).into_owned())
        .collect();
    texts.push(listing.to_string());
    for text in &texts {
        for (what, secret_value) in [
            ("pre-authorized code", code.as_str()),
            ("tx code", tx_code),
            ("access token", token.as_str()),
            ("c_nonce", nonce.as_str()),
            ("webhook bearer token", bearer),
            ("webhook secret", secret),
            ("webhook secret key", secret.trim_start_matches("whsec_")),
        ] {
            assert!(!text.contains(secret_value), "the {what} leaked: {text}");
        }
    }
    // The wallet's requests were seen, their secrets redacted.
    let requested = received
        .iter()
        .find(|request| request.body["type"] == "requested_token")
        .expect("requested_token");
    assert!(String::from_utf8_lossy(&requested.raw).contains("[redacted]"));
}

#[tokio::test]
async fn a_410_also_stops_a_delivery_to_that_url_that_was_in_flight_at_the_time() {
    // The first request to arrive fails slowly; the second, concurrent one gets 410 meanwhile.
    let slow_failure = after(
        Duration::from_secs(2),
        (StatusCode::INTERNAL_SERVER_ERROR, "no").into_response(),
    );
    let gone = now((StatusCode::GONE, "gone").into_response());
    let receiver = Receiver::serve("127.0.0.1:0", vec![slow_failure, gone], ok).await;
    let app = webhook_app(json!({})).await;
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let created = app
            .create_offer(offer_to(
                json!({"url": receiver.url, "events": ["credential_offer_created"]}),
            ))
            .await;
        sessions.push(offer_id(&created));
    }
    let mut codes = Vec::new();
    for session in &sessions {
        // (The in-flight delivery shows GONE as soon as the 410 comes; wait for its attempt.)
        let items = wait_for_events(&app, session, "an attempt and a final status", |items| {
            delivery_status(&items[0]) != "PENDING" && !attempt_codes(&items[0]).is_empty()
        })
        .await;
        assert_eq!(delivery_status(&items[0]), "GONE", "{}", items[0]);
        codes.extend(attempt_codes(&items[0]));
    }
    codes.sort_unstable();
    assert_eq!(codes, [Some(410), Some(500)]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received().len(),
        2,
        "nothing is retried to a gone URL"
    );
}
