//! Real HTTP receivers for webhook tests: each records what it gets and answers from a script,
//! and the waits and views over a session's deliveries.
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::support::events;
use crate::support::{TestApp, spawn_running_app_with};

/// The bound of every wait in these tests: long enough for a loaded machine, short enough that
/// a lost event fails the run instead of hanging it.
pub const WAIT: Duration = Duration::from_secs(30);
pub(crate) const STEP: Duration = Duration::from_millis(25);

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Bytes,
    /// When it arrived (monotonic), and the wall-clock Unix seconds then.
    pub at: Instant,
    pub unix_seconds: i64,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }
}

/// How a receiver answers one request: a future, so that it can take its time.
pub type Reply = Pin<Box<dyn Future<Output = Response> + Send>>;

/// Answers at once.
pub fn now(response: Response) -> Reply {
    Box::pin(std::future::ready(response))
}

/// Answers after `delay`.
pub fn after(delay: Duration, response: Response) -> Reply {
    Box::pin(async move {
        tokio::time::sleep(delay).await;
        response
    })
}

pub(crate) fn ok() -> Reply {
    now((StatusCode::OK, "OK").into_response())
}

/// A real HTTP server that records every request and answers from a script, then with
/// `otherwise` once the script is used up (200 OK unless told).
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    otherwise: Arc<dyn Fn() -> Reply + Send + Sync>,
}

pub(crate) async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let unix_seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    receiver.received.lock().expect("lock").push(Received {
        headers,
        body,
        raw,
        at: Instant::now(),
        unix_seconds: i64::try_from(unix_seconds).expect("seconds"),
    });
    let scripted = receiver.script.lock().expect("lock").pop_front();
    scripted.unwrap_or_else(|| (receiver.otherwise)()).await
}

impl Receiver {
    /// On 127.0.0.1, a free port; answers `script`, then 200.
    pub async fn start(script: Vec<Response>) -> Receiver {
        Receiver::serve("127.0.0.1:0", script.into_iter().map(now).collect(), ok).await
    }

    /// Answers every request with `otherwise`.
    pub async fn answering(otherwise: impl Fn() -> Reply + Send + Sync + 'static) -> Receiver {
        Receiver::serve("127.0.0.1:0", Vec::new(), otherwise).await
    }

    pub async fn serve(
        address: &str,
        script: Vec<Reply>,
        otherwise: impl Fn() -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .unwrap_or_else(|error| panic!("bind {address}: {error}"));
        let address = listener.local_addr().expect("address");
        let receiver = Receiver {
            url: format!("http://{address}/webhook/issuance"),
            received: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
            otherwise: Arc::new(otherwise),
        };
        let app = Router::new()
            .route("/webhook/issuance", axum::routing::post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// Waits (bounded) until at least `count` requests arrived; returns them all.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + WAIT;
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "expected {count} requests at {}, got {}: {:?}",
                self.url,
                received.len(),
                types(&received)
            );
            tokio::time::sleep(STEP).await;
        }
    }
}

/// A TCP listener that only counts the connections made to it.
pub(crate) struct ConnectionCounter {
    pub(crate) address: SocketAddr,
    count: Arc<AtomicUsize>,
}

impl ConnectionCounter {
    pub(crate) async fn start(address: &str) -> ConnectionCounter {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .unwrap_or_else(|error| panic!("bind {address}: {error}"));
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        ConnectionCounter { address, count }
    }

    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// An app that may deliver to 127.0.0.1 and retries quickly.
pub async fn webhook_app(extra: Value) -> TestApp {
    let mut overrides = json!({"notifications": {
        "allow_private_targets": ["127.0.0.1/32"],
        "retry_schedule": ["100ms", "100ms", "100ms"],
        "retry_jitter": 0.0,
        "poll_interval": "20ms",
    }});
    if let (Value::Object(base), Value::Object(extra)) = (&mut overrides, extra) {
        for (name, value) in extra {
            match (base.get_mut(&name), value) {
                (Some(Value::Object(existing)), Value::Object(more)) => existing.extend(more),
                (_, value) => {
                    base.insert(name, value);
                }
            }
        }
    }
    spawn_running_app_with(overrides).await
}

pub fn types(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.body["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The webhook settings of an offer: `{"profileId": "demo-identity", runtimeOverrides...}`.
pub fn offer_to(webhook: Value) -> Value {
    json!({
        "profileId": "demo-identity",
        "runtimeOverrides": {"notifications": {"webhook": webhook}}
    })
}

/// The first delivery of an event from the events API (`Null` when it has none).
pub fn delivery(event: &Value) -> &Value {
    &event["deliveries"][0]
}

pub fn delivery_status(event: &Value) -> &str {
    delivery(event)["status"].as_str().unwrap_or("none")
}

/// The status codes of a delivery's attempts (`None` for an attempt that got no response).
pub fn attempt_codes(event: &Value) -> Vec<Option<i64>> {
    delivery(event)["attempts"]
        .as_array()
        .map(|attempts| {
            attempts
                .iter()
                .map(|attempt| attempt["statusCode"].as_i64())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls the session's events (bounded) until `done` holds; returns them.
pub async fn wait_for_events(
    app: &TestApp,
    session: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let items = events(app, session).await;
        if done(&items) {
            return items;
        }
        assert!(
            Instant::now() < deadline,
            "session {session}: waited {WAIT:?} for {what}; events: {}",
            Value::from(items)
        );
        tokio::time::sleep(STEP).await;
    }
}

pub fn all_delivered(items: &[Value]) -> bool {
    !items.is_empty()
        && items
            .iter()
            .all(|item| delivery_status(item) == "DELIVERED")
}
