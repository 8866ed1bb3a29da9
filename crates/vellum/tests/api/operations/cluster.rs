//! Several Vellum instances behind one address: the real binary, two or three processes on
//! their own ports against one PostgreSQL database, all with the same public URL (the issuer
//! identifier a load balancer would answer on). Any step of a flow may land on any instance;
//! codes, nonces and sessions are used once even when instances race; each event is delivered
//! by one instance, and by another after a crash once the lease has run out; a stream on one
//! instance sees what another committed; roles split serving from delivering; and the
//! third-party wallet redeems an offer through a load balancer that spreads its requests. The
//! authorization code flow, whose steps hand each other more state, has a file of its own
//! (`code_flow`), and so do status lists, which each instance signs and caches (`status`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;

use futures_util::future::join_all;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use vellum_formats::jose::{Jwk, UnverifiedJws};

use crate::support::API_KEY;
use crate::support::database::TestDir;
use crate::support::process::{Server, start};
use crate::support::streams::EventStream;
use crate::support::wallet::{PRE_AUTHORIZED_GRANT, ProofClaims, Wallet};
use crate::support::webhooks::{Receiver, Reply, WAIT, now};
use crate::support::{DEMO_PROFILE, free_port};

mod code_flow;
mod status;

const CONFIGURATION: &str = "identity_credential";

/// Instances on one PostgreSQL database of their own, sharing the first one's URL as the
/// public URL.
struct Cluster {
    dir: TestDir,
    public_url: String,
    client: Client,
}

impl Cluster {
    /// `None` (the test is skipped) without a PostgreSQL server, unless one is required.
    async fn new() -> Option<Cluster> {
        if !crate::support::database::postgres_or_skip().await {
            return None;
        }
        crate::support::install_tls();
        let port = free_port();
        Some(Cluster {
            dir: TestDir::postgres().await,
            public_url: format!("http://127.0.0.1:{port}"),
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        })
    }

    /// The instance answering on the public URL's port.
    async fn first(&self, env: &[(&str, &str)]) -> Server {
        let port = self.public_url.rsplit(':').next().expect("port");
        self.start_on(port.parse().expect("a port"), env).await
    }

    /// One more instance on a port of its own.
    async fn another(&self, env: &[(&str, &str)]) -> Server {
        self.start_on(free_port(), env).await
    }

    async fn start_on(&self, port: u16, env: &[(&str, &str)]) -> Server {
        let mut all = vec![
            ("VELLUM_PUBLIC_URL", self.public_url.clone()),
            (
                "VELLUM_NOTIFICATIONS__ALLOW_PRIVATE_TARGETS",
                r#"["127.0.0.1/32"]"#.to_owned(),
            ),
            ("VELLUM_NOTIFICATIONS__POLL_INTERVAL", "100ms".to_owned()),
        ];
        all.extend(env.iter().map(|(name, value)| (*name, (*value).to_owned())));
        start(&self.dir, port, &all).await
    }

    /// Three instances with both roles.
    async fn three(&self) -> [Server; 3] {
        let first = self.first(&[]).await;
        let (second, third) = tokio::join!(self.another(&[]), self.another(&[]));
        [first, second, third]
    }

    async fn api(
        &self,
        server: &Server,
        method: reqwest::Method,
        path: &str,
    ) -> (StatusCode, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", server.url))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("request");
        json_of(response).await
    }

    async fn create_offer(&self, server: &Server, body: Value) -> Value {
        let response = self
            .client
            .post(format!("{}/api/v1/offers", server.url))
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
            .await
            .expect("create offer");
        let (status, offer) = json_of(response).await;
        assert_eq!(status, StatusCode::CREATED, "{offer}");
        offer
    }

    /// Resolves the offer's `credential_offer_uri`, which names the public URL, on `server`.
    async fn resolve(&self, server: &Server, created: &Value) -> Value {
        let uri = created["credentialOfferUri"]
            .as_str()
            .expect("by reference");
        let on_server = on(self, server, uri);
        let (status, offer) = json_of(self.client.get(on_server).send().await.expect("GET")).await;
        assert_eq!(status, StatusCode::OK, "{offer}");
        offer
    }

