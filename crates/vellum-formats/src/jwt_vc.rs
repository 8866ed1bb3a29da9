//! W3C Verifiable Credentials as JWT (`jwt_vc_json`): the VCDM 1.1 shape (`vc` claim, JWT-VC
//! claim mapping) or the VCDM 2.0 shape (the credential itself as the payload), chosen by the
//! credential's `@context`.

use serde_json::{Map, Value, json};

use crate::jose::{self, SigningKey};

pub const CONTEXT_V1: &str = "https://www.w3.org/2018/credentials/v1";
pub const CONTEXT_V2: &str = "https://www.w3.org/ns/credentials/v2";

/// Members the issuer sets at the top of every credential (the JWT claims of both data models,
/// and the holder binding a VCDM 2.0 payload would carry): credential data may not.
pub const ISSUER_CLAIMS: &[&str] = &["iss", "sub", "jti", "iat", "cnf", "vc"];

/// Which data model a credential follows: 2.0 when its first context is the 2.0 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataModel {
    V1_1,
    V2_0,
}

impl DataModel {
    pub fn of(credential: &Map<String, Value>) -> DataModel {
        match credential.get("@context") {
            Some(Value::Array(contexts)) if contexts.first() == Some(&Value::from(CONTEXT_V2)) => {
                DataModel::V2_0
            }
            Some(Value::String(context)) if context == CONTEXT_V2 => DataModel::V2_0,
            _ => DataModel::V1_1,
        }
    }
}

/// What the issuer fixes for one credential.
pub struct Issuance<'a> {
    /// The issuer's DID, and the DID URL of its verification method (the JWS `kid`).
    pub issuer: &'a str,
    pub kid: &'a str,
    /// The holder's DID (`did:jwk` of the proof key): `sub` and `credentialSubject.id`.
    pub subject: &'a str,
    /// Unix seconds.
    pub issued_at: i64,
    pub expires_at: i64,
    /// The credential's id, e.g. `urn:uuid:...` (`jti`).
    pub id: &'a str,
}

/// Completes `credential` (the profile's data: `@context`, `type`, `credentialSubject`, ...) with
/// issuer, subject, validity and id, and signs it.
pub fn issue(credential: Map<String, Value>, issuance: &Issuance<'_>, key: &SigningKey) -> String {
    let model = DataModel::of(&credential);
    let mut vc = credential;
    vc.entry("@context").or_insert_with(|| {
        json!([if model == DataModel::V2_0 {
            CONTEXT_V2
        } else {
            CONTEXT_V1
        }])
    });
    vc.entry("type")
        .or_insert_with(|| json!(["VerifiableCredential"]));
    vc.insert("id".into(), Value::from(issuance.id));
    vc.insert("issuer".into(), Value::from(issuance.issuer));
    let subject = vc.entry("credentialSubject").or_insert_with(|| json!({}));
    if let Value::Object(subject) = subject {
        subject.insert("id".into(), Value::from(issuance.subject));
    }
    let (valid_from, valid_until) = (rfc3339(issuance.issued_at), rfc3339(issuance.expires_at));
    let mut header = Map::new();
    header.insert("kid".into(), Value::from(issuance.kid));
    let mut payload = match model {
        DataModel::V1_1 => {
            vc.insert("issuanceDate".into(), valid_from);
            vc.insert("expirationDate".into(), valid_until);
            header.insert("typ".into(), Value::from("JWT"));
            let mut payload = Map::new();
            payload.insert("vc".into(), Value::Object(vc));
            payload
        }
        DataModel::V2_0 => {
            vc.insert("validFrom".into(), valid_from);
            vc.insert("validUntil".into(), valid_until);
            header.insert("typ".into(), Value::from("vc+jwt"));
            header.insert("cty".into(), Value::from("vc"));
            vc
        }
    };
    payload.insert("iss".into(), Value::from(issuance.issuer));
    payload.insert("sub".into(), Value::from(issuance.subject));
    payload.insert("jti".into(), Value::from(issuance.id));
    payload.insert("iat".into(), Value::from(issuance.issued_at));
    payload.insert("nbf".into(), Value::from(issuance.issued_at));
    payload.insert("exp".into(), Value::from(issuance.expires_at));
    jose::sign_compact(header, &Value::Object(payload), key)
}

