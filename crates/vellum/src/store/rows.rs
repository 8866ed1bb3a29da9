//! What both stores share: the columns they select and how a row becomes a record. Each store
//! reads its driver's rows through [`Columns`]; the SQL that truly differs stays in its file.

use serde_json::Value;

use super::*;

/// A row of either driver, read by column name. A value of the wrong type is damaged data.
pub(super) trait Columns {
    fn text(&self, name: &str) -> StoreResult<String>;
    fn opt_text(&self, name: &str) -> StoreResult<Option<String>>;
    fn int(&self, name: &str) -> StoreResult<i64>;
    fn opt_int(&self, name: &str) -> StoreResult<Option<i64>>;
    fn flag(&self, name: &str) -> StoreResult<bool>;
    fn blob(&self, name: &str) -> StoreResult<Vec<u8>>;
}

pub(super) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn json(text: &str, what: &str) -> StoreResult<Value> {
    serde_json::from_str(text).map_err(|_| corrupt(format!("{what}: not JSON")))
}

fn count(value: i64, what: &str) -> StoreResult<u32> {
    u32::try_from(value).map_err(|_| corrupt(what))
}

/// The columns of `sessions` a new session writes, in this order.
pub(super) const SESSION_COLUMNS: &str = "id, profile_id, profile_version, \
    credential_configuration_id, status, status_reason, offer_handle_hash, by_value, template, \
    issuer_key_id, created_at, updated_at, expires_at, resolved_at, token_issued_at, finished_at";

/// A session with its webhook and its offer grant: `SELECT {SESSION_FIELDS}
/// {SESSION_FROM}`. (`CAST` because PostgreSQL keeps the webhook's event types as JSONB.)
pub(super) const SESSION_FIELDS: &str = "s.*, w.url AS webhook_url, \
    w.bearer_token AS webhook_bearer_token, w.secret AS webhook_secret, \
    CAST(w.events AS TEXT) AS webhook_events, g.id AS grant_id, g.kind AS grant_kind, \
    g.state AS grant_state, g.tx_code AS grant_tx_code, g.tx_code_mac AS grant_tx_code_mac, \
    g.tx_code_failures AS grant_tx_code_failures, g.created_at AS grant_created_at, \
    g.redeemed_at AS grant_redeemed_at, g.expires_at AS grant_expires_at, \
    g.request_id AS grant_request_id, g.dpop_jkt AS grant_dpop_jkt";

/// An authorization code grant as `code_*` and its request as `request_*`: with
/// `{SESSION_FIELDS}`, a row of [`code_grant`].
pub(super) const CODE_GRANT_FIELDS: &str = "c.id AS code_id, c.kind AS code_kind, \
    c.state AS code_state, c.tx_code AS code_tx_code, c.tx_code_mac AS code_tx_code_mac, \
    c.tx_code_failures AS code_tx_code_failures, c.created_at AS code_created_at, \
    c.redeemed_at AS code_redeemed_at, c.expires_at AS code_expires_at, \
    c.request_id AS code_request_id, c.dpop_jkt AS code_dpop_jkt";

/// An authorization request's columns as `request_*`, from `authorization_requests r`.
pub(super) const REQUEST_FIELDS: &str = "r.id AS request_id, \
    r.request_uri_hash AS request_request_uri_hash, r.state_hash AS request_state_hash, \
    r.session_id AS request_session_id, r.profile_id AS request_profile_id, \
    r.client_id AS request_client_id, r.parameters AS request_parameters, \
    r.status AS request_status, r.created_at AS request_created_at, \
    r.expires_at AS request_expires_at";

/// The values of a new authorization request, in the order of
/// `sql::INSERT_AUTHORIZATION_REQUEST`.
pub(super) const REQUEST_COLUMNS: &str = "id, request_uri_hash, state_hash, session_id, \
    profile_id, client_id, parameters, status, created_at, expires_at";

pub(super) const SESSION_JOINS: &str = "LEFT JOIN webhooks w ON w.session_id = s.id \
    LEFT JOIN grants g ON g.session_id = s.id AND g.kind IN ('PRE_AUTHORIZED_CODE', 'ISSUER_STATE')";

/// An access token and its session: `SELECT {TOKEN_SESSION_SELECT} WHERE t.token_hash = ?`.
pub(super) const TOKEN_FIELDS: &str = "t.grant_id AS access_grant_id, \
    (SELECT kind FROM grants tg WHERE tg.id = t.grant_id) AS access_grant_kind, \
    t.issued_at AS access_issued_at, t.expires_at AS access_expires_at, t.dpop_jkt AS access_dpop_jkt";

pub(super) const EVENT_COLUMNS: &str = "seq, id, session_id, type, timestamp, data";