    async fn token(
        &self,
        server: &Server,
        code: &str,
        tx_code: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut form = vec![
            ("grant_type", PRE_AUTHORIZED_GRANT),
            ("pre-authorized_code", code),
        ];
        if let Some(tx_code) = tx_code {
            form.push(("tx_code", tx_code));
        }
        let response = self
            .client
            .post(format!("{}/token", server.url))
            .form(&form)
            .send()
            .await
            .expect("token");
        json_of(response).await
    }

    async fn nonce(&self, server: &Server) -> String {
        let response = self
            .client
            .post(format!("{}/nonce", server.url))
            .send()
            .await
            .expect("nonce");
        let (status, body) = json_of(response).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["c_nonce"].as_str().expect("c_nonce").to_owned()
    }

    /// A proof for the issuer (the public URL), whichever instance receives it.
    fn proof(&self, wallet: &Wallet, nonce: &str) -> String {
        wallet.proof_with(&ProofClaims {
            aud: Value::from(self.public_url.as_str()),
            nonce: Some(nonce.to_owned()),
            iat: unix_seconds(),
            typ: "openid4vci-proof+jwt",
        })
    }

    async fn credential(&self, server: &Server, token: &str, proof: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}/credential", server.url))
            .bearer_auth(token)
            .json(&Wallet::request_body(CONFIGURATION, proof))
            .send()
            .await
            .expect("credential");
        json_of(response).await
    }

    /// A session's events, as the API lists them.
    async fn events(&self, server: &Server, session: &str) -> Vec<Value> {
        let (status, page) = self
            .api(
                server,
                reqwest::Method::GET,
                &format!("/api/v1/sessions/{session}/events"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["items"].as_array().expect("items").clone()
    }
}

/// `url`, which names the public URL, sent to `server` instead.
fn on(cluster: &Cluster, server: &Server, url: &str) -> String {
    let path = url
        .strip_prefix(&cluster.public_url)
        .unwrap_or_else(|| panic!("{url} is not under the public URL"));
    format!("{}{path}", server.url)
}

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn unix_seconds() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(now.as_secs()).expect("seconds")
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event["type"].as_str().expect("type"))
        .collect()
}

/// The issuer signature of an SD-JWT VC, checked with the key its `kid` names in `server`'s
/// JWKS; returns the claims of the issuer-signed JWT.
async fn verified_claims(cluster: &Cluster, server: &Server, credential: &str) -> Value {
    let jwt = credential.split('~').next().expect("issuer JWT");
    let jws = UnverifiedJws::parse(jwt).expect("a JWS");
    let kid = jws.header["kid"].as_str().expect("kid");
    let (_, jwks) = json_of(
        cluster
            .client
            .get(format!("{}/jwks", server.url))
            .send()
            .await
            .expect("jwks"),
    )
    .await;
    let key = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|key| key["kid"] == kid)
        .expect("the kid is published");
    jws.verify_with(&Jwk::from_value(key).expect("a JWK"))
        .expect("the issuer signature verifies");
    Value::Object(jws.payload)
}

