//! `vellum bench sse`: event-stream fan-out. Opens many subscribers to the issuer-wide stream
//! (`GET /api/v1/events`, Server-Sent Events), creates offers at a steady rate (one event
//! each), and reports how fast and how completely the events reach every subscriber: the
//! fan-out latency is the time from the create-offer response to receipt at a subscriber.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{millis, percentile};

#[derive(Debug, Clone, Args)]
pub struct SseOptions {
    /// Base URL of the running issuer (its credential issuer identifier).
    #[arg(long, default_value = "http://127.0.0.1:7005")]
    pub url: String,
    /// Management API key (also: VELLUM_API_KEY).
    #[arg(long, env = "VELLUM_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// Concurrent subscribers to the issuer-wide stream (each one connection: mind `ulimit -n`
    /// on both sides).
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Offers to create; each writes one event.
    #[arg(long, default_value_t = 500)]
    pub events: usize,
    /// Offers created per second.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Profile to make offers from.
    #[arg(long, default_value = "demo-identity")]
    pub profile: String,
    /// How long to wait, after the last offer, for deliveries still under way.
    #[arg(long, default_value_t = 30)]
    pub drain_seconds: u64,
}

/// What a subscriber needs of an event's data line.
#[derive(Deserialize)]
struct Envelope {
    id: Option<String>,
    #[serde(rename = "type")]
    event_type: String,
}

/// Offers (session ids) a subscriber saw created, with when each arrived.
type Receipts = Vec<(String, Instant)>;

pub async fn run(options: SseOptions) -> anyhow::Result<()> {
    if options.subscribers == 0 || options.events == 0 || options.rate <= 0.0 {
        bail!("--subscribers, --events and --rate must be positive");
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let after = newest_sequence(&client, &options).await?;

    // Subscribers, from the current end of the log.
    let stop = CancellationToken::new();
    let delivered = Arc::new(AtomicUsize::new(0));
    let (connected_tx, mut connected_rx) = mpsc::channel::<anyhow::Result<()>>(64);
    let mut subscribers = Vec::with_capacity(options.subscribers);
    let connect_started = Instant::now();
    for _ in 0..options.subscribers {
        subscribers.push(tokio::spawn(subscribe(
            client.clone(),
            options.clone(),
            after,
            stop.clone(),
            delivered.clone(),
            connected_tx.clone(),
        )));
    }
    drop(connected_tx);
    let mut connected = 0;
    while let Some(result) = connected_rx.recv().await {
        result?;
        connected += 1;
    }
    let connect_time = connect_started.elapsed();

    // Offers at a steady rate; each creation is its own task so a slow one does not slow the
    // rate.
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / options.rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut creations = Vec::with_capacity(options.events);
    for _ in 0..options.events {
        ticker.tick().await;
        let (client, options) = (client.clone(), options.clone());
        creations.push(tokio::spawn(async move {
            let sent = Instant::now();
            let offer = create_offer(&client, &options).await?;
            anyhow::Ok((offer, sent, Instant::now()))
        }));
    }
    let mut created: HashMap<String, Instant> = HashMap::with_capacity(options.events);
    let mut offer_latencies = Vec::with_capacity(options.events);
    for creation in creations {
        let (offer, sent, answered) = creation.await??;
        offer_latencies.push(answered - sent);
        created.insert(offer, answered);
    }
    let creating = started.elapsed();

    // Until every subscriber has every event, or the drain time is over.
    let expected = connected * options.events;
    let deadline = Instant::now() + Duration::from_secs(options.drain_seconds);
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let mut latencies = Vec::with_capacity(expected);
    let (mut missing, mut duplicates, mut last_receipt) = (0, 0, started);
    for subscriber in subscribers {
        let receipts = subscriber.await??;
        let mut seen: HashMap<&str, Instant> = HashMap::with_capacity(receipts.len());
        for (offer, at) in &receipts {
            if created.contains_key(offer) && seen.insert(offer, *at).is_some() {
                duplicates += 1;
            }
        }
        missing += created.len() - seen.len();
        for (offer, at) in seen {
            latencies.push(at.saturating_duration_since(created[offer]));
            last_receipt = last_receipt.max(at);
        }
    }
    latencies.sort_unstable();
    offer_latencies.sort_unstable();
    let delivering = last_receipt - started;

    println!(
        "{connected} subscribers connected to the issuer-wide stream in {:.2} s",
        connect_time.as_secs_f64()
    );
    println!(
        "{} events created in {:.2} s: {:.1} events/s (asked for {}/s); create offer p50 {:.2} ms, p99 {:.2} ms",
        created.len(),
        creating.as_secs_f64(),
        created.len() as f64 / creating.as_secs_f64(),
        options.rate,
        millis(percentile(&offer_latencies, 0.50)),
        millis(percentile(&offer_latencies, 0.99)),
    );
    println!(
        "{} of {expected} deliveries in {:.2} s: {:.0} deliveries/s",
        latencies.len(),
        delivering.as_secs_f64(),
        latencies.len() as f64 / delivering.as_secs_f64(),
    );
    println!(
        "fan-out latency (create-offer response -> receipt): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        millis(percentile(&latencies, 0.50)),
        millis(percentile(&latencies, 0.90)),
        millis(percentile(&latencies, 0.99)),
        millis(latencies.last().copied().unwrap_or_default()),
    );
    println!("missing: {missing}, duplicates: {duplicates}");
    if missing > 0 {
        bail!(
            "{missing} deliveries did not arrive within {} s",
            options.drain_seconds
        );
    }
    Ok(())
}

/// The sequence of the newest event, so that subscribers start at the end of the log.
async fn newest_sequence(client: &reqwest::Client, options: &SseOptions) -> anyhow::Result<i64> {
    let mut after = 0;
    loop {
        let response = client
            .get(format!("{}/api/v1/events", options.url))
            .query(&[("after", after), ("limit", 1000)])
            .bearer_auth(&options.api_key)
            .send()
            .await?;
        let status = response.status();
        let page: Value = response.json().await?;
        if !status.is_success() {
            bail!("GET /api/v1/events failed with {status}: {page}");
        }
        let items = page["items"].as_array().context("no items")?;
        match items.last() {
            Some(last) => after = last["sequence"].as_i64().context("no sequence")?,
            None => return Ok(after),
        }
        if items.len() < 1000 {
            return Ok(after);
        }
    }
}

async fn create_offer(client: &reqwest::Client, options: &SseOptions) -> anyhow::Result<String> {
    let response = client
        .post(format!("{}/api/v1/offers", options.url))
        .bearer_auth(&options.api_key)
        .json(&json!({"profileId": options.profile}))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("create offer failed with {status}: {body}");
    }
    Ok(body["offerId"].as_str().context("no offerId")?.to_owned())
}

