//! Deferred issuance, the operator's side: a session of a profile with `deferred: true` holds a
//! transaction once the wallet asked for its credentials; the operator's backend completes it
//! with the credential data (deep-merged over the session's, checked as any credentialData) or
//! fails it with a reason. The wallet's side is `issuance` (the deferred credential endpoint).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::Millis;
use crate::context::Context;
use crate::errors::{ApiError, Internal};
use crate::events;
use crate::ids::SessionId;
use crate::limits;
use crate::mapping;
use crate::profiles::{self, IssuanceTemplate};
use crate::sessions;
use crate::store::{
    Applied, DeferredLookup, DeferredOutcome, DeferredRecord, DeferredState, SessionStatus,
};

/// A session's deferred transaction as the management API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeferredView {
    pub session_id: SessionId,
    /// `PENDING`, `READY`, `FAILED` or `ISSUED`.
    pub state: &'static str,
    /// How many credentials the wallet asked for (one per proven key).
    pub credentials: usize,
    /// Unix milliseconds.
    pub created_at: Millis,
    pub changed_at: Millis,
    /// Until when the backend may complete it (the session's expiry).
    pub expires_at: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the operator's backend decides: `READY` with the data, or `FAILED` with a reason.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resolution {
    pub status: Resolved,
    #[serde(default, deserialize_with = "crate::limits::not_null")]
    pub credential_data: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "crate::limits::not_null")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolved {
    Ready,
    Failed,
}

/// `GET /api/v1/sessions/{id}/deferred`.
pub async fn view(ctx: &Context, session: SessionId) -> Result<DeferredView, ApiError> {
    let transaction = transaction(ctx, session).await?;
    let expires_at = ctx
        .store
        .session(session)
        .await?
        .map_or(transaction.changed_at, |session| session.expires_at);
    Ok(to_view(transaction, expires_at))
}

/// `POST /api/v1/sessions/{id}/deferred`: completes or fails a PENDING transaction, with its
/// event, in one transaction; 409 `deferred_not_pending` otherwise.
pub async fn resolve(
    ctx: &Context,
    session_id: SessionId,
    resolution: Resolution,
) -> Result<DeferredView, ApiError> {
    let invalid = |detail: &str| ApiError::invalid("invalid_request", detail);
    let transaction = transaction(ctx, session_id).await?;
    let session = ctx
        .store
        .session(session_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no session {session_id}")))?;
    let now = ctx.clock.now();
    if session.status == SessionStatus::Active && session.expires_at <= now {
        // The window closed: the session expires now, with its event.
        sessions::expire(ctx, &session, Vec::new()).await?;
        return Err(not_pending(&transaction));
    }
    if transaction.state != DeferredState::Pending || session.status != SessionStatus::Active {
        return Err(not_pending(&transaction));
    }
    let (outcome, events) = match (
        resolution.status,
        resolution.credential_data,
        resolution.reason,
    ) {
        (Resolved::Ready, Some(data), None) => {
            let mut template: IssuanceTemplate = serde_json::from_str(&session.template)
                .map_err(|error| Internal::msg(format!("session {session_id}: {error}")))?;
            let before = template.definition.clone();
            mapping::deep_merge(&mut template.definition.credential_data, data);
            profiles::validate(ctx, &template.definition, Some(&before))
                .await
                .map_err(|error| match error {
                    ApiError::Invalid { detail, .. } => ApiError::Invalid {
                        code: "invalid_credential_data",
                        detail,
                    },
                    other => other,
                })?;
            let template = serde_json::to_string(&template).map_err(Internal::new)?;
            (DeferredOutcome::Ready { template }, Vec::new())
        }
        (Resolved::Failed, None, Some(reason)) => {
            limits::check_reason(&reason).map_err(|why| invalid(&why))?;
            let failed = events::status_changed(
                session_id,
                SessionStatus::Active,
                SessionStatus::Unsuccessful,
                Some("deferred_issuance_failed"),
                now,
            );
            (DeferredOutcome::Failed { reason }, vec![failed])
        }
        (Resolved::Ready, _, _) => {
            return Err(invalid(
                "READY needs credentialData (an object, merged over the session's) and no reason",
            ));
        }
        (Resolved::Failed, _, _) => {
            return Err(invalid("FAILED needs a reason and no credentialData"));
        }
    };
    match ctx
        .store
        .resolve_deferred(session_id, &outcome, now, &events)
        .await?
    {
        Applied::Yes => view(ctx, session_id).await,
        Applied::Stale => Err(not_pending(&transaction)),
    }
}

async fn transaction(ctx: &Context, session: SessionId) -> Result<DeferredRecord, ApiError> {
    ctx.store
        .deferred_transaction(DeferredLookup::Session(session))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("session {session} has no deferred transaction")))
}

fn not_pending(transaction: &DeferredRecord) -> ApiError {
    ApiError::Conflict {
        code: "deferred_not_pending",
        detail: format!(
            "the deferred transaction is {} (or its session is no longer active): only a \
             PENDING one can be completed or failed",
            transaction.state.as_str()
        ),
    }
}

fn to_view(transaction: DeferredRecord, expires_at: Millis) -> DeferredView {
    DeferredView {
        session_id: transaction.session_id,
        state: transaction.state.as_str(),
        credentials: transaction.holders.as_array().map_or(0, Vec::len),
        created_at: transaction.created_at,
        changed_at: transaction.changed_at,
        expires_at,
        reason: transaction.reason,
    }
}