#[tokio::test]
async fn each_step_of_a_flow_can_land_on_another_instance() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let [a, b, c] = cluster.three().await;
    let wallet = Wallet::new();

    let created = cluster
        .create_offer(&a, json!({"profileId": DEMO_PROFILE, "txCode": {}}))
        .await;
    let session = created["offerId"].as_str().expect("offerId").to_owned();
    let offer = cluster.resolve(&b, &created).await;
    assert_eq!(offer["credential_issuer"], cluster.public_url.as_str());
    let (status, token) = cluster
        .token(&c, &Wallet::code(&offer), created["txCodeValue"].as_str())
        .await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let token = token["access_token"].as_str().expect("access_token");
    let nonce = cluster.nonce(&a).await;
    let (status, issued) = cluster
        .credential(&b, token, &cluster.proof(&wallet, &nonce))
        .await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let credential = issued["credentials"][0]["credential"]
        .as_str()
        .expect("credential");

    let claims = verified_claims(&cluster, &c, credential).await;
    assert_eq!(claims["iss"], cluster.public_url.as_str());
    assert_eq!(claims["cnf"]["jwk"], wallet.key.public_jwk().to_value());
    let (_, state) = cluster
        .api(
            &c,
            reqwest::Method::GET,
            &format!("/api/v1/sessions/{session}"),
        )
        .await;
    assert_eq!(state["status"], "SUCCESSFUL", "{state}");
    assert_eq!(
        types(&cluster.events(&a, &session).await),
        crate::support::SD_JWT_FLOW_EVENTS
    );
}

#[tokio::test]
async fn racing_instances_redeem_a_code_once_use_a_nonce_once_and_issue_once() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let servers = cluster.three().await;

    // Every code, asked for on all three instances at once (twice each), is redeemed once.
    let mut tokens = Vec::new();
    for round in 0..6 {
        let created = cluster
            .create_offer(&servers[round % 3], json!({"profileId": DEMO_PROFILE}))
            .await;
        let code = Wallet::code(&cluster.resolve(&servers[(round + 1) % 3], &created).await);
        let answers =
            join_all((0..6).map(|attempt| cluster.token(&servers[attempt % 3], &code, None))).await;
        let won: Vec<_> = answers
            .iter()
            .filter(|(status, _)| *status == StatusCode::OK)
            .collect();
        assert_eq!(won.len(), 1, "one redemption of one code: {answers:?}");
        for (status, body) in answers
            .iter()
            .filter(|(status, _)| *status != StatusCode::OK)
        {
            assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(body["error"], "invalid_grant", "{body}");
        }
        let session = created["offerId"].as_str().expect("offerId").to_owned();
        tokens.push((
            session,
            won[0].1["access_token"].as_str().expect("token").to_owned(),
        ));
    }

    // One credential request sent to every instance at once (twice each): issued once.
    let wallet = Wallet::new();
    let (session, token) = &tokens[0];
    let proof = cluster.proof(&wallet, &cluster.nonce(&servers[0]).await);
    let answers =
        join_all((0..6).map(|attempt| cluster.credential(&servers[attempt % 3], token, &proof)))
            .await;
    let issued = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .count();
    assert_eq!(issued, 1, "one credential for one session: {answers:?}");
    for (status, body) in answers
        .iter()
        .filter(|(status, _)| *status != StatusCode::OK)
    {
        assert!(status.is_client_error(), "{status}: {body}");
    }
    let events = cluster.events(&servers[2], session).await;
    let kinds = types(&events);
    assert_eq!(
        kinds.iter().filter(|kind| **kind == "sdjwt_issue").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|kind| **kind == "issuance_status_changed")
            .count(),
        1,
        "the session finished once: {kinds:?}"
    );

    // One nonce in the proofs of two sessions, sent to two instances at once: used once.
    let nonce = cluster.nonce(&servers[1]).await;
    let (first_wallet, second_wallet) = (Wallet::new(), Wallet::new());
    let ((first_session, first_token), (second_session, second_token)) = (&tokens[1], &tokens[2]);
    let (first_proof, second_proof) = (
        cluster.proof(&first_wallet, &nonce),
        cluster.proof(&second_wallet, &nonce),
    );
    let (first, second) = tokio::join!(
        cluster.credential(&servers[0], first_token, &first_proof),
        cluster.credential(&servers[1], second_token, &second_proof),
    );
    let outcomes = [
        (&first, first_session, &first_wallet),
        (&second, second_session, &second_wallet),
    ];
    let winners = outcomes
        .iter()
        .filter(|((status, _), _, _)| *status == StatusCode::OK)
        .count();
    assert_eq!(winners, 1, "{first:?} {second:?}");
    let ((_, refusal), loser, loser_wallet) = outcomes
        .iter()
        .find(|((status, _), _, _)| *status != StatusCode::OK)
        .expect("a loser");
    assert_eq!(refusal["error"], "invalid_nonce", "{refusal}");
    // The loser's session is still open: with a fresh nonce it gets its credential.
    let loser_token = if *loser == first_session {
        first_token
    } else {
        second_token
    };
    let retry = cluster.proof(loser_wallet, &cluster.nonce(&servers[2]).await);
    let (status, body) = cluster.credential(&servers[2], loser_token, &retry).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// `count` offers spread over `servers`, each sending its events to `receiver`.
