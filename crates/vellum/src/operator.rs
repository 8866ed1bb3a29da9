//! What the operator sees beyond the resources: the console's sign-in, the overview of a recent
//! window and the delivery backlog.
//!
//! Signing in to the console takes the management API key once and gives the browser a random
//! session cookie, which `http/` sets HttpOnly (no script reads it) and SameSite=Strict (no
//! other site's page sends it). The store keeps only its hash, with the lifetime and a
//! fingerprint of the API key it was made with, so that logout, expiry and a replaced key end
//! it on every instance. A request the cookie authenticates that changes something must also
//! carry the session's CSRF token, derived from the cookie, which the console's own page reads
//! from `GET /console/session`. Nothing here knows HTTP.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use vellum_formats::jose;

use crate::clock::Millis;
use crate::context::Context;
use crate::errors::ApiError;
use crate::metrics::Queue;
use crate::secrets::{Purpose, hash_secret, random_token};
use crate::store::ConsoleSessionRecord;

/// A new console sign-in: the cookie's value (for the browser only) and its CSRF token.
pub struct SignedIn {
    pub cookie: String,
    pub session: ConsoleSession,
}

/// A live console sign-in, as its page sees it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleSession {
    /// Sent back as `X-CSRF-Token` on every request that changes something.
    pub csrf_token: String,
    pub expires_at: Millis,
}

/// Exchanges the management API key for a console sign-in.
pub async fn sign_in(ctx: &Context, api_key: &str) -> Result<SignedIn, ApiError> {
    let presented = hash_secret(api_key);
    if !bool::from(presented.as_bytes().ct_eq(ctx.api_key_hash.as_bytes())) {
        return Err(ApiError::Unauthorized);
    }
    let now = ctx.clock.now();
    let lifetime =
        i64::try_from(ctx.config.console.session_lifetime.as_millis()).unwrap_or(i64::MAX);
    let cookie = random_token();
    let record = ConsoleSessionRecord {
        id_hash: hash_secret(&cookie),
        key_fingerprint: key_fingerprint(ctx),
        created_at: now,
        expires_at: now.saturating_add(lifetime),
    };
    ctx.store.open_console_session(&record, now).await?;
    let session = ConsoleSession {
        csrf_token: csrf_token(ctx, &cookie),
        expires_at: record.expires_at,
    };
    Ok(SignedIn { cookie, session })
}

/// The sign-in this cookie stands for, unless it ended (logout, expiry, a new API key).
pub async fn session(ctx: &Context, cookie: &str) -> Result<Option<ConsoleSession>, ApiError> {
    let Some(record) = ctx
        .store
        .console_session(&hash_secret(cookie), ctx.clock.now())
        .await?
    else {
        return Ok(None);
    };
    let same_key = record
        .key_fingerprint
        .as_bytes()
        .ct_eq(key_fingerprint(ctx).as_bytes());
    Ok(bool::from(same_key).then(|| ConsoleSession {
        csrf_token: csrf_token(ctx, cookie),
        expires_at: record.expires_at,
    }))
}

/// Whether `presented` is the CSRF token of the sign-in this cookie stands for.
pub fn csrf_matches(ctx: &Context, cookie: &str, presented: &str) -> bool {
    bool::from(
        csrf_token(ctx, cookie)
            .as_bytes()
            .ct_eq(presented.as_bytes()),
    )
}

/// Ends the sign-in this cookie stands for (nothing when there is none).
pub async fn sign_out(ctx: &Context, cookie: &str) -> Result<(), ApiError> {
    ctx.store
        .close_console_session(&hash_secret(cookie))
        .await?;
    Ok(())
}

fn csrf_token(ctx: &Context, cookie: &str) -> String {
    jose::b64(
        ctx.secrets
            .mac(Purpose::ConsoleSession, &[b"csrf", cookie.as_bytes()]),
    )
}

