//! The event catalogue (docs/EVENTS.md) and the envelope. Events are built here and written by
//! the store in the transaction of the change they announce; nothing here holds a live secret.

use serde_json::{Map, Value, json};

use crate::clock::Millis;
use crate::ids::SessionId;
use crate::store::{EventRecord, NewEvent, SessionStatus};

pub mod tail;

/// The seed's events, with its names.
pub const RESOLVED_CREDENTIAL_OFFER: &str = "resolved_credential_offer";
pub const REQUESTED_TOKEN: &str = "requested_token";
pub const SDJWT_ISSUE: &str = "sdjwt_issue";
pub const JWT_ISSUE: &str = "jwt_issue";
pub const GENERATED_MDOC: &str = "generated_mdoc";
/// Vellum's additions: an outcome for every step, and every status change.
pub const CREDENTIAL_OFFER_CREATED: &str = "credential_offer_created";
pub const TOKEN_REQUEST_FAILED: &str = "token_request_failed";
pub const CREDENTIAL_REQUEST_FAILED: &str = "credential_request_failed";
pub const ISSUANCE_STATUS_CHANGED: &str = "issuance_status_changed";
/// The authorization code flow's steps.
pub const PUSHED_AUTHORIZATION_REQUEST_SUCCEEDED: &str = "pushed_authorization_request_succeeded";
pub const PUSHED_AUTHORIZATION_REQUEST_FAILED: &str = "pushed_authorization_request_failed";
pub const AUTHORIZATION_REQUEST_SUCCEEDED: &str = "authorization_request_succeeded";
pub const AUTHORIZATION_REQUEST_FAILED: &str = "authorization_request_failed";
/// A wallet asked for a credential without an offer naming a session: it got one.
pub const WALLET_INITIATED_SESSION_CREATED: &str = "wallet_initiated_session_created";
/// The operator revoked, suspended or reinstated a credential.
pub const CREDENTIAL_STATUS_CHANGED: &str = "credential_status_changed";
/// A credential request whose credentials come later: the operator's backend completes it.
pub const CREDENTIAL_DEFERRED: &str = "credential_deferred";
/// What the wallet reported about credentials it received (OID4VCI 1.0 §11), by its names.
pub const CREDENTIAL_ACCEPTED: &str = "credential_accepted";
pub const CREDENTIAL_FAILURE: &str = "credential_failure";
pub const CREDENTIAL_DELETED: &str = "credential_deleted";
/// The wallet notification events, as the wallet names them.
pub const WALLET_NOTIFICATIONS: [&str; 3] =
    [CREDENTIAL_ACCEPTED, CREDENTIAL_FAILURE, CREDENTIAL_DELETED];

/// Every event type, for validating webhook filters.
pub const ALL: &[&str] = &[
    CREDENTIAL_OFFER_CREATED,
    WALLET_INITIATED_SESSION_CREATED,
    RESOLVED_CREDENTIAL_OFFER,
    PUSHED_AUTHORIZATION_REQUEST_SUCCEEDED,
    PUSHED_AUTHORIZATION_REQUEST_FAILED,
    AUTHORIZATION_REQUEST_SUCCEEDED,
    AUTHORIZATION_REQUEST_FAILED,
    REQUESTED_TOKEN,
    TOKEN_REQUEST_FAILED,
    SDJWT_ISSUE,
    JWT_ISSUE,
    GENERATED_MDOC,
    CREDENTIAL_REQUEST_FAILED,
    CREDENTIAL_DEFERRED,
    ISSUANCE_STATUS_CHANGED,
    CREDENTIAL_ACCEPTED,
    CREDENTIAL_FAILURE,
    CREDENTIAL_DELETED,
    CREDENTIAL_STATUS_CHANGED,
];

/// What replaces a secret wherever an event would carry one.
pub const REDACTED: &str = "[redacted]";

pub fn new(session: SessionId, event_type: &str, now: Millis, data: Value) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::now_v7().to_string(),
        session_id: Some(session),
        event_type: event_type.to_owned(),
        timestamp: now,
        data,
    }
}

pub fn status_changed(
    session: SessionId,
    from: SessionStatus,
    to: SessionStatus,
    reason: Option<&str>,
    now: Millis,
) -> NewEvent {
    new(
        session,
        ISSUANCE_STATUS_CHANGED,
        now,
        json!({"previousStatus": from.as_str(), "status": to.as_str(), "reason": reason}),
    )
}

/// The failure of a protocol step, with exactly what the wallet was told.
pub fn request_failed(
    session: SessionId,
    event_type: &str,
    error: &str,
    description: &str,
    now: Millis,
) -> NewEvent {
    new(
        session,
        event_type,
        now,
        json!({"error": error, "error_description": description}),
    )
}

/// The seed's envelope: `{"id", "type", "timestamp", "data"}`, `id` being the session.
pub fn envelope(event: &EventRecord) -> Value {
    json!({
        "id": event.session_id.map(|id| id.to_string()),
        "type": event.event_type,
        "timestamp": event.timestamp,
        "data": event.data,
    })
}

/// Form or JSON members that are secrets in any OAuth or OID4VCI message.
const SECRET_MEMBERS: &[&str] = &[
    "pre-authorized_code",
    "issuer_state",
    "tx_code",
    "code",
    "code_verifier",
    "refresh_token",
    "access_token",
    "client_secret",
    "client_assertion",
    "c_nonce",
    "transaction_id",
];

/// A copy of `value` with every secret member, at any depth, replaced by [`REDACTED`].
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(name, member)| {
                    let member = if SECRET_MEMBERS.contains(&name.as_str()) && !member.is_object() {
                        Value::from(REDACTED)
                    } else {
                        redact(member)
                    };
                    (name.clone(), member)
                })
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_reaches_nested_secrets_and_keeps_the_rest() {
        let offer = json!({
            "credential_issuer": "https://i",
            "grants": {"urn:ietf:params:oauth:grant-type:pre-authorized_code": {
                "pre-authorized_code": "secret", "tx_code": {"length": 6}}}
        });
        let redacted = redact(&offer);
        let grant = &redacted["grants"]["urn:ietf:params:oauth:grant-type:pre-authorized_code"];
        assert_eq!(grant["pre-authorized_code"], REDACTED);
        assert_eq!(
            grant["tx_code"]["length"], 6,
            "the tx_code description is not a secret"
        );
        assert_eq!(redacted["credential_issuer"], "https://i");
        let form = redact(&json!({"grant_type": "x", "tx_code": "123456"}));
        assert_eq!(form["tx_code"], REDACTED);
    }
}