async fn offers_with_webhook(
    cluster: &Cluster,
    servers: &[&Server],
    receiver: &Receiver,
    count: usize,
) -> Vec<String> {
    let created = join_all((0..count).map(|index| {
        cluster.create_offer(
            servers[index % servers.len()],
            json!({"profileId": DEMO_PROFILE,
                   "runtimeOverrides": {"notifications": {"webhook": {"url": receiver.url}}}}),
        )
    }))
    .await;
    created
        .iter()
        .map(|offer| offer["offerId"].as_str().expect("offerId").to_owned())
        .collect()
}

#[tokio::test]
async fn three_delivering_instances_send_each_event_once() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let receiver = Receiver::start(Vec::new()).await;
    let servers = cluster.three().await;
    let sessions =
        offers_with_webhook(&cluster, &servers.iter().collect::<Vec<_>>(), &receiver, 90).await;

    // One event per offer (credential_offer_created): 90 deliveries, then nothing more.
    receiver.wait_for(sessions.len()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = receiver.received();
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for request in &received {
        *per_event
            .entry(request.header("webhook-id").to_owned())
            .or_default() += 1;
    }
    assert_eq!(received.len(), sessions.len(), "a duplicate delivery");
    assert!(per_event.values().all(|count| *count == 1), "{per_event:?}");
    let mut delivered: Vec<_> = received
        .iter()
        .map(|request| request.body["id"].as_str().expect("envelope id").to_owned())
        .collect();
    delivered.sort();
    let mut expected = sessions.clone();
    expected.sort();
    assert_eq!(delivered, expected, "every offer's event, once");
    for session in sessions.iter().take(10) {
        let events = cluster.events(&servers[0], session).await;
        let deliveries = events[0]["deliveries"].as_array().expect("deliveries");
        assert_eq!(deliveries.len(), 1, "{events:?}");
        assert_eq!(deliveries[0]["status"], "DELIVERED", "{events:?}");
        assert_eq!(
            deliveries[0]["attempts"]
                .as_array()
                .expect("attempts")
                .len(),
            1
        );
    }
}

