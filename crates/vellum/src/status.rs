//! Credential status (draft-ietf-oauth-status-list, W3C Bitstring Status List v1.0): a
//! credential whose profile says `credentialStatus: "STATUS_LIST"` gets an entry of its own in a
//! status list, and carries a reference to it; the lists are served publicly, signed as their
//! credentials are, and signed again only when they changed or grow old.
//!
//! Entries are handed out from a counter per list (`Store::allocate_status_entry`, never twice,
//! across instances), and entry n of a list sits at index `permute(n)`: a keyed permutation of
//! the list's indices, so that no verifier can tell from an index when, or next to whom, a
//! credential was issued.

use serde_json::Value;
use vellum_formats::jose;
use vellum_formats::jwt_vc;
use vellum_formats::status_list::{self, StatusList, TokenClaims};

use crate::clock::Millis;
use crate::context::{Context, Signed};
use crate::errors::Internal;
use crate::ids::KeyId;
use crate::keys;
use crate::secrets::Purpose;
use crate::store::{StatusEntry, StatusListKind, StatusListRecord};

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
/// published in that form. Signed again only when an entry changed since, or when the last
/// signature has used up half its validity.
pub async fn serve(ctx: &Context, list_id: &str, form: Form) -> Result<Option<Served>, Internal> {
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
    let settings = &ctx.config.status_lists;
    let now = ctx.clock.now();
    let name = format!("{list_id}/{}", form.name());
    let document = match ctx.status_lists.get(&name) {
        Some(cached) if cached.version == list.changed_at && cached.fresh_until > now => cached,
        _ => {
            let signed = sign(ctx, &list, form, now).await?;
            ctx.status_lists.insert(name, signed.clone());
            signed
        }
    };
    Ok(Some(Served {
        document,
        max_age: settings.ttl_seconds,
    }))
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
