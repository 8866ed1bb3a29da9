//! Live event streams: one session's events, or the whole issuer's, read from the event log
//! (history first, then live), and the short-lived tokens that let a browser's EventSource,
//! which cannot send an Authorization header, open one. `http/` serves them as Server-Sent
//! Events; nothing here knows HTTP.
//!
//! A stream follows the log, never an in-memory queue: it keeps the last sequence it produced
//! and, whenever the store announces a newer commit (`Store::watch_events`), reads what follows
//! from the log a page at a time. A client that reads slowly therefore holds nothing but its
//! own position: the watch channel keeps only the newest value, so it reads more from the log
//! when it catches up, and no writer or other client ever waits for it. Streams near the end
//! of the log share one read of each new page (`LogTail`), so a thousand subscribers cost one
//! store read per commit, not a thousand.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::Stream;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use vellum_formats::jose;

use crate::clock::Millis;
use crate::context::Context;
use crate::errors::ApiError;
use crate::events::tail::StreamEvent;
use crate::ids::SessionId;
use crate::limits;
use crate::secrets::Purpose;
use crate::sessions::EventQuery;
use crate::store::StoreError;

/// Events read from the log per store call.
/// A reader behind the shared tail reads the log on its own, this many events at a time: each
/// such page is its own (a thousand readers far behind hold a thousand pages), so it is small.
const CATCH_UP_PAGE: u32 = 32;

/// What a stream carries: one session's events, or every event of the issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Issuer,
    Session(SessionId),
}

/// How a stream request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The management API key: every stream, and the JSON listings.
    ApiKey,
    /// A stream token: the stream of its scope only.
    Token(Scope),
}

impl Access {
    pub fn permits(self, scope: Scope) -> bool {
        match self {
            Access::ApiKey => true,
            Access::Token(granted) => granted == scope,
        }
    }
}

/// The events of `scope` with a sequence greater than `after`, in order: those already in the
/// log, then each new one as it is committed. The stream ends when the server shuts down (or
/// the log cannot be read: the client resumes with `Last-Event-ID`).
pub async fn open(
    ctx: Arc<Context>,
    scope: Scope,
    after: i64,
) -> Result<impl Stream<Item = Arc<StreamEvent>> + Send + 'static, ApiError> {
    if let Scope::Session(id) = scope
        && ctx.store.session(id).await?.is_none()
    {
        return Err(ApiError::NotFound(format!("no session {id}")));
    }
    // Subscribed before the first read, so that no commit can fall between the two.
    let newest = ctx.store.watch_events();
    let follower = Follower {
        session: match scope {
            Scope::Issuer => None,
            Scope::Session(id) => Some(id),
        },
        last: after,
        read_through: after,
        pending: VecDeque::new(),
        newest,
        ctx,
    };
    Ok(futures_util::stream::unfold(
        follower,
        |mut follower| async move { follower.next().await.map(|event| (event, follower)) },
    ))
}

/// A reader's position in the log.
struct Follower {
    ctx: Arc<Context>,
    session: Option<SessionId>,
    /// The sequence of the last event produced.
    last: i64,
    /// Every event of the scope up to this sequence has been read (it may still be pending).
    read_through: i64,
    pending: VecDeque<Arc<StreamEvent>>,
    newest: watch::Receiver<i64>,
}

