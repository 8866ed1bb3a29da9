//! W3C Verifiable Credentials secured as a JWT (`jwt_vc_json`), VCDM 1.1 or 2.0 by the data's
//! `@context`, issued by a DID.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use vellum_formats::jwt_vc;

use super::{Format, Input, Issued, Issuer, Refusal, members, verification_method};
use crate::events;
use crate::store::StatusListKind;

struct JwtVcJson {
    /// As configured, for the metadata.
    definition: Value,
    /// Its `type`: the credential's, unless the data gives one.
    types: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Members {
    credential_definition: Option<Value>,
}

pub(super) fn parse(given: &Map<String, Value>) -> Result<Box<dyn Format>, Refusal> {
    let Members {
        credential_definition,
    } = members(given)?;
    let types = credential_definition
        .as_ref()
        .and_then(|definition| definition.get("type"))
        .filter(|types| {
            types.as_array().is_some_and(|types| {
                types.iter().all(Value::is_string)
                    && types.contains(&Value::from("VerifiableCredential"))
            })
        })
        .cloned();
    match (credential_definition, types) {
        (Some(definition), Some(types)) => Ok(Box::new(JwtVcJson { definition, types })),
        _ => Err(
            "jwt_vc_json needs credential_definition.type, a list of strings with \"VerifiableCredential\""
                .into(),
        ),
    }
}

impl Format for JwtVcJson {
    fn metadata(&self) -> Map<String, Value> {
        Map::from_iter([("credential_definition".to_owned(), self.definition.clone())])
    }

    fn issuer_claims(&self) -> &'static [&'static str] {
        jwt_vc::ISSUER_CLAIMS
    }

    fn check_profile(&self, issuer: &Issuer<'_>, _data: &Map<String, Value>) -> Result<(), String> {
        if issuer.did.is_none() {
            return Err(
                "a jwt_vc_json credential needs issuerDid (e.g. \"did:jwk\" or \"did:key\" for a DID of issuerKeyId)"
                    .into(),
            );
        }
        Ok(())
    }

    fn status_list(&self) -> Option<StatusListKind> {
        Some(StatusListKind::Bitstring)
    }

    fn issue(&self, input: Input<'_>) -> Result<Issued, String> {
        let Input {
            mut data,
            issuer,
            key,
            holder_did,
            issued_at,
            expires_at,
            status,
            ..
        } = input;
        let did = issuer
            .did
            .ok_or("a jwt_vc_json profile without issuerDid")?;
        if !data.contains_key("type") {
            data.insert("type".into(), self.types.clone());
        }
        if let Some(status) = status {
            data.insert("credentialStatus".into(), status.clone());
        }
        let id = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        let kid = verification_method(did, issuer.key_id);
        let issuance = jwt_vc::Issuance {
            issuer: did,
            kid: &kid,
            subject: holder_did,
            issued_at,
            expires_at,
            id: &id,
        };
        let credential = jwt_vc::issue(data, &issuance, key);
        Ok(Issued {
            event_data: json!({ "jwt": credential }),
            event_type: events::JWT_ISSUE,
            credential,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{configure, format};
    use super::*;
    use crate::ids::KeyId;

    #[test]
    fn a_jwt_vc_json_configuration_needs_types_with_verifiable_credential() {
        for definition in [
            None,
            Some(json!({})),
            Some(json!({"type": "VerifiableCredential"})),
            Some(json!({"type": ["VerifiableCredential", 7]})),
            Some(json!({"type": ["UniversityDegreeCredential"]})),
        ] {
            let mut given = json!({"format": "jwt_vc_json"});
            if let Some(definition) = &definition {
                given["credential_definition"] = definition.clone();
            }
            let error = configure(given).err().expect("refused");
            assert!(
                error.contains(
                    "credential_configurations.c: jwt_vc_json needs credential_definition.type"
                ),
                "{definition:?}: {error}"
            );
        }
        let definition = json!({"type": ["VerifiableCredential", "UniversityDegreeCredential"]});
        let format = format(json!({"format": "jwt_vc_json", "credential_definition": definition}));
        assert_eq!(
            Value::Object(format.metadata()),
            json!({"credential_definition": definition})
        );
    }

    #[test]
    fn a_jwt_vc_json_profile_needs_a_did() {
        let format = format(json!({
            "format": "jwt_vc_json",
            "credential_definition": {"type": ["VerifiableCredential"]},
        }));
        let key_id = KeyId::parse("k").expect("key id");
        let chain = ["PEM".to_owned()];
        let data = Map::new();
        let chained = Issuer {
            key_id: &key_id,
            did: None,
            x5_chain: Some(&chain),
        };
        let error = format.check_profile(&chained, &data).expect_err("refused");
        assert!(error.contains("needs issuerDid"), "{error}");
        let with_did = Issuer {
            key_id: &key_id,
            did: Some("did:web:issuer.example"),
            x5_chain: None,
        };
        format.check_profile(&with_did, &data).expect("a DID");
        assert_eq!(format.issuer_claims(), jwt_vc::ISSUER_CLAIMS);
    }
}
