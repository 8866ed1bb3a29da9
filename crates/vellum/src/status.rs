//! Credential status (draft-ietf-oauth-status-list, W3C Bitstring Status List v1.0): a
//! credential whose profile says `credentialStatus: "STATUS_LIST"` gets an entry of its own in a
//! status list, and carries a reference to it; the lists are served publicly, signed as their
//! credentials are, and signed again only when they changed or grow old.
//!
//! Entries are handed out from a counter per list (`Store::allocate_status_entry`, never twice,
//! across instances), and entry n of a list sits at index `permute(n)`: a keyed permutation of
//! the list's indices, so that no verifier can tell from an index when, or next to whom, a
//! credential was issued.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vellum_formats::jose;
use vellum_formats::jwt_vc;
use vellum_formats::status_list::{self, StatusList, TokenClaims};

use crate::clock::Millis;
use crate::context::{Context, Signed};
use crate::errors::{ApiError, Internal};
use crate::events;
use crate::ids::{KeyId, SessionId};
use crate::keys;
use crate::limits;
use crate::secrets::Purpose;
use crate::store::{
    Applied, IssuedCredentialRecord, StatusEntry, StatusListKind, StatusListRecord,
};

/// The `credentialStatus` of a profile whose credentials get a status list entry.
pub const MANAGED: &str = "STATUS_LIST";

/// The W3C purposes a Bitstring list is published for, and the status each one shows.
const PURPOSES: [(&str, u8); 2] = [
    ("revocation", status_list::INVALID),
    ("suspension", status_list::SUSPENDED),
];

/// The entry a new credential gets, and the reference it carries to it.
pub struct Assigned {
    pub entry: StatusEntry,
    pub reference: Value,
}

/// The shape of the lists of `kind`: bits per entry and entries.
fn shape(ctx: &Context, kind: StatusListKind) -> (u8, i64) {
    let settings = &ctx.config.status_lists;
    match kind {
        StatusListKind::Token => (settings.bits, i64::from(settings.size)),
        StatusListKind::Bitstring => (
            1,
            i64::from(settings.size).max(status_list::BITSTRING_MIN_ENTRIES as i64),
        ),
    }
}

/// Where a list (or, for a Bitstring list, one purpose of it) is served.
pub fn uri(ctx: &Context, list_id: &str, purpose: Option<&str>) -> String {
    match purpose {
        Some(purpose) => ctx.endpoint(&format!("/status-lists/{list_id}/{purpose}")),
        None => ctx.endpoint(&format!("/status-lists/{list_id}")),
    }
}

/// A new entry for a credential of `kind` signed as `signer` says
/// (`credentials::status_signer`), and the reference its format carries.
pub async fn assign(
    ctx: &Context,
    kind: StatusListKind,
    signer: &Value,
    now: Millis,
) -> Result<Assigned, Internal> {
    let (bits, size) = shape(ctx, kind);
    let allocation = ctx
        .store
        .allocate_status_entry(kind, signer, bits, size, now)
        .await?;
    let list = &allocation.list;
    let index = ctx.secrets.permute(
        Purpose::StatusIndex,
        list.id.as_bytes(),
        u64::try_from(allocation.position).map_err(Internal::new)?,
        u64::try_from(list.size).map_err(Internal::new)?,
    );
    let index = usize::try_from(index).map_err(Internal::new)?;
    let reference = match kind {
        StatusListKind::Token => status_list::reference(index, &uri(ctx, &list.id, None)),
        StatusListKind::Bitstring => Value::Array(
            PURPOSES
                .iter()
                .map(|(purpose, _)| {
                    status_list::bitstring_entry(&uri(ctx, &list.id, Some(purpose)), index, purpose)
                })
                .collect(),
        ),
    };
    Ok(Assigned {
        entry: StatusEntry {
            list_id: list.id.clone(),
            index: i64::try_from(index).map_err(Internal::new)?,
        },
        reference,
    })
}

/// How a list is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A Token Status List as a JWT (`application/statuslist+jwt`).
    Jwt,
    /// A Token Status List as a CWT (`application/statuslist+cwt`).
    Cwt,
    /// One purpose of a Bitstring Status List, as a credential (JWT).
    Purpose(&'static str),
}

