//! Issuance sessions as operators see them, their events, and the sweeper that applies expiry
//! and retention.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::clock::Millis;
use crate::context::Context;
use crate::errors::ApiError;
use crate::events;
use crate::ids::{ProfileId, SessionId};
use crate::store::{
    DeliveryRecord, EventRecord, GrantKind, Listing, NewEvent, SessionFilter, SessionRecord,
    SessionStatus, StoreError, Unreadable,
};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    /// Named as Issuer2 names it (`sessionId`).
    #[serde(rename = "sessionId")]
    pub id: SessionId,
    pub profile_id: ProfileId,
    pub profile_version: i64,
    pub credential_configuration_id: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub auth_method: &'static str,
    pub value_mode: &'static str,
    pub tx_code_required: bool,
    pub tx_code_failures: u32,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub expires_at: Millis,
    pub resolved_at: Option<Millis>,
    pub token_issued_at: Option<Millis>,
    pub finished_at: Option<Millis>,
}

impl From<SessionRecord> for SessionView {
    fn from(record: SessionRecord) -> Self {
        let grant = record.offer_grant.as_ref();
        SessionView {
            id: record.id,
            profile_id: record.profile_id,
            profile_version: record.profile_version,
            credential_configuration_id: record.credential_configuration_id,
            status: record.status.as_str(),
            status_reason: record.status_reason,
            auth_method: match grant.map(|grant| grant.kind) {
                Some(GrantKind::IssuerState) => "AUTHORIZED",
                _ => "PRE_AUTHORIZED",
            },
            value_mode: if record.by_value {
                "BY_VALUE"
            } else {
                "BY_REFERENCE"
            },
            tx_code_required: grant.is_some_and(|grant| grant.tx_code.is_some()),
            tx_code_failures: grant.map_or(0, |grant| grant.tx_code_failures),
            created_at: record.created_at,
            updated_at: record.updated_at,
            expires_at: record.expires_at,
            resolved_at: record.resolved_at,
            token_issued_at: record.token_issued_at,
            finished_at: record.finished_at,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionQuery {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub profile_id: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionPage {
    pub items: Vec<SessionView>,
    /// Sessions that matched but cannot be read (damaged data), by id, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<Unreadable>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

const MAX_PAGE: u32 = 200;

pub async fn list_sessions(ctx: &Context, query: SessionQuery) -> Result<SessionPage, ApiError> {
    let status = query
        .status
        .as_deref()
        .map(|text| {
            SessionStatus::parse(text).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_query",
                    "status must be ACTIVE, SUCCESSFUL, UNSUCCESSFUL or EXPIRED",
                )
            })
        })
        .transpose()?;
    let profile_id = query
        .profile_id
        .as_deref()
        .map(|text| {
            ProfileId::parse(text).map_err(|error| ApiError::invalid("invalid_query", error))
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "invalid_query",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let before = query
        .cursor
        .as_deref()
        .map(|cursor| {
            parse_cursor(cursor).ok_or_else(|| {
                ApiError::invalid("invalid_query", "cursor is not one this API gave")
            })
        })
        .transpose()?;
    let filter = SessionFilter {
        status,
        profile_id,
        before,
        limit: limit + 1,
    };
    let Listing { mut rows } = ctx.store.sessions(&filter).await?;
    // One row more than the page was read, to learn whether another page follows.
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().and_then(|last| match last {
            Ok(session) => Some(format!("{}_{}", session.created_at, session.id)),
            Err(row) => row.created_at.map(|at| format!("{at}_{}", row.id)),
        })
    } else {
        None
    };
    let mut page = SessionPage {
        items: Vec::with_capacity(rows.len()),
        unreadable: Vec::new(),
        next_cursor,
    };
    for row in rows {
        match row {
            Ok(session) => page.items.push(session.into()),
            Err(row) => {
                tracing::error!(session = %row.id, reason = %row.reason, "an unreadable session was listed");
                page.unreadable.push(row);
            }
        }
    }
    Ok(page)
}

/// A cursor is written as `<createdAt>_<id>` (the page's last session); exactly that form is
/// read back, as the OpenAPI description's pattern says, so any cursor that fits the pattern
/// pages from where it points.
fn parse_cursor(cursor: &str) -> Option<(Millis, SessionId)> {
    let (at, id) = cursor.split_once('_')?;
    let digits = (1..=18).contains(&at.len()) && at.bytes().all(|byte| byte.is_ascii_digit());
    let at = at.parse().ok().filter(|_| digits)?;
    let id = SessionId::parse(id).filter(|parsed| parsed.to_string() == id)?;
    Some((at, id))
}

pub fn parse_id(text: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(text).ok_or_else(|| ApiError::NotFound(format!("no session {text}")))
}

/// One session. An ACTIVE session past its expiry is expired here and now (with its event)
/// rather than shown ACTIVE until the next sweep.
pub async fn get_session(ctx: &Context, id: SessionId) -> Result<SessionView, ApiError> {
    let session = ctx
        .store
        .session(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no session {id}")))?;
    if session.status == SessionStatus::Active && session.expires_at <= ctx.clock.now() {
        expire(ctx, &session, Vec::new()).await?;
        if let Some(current) = ctx.store.session(id).await? {
            return Ok(current.into());
        }
    }
    Ok(session.into())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    #[serde(default)]
    pub after: Option<i64>,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// The session's events in order: the seed's envelope plus `eventId`, `sequence` and the
/// webhook deliveries of each event with every attempt.
pub async fn session_events(
    ctx: &Context,
    id: SessionId,
    query: EventQuery,
) -> Result<Value, ApiError> {
    if ctx.store.session(id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no session {id}")));
    }
    let records = ctx
        .store
        .events(Some(id), query.after.unwrap_or(0), page_limit(query.limit)?)
        .await?;
    let deliveries = ctx.store.session_deliveries(id).await?;
    let items: Vec<Value> = records
        .iter()
        .map(|record| {
            let mut item = log_item(record);
            item["deliveries"] = deliveries
                .iter()
                .filter(|delivery| delivery.event_seq == record.seq)
                .map(delivery_view)
                .collect();
            item
        })
        .collect();
    Ok(json!({ "items": items }))
}

/// The issuer's whole log in order, every session's events: the envelope plus `eventId` and
/// `sequence` (deliveries are listed with each session's events).
pub async fn all_events(ctx: &Context, query: EventQuery) -> Result<Value, ApiError> {
    let records = ctx
        .store
        .events(None, query.after.unwrap_or(0), page_limit(query.limit)?)
        .await?;
    let items: Vec<Value> = records.iter().map(log_item).collect();
    Ok(json!({ "items": items }))
}

fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid(
            "invalid_query",
            "limit must be between 1 and 1000",
        ));
    }
    Ok(limit)
}

fn log_item(record: &EventRecord) -> Value {
    let mut item = events::envelope(record);
    item["eventId"] = Value::from(record.id.as_str());
    item["sequence"] = Value::from(record.seq);
    item
}

fn delivery_view(delivery: &DeliveryRecord) -> Value {
    json!({
        "url": delivery.url,
        "status": delivery.status,
        "nextAttemptAt": delivery.next_attempt_at,
        "attempts": delivery.attempts.iter().map(|attempt| json!({
            "at": attempt.started_at,
            "durationMs": attempt.duration_ms,
            "statusCode": attempt.status_code,
            "error": attempt.error,
            "response": attempt.response,
        })).collect::<Vec<_>>(),
    })
}

/// Sends one event again (`event_id`), or every FAILED or GONE delivery of the session.
/// Deliveries in flight are left alone; the answer says how many were rescheduled.
pub async fn redeliver(
    ctx: &Context,
    id: SessionId,
    event_id: Option<&str>,
) -> Result<Value, ApiError> {
    if ctx.store.session(id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no session {id}")));
    }
    if let Some(event_id) = event_id
        && !ctx
            .store
            .events(Some(id), 0, u32::MAX)
            .await?
            .iter()
            .any(|event| event.id == event_id)
    {
        return Err(ApiError::NotFound(format!(
            "no event {event_id} in session {id}"
        )));
    }
    let redelivered = ctx.store.redeliver(id, event_id, ctx.clock.now()).await?;
    Ok(json!({ "redelivered": redelivered }))
}

/// ACTIVE -> EXPIRED, with its status event (and any `extra` events) in one transaction.
pub async fn expire(
    ctx: &Context,
    session: &SessionRecord,
    mut extra: Vec<NewEvent>,
) -> Result<bool, StoreError> {
    let now = ctx.clock.now();
    extra.push(events::status_changed(
        session.id,
        SessionStatus::Active,
        SessionStatus::Expired,
        Some("expired"),
        now,
    ));
    let expired = ctx.store.expire_session(session.id, now, &extra).await?;
    if !expired && extra.len() > 1 {
        // Someone else expired it first: the failure events still belong in the log.
        extra.pop();
        ctx.store.append_events(&extra).await?;
    }
    Ok(expired)
}

/// How long one transaction of a retention sweep should hold the database: with SQLite it is
/// the one writer, and requests queue behind it. Each batch is sized from the last one's time
/// (halved when it took over twice this, doubled under half), between [`PURGE_BATCH`]'s
/// bounds; and after each batch the sweep pauses as long as the batch took, so that under load
/// it never takes more than half the writer (docs/BENCHMARKS.md, "Growth").
const PURGE_TARGET: Duration = Duration::from_millis(10);
/// The fewest, first and most sessions per transaction of a retention sweep.
const PURGE_BATCH: (u32, u32, u32) = (5, 50, 500);

/// Applies expiry and retention every `sessions.sweep_interval_seconds` until cancelled.
pub async fn sweep_until_cancelled(ctx: &Context, shutdown: CancellationToken) {
    let interval = Duration::from_secs(ctx.config.sessions.sweep_interval_seconds);
    loop {
        if let Err(error) = sweep(ctx).await {
            tracing::warn!(%error, "session sweep failed; will retry");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// One pass: expire every ACTIVE session whose time has come, then purge old ones.
pub async fn sweep(ctx: &Context) -> Result<(), StoreError> {
    let now = ctx.clock.now();
    loop {
        let due = ctx.store.sessions_due_for_expiry(now, 500).await?;
        if due.is_empty() {
            break;
        }
        for id in &due {
            let event = events::status_changed(
                *id,
                SessionStatus::Active,
                SessionStatus::Expired,
                Some("expired"),
                now,
            );
            ctx.store.expire_session(*id, now, &[event]).await?;
        }
        if due.len() < 500 {
            break;
        }
    }
    let retention = i64::try_from(ctx.config.sessions.retention_seconds).unwrap_or(i64::MAX);
    let finished_before = now.saturating_sub(retention.saturating_mul(1000));
    let (fewest, mut size, most) = PURGE_BATCH;
    let mut purged = 0;
    loop {
        let started = std::time::Instant::now();
        let batch = ctx.store.purge(finished_before, now, size).await?;
        // The time includes the wait for the writer: a busy store gets smaller batches.
        let took = started.elapsed();
        purged += batch.sessions;
        if !batch.more || ctx.stopping.is_cancelled() {
            break;
        }
        if took > PURGE_TARGET * 2 {
            size = (size / 2).max(fewest);
        } else if took < PURGE_TARGET / 2 {
            size = (size * 2).min(most);
        }
        // A shutdown does not wait for the rest of a backlog: the next sweep goes on with it.
        tokio::select! {
            () = ctx.stopping.cancelled() => break,
            () = tokio::time::sleep(took) => {}
        }
    }
    if purged > 0 {
        tracing::info!(purged, "removed sessions past retention");
    }
    Ok(())
}