pub(super) const ISSUED_CREDENTIAL_COLUMNS: &str = "id, session_id, credential_configuration_id, \
    format, holder, issued_at, expires_at, status, status_list_id, status_index, status_value, \
    notification_id";

pub(super) const DEFERRED_COLUMNS: &str =
    "session_id, transaction_hash, holders, state, reason, created_at, changed_at";

pub(super) const STATUS_LIST_COLUMNS: &str =
    "id, kind, signer, bits, size, allocated, created_at, changed_at";

pub(super) const PROFILE_SELECT: &str = "SELECT v.id, v.version, h.active, v.definition, \
    v.issuer_key_id, h.created_at, CASE WHEN v.version = h.version THEN h.updated_at \
    ELSE v.created_at END AS updated_at FROM profile_versions v JOIN profile_heads h ON h.id = v.id";

pub(super) fn key(row: &dyn Columns) -> StoreResult<KeyRecord> {
    Ok(KeyRecord {
        id: KeyId::parse(&row.text("id")?).map_err(|_| corrupt("key id"))?,
        algorithm: row.text("algorithm")?,
        public_jwk: json(&row.text("public_jwk")?, "public_jwk")?,
        sealed_private: row.blob("sealed_private")?,
        created_at: row.int("created_at")?,
    })
}