impl Form {
    /// The purpose a path names, if it is one a Bitstring list is published for.
    pub fn purpose(name: &str) -> Option<Form> {
        PURPOSES
            .iter()
            .find(|(purpose, _)| *purpose == name)
            .map(|(purpose, _)| Form::Purpose(purpose))
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Form::Jwt => status_list::JWT_MEDIA_TYPE,
            Form::Cwt => status_list::CWT_MEDIA_TYPE,
            Form::Purpose(_) => "application/vc+jwt",
        }
    }

    fn name(self) -> String {
        match self {
            Form::Jwt => "jwt".into(),
            Form::Cwt => "cwt".into(),
            Form::Purpose(purpose) => purpose.into(),
        }
    }
}

/// A list as served, and how long verifiers may cache it.
pub struct Served {
    pub document: Signed,
    pub max_age: u32,
}

/// The list `list_id` in `form`, signed; `None` when there is no such list or it is not
/// published in that form. Within `publish_delay` of the last look at the store, the list as
/// signed then; after it, signed again only when an entry changed since, or when the last
/// signature has used up half its validity.
pub async fn serve(ctx: &Context, list_id: &str, form: Form) -> Result<Option<Served>, Internal> {
    let settings = &ctx.config.status_lists;
    let served = |document| {
        Some(Served {
            document,
            max_age: settings.ttl_seconds,
        })
    };
    let now = ctx.clock.now();
    let name = format!("{list_id}/{}", form.name());
    let cached = ctx.status_lists.get(&name);
    let delay = i64::try_from(settings.publish_delay.as_millis()).map_err(Internal::new)?;
    if let Some(cached) = &cached
        && now < cached.checked_at + delay
        && now < cached.fresh_until
    {
        return Ok(served(cached.clone()));
    }
    let Some(list) = ctx.store.status_list(list_id).await? else {
        return Ok(None);
    };
    let published = matches!(
        (list.kind, form),
        (StatusListKind::Token, Form::Jwt | Form::Cwt)
            | (StatusListKind::Bitstring, Form::Purpose(_))
    );
    if !published {
        return Ok(None);
    }
    let document = match cached {
        Some(cached) if cached.version == list.changed_at && cached.fresh_until > now => Signed {
            checked_at: now,
            ..cached
        },
        _ => sign(ctx, &list, form, now).await?,
    };
    ctx.status_lists.insert(name, document.clone());
    Ok(served(document))
}

async fn sign(
    ctx: &Context,
    list: &StatusListRecord,
    form: Form,
    now: Millis,
) -> Result<Signed, Internal> {
    let settings = &ctx.config.status_lists;
    let entries = ctx.store.status_entries(&list.id).await?;
    let size = usize::try_from(list.size).map_err(Internal::new)?;
    let broken = |error: status_list::StatusListError| {
        Internal::msg(format!("status list {}: {error}", list.id))
    };
    let mut bits = match list.kind {
        StatusListKind::Token => StatusList::token(list.bits, size).map_err(broken)?,
        StatusListKind::Bitstring => StatusList::bitstring(size),
    };
    let shown = match form {
        Form::Purpose(purpose) => PURPOSES
            .iter()
            .find(|(name, _)| *name == purpose)
            .map(|(_, status)| *status),
        Form::Jwt | Form::Cwt => None,
    };
    for (index, status) in entries {
        let index = usize::try_from(index).map_err(Internal::new)?;
        let value = match shown {
            Some(shown) => u8::from(status == shown),
            None => status,
        };
        bits.set(index, value).map_err(broken)?;
    }
    let signer = &list.signer;
    let text = |name: &str| {
        signer[name]
            .as_str()
            .ok_or_else(|| Internal::msg(format!("status list {}: signer without {name}", list.id)))
    };
    let key_id = KeyId::parse(text("keyId")?).map_err(Internal::msg)?;
    let key = keys::signing_key(ctx, &key_id).await?;
    let x5c: Vec<String> = serde_json::from_value(signer["x5c"].clone()).unwrap_or_default();
    let seconds = now.div_euclid(1000);
    let validity = i64::from(settings.validity_seconds);
    let body = match form {
        Form::Jwt | Form::Cwt => {
            let uri = uri(ctx, &list.id, None);
            let claims = TokenClaims {
                uri: &uri,
                issuer: text("iss")?,
                kid: text("kid")?,
                issued_at: seconds,
                expires_at: seconds + validity,
                ttl: u64::from(settings.ttl_seconds),
            };
            if form == Form::Jwt {
                status_list::token_jwt(&bits, &claims, &x5c, &key).into_bytes()
            } else {
                let chain = x5c_der(&x5c)?;
                status_list::token_cwt(&bits, &claims, &chain, &key).map_err(broken)?
            }
        }
        Form::Purpose(purpose) => {
            let uri = uri(ctx, &list.id, Some(purpose));
            let subject = format!("{uri}#list");
            let issuance = jwt_vc::Issuance {
                issuer: text("iss")?,
                kid: text("kid")?,
                subject: &subject,
                issued_at: seconds,
                expires_at: seconds + validity,
                id: &uri,
            };
            status_list::bitstring_credential_jwt(&bits, purpose, &issuance, &key).into_bytes()
        }
    };
    Ok(Signed {
        etag: format!("\"{}\"", jose::b64(&sha2_256(&body)[..16])),
        body,
        version: list.changed_at,
        fresh_until: now + validity * 500,
        checked_at: now,
    })
}