#[tokio::test]
async fn when_a_delivering_instance_dies_another_sends_its_events_after_the_lease() {
    const LEASE: Duration = Duration::from_secs(4);
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    // The receiver holds the first request open (a slow endpoint), then answers at once.
    let held: Reply = Box::pin(async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        axum::response::IntoResponse::into_response(StatusCode::OK)
    });
    let receiver = Receiver::serve("127.0.0.1:0", vec![held], || {
        now(axum::response::IntoResponse::into_response(StatusCode::OK))
    })
    .await;
    let timing = [
        ("VELLUM_NOTIFICATIONS__TIMEOUT", "3s"),
        ("VELLUM_NOTIFICATIONS__LEASE", "4s"),
    ];
    // Only the first instance delivers; the second serves the API alone.
    let worker = cluster.first(&timing).await;
    let api_only = cluster
        .another(&[timing[0], timing[1], ("VELLUM_ROLES__WORKER", "false")])
        .await;
    let sessions = offers_with_webhook(&cluster, &[&api_only], &receiver, 1).await;
    let first = receiver.wait_for(1).await;
    let claimed_at = first[0].at;
    worker.kill_9().await;

    // A new worker finds the delivery leased and takes it once the lease has run out.
    let _successor = cluster.another(&timing).await;
    let again = receiver.wait_for(2).await;
    assert!(
        again[1].at.duration_since(claimed_at) >= LEASE - Duration::from_millis(500),
        "taken over before the lease ran out: after {:?}",
        again[1].at.duration_since(claimed_at)
    );
    assert_eq!(again[1].header("webhook-id"), first[0].header("webhook-id"));
    assert_eq!(again[1].raw, first[0].raw, "the same event, byte for byte");
    let deadline = Instant::now() + WAIT;
    loop {
        let events = cluster.events(&api_only, &sessions[0]).await;
        if events[0]["deliveries"][0]["status"] == "DELIVERED" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never recorded as delivered: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_stream_on_one_instance_sees_events_committed_on_another_within_a_second() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let writer = cluster.first(&[]).await;
    let reader = cluster.another(&[]).await;
    let response = cluster
        .client
        .get(format!("{}/api/v1/events", reader.url))
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("open the stream");
    let mut stream = EventStream::new(response);
    for _ in 0..5 {
        let created = cluster
            .create_offer(&writer, json!({"profileId": DEMO_PROFILE}))
            .await;
        // Committed by the time the writer answered; the reader's own machinery from here on.
        let committed = Instant::now();
        let event = stream.event().await;
        let seen_after = committed.elapsed();
        assert_eq!(event.event, "credential_offer_created");
        assert_eq!(event.data["id"], created["offerId"]);
        assert!(
            seen_after < Duration::from_secs(1),
            "seen {seen_after:?} after the other instance committed it"
        );
    }
}

#[tokio::test]
async fn roles_split_serving_from_delivering() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let receiver = Receiver::start(Vec::new()).await;
    let api = cluster.first(&[("VELLUM_ROLES__WORKER", "false")]).await;
    let worker = cluster.another(&[("VELLUM_ROLES__API", "false")]).await;

    // The worker serves its health and nothing else.
    let health = cluster
        .client
        .get(format!("{}/health", worker.url))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), StatusCode::OK);
    let (status, body) = cluster
        .api(&worker, reqwest::Method::GET, "/api/v1/profiles")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "not_found");

    // Offers made on the API instance are delivered by the worker.
    offers_with_webhook(&cluster, &[&api], &receiver, 3).await;
    receiver.wait_for(3).await;

    // Without a worker, events wait in the outbox (nothing delivers them) until one starts.
    worker.kill_9().await;
    let waiting = offers_with_webhook(&cluster, &[&api], &receiver, 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), 3, "delivered without a worker");
    let events = cluster.events(&api, &waiting[0]).await;
    assert_eq!(
        events[0]["deliveries"][0]["status"], "PENDING",
        "{events:?}"
    );
    let _worker = cluster.another(&[("VELLUM_ROLES__API", "false")]).await;
    receiver.wait_for(5).await;
}

/// A reverse proxy on the public URL that sends each request to the next instance in turn, and
/// notes which instance got which request.
struct LoadBalancer {
    routed: Arc<Mutex<Vec<(usize, String)>>>,
}

#[derive(Clone)]
struct Balancing {
    backends: Arc<Vec<String>>,
    turn: Arc<AtomicUsize>,
    routed: Arc<Mutex<Vec<(usize, String)>>>,
    client: Client,
}