pub(super) fn profile(row: &dyn Columns) -> StoreResult<ProfileRecord> {
    Ok(ProfileRecord {
        id: ProfileId::parse(&row.text("id")?).map_err(|_| corrupt("profile id"))?,
        version: row.int("version")?,
        active: row.flag("active")?,
        definition: json(&row.text("definition")?, "definition")?,
        issuer_key_id: KeyId::parse(&row.text("issuer_key_id")?).map_err(|_| corrupt("key id"))?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

fn session_id(text: &str) -> StoreResult<SessionId> {
    SessionId::parse(text).ok_or_else(|| corrupt("session id"))
}

/// A webhook from the columns `{prefix}url`, `{prefix}bearer_token`, `{prefix}secret` and
/// `webhook_events`; `None` without a URL.
pub(super) fn webhook(row: &dyn Columns, prefix: &str) -> StoreResult<Option<WebhookTarget>> {
    let Some(url) = row.opt_text(&format!("{prefix}url"))? else {
        return Ok(None);
    };
    Ok(Some(WebhookTarget {
        url,
        bearer_token: row.opt_text(&format!("{prefix}bearer_token"))?,
        secret: row.opt_text(&format!("{prefix}secret"))?,
        events: row
            .opt_text("webhook_events")?
            .map(|text| serde_json::from_str(&text).map_err(|_| corrupt("webhook events")))
            .transpose()?,
    }))
}

/// The grant in the columns named `<prefix>id`, `<prefix>kind`, ..., if there is one.
fn grant(row: &dyn Columns, prefix: &str) -> StoreResult<Option<GrantRecord>> {
    let column = |name: &str| format!("{prefix}{name}");
    let Some(id) = row.opt_int(&column("id"))? else {
        return Ok(None);
    };
    Ok(Some(GrantRecord {
        id,
        kind: GrantKind::parse(&row.text(&column("kind"))?).ok_or_else(|| corrupt("grant kind"))?,
        state: GrantState::parse(&row.text(&column("state"))?)
            .ok_or_else(|| corrupt("grant state"))?,
        tx_code: row
            .opt_text(&column("tx_code"))?
            .map(|text| json(&text, "tx_code"))
            .transpose()?,
        tx_code_mac: row.opt_text(&column("tx_code_mac"))?,
        tx_code_failures: count(row.int(&column("tx_code_failures"))?, "tx_code_failures")?,
        created_at: row.int(&column("created_at"))?,
        redeemed_at: row.opt_int(&column("redeemed_at"))?,
        expires_at: row.opt_int(&column("expires_at"))?,
        request_id: row.opt_text(&column("request_id"))?,
        dpop_jkt: row.opt_text(&column("dpop_jkt"))?,
    }))
}

/// A row of `SELECT {REQUEST_FIELDS} ...`.
pub(super) fn authorization_request(row: &dyn Columns) -> StoreResult<AuthorizationRequestRecord> {
    Ok(AuthorizationRequestRecord {
        id: row.text("request_id")?,
        request_uri_hash: row.opt_text("request_request_uri_hash")?,
        state_hash: row.opt_text("request_state_hash")?,
        session_id: row
            .opt_text("request_session_id")?
            .map(|text| session_id(&text))
            .transpose()?,
        profile_id: ProfileId::parse(&row.text("request_profile_id")?)
            .map_err(|_| corrupt("authorization request profile id"))?,
        client_id: row.text("request_client_id")?,
        parameters: json(
            &row.text("request_parameters")?,
            "authorization request parameters",
        )?,
        status: RequestStatus::parse(&row.text("request_status")?)
            .ok_or_else(|| corrupt("authorization request status"))?,
        created_at: row.int("request_created_at")?,
        expires_at: row.int("request_expires_at")?,
    })
}

/// A row of `SELECT {CODE_GRANT_FIELDS}, {REQUEST_FIELDS}, {SESSION_FIELDS} ...`.
pub(super) fn code_grant(
    row: &dyn Columns,
) -> StoreResult<(GrantRecord, AuthorizationRequestRecord, SessionRecord)> {
    let grant = grant(row, "code_")?.ok_or_else(|| corrupt("authorization code grant"))?;
    Ok((grant, authorization_request(row)?, session(row)?))
}

/// A row of `SELECT {SESSION_FIELDS} ...`.
pub(super) fn session(row: &dyn Columns) -> StoreResult<SessionRecord> {
    let webhook = webhook(row, "webhook_")?;
    let offer_grant = grant(row, "grant_")?;
    Ok(SessionRecord {
        id: session_id(&row.text("id")?)?,
        profile_id: ProfileId::parse(&row.text("profile_id")?)
            .map_err(|_| corrupt("profile id"))?,
        profile_version: row.int("profile_version")?,
        credential_configuration_id: row.text("credential_configuration_id")?,
        status: SessionStatus::parse(&row.text("status")?).ok_or_else(|| corrupt("status"))?,
        status_reason: row.opt_text("status_reason")?,
        offer_handle_hash: row.text("offer_handle_hash")?,
        by_value: row.flag("by_value")?,
        template: row.text("template")?,
        webhook,
        issuer_key_id: KeyId::parse(&row.text("issuer_key_id")?).map_err(|_| corrupt("key id"))?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        expires_at: row.int("expires_at")?,
        resolved_at: row.opt_int("resolved_at")?,
        token_issued_at: row.opt_int("token_issued_at")?,
        finished_at: row.opt_int("finished_at")?,
        offer_grant,
    })
}

/// A row of `SELECT {TOKEN_FIELDS}, {SESSION_FIELDS} ...`.
pub(super) fn token_session(row: &dyn Columns) -> StoreResult<(AccessTokenRecord, SessionRecord)> {
    let session = session(row)?;
    let token = AccessTokenRecord {
        session_id: session.id,
        grant_id: row.int("access_grant_id")?,
        grant_kind: GrantKind::parse(&row.text("access_grant_kind")?)
            .ok_or_else(|| corrupt("access token grant kind"))?,
        issued_at: row.int("access_issued_at")?,
        expires_at: row.int("access_expires_at")?,
        dpop_jkt: row.opt_text("access_dpop_jkt")?,
    };
    Ok((token, session))
}

pub(super) fn event(row: &dyn Columns) -> StoreResult<EventRecord> {
    Ok(EventRecord {
        seq: row.int("seq")?,
        id: row.text("id")?,
        session_id: row
            .opt_text("session_id")?
            .map(|text| session_id(&text))
            .transpose()?,
        event_type: row.text("type")?,
        timestamp: row.int("timestamp")?,
        data: json(&row.text("data")?, "event data")?,
    })
}

pub(super) fn issued_credential(row: &dyn Columns) -> StoreResult<IssuedCredentialRecord> {
    Ok(IssuedCredentialRecord {
        id: row.text("id")?,
        session_id: session_id(&row.text("session_id")?)?,
        credential_configuration_id: row.text("credential_configuration_id")?,
        format: row.text("format")?,
        holder: row.text("holder")?,
        issued_at: row.int("issued_at")?,
        expires_at: row.int("expires_at")?,
        status: row
            .opt_text("status")?
            .map(|text| json(&text, "status"))
            .transpose()?,
        status_entry: match (
            row.opt_text("status_list_id")?,
            row.opt_int("status_index")?,
        ) {
            (Some(list_id), Some(index)) => Some(StatusEntry { list_id, index }),
            _ => None,
        },
        status_value: u8::try_from(row.int("status_value")?)
            .map_err(|_| corrupt("status_value"))?,
        notification_id: row.opt_text("notification_id")?,
    })
}

pub(super) fn deferred(row: &dyn Columns) -> StoreResult<DeferredRecord> {
    Ok(DeferredRecord {
        session_id: session_id(&row.text("session_id")?)?,
        transaction_hash: row.text("transaction_hash")?,
        holders: json(&row.text("holders")?, "holders")?,
        state: DeferredState::parse(&row.text("state")?).ok_or_else(|| corrupt("state"))?,
        reason: row.opt_text("reason")?,
        created_at: row.int("created_at")?,
        changed_at: row.int("changed_at")?,
    })
}

pub(super) fn status_list(row: &dyn Columns) -> StoreResult<StatusListRecord> {
    Ok(StatusListRecord {
        id: row.text("id")?,
        kind: StatusListKind::parse(&row.text("kind")?)
            .ok_or_else(|| corrupt("status list kind"))?,
        signer: json(&row.text("signer")?, "status list signer")?,
        bits: u8::try_from(row.int("bits")?).map_err(|_| corrupt("status list bits"))?,
        size: row.int("size")?,
        allocated: row.int("allocated")?,
        created_at: row.int("created_at")?,
        changed_at: row.int("changed_at")?,
    })
}

/// A claimed delivery: its event (`EVENT_COLUMNS`), `delivery_id`, `attempts`, `retry_step`,
/// and its webhook (`url`, `bearer_token`, `secret`, `webhook_events`).
pub(super) fn due_delivery(row: &dyn Columns) -> StoreResult<DueDelivery> {
    Ok(DueDelivery {
        id: row.int("delivery_id")?,
        attempt: count(row.int("attempts")?, "attempts")? + 1,
        retry_step: count(row.int("retry_step")?, "retry_step")?,
        event: event(row)?,
        webhook: webhook(row, "")?.ok_or_else(|| corrupt("delivery without webhook"))?,
    })
}

/// A row of `SELECT id, event_seq, url, status, next_attempt_at FROM deliveries` (attempts are
/// read apart).
pub(super) fn delivery(row: &dyn Columns) -> StoreResult<DeliveryRecord> {
    let status =
        DeliveryStatus::parse(&row.text("status")?).ok_or_else(|| corrupt("delivery status"))?;
    let next = row.int("next_attempt_at")?;
    Ok(DeliveryRecord {
        id: row.int("id")?,
        event_seq: row.int("event_seq")?,
        url: row.text("url")?,
        next_attempt_at: (status == DeliveryStatus::Pending).then_some(next),
        status,
        attempts: Vec::new(),
    })
}

/// A row of `SELECT started_at, duration_ms, status_code, error, response FROM
/// delivery_attempts`.
pub(super) fn backlog(row: &dyn Columns) -> StoreResult<Backlog> {
    Ok(Backlog {
        url: row.text("url")?,
        pending: row.int("pending")?,
        oldest_created_at: row.int("oldest_created_at")?,
    })
}

pub(super) fn attempt(row: &dyn Columns) -> StoreResult<AttemptRecord> {
    Ok(AttemptRecord {
        started_at: row.int("started_at")?,
        duration_ms: row.int("duration_ms")?,
        status_code: row
            .opt_int("status_code")?
            .map(|code| u16::try_from(code).map_err(|_| corrupt("status code")))
            .transpose()?,
        error: row.opt_text("error")?,
        response: row.opt_text("response")?,
    })
}

/// A row of `sql::SESSION_DELIVERY_ATTEMPTS`: the delivery and one of its attempts.
pub(super) fn delivery_attempt(row: &dyn Columns) -> StoreResult<(i64, AttemptRecord)> {
    Ok((row.int("delivery_id")?, attempt(row)?))
}

/// Gives each delivery its attempts (read in order); an attempt of a delivery not among them
/// (made after the deliveries were read) is left out.
pub(super) fn attach_attempts(records: &mut [DeliveryRecord], attempts: Vec<(i64, AttemptRecord)>) {
    for (delivery, attempt) in attempts {
        if let Some(record) = records.iter_mut().find(|record| record.id == delivery) {
            record.attempts.push(attempt);
        }
    }
}

/// How an attempt's consequence is stored: the delivery's new status, the next attempt (a
/// retry), and how far along the retry schedule that is.
pub(super) fn consequence(outcome: AttemptOutcome) -> (DeliveryStatus, Option<Millis>, i64) {
    match outcome {
        AttemptOutcome::Delivered => (DeliveryStatus::Delivered, None, 0),
        AttemptOutcome::RetryAt(at) => (DeliveryStatus::Pending, Some(at), 1),
        AttemptOutcome::Failed => (DeliveryStatus::Failed, None, 0),
        AttemptOutcome::Gone => (DeliveryStatus::Gone, None, 0),
    }
}

pub(super) fn console_session(row: &dyn Columns) -> StoreResult<ConsoleSessionRecord> {
    Ok(ConsoleSessionRecord {
        id_hash: row.text("id_hash")?,
        key_fingerprint: row.text("key_fingerprint")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
    })
}

pub(super) fn session_count(row: &dyn Columns) -> StoreResult<SessionCount> {
    Ok(SessionCount {
        credential_configuration_id: row.text("credential_configuration_id")?,
        status: row.text("status")?,
        count: row.int("count")?,
    })
}

pub(super) fn delivery_count(row: &dyn Columns) -> StoreResult<DeliveryCount> {
    Ok(DeliveryCount {
        state: row.text("state")?,
        count: row.int("count")?,
    })
}