impl Follower {
    async fn next(&mut self) -> Option<Arc<StreamEvent>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.last = event.sequence;
                return Some(event);
            }
            if self.ctx.stopping.is_cancelled() {
                return None;
            }
            // Marked as seen before reading: a commit during the read wakes the wait below.
            let newest = *self.newest.borrow_and_update();
            if newest > self.read_through {
                match self.read(newest).await {
                    Ok(()) => continue,
                    Err(error) => {
                        tracing::warn!(%error, "an event stream cannot read the log; closing it");
                        return None;
                    }
                }
            }
            tokio::select! {
                changed = self.newest.changed() => if changed.is_err() { return None },
                () = self.ctx.stopping.cancelled() => return None,
            }
        }
    }

    /// The next page after this reader's position: from the shared tail when it reaches back
    /// that far, else from the store.
    async fn read(&mut self, newest: i64) -> Result<(), StoreError> {
        let position = self.last.max(self.read_through);
        let tail = &self.ctx.log_tail;
        if let Some((events, through)) = tail
            .read(self.ctx.store.as_ref(), self.session, position, newest)
            .await?
        {
            self.pending.extend(events);
            self.read_through = self.read_through.max(through);
            return Ok(());
        }
        let page = self
            .ctx
            .store
            .events(self.session, position, CATCH_UP_PAGE)
            .await?;
        if page.len() < CATCH_UP_PAGE as usize {
            // `newest` was announced after its commit, so this read saw everything up to it.
            self.read_through = newest;
        }
        self.pending
            .extend(page.into_iter().map(|record| Arc::new(record.into())));
        Ok(())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    /// The session whose stream the token opens; absent: the issuer-wide stream.
    #[serde(default, deserialize_with = "limits::not_null")]
    pub session_id: Option<SessionId>,
    #[serde(default, deserialize_with = "limits::not_null")]
    pub expires_in_seconds: Option<u32>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamToken {
    pub token: String,
    pub expires_at: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
}

pub const DEFAULT_TOKEN_SECONDS: u32 = 300;
pub const MAX_TOKEN_SECONDS: u32 = 3600;

const TOKEN_VERSION: u8 = 1;
const ISSUER_SCOPE: u8 = 0;
const SESSION_SCOPE: u8 = 1;
/// version, scope kind, expiry (8 bytes), session (16 bytes, zero for the issuer), MAC (32).
const TOKEN_BODY: usize = 1 + 1 + 8 + 16;
const TOKEN_LEN: usize = TOKEN_BODY + 32;

/// A token for the stream of one session or of the issuer. It is stateless: its scope and
/// expiry under a MAC, so it cannot be revoked, only left to expire (at most an hour).
pub async fn create_token(ctx: &Context, request: TokenRequest) -> Result<StreamToken, ApiError> {
    let seconds = request.expires_in_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS);
    if !(1..=MAX_TOKEN_SECONDS).contains(&seconds) {
        return Err(ApiError::invalid(
            "invalid_expiry",
            format!("expiresInSeconds must be between 1 and {MAX_TOKEN_SECONDS}"),
        ));
    }
    if let Some(id) = request.session_id
        && ctx.store.session(id).await?.is_none()
    {
        return Err(ApiError::NotFound(format!("no session {id}")));
    }
    let expires_at = ctx.clock.now() + i64::from(seconds) * 1000;
    let mut body = Vec::with_capacity(TOKEN_LEN);
    body.push(TOKEN_VERSION);
    match request.session_id {
        None => {
            body.push(ISSUER_SCOPE);
            body.extend_from_slice(&expires_at.to_be_bytes());
            body.extend_from_slice(&[0; 16]);
        }
        Some(id) => {
            body.push(SESSION_SCOPE);
            body.extend_from_slice(&expires_at.to_be_bytes());
            body.extend_from_slice(id.as_bytes());
        }
    }
    let mac = ctx.secrets.mac(Purpose::StreamToken, &[&body]);
    body.extend_from_slice(&mac);
    Ok(StreamToken {
        token: jose::b64(body),
        expires_at,
        session_id: request.session_id,
    })
}

/// The scope of a token this issuer made and that has not expired; `None` for anything else.
pub fn verify_token(ctx: &Context, token: &str) -> Option<Scope> {
    let bytes = jose::b64_decode(token).ok()?;
    if bytes.len() != TOKEN_LEN || bytes[0] != TOKEN_VERSION {
        return None;
    }
    let (body, mac) = bytes.split_at(TOKEN_BODY);
    let expected = ctx.secrets.mac(Purpose::StreamToken, &[body]);
    if !bool::from(mac.ct_eq(&expected)) {
        return None;
    }
    let expires_at = Millis::from_be_bytes(body[2..10].try_into().ok()?);
    if expires_at <= ctx.clock.now() {
        return None;
    }
    match body[1] {
        ISSUER_SCOPE => Some(Scope::Issuer),
        SESSION_SCOPE => {
            let uuid = uuid::Uuid::from_slice(&body[10..26]).ok()?;
            SessionId::parse(&uuid.to_string()).map(Scope::Session)
        }
        _ => None,
    }
}

/// The query of the event listings and streams: `after` (and `limit` for JSON pages), and the
/// stream token, which the HTTP layer reads when it authenticates the request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    #[serde(default)]
    pub after: Option<i64>,
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub token: Option<String>,
}

impl StreamQuery {
    /// The JSON listing's page.
    pub fn page(&self) -> EventQuery {
        EventQuery {
            after: self.after,
            limit: self.limit,
        }
    }
}
