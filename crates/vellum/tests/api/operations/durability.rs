//! Webhook durability: the real `vellum` binary, killed with SIGKILL again and again during a
//! burst of complete flows (well over 1,000 events), restarted on the same database. Every event
//! of the log reaches the receiver (0 lost); the only duplicates are attempts that were in flight
//! at a kill, and they carry the event's `webhook-id` and the same body.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use reqwest::Client;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use vellum_formats::jose::{self, Algorithm, SigningKey};

use crate::support::API_KEY;
use crate::support::free_port;
use crate::support::process::start;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:pre-authorized_code";
/// Acknowledged events between two kills, kills, and the burst's total.
const EVENTS_PER_KILL: usize = 250;
const KILLS: usize = 4;
const BURST_EVENTS: usize = EVENTS_PER_KILL * (KILLS + 1);
const WALLETS: usize = 16;
/// The dispatcher's limits on deliveries in flight, set explicitly so the bound is known. Every
/// webhook here has the same URL, so at most MAX_IN_FLIGHT_PER_URL attempts are in flight.
const MAX_IN_FLIGHT: usize = 64;
const MAX_IN_FLIGHT_PER_URL: usize = 16;
const IN_FLIGHT: usize = if MAX_IN_FLIGHT < MAX_IN_FLIGHT_PER_URL {
    MAX_IN_FLIGHT
} else {
    MAX_IN_FLIGHT_PER_URL
};

/// How long the receiver takes to answer.
const ANSWER_AFTER: Duration = Duration::from_millis(10);

/// Everything that bounds a wait: long enough for a loaded debug build, short enough to fail.
const PATIENCE: Duration = Duration::from_secs(45);

// ---------------------------------------------------------------------------------------------
// The receiver: records every request with the server lifetime (generation) it came from.

#[derive(Debug, Clone)]
struct Delivery {
    webhook_id: String,
    body: Bytes,
    generation: usize,
}

#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<Delivery>>>,
    /// Bumped after a kill, once every connection of the killed process is closed: a request
    /// is tagged with the lifetime of the server process that sent it.
    generation: Arc<AtomicUsize>,
    open_connections: Arc<AtomicUsize>,
    /// Peer addresses of every connection accepted so far.
    accepted: Arc<Mutex<HashSet<std::net::SocketAddr>>>,
    address: Arc<Mutex<Option<std::net::SocketAddr>>>,
    answering: Arc<AtomicUsize>,
    most_answering: Arc<AtomicUsize>,
}