/// One subscriber: connects, reports it, then records every `credential_offer_created` event
/// until stopped.
async fn subscribe(
    client: reqwest::Client,
    options: SseOptions,
    after: i64,
    stop: CancellationToken,
    delivered: Arc<AtomicUsize>,
    connected: mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<Receipts> {
    let response = client
        .get(format!("{}/api/v1/events", options.url))
        .query(&[("after", after)])
        .bearer_auth(&options.api_key)
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await;
    let mut response = match response {
        Ok(response) if response.status().is_success() => response,
        Ok(response) => {
            let status = response.status();
            let _ = connected
                .send(Err(anyhow::anyhow!("subscribing failed with {status}")))
                .await;
            bail!("subscribing failed with {status}");
        }
        Err(error) => {
            let _ = connected
                .send(Err(anyhow::anyhow!("cannot subscribe: {error}")))
                .await;
            bail!("cannot subscribe: {error}");
        }
    };
    let _ = connected.send(Ok(())).await;
    drop(connected);
    let mut receipts = Receipts::new();
    let mut buffer = Vec::new();
    loop {
        let chunk = tokio::select! {
            () = stop.cancelled() => return Ok(receipts),
            chunk = response.chunk() => chunk?,
        };
        let Some(chunk) = chunk else {
            bail!("the server ended the stream");
        };
        let at = Instant::now();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|pair| pair == b"\n\n") {
            let frame: Vec<u8> = buffer.drain(..end + 2).collect();
            let Some(data) = frame
                .split(|byte| *byte == b'\n')
                .find_map(|line| line.strip_prefix(b"data: "))
            else {
                continue; // a heartbeat
            };
            let envelope: Envelope = serde_json::from_slice(data)?;
            if envelope.event_type == "credential_offer_created"
                && let Some(id) = envelope.id
            {
                receipts.push((id, at));
                delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
