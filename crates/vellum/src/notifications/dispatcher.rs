//! The dispatcher: claims due deliveries from the outbox (with a lease), POSTs each event to its
//! webhook, and records the attempt and its consequence. Never on a wallet's request path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{AddressPolicy, signature};
use crate::clock::{Clock, Millis, SystemClock};
use crate::config::NotificationsConfig;
use crate::context::Context;
use crate::events;
use crate::store::{AttemptOutcome, AttemptRecord, DueDelivery, FinishedAttempt};

/// What one HTTP attempt gave.
#[derive(Debug)]
pub struct Attempt {
    pub record: AttemptRecord,
    pub retry_after: Option<Duration>,
}

/// Resolves host names, keeping only addresses the policy permits: checked at connect time, so
/// a name that later resolves to an internal address (DNS rebinding) still cannot be reached.
struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let permitted: Vec<SocketAddr> = resolved
                .filter(|address| policy.permits(address.ip()))
                .collect();
            if permitted.is_empty() {
                return Err(
                    format!("{} resolves only to non-public addresses", name.as_str()).into(),
                );
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// The webhook client. Proxy variables in the environment (`HTTP_PROXY`, ...) are ignored: a
/// proxy would resolve target names itself, past the resolver below, and receive every
/// bearer token. Only `notifications.proxy` names one.
pub fn client(settings: &NotificationsConfig) -> reqwest::Result<reqwest::Client> {
    let builder = match &settings.proxy {
        Some(proxy) => reqwest::Client::builder().proxy(reqwest::Proxy::all(proxy.as_str())?),
        None => reqwest::Client::builder().no_proxy(),
    };
    builder
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(settings.connect_timeout)
        .dns_resolver(Arc::new(GuardedResolver {
            policy: Arc::new(AddressPolicy::new(&settings.allow_private_targets)),
        }))
        .user_agent(concat!("Vellum-Webhooks/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(settings.max_in_flight_per_url)
        .build()
}

/// POSTs one event. Never fails: every problem becomes the attempt's `error`.
pub async fn attempt(
    client: &reqwest::Client,
    settings: &NotificationsConfig,
    delivery: &DueDelivery,
    body: &[u8],
    started_at: Millis,
) -> Attempt {
    let started = Instant::now();
    let outcome =
        tokio::time::timeout(settings.timeout, send(client, settings, delivery, body)).await;
    let (status_code, response, error, retry_after) = match outcome {
        Ok(Ok((status, response, retry_after))) => {
            (Some(status), Some(response), None, retry_after)
        }
        Ok(Err(error)) => (None, None, Some(error), None),
        Err(_) => (
            None,
            None,
            Some(format!(
                "timed out after {} ms",
                settings.timeout.as_millis()
            )),
            None,
        ),
    };
    Attempt {
        record: AttemptRecord {
            started_at,
            duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
            status_code,
            error,
            response,
        },
        retry_after,
    }
}

async fn send(
    client: &reqwest::Client,
    settings: &NotificationsConfig,
    delivery: &DueDelivery,
    body: &[u8],
) -> Result<(u16, String, Option<Duration>), String> {
    let url = reqwest::Url::parse(&delivery.webhook.url).map_err(|error| error.to_string())?;
    // The resolver guards host names; IP literals never reach it.
    if let Some(ip) = AddressPolicy::new(&settings.allow_private_targets).refused_literal(&url) {
        return Err(format!("refused: {ip} is not a public address"));
    }
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let id = &delivery.event.id;
    headers.insert("webhook-id", header(id)?);
    // The attempt's own wall-clock time: receivers compare it with theirs.
    let timestamp = SystemClock.now().div_euclid(1000);
    headers.insert("webhook-timestamp", header(&timestamp.to_string())?);
    if let Some(secret) = &delivery.webhook.secret
        && let Some(signature) = signature(secret, id, timestamp, body)
    {
        headers.insert("webhook-signature", header(&signature)?);
    }
    if let Some(token) = &delivery.webhook.bearer_token {
        headers.insert(AUTHORIZATION, header(&format!("Bearer {token}"))?);
    }
    let mut response = client
        .post(url)
        .headers(headers)
        .body(body.to_vec())
        .send()
        .await
        .map_err(|error| describe(&error))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_retry_after);
    // Read at most max_response_bytes, however large or slow the body is.
    let mut kept = Vec::new();
    while kept.len() < settings.max_response_bytes {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = settings.max_response_bytes - kept.len();
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    Ok((status, kept_text(&kept), retry_after))
}

/// The first 512 characters of a receiver's answer, as the operator sees them: not UTF-8 becomes
/// U+FFFD, and so do control characters (a NUL could not even be stored in PostgreSQL text).
fn kept_text(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .take(512)
        .map(|c| {
            if c.is_control() && !matches!(c, '\n' | '\r' | '\t') {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

fn header(value: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(value).map_err(|_| "a header value is not valid".to_owned())
}

fn describe(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After`: delay-seconds or an HTTP-date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let format = time::format_description::well_known::Rfc2822;
    let at = time::OffsetDateTime::parse(value.trim(), &format).ok()?;
    let delta = at - time::OffsetDateTime::now_utc();
    Some(Duration::from_secs(
        u64::try_from(delta.whole_seconds()).unwrap_or(0),
    ))
}

/// Longest wait a receiver's Retry-After can impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What an attempt means for the delivery.
pub fn outcome(
    settings: &NotificationsConfig,
    delivery: &DueDelivery,
    attempt: &Attempt,
    now: Millis,
) -> AttemptOutcome {
    match attempt.record.status_code {
        Some(200..=299) => return AttemptOutcome::Delivered,
        Some(410) => return AttemptOutcome::Gone,
        _ => {}
    }
    let Some(base) = settings.retry_schedule.get(delivery.retry_step as usize) else {
        return AttemptOutcome::Failed;
    };
    let spread = settings.retry_jitter;
    let factor = if spread > 0.0 {
        rand::thread_rng().gen_range(1.0 - spread..=1.0 + spread)
    } else {
        1.0
    };
    let mut delay = base.mul_f64(factor);
    if let Some(wanted) = attempt.retry_after {
        delay = delay.max(wanted.min(MAX_RETRY_AFTER));
    }
    AttemptOutcome::RetryAt(now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2))
}

/// How long commits gather after a claim that found nothing (see `run`).
const CLAIM_COALESCE: Duration = Duration::from_millis(20);

/// Delivers until `shutdown`; in-flight attempts finish (bounded by the timeout) before it returns.
///
/// Bookkeeping is batched: the attempts that finished since the last round are recorded and the
/// next due deliveries claimed in one store write (one commit per round, not two per attempt).
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let settings = &ctx.config.notifications;
    let client = match client(settings) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the webhook client; deliveries stop");
            return;
        }
    };
    let lease = settings.lease;
    let per_url = u32::try_from(settings.max_in_flight_per_url).unwrap_or(u32::MAX);
    let mut in_flight: JoinSet<FinishedAttempt> = JoinSet::new();
    let mut finished = Vec::new();
    let mut newest = ctx.store.watch_events();
    // When a claim found nothing due with room to spare (every due delivery's URL is at its
    // limit, or leased elsewhere), the next commits are let gather for a moment: one claim per
    // burst instead of one per commit, which with several instances on PostgreSQL is most of
    // the database's work during a backlog.
    let mut came_up_empty: Option<Instant> = None;
    loop {
        while let Some(done) = in_flight.try_join_next() {
            collect(&mut finished, done);
        }
        let room = settings.max_in_flight.saturating_sub(in_flight.len());
        let mut claimed = 0;
        if room > 0 || !finished.is_empty() {
            let now = ctx.clock.now();
            let lease_until = now + i64::try_from(lease.as_millis()).unwrap_or(60_000);
            let recorded = std::mem::take(&mut finished);
            let recorded_nothing = recorded.is_empty();
            match ctx
                .store
                .record_and_claim(
                    recorded.clone(),
                    now,
                    lease_until,
                    u32::try_from(room).unwrap_or(u32::MAX),
                    per_url,
                )
                .await
            {
                Ok(due) => {
                    count_attempts(&ctx, &recorded);
                    claimed = due.len();
                    came_up_empty = (claimed == 0 && recorded_nothing).then(Instant::now);
                    for delivery in due {
                        let (ctx, client) = (ctx.clone(), client.clone());
                        in_flight.spawn(async move { deliver(&ctx, &client, delivery).await });
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot claim deliveries; will retry");
                    // Recorded on their own, so a claim that keeps failing never holds them.
                    record_each(&ctx, recorded).await;
                }
            }
        }
        if claimed > 0 && claimed == room {
            continue; // more may be due right now
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = newest.changed() => {
                if let Some(at) = came_up_empty {
                    tokio::select! {
                        () = tokio::time::sleep_until((at + CLAIM_COALESCE).into()) => {}
                        Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                            collect(&mut finished, done);
                        }
                    }
                }
            }
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                collect(&mut finished, done);
            }
            () = tokio::time::sleep(settings.poll_interval) => {}
        }
    }
    while let Some(done) = in_flight.join_next().await {
        collect(&mut finished, done);
    }
    record_each(&ctx, finished).await;
}

fn collect(
    finished: &mut Vec<FinishedAttempt>,
    done: Result<FinishedAttempt, tokio::task::JoinError>,
) {
    match done {
        Ok(attempt) => finished.push(attempt),
        // Its lease runs out and the delivery is tried again: at least once still holds.
        Err(error) => tracing::error!(%error, "a webhook attempt panicked"),
    }
}

async fn record_each(ctx: &Context, finished: Vec<FinishedAttempt>) {
    for attempt in finished {
        if let Err(error) = ctx
            .store
            .record_attempt(
                attempt.delivery,
                &attempt.record,
                attempt.outcome,
                attempt.at,
            )
            .await
        {
            // The lease runs out and the delivery is tried again: at least once still holds.
            tracing::warn!(%error, delivery = attempt.delivery, "cannot record a webhook attempt");
        } else {
            count_attempts(ctx, std::slice::from_ref(&attempt));
        }
    }
}

/// The metrics of attempts whose outcome was recorded.
fn count_attempts(ctx: &Context, recorded: &[FinishedAttempt]) {
    for attempt in recorded {
        ctx.metrics.webhook_attempt(match attempt.outcome {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::RetryAt(_) => "retrying",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Gone => "gone",
        });
    }
}

/// One attempt; what it gave is recorded by the dispatcher loop.
async fn deliver(
    ctx: &Context,
    client: &reqwest::Client,
    delivery: DueDelivery,
) -> FinishedAttempt {
    let settings = &ctx.config.notifications;
    let body = events::envelope(&delivery.event).to_string();
    let attempt = attempt(
        client,
        settings,
        &delivery,
        body.as_bytes(),
        ctx.clock.now(),
    )
    .await;
    let now = ctx.clock.now();
    let outcome = outcome(settings, &delivery, &attempt, now);
    tracing::debug!(
        delivery = delivery.id,
        event = %delivery.event.id,
        attempt = delivery.attempt,
        status = attempt.record.status_code,
        ?outcome,
        "webhook attempt"
    );
    FinishedAttempt {
        delivery: delivery.id,
        record: attempt.record,
        outcome,
        at: now,
    }
}
