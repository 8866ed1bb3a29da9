//! `vellum bench webhooks`: webhook delivery against a running issuer. The bench runs its own
//! receiver (HTTP on a loopback port, answering 200 at once and noting when each event arrives)
//! and creates offers whose webhook points at it; each offer commits exactly one event
//! (`credential_offer_created`), so events = offers. Two measurements:
//!
//! 1. Throughput: N offers created as fast as C clients can; created/s, and delivered/s up to
//!    the last delivery.
//! 2. Commit-to-receipt latency at a fixed rate (default 500 events/s for 10 s), as p50/p99/max.
//!    The event commits while the create-offer request is in the server, so the latency lies
//!    between arrival minus the moment the response returned (reported as "at least") and
//!    arrival minus the moment the request was sent ("at most").
//!
//! Given several instances (on one database), the create-offer requests go to them in turn.
//!
//! The server must allow webhook targets on the receiver's address, e.g.
//! `VELLUM_NOTIFICATIONS__ALLOW_PRIVATE_TARGETS='["127.0.0.1/32"]'` for loopback.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::{Instances, millis, percentile};

#[derive(Debug, Clone, Args)]
pub struct WebhookOptions {
    /// Base URL of the running issuer. Give it once per instance (`--url A --url B`) to send
    /// the create-offer requests to the instances in turn.
    #[arg(
        long = "url",
        value_name = "URL",
        default_value = "http://127.0.0.1:7005"
    )]
    pub urls: Vec<String>,
    /// Management API key (also: VELLUM_API_KEY).
    #[arg(long, env = "VELLUM_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// Profile to make offers from.
    #[arg(long, default_value = "demo-identity")]
    pub profile: String,
    /// Address the bench's receiver listens on; the server must be able to reach it and must
    /// allow it (notifications.allow_private_targets).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Which measurements to run.
    #[arg(long, value_enum, default_value_t = Phase::Both)]
    pub phase: Phase,
    /// Throughput: events (offers) to create.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Throughput: create-offer requests in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Latency: events per second, created on a fixed schedule.
    #[arg(long, default_value_t = 500)]
    pub rate: u32,
    /// Latency: seconds to keep that rate.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Events created and delivered first, left out of the figures.
    #[arg(long, default_value_t = 200)]
    pub warmup: usize,
    /// Longest wait for the outstanding deliveries after the last event is created.
    #[arg(long, default_value_t = 60)]
    pub drain_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    Both,
    Throughput,
    Latency,
}

/// The receiver: first arrival per session (one event per offer), and every request counted.
#[derive(Default)]
struct Arrivals {
    first: Mutex<HashMap<String, Instant>>,
    /// Sessions in `first`, counted as they arrive (under its lock).
    sessions: AtomicUsize,
    requests: AtomicUsize,
    arrived: Notify,
}

async fn receive(
    State(arrivals): State<Arc<Arrivals>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let at = Instant::now();
    arrivals.requests.fetch_add(1, Ordering::Relaxed);
    #[derive(serde::Deserialize)]
    struct Envelope {
        id: Option<String>,
    }
    if headers.contains_key("webhook-id")
        && let Ok(Envelope { id: Some(session) }) = serde_json::from_slice(&body)
        && let Ok(mut first) = arrivals.first.lock()
        && let Entry::Vacant(slot) = first.entry(session)
    {
        slot.insert(at);
        arrivals.sessions.fetch_add(1, Ordering::Relaxed);
    }
    arrivals.arrived.notify_waiters();
    StatusCode::OK
}

struct Bench {
    options: WebhookOptions,
    client: reqwest::Client,
    instances: Instances,
    webhook: String,
    arrivals: Arc<Arrivals>,
}

/// One created offer: its session id, when the request was sent and when the answer returned.
struct Created {
    session: String,
    sent: Instant,
    answered: Instant,
}