/// The `x5c` header values (standard base64 DER) as DER.
fn x5c_der(x5c: &[String]) -> Result<Vec<Vec<u8>>, Internal> {
    use base64::Engine as _;
    x5c.iter()
        .map(|der| {
            base64::engine::general_purpose::STANDARD
                .decode(der)
                .map_err(Internal::new)
        })
        .collect()
}

fn sha2_256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// A credential's status as the management API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CredentialStatus {
    Valid,
    Revoked,
    Suspended,
}

impl CredentialStatus {
    fn value(self) -> u8 {
        match self {
            CredentialStatus::Valid => status_list::VALID,
            CredentialStatus::Revoked => status_list::INVALID,
            CredentialStatus::Suspended => status_list::SUSPENDED,
        }
    }

    fn name(self) -> &'static str {
        match self {
            CredentialStatus::Valid => "VALID",
            CredentialStatus::Revoked => "REVOKED",
            CredentialStatus::Suspended => "SUSPENDED",
        }
    }

    fn of(value: u8) -> Option<CredentialStatus> {
        match value {
            status_list::VALID => Some(CredentialStatus::Valid),
            status_list::INVALID => Some(CredentialStatus::Revoked),
            status_list::SUSPENDED => Some(CredentialStatus::Suspended),
            _ => None,
        }
    }
}

/// An issued credential as the management API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialView {
    pub id: String,
    pub session_id: SessionId,
    pub credential_configuration_id: String,
    pub format: String,
    /// Unix milliseconds.
    pub issued_at: Millis,
    pub expires_at: Millis,
    /// Its status, when it has an entry in a status list of this issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<CredentialStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_list: Option<Value>,
    /// The `notification_id` of the credential response that carried it: the wallet's reports
    /// (events `credential_accepted`, ...) name it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification_id: Option<String>,
}

fn view(ctx: &Context, record: IssuedCredentialRecord) -> CredentialView {
    let status_list = record.status_entry.as_ref().map(|entry| {
        serde_json::json!({"id": entry.list_id, "index": entry.index,
                           "uri": uri(ctx, &entry.list_id, None)})
    });
    CredentialView {
        status: record
            .status_entry
            .as_ref()
            .and(CredentialStatus::of(record.status_value)),
        id: record.id,
        session_id: record.session_id,
        credential_configuration_id: record.credential_configuration_id,
        format: record.format,
        issued_at: record.issued_at,
        expires_at: record.expires_at,
        notification_id: record.notification_id,
        status_list,
    }
}

/// A status change the operator asks for.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusChange {
    pub status: CredentialStatus,
    #[serde(default, deserialize_with = "crate::limits::not_null")]
    pub reason: Option<String>,
}

/// The credentials a session issued, oldest first.
pub async fn credentials(
    ctx: &Context,
    session: SessionId,
) -> Result<Vec<CredentialView>, ApiError> {
    let records = ctx.store.issued_credentials(session).await?;
    if records.is_empty() && ctx.store.session(session).await?.is_none() {
        return Err(ApiError::NotFound(format!("no session {session}")));
    }
    Ok(records
        .into_iter()
        .map(|record| view(ctx, record))
        .collect())
}