/// Names the API key without revealing it: a keyed hash, so the store never holds something
/// that checks a guess of the key.
fn key_fingerprint(ctx: &Context) -> String {
    jose::b64(ctx.secrets.mac(
        Purpose::ConsoleSession,
        &[b"api-key", ctx.api_key_hash.as_bytes()],
    ))
}

/// `GET /api/v1/overview`: the window, in seconds back from now.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OverviewQuery {
    #[serde(default)]
    pub window_seconds: Option<u32>,
}

const DEFAULT_WINDOW_SECONDS: u32 = 3600;
const MAX_WINDOW_SECONDS: u32 = 30 * 24 * 3600;

/// What the issuer did in a recent window, and what it still owes its webhooks.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    pub window_seconds: u32,
    /// Sessions created in the window, by credential configuration (and its format) and status.
    pub sessions: Vec<SessionsOverview>,
    /// Deliveries created in the window by state: `DELIVERED`, `PENDING` (not tried yet),
    /// `RETRYING`, `FAILED`, `GONE`; states without one are 0.
    pub deliveries: std::collections::BTreeMap<String, i64>,
    /// Every pending delivery, whenever made, by webhook URL (without query or user info).
    pub backlog: Vec<Queue>,
    /// The sequence of the newest event: a stream opened with `?after=` it follows only what
    /// happens from now on.
    pub latest_sequence: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionsOverview {
    pub credential_configuration_id: String,
    /// The configuration's format, or "" when it is no longer configured.
    pub format: String,
    pub status: String,
    pub count: i64,
}

pub async fn overview(ctx: &Context, query: OverviewQuery) -> Result<Overview, ApiError> {
    let window_seconds = query.window_seconds.unwrap_or(DEFAULT_WINDOW_SECONDS);
    if window_seconds == 0 || window_seconds > MAX_WINDOW_SECONDS {
        return Err(ApiError::invalid(
            "invalid_query",
            format!("windowSeconds must be between 1 and {MAX_WINDOW_SECONDS}"),
        ));
    }
    let latest_sequence = *ctx.store.watch_events().borrow();
    let since = ctx.clock.now() - i64::from(window_seconds) * 1000;
    let sessions = ctx
        .store
        .session_counts(since)
        .await?
        .into_iter()
        .map(|count| SessionsOverview {
            format: ctx
                .config
                .credential_configurations
                .get(&count.credential_configuration_id)
                .map(|configuration| configuration.format.clone())
                .unwrap_or_default(),
            credential_configuration_id: count.credential_configuration_id,
            status: count.status,
            count: count.count,
        })
        .collect();
    let mut deliveries: std::collections::BTreeMap<String, i64> =
        ["DELIVERED", "PENDING", "RETRYING", "FAILED", "GONE"]
            .into_iter()
            .map(|state| (state.to_owned(), 0))
            .collect();
    for count in ctx.store.delivery_counts(since).await? {
        deliveries.insert(count.state, count.count);
    }
    Ok(Overview {
        window_seconds,
        sessions,
        deliveries,
        backlog: backlog(ctx).await?,
        latest_sequence,
    })
}

/// The pending deliveries by webhook URL, every instance's.
pub async fn backlog(ctx: &Context) -> Result<Vec<Queue>, ApiError> {
    let now = ctx.clock.now();
    Ok(ctx
        .store
        .delivery_backlog()
        .await?
        .into_iter()
        .map(|queue| Queue {
            url: shown(&queue.url),
            pending: queue.pending,
            #[allow(clippy::cast_precision_loss)]
            oldest_age_seconds: (now - queue.oldest_created_at).max(0) as f64 / 1000.0,
        })
        .collect())
}

/// A webhook URL as shown to the operator and in metric labels: scheme, host, port and path;
/// never its query or user info, which may carry a secret of the receiver's.
fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => {
            format!(
                "{}://{}{}",
                parsed.scheme(),
                parsed.host_str().unwrap_or_default(),
                parsed
                    .port()
                    .map(|port| format!(":{port}"))
                    .unwrap_or_default()
            ) + parsed.path()
        }
        Err(_) => "unparsable".to_owned(),
    }
}