/// A connection that counts itself open until hyper drops it (after its last request).
struct Tracked {
    stream: TcpStream,
    open: Arc<AtomicUsize>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

struct TrackingListener {
    listener: TcpListener,
    open: Arc<AtomicUsize>,
    accepted: Arc<Mutex<HashSet<std::net::SocketAddr>>>,
}

impl axum::serve::Listener for TrackingListener {
    type Io = Tracked;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Tracked, std::net::SocketAddr) {
        loop {
            if let Ok((stream, address)) = self.listener.accept().await {
                self.open.fetch_add(1, Ordering::SeqCst);
                self.accepted.lock().expect("lock").insert(address);
                let open = self.open.clone();
                return (Tracked { stream, open }, address);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }
}

struct Answering(Arc<AtomicUsize>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let webhook_id = headers
        .get("webhook-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let generation = receiver.generation.load(Ordering::SeqCst);
    receiver.received.lock().expect("lock").push(Delivery {
        webhook_id,
        body,
        generation,
    });
    let open = receiver.answering.fetch_add(1, Ordering::SeqCst) + 1;
    receiver.most_answering.fetch_max(open, Ordering::SeqCst);
    // Dropped when answered, or when the sender is killed and hyper drops this future.
    let _answering = Answering(receiver.answering.clone());
    // Answer after a while, as a real receiver does: more attempts are in flight at a kill.
    tokio::time::sleep(ANSWER_AFTER).await;
    StatusCode::OK
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hooks", listener.local_addr().expect("address"));
        let receiver = Receiver::default();
        let app = Router::new()
            .route("/hooks", axum::routing::post(receive))
            .with_state(receiver.clone());
        let listener = TrackingListener {
            listener,
            open: receiver.open_connections.clone(),
            accepted: receiver.accepted.clone(),
        };
        *receiver.address.lock().expect("lock") =
            Some(listener.listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn received(&self) -> Vec<Delivery> {
        self.received.lock().expect("lock").clone()
    }

    /// After a kill: waits until the dead process's connections are closed (so every request
    /// it sent has been recorded), then starts the next generation.
    async fn next_generation(&self) {
        let deadline = Instant::now() + PATIENCE;
        // Connections the dead process opened may still wait in the accept queue. The queue is
        // first in, first out: once a probe connection is accepted, they all were.
        let address = self.address.lock().expect("lock").expect("listening");
        let probe = TcpStream::connect(address).await.expect("probe connection");
        let probe_address = probe.local_addr().expect("probe address");
        drop(probe);
        while !self.accepted.lock().expect("lock").contains(&probe_address) {
            assert!(Instant::now() < deadline, "the probe was never accepted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        while self.open_connections.load(Ordering::SeqCst) > 0 {
            assert!(
                Instant::now() < deadline,
                "the killed server's connections to the receiver never closed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// The server process.

// ---------------------------------------------------------------------------------------------
// The wallets: complete flows, counting what the server acknowledged.

struct Burst {
    client: Client,
    url: String,
    webhook: String,
    /// Events whose step the server answered with success.
    acknowledged_events: AtomicUsize,
    /// Sessions whose creation was acknowledged (201), with their acknowledged events.
    sessions: Mutex<HashMap<String, usize>>,
    stop: AtomicBool,
    up: watch::Receiver<bool>,
}

impl Burst {
    fn acknowledge(&self, session: &str, events: usize) {
        *self
            .sessions
            .lock()
            .expect("lock")
            .entry(session.to_owned())
            .or_default() += events;
        self.acknowledged_events.fetch_add(events, Ordering::SeqCst);
    }

    /// One complete flow; any failure (the server was killed) abandons it.
    async fn flow(&self) -> Option<()> {
        let created = success(
            self.client
                .post(format!("{}/api/v1/offers", self.url))
                .bearer_auth(API_KEY)
                .json(&json!({
                    "profileId": "demo-identity",
                    "runtimeOverrides": {"notifications": {"webhook": {"url": self.webhook}}}
                })),
        )
        .await?;
        let session = created["offerId"].as_str()?.to_owned();
        self.acknowledge(&session, 1); // credential_offer_created

        let offer = success(self.client.get(created["credentialOfferUri"].as_str()?)).await?;
        self.acknowledge(&session, 1); // resolved_credential_offer

        let code = offer["grants"][GRANT]["pre-authorized_code"].as_str()?;
        let token = success(
            self.client
                .post(format!("{}/token", self.url))
                .form(&[("grant_type", GRANT), ("pre-authorized_code", code)]),
        )
        .await?;
        self.acknowledge(&session, 1); // requested_token

        let nonce = success(self.client.post(format!("{}/nonce", self.url))).await?;
        let holder = SigningKey::generate(Algorithm::ES256);
        let mut header = Map::new();
        header.insert("typ".into(), Value::from("openid4vci-proof+jwt"));
        header.insert("jwk".into(), holder.public_jwk().to_value());
        let iat = time::OffsetDateTime::now_utc().unix_timestamp();
        let proof = jose::sign_compact(
            header,
            &json!({"aud": self.url, "iat": iat, "nonce": nonce["c_nonce"]}),
            &holder,
        );
        success(
            self.client
                .post(format!("{}/credential", self.url))
                .bearer_auth(token["access_token"].as_str()?)
                .json(&json!({
                    "credential_configuration_id": "identity_credential",
                    "proofs": {"jwt": [proof]}
                })),
        )
        .await?;
        self.acknowledge(&session, 2); // sdjwt_issue, issuance_status_changed
        Some(())
    }
}

async fn success(request: reqwest::RequestBuilder) -> Option<Value> {
    let response = request.send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

async fn wallet(burst: Arc<Burst>) {
    let mut up = burst.up.clone();
    while !burst.stop.load(Ordering::SeqCst) {
        if burst.flow().await.is_none() {
            // Killed mid-flow (or refused while down): wait for the restart, then a new flow.
            let _ = tokio::time::timeout(PATIENCE, up.wait_for(|up| *up)).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The log, as the management API gives it.

async fn get_json(client: &Client, url: String) -> Value {
    let response = client
        .get(url)
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("management API");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON");
    assert!(status.is_success(), "{status}: {body}");
    body
}

/// Every session in the database (acknowledged or not), newest first.
async fn all_sessions(client: &Client, url: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_url = match &cursor {
            Some(cursor) => format!("{url}/api/v1/sessions?limit=200&cursor={cursor}"),
            None => format!("{url}/api/v1/sessions?limit=200"),
        };
        let page = get_json(client, page_url).await;
        for item in page["items"].as_array().expect("items") {
            ids.push(item["sessionId"].as_str().expect("session id").to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return ids,
        }
    }
}

/// Every logged event of the sessions, by event id.
async fn event_log(client: &Client, url: &str, sessions: &[String]) -> HashMap<String, Value> {
    let mut log = HashMap::new();
    for session in sessions {
        let events = get_json(
            client,
            format!("{url}/api/v1/sessions/{session}/events?limit=1000"),
        )
        .await;
        for event in events["items"].as_array().expect("items") {
            let id = event["eventId"].as_str().expect("eventId").to_owned();
            log.insert(id, event.clone());
        }
    }
    log
}

fn all_delivered(log: &HashMap<String, Value>) -> bool {
    log.values().all(|event| {
        event["deliveries"]
            .as_array()
            .is_some_and(|deliveries| deliveries.iter().all(|d| d["status"] == "DELIVERED"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_burst_loses_no_webhook_and_duplicates_only_what_was_in_flight() {
    let started = Instant::now();
    crate::support::install_tls();
    let dir = crate::support::database::TestDir::new().await;
    let port = free_port();
    let (receiver, webhook) = Receiver::start().await;
    let mut server = start(&dir, port, &server_env()).await;
    let (set_up, up) = watch::channel(true);
    let client = Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let burst = Arc::new(Burst {
        client: client.clone(),
        url: server.url.clone(),
        webhook,
        acknowledged_events: AtomicUsize::new(0),
        sessions: Mutex::default(),
        stop: AtomicBool::new(false),
        up,
    });
    let wallets: Vec<_> = (0..WALLETS)
        .map(|_| tokio::spawn(wallet(burst.clone())))
        .collect();

    // SIGKILL every EVENTS_PER_KILL acknowledged events, with wallet requests and webhook
    // attempts (the receiver takes ANSWER_AFTER to answer) in flight. Restart on the same
    // database and port.
    for kill in 1..=KILLS {
        wait_until("acknowledged events", || {
            burst.acknowledged_events.load(Ordering::SeqCst) >= kill * EVENTS_PER_KILL
        })
        .await;
        set_up.send_replace(false);
        server.kill_9().await;
        receiver.next_generation().await;
        server = start(&dir, port, &server_env()).await;
        set_up.send_replace(true);
    }
    wait_until("the rest of the burst", || {
        burst.acknowledged_events.load(Ordering::SeqCst) >= BURST_EVENTS
    })
    .await;
    burst.stop.store(true, Ordering::SeqCst);
    for wallet in wallets {
        wallet.await.expect("wallet");
    }
    let burst_took = started.elapsed();

    // The whole log: sessions acknowledged or not (a kill may land between commit and answer).
    let sessions = all_sessions(&client, &server.url).await;
    let listed: HashSet<&String> = sessions.iter().collect();
    let acknowledged = burst.sessions.lock().expect("lock").clone();
    for id in acknowledged.keys() {
        assert!(listed.contains(id), "acknowledged session {id} was lost");
    }
    let log = event_log(&client, &server.url, &sessions).await;
    for (id, events) in &acknowledged {
        let logged = log.values().filter(|event| event["id"] == **id).count();
        assert!(
            logged >= *events,
            "session {id}: {events} events acknowledged, {logged} logged"
        );
    }
    assert!(
        log.len() >= BURST_EVENTS,
        "a burst of at least {BURST_EVENTS} events, got {}",
        log.len()
    );

    // Wait (bounded) until every logged event arrived and the server has recorded every
    // delivery as done (so no redelivery is still to come).
    wait_until("every logged event at the receiver", || {
        let seen: HashSet<String> = receiver
            .received()
            .into_iter()
            .map(|delivery| delivery.webhook_id)
            .collect();
        log.keys().all(|id| seen.contains(id))
    })
    .await;
    let deadline = Instant::now() + PATIENCE;
    let mut final_log = event_log(&client, &server.url, &sessions).await;
    while !all_delivered(&final_log) {
        assert!(
            Instant::now() < deadline,
            "deliveries still pending after every event arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        final_log = event_log(&client, &server.url, &sessions).await;
    }
    assert_eq!(final_log.len(), log.len(), "the log grew after the burst");
    server.kill_9().await;
    receiver.next_generation().await;
    let received = receiver.received();

    // 0 lost, nothing unknown, duplicates identical.
    let mut by_id: HashMap<&str, Vec<&Delivery>> = HashMap::new();
    for delivery in &received {
        by_id
            .entry(delivery.webhook_id.as_str())
            .or_default()
            .push(delivery);
    }
    let lost: Vec<&String> = log
        .keys()
        .filter(|id| !by_id.contains_key(id.as_str()))
        .collect();
    assert!(lost.is_empty(), "{} events lost: {lost:?}", lost.len());
    let mut duplicated_per_kill = [0usize; KILLS + 2];
    for (id, copies) in &by_id {
        let event = log
            .get(*id)
            .unwrap_or_else(|| panic!("webhook-id {id:?} is not a logged event"));
        let body: Value = serde_json::from_slice(&copies[0].body).expect("JSON body");
        for member in ["id", "type", "timestamp", "data"] {
            assert_eq!(body[member], event[member], "{id}: {member}");
        }
        assert!(
            copies.iter().all(|copy| copy.body == copies[0].body),
            "{id}: copies with different bodies"
        );
        // Within one server lifetime an event is sent once; a repeat comes from a restart.
        let generations: Vec<usize> = copies.iter().map(|copy| copy.generation).collect();
        let distinct: HashSet<usize> = generations.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            generations.len(),
            "{id} was received twice from one server process: generations {generations:?}"
        );
        for generation in &generations[..generations.len() - 1] {
            duplicated_per_kill[*generation] += 1;
        }
    }
    let duplicates = received.len() - by_id.len();
    let most_open = receiver.most_answering.load(Ordering::SeqCst);
    eprintln!(
        "durability: {} events in the log ({} sessions, {} acknowledged), {} requests received, \
         0 lost, {duplicates} duplicates over {KILLS} kills (per kill: {:?}; bound {IN_FLIGHT} \
         in flight); at most {most_open} requests open at the receiver; burst {:.1} s, total {:.1} s",
        log.len(),
        sessions.len(),
        acknowledged.len(),
        received.len(),
        &duplicated_per_kill[..KILLS],
        burst_took.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    assert!(
        most_open <= IN_FLIGHT,
        "{most_open} requests open at once: more than the {IN_FLIGHT} allowed in flight"
    );
    for (kill, duplicated) in duplicated_per_kill.iter().enumerate() {
        assert!(
            *duplicated <= IN_FLIGHT,
            "{duplicated} events resent after kill {kill}: more than the {IN_FLIGHT} in flight"
        );
    }
    assert!(duplicates <= IN_FLIGHT * KILLS);
}

/// The burst's server: loopback webhooks allowed, and the in-flight limits the bounds rely on.
fn server_env() -> Vec<(&'static str, String)> {
    vec![
        (
            "VELLUM_NOTIFICATIONS__ALLOW_PRIVATE_TARGETS",
            r#"["127.0.0.1/32"]"#.to_owned(),
        ),
        (
            "VELLUM_NOTIFICATIONS__MAX_IN_FLIGHT",
            MAX_IN_FLIGHT.to_string(),
        ),
        (
            "VELLUM_NOTIFICATIONS__MAX_IN_FLIGHT_PER_URL",
            MAX_IN_FLIGHT_PER_URL.to_string(),
        ),
        // On PostgreSQL the restarted server waits for the killed one's leases to run out.
        ("VELLUM_NOTIFICATIONS__TIMEOUT", "2s".to_owned()),
        ("VELLUM_NOTIFICATIONS__LEASE", "3s".to_owned()),
    ]
}