pub async fn run(options: WebhookOptions) -> anyhow::Result<()> {
    if options.concurrency == 0 || options.events == 0 || options.rate == 0 || options.seconds == 0
    {
        bail!("--events, --concurrency, --rate and --seconds must be at least 1");
    }
    let arrivals = Arc::new(Arrivals::default());
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let address = listener.local_addr()?;
    let app = Router::new()
        .route("/webhook", axum::routing::post(receive))
        .with_state(arrivals.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(options.concurrency.max(64))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let bench = Arc::new(Bench {
        webhook: format!("http://{address}/webhook"),
        instances: Instances::new(&options.urls)?,
        options,
        client,
        arrivals,
    });
    println!("receiver: {}", bench.webhook);

    if bench.options.warmup > 0 {
        let created = bench
            .create_many(bench.options.warmup, bench.options.concurrency)
            .await?;
        bench.wait_for(&created).await?;
    }
    if bench.options.phase != Phase::Latency {
        throughput(&bench).await?;
    }
    if bench.options.phase != Phase::Throughput {
        latency(&bench).await?;
    }
    Ok(())
}

impl Bench {
    async fn create(&self) -> anyhow::Result<Created> {
        let sent = Instant::now();
        let response = self
            .client
            .post(format!("{}/api/v1/offers", self.instances.next_url()))
            .bearer_auth(&self.options.api_key)
            .json(&json!({
                "profileId": self.options.profile,
                "runtimeOverrides": {"notifications": {"webhook": {"url": self.webhook}}}
            }))
            .send()
            .await
            .context("create offer")?;
        let status = response.status();
        let body = response.text().await?;
        let answered = Instant::now();
        if !status.is_success() {
            if body.contains("allow_private_targets") {
                bail!(
                    "the server refuses the bench's receiver {} as a webhook target: start it with \
                     VELLUM_NOTIFICATIONS__ALLOW_PRIVATE_TARGETS='[\"{}/32\"]' \
                     (notifications.allow_private_targets). Server said: {body}",
                    self.webhook,
                    self.options.listen.ip()
                );
            }
            bail!("create offer failed with {status}: {body}");
        }
        let created: Value = serde_json::from_str(&body).context("create offer: not JSON")?;
        let session = created["offerId"]
            .as_str()
            .context("create offer: no offerId")?
            .to_owned();
        Ok(Created {
            session,
            sent,
            answered,
        })
    }

    /// `count` offers, `concurrency` at a time, as fast as the server answers.
    async fn create_many(
        self: &Arc<Self>,
        count: usize,
        concurrency: usize,
    ) -> anyhow::Result<Vec<Created>> {
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..concurrency.min(count) {
            let (bench, next) = (self.clone(), next.clone());
            workers.push(tokio::spawn(async move {
                let mut created = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    created.push(bench.create().await?);
                }
                anyhow::Ok(created)
            }));
        }
        let mut all = Vec::with_capacity(count);
        for worker in workers {
            all.extend(worker.await??);
        }
        Ok(all)
    }

    /// Waits until every one of `created` has arrived; their arrival times, in order.
    ///
    /// Looking each one up holds the receiver's lock for a time that grows with `created`, so
    /// it is done only when enough sessions have arrived since the last look for all of them
    /// to be in (and at the deadline), not at every arrival: at every arrival it made the
    /// receiver, and so the measured delivery rate, slower the larger the run.
    async fn wait_for(&self, created: &[Created]) -> anyhow::Result<Vec<Instant>> {
        let deadline = Instant::now() + Duration::from_secs(self.options.drain_seconds);
        let mut look_at = 0;
        loop {
            let notified = self.arrivals.arrived.notified();
            let arrived = self.arrivals.sessions.load(Ordering::Relaxed);
            let now = Instant::now();
            if arrived < look_at && now < deadline {
                let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
                continue;
            }
            let missing = {
                let first = self
                    .arrivals
                    .first
                    .lock()
                    .map_err(|_| anyhow::anyhow!("receiver lock poisoned"))?;
                let missing = created
                    .iter()
                    .filter(|c| !first.contains_key(&c.session))
                    .count();
                if missing == 0 {
                    return Ok(created.iter().map(|c| first[&c.session]).collect());
                }
                look_at = self.arrivals.sessions.load(Ordering::Relaxed) + missing;
                missing
            };
            if now >= deadline {
                let example = created
                    .iter()
                    .find(|c| !self.arrived(&c.session))
                    .map(|c| c.session.clone())
                    .unwrap_or_default();
                bail!(
                    "{missing} of {} events not delivered after {} s; the last attempt of session \
                     {example}: {}",
                    created.len(),
                    self.options.drain_seconds,
                    self.last_attempt(&example).await
                );
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
    }

    fn arrived(&self, session: &str) -> bool {
        self.arrivals
            .first
            .lock()
            .is_ok_and(|first| first.contains_key(session))
    }

    /// What the server recorded about the delivery of a session's event (why it is missing).
    async fn last_attempt(&self, session: &str) -> String {
        let response = self
            .client
            .get(format!(
                "{}/api/v1/sessions/{session}/events",
                self.instances.first()
            ))
            .bearer_auth(&self.options.api_key)
            .send()
            .await;
        let Ok(response) = response else {
            return "unknown (the events API did not answer)".into();
        };
        let events: Value = response.json().await.unwrap_or_default();
        let delivery = &events["items"][0]["deliveries"][0];
        match delivery["attempts"].as_array().and_then(|a| a.last()) {
            Some(attempt) => format!("{attempt} (delivery status {})", delivery["status"]),
            None => format!("no attempt yet (delivery {delivery})"),
        }
    }
}

async fn throughput(bench: &Arc<Bench>) -> anyhow::Result<()> {
    let options = &bench.options;
    let requests_before = bench.arrivals.requests.load(Ordering::Relaxed);
    let started = Instant::now();
    let created = bench
        .create_many(options.events, options.concurrency)
        .await?;
    let created_in = started.elapsed();
    let delivered_by_then = created.iter().filter(|c| bench.arrived(&c.session)).count();
    let arrivals = bench.wait_for(&created).await?;
    let last = arrivals.iter().max().copied().unwrap_or(started);
    let delivered_in = last - started;
    let drained_in = last.saturating_duration_since(started + created_in);
    let requests = bench.arrivals.requests.load(Ordering::Relaxed) - requests_before;
    let mut create_times: Vec<Duration> = created.iter().map(|c| c.answered - c.sent).collect();
    create_times.sort_unstable();
    println!(
        "throughput: {} events, create concurrency {}{}",
        created.len(),
        options.concurrency,
        bench.instances.label()
    );
    println!(
        "  created   {:>8.0} events/s  ({:.2} s; create p50 {:.2} ms, p99 {:.2} ms)",
        created.len() as f64 / created_in.as_secs_f64(),
        created_in.as_secs_f64(),
        millis(percentile(&create_times, 0.50)),
        millis(percentile(&create_times, 0.99)),
    );
    println!(
        "  delivered {:>8.0} events/s  ({:.2} s to the last delivery; {} requests for {} events)",
        created.len() as f64 / delivered_in.as_secs_f64(),
        delivered_in.as_secs_f64(),
        requests,
        created.len(),
    );
    println!(
        "  ({delivered_by_then} delivered while creating, the other {} in {:.2} s after: {:.0} events/s)",
        created.len() - delivered_by_then,
        drained_in.as_secs_f64(),
        (created.len() - delivered_by_then) as f64 / drained_in.as_secs_f64().max(1e-9),
    );
    Ok(())
}

async fn latency(bench: &Arc<Bench>) -> anyhow::Result<()> {
    let options = &bench.options;
    let total = options.rate as usize * options.seconds as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(options.rate));
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for index in 0..total {
        tokio::time::sleep_until(started + interval.mul_f64(index as f64)).await;
        let bench = bench.clone();
        tasks.push(tokio::spawn(async move { bench.create().await }));
    }
    let mut created = Vec::with_capacity(total);
    for task in tasks {
        created.push(task.await??);
    }
    let scheduled_in = started.elapsed();
    let arrivals = bench.wait_for(&created).await?;
    let mut at_least = Vec::with_capacity(total);
    let mut at_most = Vec::with_capacity(total);
    let mut before_answer = 0;
    for (created, arrived) in created.iter().zip(&arrivals) {
        at_least.push(
            arrived
                .checked_duration_since(created.answered)
                .unwrap_or_else(|| {
                    before_answer += 1;
                    Duration::ZERO
                }),
        );
        at_most.push(arrived.saturating_duration_since(created.sent));
    }
    at_least.sort_unstable();
    at_most.sort_unstable();
    let mut create_times: Vec<Duration> = created.iter().map(|c| c.answered - c.sent).collect();
    create_times.sort_unstable();
    println!(
        "latency: {total} events at {} events/s{} ({:.0} achieved over {:.2} s)",
        options.rate,
        bench.instances.label(),
        total as f64 / scheduled_in.as_secs_f64(),
        scheduled_in.as_secs_f64()
    );
    let line = |name: &str, sorted: &[Duration]| {
        println!(
            "  {name:<58} p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
            millis(percentile(sorted, 0.50)),
            millis(percentile(sorted, 0.99)),
            millis(sorted.last().copied().unwrap_or_default()),
        );
    };
    line(
        "commit-to-receipt, at most (arrival - request sent)",
        &at_most,
    );
    line(
        "commit-to-receipt, at least (arrival - response returned)",
        &at_least,
    );
    line(
        "create offer (request sent - response returned)",
        &create_times,
    );
    if before_answer > 0 {
        println!("  ({before_answer} events arrived before their create response returned)");
    }
    Ok(())
}