async fn forward(
    State(lb): State<Balancing>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let index = lb.turn.fetch_add(1, Ordering::SeqCst) % lb.backends.len();
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .to_owned();
    lb.routed
        .lock()
        .expect("lock")
        .push((index, format!("{} {}", parts.method, parts.uri.path())));
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .expect("request body");
    let mut headers = parts.headers.clone();
    headers.remove(reqwest::header::HOST);
    let answer = lb
        .client
        .request(parts.method, format!("{}{path}", lb.backends[index]))
        .headers(headers)
        .body(body)
        .send()
        .await
        .expect("the instance answers");
    let status = answer.status();
    let headers = answer.headers().clone();
    let body = answer.bytes().await.expect("response body");
    let mut response = (status, body).into_response();
    for (name, value) in &headers {
        if name != reqwest::header::CONTENT_LENGTH && name != reqwest::header::TRANSFER_ENCODING {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

impl LoadBalancer {
    /// Serves the cluster's public URL, in front of `backends`.
    async fn start(cluster: &Cluster, backends: &[&Server]) -> LoadBalancer {
        let address = cluster.public_url.trim_start_matches("http://");
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .expect("bind the public URL");
        let routed = Arc::new(Mutex::new(Vec::new()));
        let balancing = Balancing {
            backends: Arc::new(backends.iter().map(|server| server.url.clone()).collect()),
            turn: Arc::default(),
            routed: routed.clone(),
            client: cluster.client.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(balancing);
        tokio::spawn(async move { axum::serve(listener, app).await });
        LoadBalancer { routed }
    }
}

/// The third-party wallet, through a load balancer that sends each of its requests to another
/// instance, redeems an offer and verifies the credential: the issuer behind one address.
#[tokio::test]
async fn the_oid4vc_ts_wallet_redeems_an_offer_through_a_round_robin_load_balancer() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let (a, b, c) = tokio::join!(
        cluster.another(&[]),
        cluster.another(&[]),
        cluster.another(&[])
    );
    let balancer = LoadBalancer::start(&cluster, &[&a, &b, &c]).await;
    let response = cluster
        .client
        .post(format!("{}/api/v1/offers", cluster.public_url))
        .bearer_auth(API_KEY)
        .json(&json!({"profileId": DEMO_PROFILE, "txCode": {}}))
        .send()
        .await
        .expect("create offer");
    let (status, created) = json_of(response).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");

    let wallet = crate::support::interop::wallet_redeems(&created, "credential_offer_uri").await;
    assert_eq!(wallet["claims"]["iss"], cluster.public_url.as_str());

    let routed = balancer.routed.lock().expect("lock").clone();
    let instances_for = |step: &str| -> Vec<usize> {
        routed
            .iter()
            .filter(|(_, request)| request.starts_with(step))
            .map(|(index, _)| *index)
            .collect()
    };
    for step in ["POST /token", "POST /credential", "GET /credential-offer/"] {
        assert!(!instances_for(step).is_empty(), "no {step} in {routed:?}");
    }
    let used: std::collections::BTreeSet<usize> = routed.iter().map(|(index, _)| *index).collect();
    assert_eq!(
        used.len(),
        3,
        "every instance served part of the flow: {routed:?}"
    );
    let session = created["offerId"].as_str().expect("offerId");
    let (_, state) = cluster
        .api(
            &b,
            reqwest::Method::GET,
            &format!("/api/v1/sessions/{session}"),
        )
        .await;
    assert_eq!(state["status"], "SUCCESSFUL", "{state}");
}

/// Three instances started at the same moment on an empty database all start, and set it up
/// once: one demo key, one development CA key, one version of the demo profile.
#[tokio::test]
async fn instances_started_together_on_an_empty_database_set_it_up_once() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let (a, b, c) = tokio::join!(
        cluster.another(&[]),
        cluster.another(&[]),
        cluster.another(&[])
    );
    for server in [&a, &b, &c] {
        let (status, profile) = cluster
            .api(
                server,
                reqwest::Method::GET,
                &format!("/api/v1/profiles/{DEMO_PROFILE}"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{profile}");
        assert_eq!(profile["version"], 1, "{profile}");
    }
    let (_, keys) = cluster.api(&c, reqwest::Method::GET, "/api/v1/keys").await;
    let mut ids: Vec<&str> = keys
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| key["id"].as_str().expect("id"))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["demo-es256", vellum::keys::DEVELOPMENT_CA_KEY]);
}