/// `POST /api/v1/credentials/{id}/status`: revoke (final), suspend, or reinstate one credential.
pub async fn change(
    ctx: &Context,
    id: &str,
    change: StatusChange,
) -> Result<CredentialView, ApiError> {
    let reason = checked_reason(change.reason)?;
    let record = ctx
        .store
        .issued_credential(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no credential {id}")))?;
    apply(ctx, record, change.status, reason.as_deref()).await
}

/// `POST /api/v1/sessions/{id}/credentials/status`: the change for every credential of the
/// session it applies to (those already in that status, or revoked, stay as they are).
pub async fn change_session(
    ctx: &Context,
    session: SessionId,
    change: StatusChange,
) -> Result<Vec<CredentialView>, ApiError> {
    let reason = checked_reason(change.reason)?;
    let records = ctx.store.issued_credentials(session).await?;
    let managed: Vec<IssuedCredentialRecord> = records
        .into_iter()
        .filter(|record| record.status_entry.is_some())
        .collect();
    if managed.is_empty() {
        return Err(ApiError::Conflict {
            code: "status_not_managed",
            detail: format!("session {session} issued no credential with a status list entry"),
        });
    }
    let mut changed = Vec::new();
    for record in managed {
        match apply(ctx, record, change.status, reason.as_deref()).await {
            Ok(view) => changed.push(view),
            Err(ApiError::Conflict { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(changed)
}

/// A reason is for the operator's records (see `limits::check_reason`).
fn checked_reason(reason: Option<String>) -> Result<Option<String>, ApiError> {
    if let Some(reason) = &reason {
        limits::check_reason(reason).map_err(|why| ApiError::invalid("invalid_request", why))?;
    }
    Ok(reason)
}

/// The change for one credential: revoked is final, suspended reversible; the status, the
/// list's version and the event in one transaction.
async fn apply(
    ctx: &Context,
    mut record: IssuedCredentialRecord,
    to: CredentialStatus,
    reason: Option<&str>,
) -> Result<CredentialView, ApiError> {
    for _ in 0..3 {
        if record.status_entry.is_none() {
            return Err(ApiError::Conflict {
                code: "status_not_managed",
                detail: format!("credential {} has no status list entry", record.id),
            });
        }
        let from = CredentialStatus::of(record.status_value)
            .ok_or_else(|| Internal::msg(format!("credential {}: unknown status", record.id)))?;
        if from == CredentialStatus::Revoked {
            return Err(ApiError::Conflict {
                code: "credential_revoked",
                detail: format!("credential {} is revoked, which is final", record.id),
            });
        }
        if from == to {
            return Err(ApiError::Conflict {
                code: "status_unchanged",
                detail: format!("credential {} is already {}", record.id, to.name()),
            });
        }
        let now = ctx.clock.now();
        let mut data = serde_json::json!({
            "credentialId": record.id,
            "sessionId": record.session_id,
            "previousStatus": from,
            "status": to,
        });
        if let Some(reason) = reason {
            data["reason"] = Value::from(reason);
        }
        let event = events::new(
            record.session_id,
            events::CREDENTIAL_STATUS_CHANGED,
            now,
            data,
        );
        let applied = ctx
            .store
            .change_credential_status(&record.id, from.value(), to.value(), now, &[event])
            .await?;
        if applied == Applied::Yes {
            record.status_value = to.value();
            return Ok(view(ctx, record));
        }
        // Changed meanwhile: decide again on what it is now.
        record = ctx
            .store
            .issued_credential(&record.id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no credential {}", record.id)))?;
    }
    Err(ApiError::Unavailable)
}

/// Whether a profile's `credentialStatus` asks for an entry in a status list of this issuer.
pub fn is_managed(status: Option<&Value>) -> bool {
    status.and_then(Value::as_str) == Some(MANAGED)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn forms_name_their_media_types_and_purposes() {
        assert_eq!(
            Form::purpose("revocation"),
            Some(Form::Purpose("revocation"))
        );
        assert_eq!(Form::purpose("other"), None);
        assert_eq!(Form::Jwt.media_type(), "application/statuslist+jwt");
        assert_eq!(Form::Cwt.media_type(), "application/statuslist+cwt");
        assert!(is_managed(Some(&json!("STATUS_LIST"))));
        assert!(!is_managed(Some(&json!({"status_list": {}}))));
    }
}