/// RFC 3339 in UTC with seconds, as the data models want (`2026-01-01T00:00:00Z`).
fn rfc3339(unix_seconds: i64) -> Value {
    // Civil-from-days (proleptic Gregorian), to stay free of a time crate.
    let days = unix_seconds.div_euclid(86_400);
    let seconds = unix_seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Value::from(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::{Algorithm, UnverifiedJws};

    fn issuance() -> Issuance<'static> {
        Issuance {
            issuer: "did:example:issuer",
            kid: "did:example:issuer#0",
            subject: "did:example:holder",
            issued_at: 1_704_067_200,
            expires_at: 1_735_689_600,
            id: "urn:uuid:8d3e2a36-4a8b-4c4e-9d7e-7f6a5b4c3d2e",
        }
    }

    #[test]
    fn dates_are_rfc_3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_704_067_200), "2024-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_827_696), "2000-02-29T12:34:56Z");
    }

    #[test]
    fn a_1_1_credential_goes_into_the_vc_claim_with_jwt_claims_mapped() {
        let key = SigningKey::generate(Algorithm::ES256);
        let data = json!({"type": ["VerifiableCredential", "UniversityDegree"],
                          "credentialSubject": {"degree": "BSc"}});
        let Value::Object(data) = data else { panic!() };
        let jwt = issue(data, &issuance(), &key);
        let jws = UnverifiedJws::parse(&jwt).expect("jws");
        jws.verify_with(&key.public_jwk()).expect("signature");
        assert_eq!(jws.header["kid"], "did:example:issuer#0");
        assert_eq!(jws.header["typ"], "JWT");
        let claims = &jws.payload;
        assert_eq!(claims["iss"], "did:example:issuer");
        assert_eq!(claims["sub"], "did:example:holder");
        assert_eq!(claims["nbf"], 1_704_067_200);
        assert_eq!(claims["exp"], 1_735_689_600);
        assert_eq!(claims["jti"], claims["vc"]["id"]);
        assert_eq!(claims["vc"]["@context"], json!([CONTEXT_V1]));
        assert_eq!(claims["vc"]["issuer"], "did:example:issuer");
        assert_eq!(
            claims["vc"]["credentialSubject"]["id"],
            "did:example:holder"
        );
        assert_eq!(claims["vc"]["credentialSubject"]["degree"], "BSc");
        assert_eq!(claims["vc"]["issuanceDate"], "2024-01-01T00:00:00Z");
        assert_eq!(claims["vc"]["expirationDate"], "2025-01-01T00:00:00Z");
    }

    #[test]
    fn a_2_0_credential_is_the_payload_itself() {
        let key = SigningKey::generate(Algorithm::EdDSA);
        let data = json!({"@context": [CONTEXT_V2], "type": ["VerifiableCredential"],
                          "credentialSubject": {"name": "Ada"}});
        let Value::Object(data) = data else { panic!() };
        let jws = UnverifiedJws::parse(&issue(data, &issuance(), &key)).expect("jws");
        jws.verify_with(&key.public_jwk()).expect("signature");
        assert_eq!(jws.header["typ"], "vc+jwt");
        assert!(jws.payload.get("vc").is_none());
        assert_eq!(jws.payload["validFrom"], "2024-01-01T00:00:00Z");
        assert_eq!(jws.payload["validUntil"], "2025-01-01T00:00:00Z");
        assert_eq!(jws.payload["credentialSubject"]["id"], "did:example:holder");
        assert_eq!(jws.payload["issuer"], "did:example:issuer");
    }
}
