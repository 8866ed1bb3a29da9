//! ISO/IEC 18013-5 mdoc (`mso_mdoc`): `IssuerSigned` as base64url CBOR, signed under an X.509
//! document-signer chain.

use rand::rngs::OsRng;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use vellum_formats::jose::{self, Algorithm};
use vellum_formats::mdoc;
use vellum_formats::x509::CertificateProfile;

use super::{DevelopmentSigner, Format, Input, Issued, Issuer, Refusal, header_chain, members};
use crate::events;
use crate::store::StatusListKind;

struct MsoMdoc {
    doctype: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Members {
    doctype: Option<String>,
}

pub(super) fn parse(given: &Map<String, Value>) -> Result<Box<dyn Format>, Refusal> {
    let Members { doctype } = members(given)?;
    let doctype = doctype
        .filter(|doctype| !doctype.is_empty())
        .ok_or("mso_mdoc needs doctype")?;
    Ok(Box::new(MsoMdoc { doctype }))
}

impl Format for MsoMdoc {
    fn metadata(&self) -> Map<String, Value> {
        Map::from_iter([("doctype".to_owned(), Value::from(self.doctype.as_str()))])
    }

    /// By its COSE number (OID4VCI 1.0 Appendix A.2.2; RFC 9053).
    fn signing_algorithm(&self, algorithm: Algorithm) -> Value {
        Value::from(match algorithm {
            Algorithm::ES256 => -7,
            Algorithm::ES384 => -35,
            Algorithm::EdDSA => -8,
        })
    }

    /// Data elements are namespaced; none is the issuer's.
    fn issuer_claims(&self) -> &'static [&'static str] {
        &[]
    }

    fn check_profile(&self, issuer: &Issuer<'_>, data: &Map<String, Value>) -> Result<(), String> {
        if issuer.x5_chain.is_none() {
            return Err(
                "an mso_mdoc credential needs x5Chain: the document signer certificate for issuerKeyId, then its IACA"
                    .into(),
            );
        }
        mdoc::validate_namespaces(data).map_err(|error| format!("credentialData: {error}"))
    }

    /// A document signer; an mDL's issuing_country must match its signer's country, so the
    /// country is the data's (other documents name none).
    fn development_signer<'d>(&self, data: &'d Map<String, Value>) -> DevelopmentSigner<'d> {
        let country = data
            .values()
            .find_map(|namespace| namespace.get("issuing_country"))
            .and_then(Value::as_str)
            .filter(|code| code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()));
        DevelopmentSigner {
            profile: CertificateProfile::MdocDocumentSigner,
            country,
        }
    }

    fn status_list(&self) -> Option<StatusListKind> {
        Some(StatusListKind::Token)
    }

    fn issue(&self, input: Input<'_>) -> Result<Issued, String> {
        let chain = input
            .issuer
            .x5_chain
            .ok_or("an mso_mdoc profile without x5Chain")
            .map_err(str::to_owned)
            .and_then(header_chain)?;
        let mdoc_input = mdoc::MdocInput {
            doc_type: &self.doctype,
            namespaces: &input.data,
            device_key: input.holder,
            signed: input.issued_at,
            valid_from: input.issued_at,
            valid_until: input.expires_at,
            x5chain: &chain,
            // A status list entry of this issuer's (a verbatim credentialStatus has no place in
            // an MSO).
            status: input.status.and_then(|status| {
                let reference = &status["status_list"];
                Some((reference["idx"].as_u64()?, reference["uri"].as_str()?))
            }),
        };
        let issuer_signed = mdoc::issue(&mdoc_input, input.key, &mut OsRng)
            .map_err(|error| format!("mdoc: {error}"))?;
        // The wallet gets base64url CBOR; the contract's event carries hex.
        let hex: String = issuer_signed
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Ok(Issued {
            credential: jose::b64(&issuer_signed),
            event_type: events::GENERATED_MDOC,
            event_data: json!({ "mdoc": hex }),
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
    fn an_mdoc_configuration_needs_a_doctype() {
        for given in [
            json!({"format": "mso_mdoc"}),
            json!({"format": "mso_mdoc", "doctype": ""}),
        ] {
            let error = configure(given).err().expect("refused");
            assert!(
                error.contains("credential_configurations.c: mso_mdoc needs doctype"),
                "{error}"
            );
        }
    }

    #[test]
    fn mdoc_metadata_names_the_doctype_and_algorithms_by_cose_number() {
        let format = format(json!({"format": "mso_mdoc", "doctype": mdoc::MDL_DOC_TYPE}));
        assert_eq!(
            Value::Object(format.metadata()),
            json!({"doctype": mdoc::MDL_DOC_TYPE})
        );
        let numbers: Vec<Value> = Algorithm::ALL
            .into_iter()
            .map(|algorithm| format.signing_algorithm(algorithm))
            .collect();
        assert_eq!(numbers, [json!(-7), json!(-35), json!(-8)]);
    }

    #[test]
    fn an_mdoc_profile_needs_a_chain_and_encodable_namespaces() {
        let format = format(json!({"format": "mso_mdoc", "doctype": mdoc::MDL_DOC_TYPE}));
        let key_id = KeyId::parse("k").expect("key id");
        let chain = ["PEM".to_owned()];
        let with_did = Issuer {
            key_id: &key_id,
            did: Some("did:web:issuer.example"),
            x5_chain: None,
        };
        let chained = Issuer {
            key_id: &key_id,
            did: None,
            x5_chain: Some(&chain),
        };
        let data = |value: Value| value.as_object().cloned().expect("an object");
        let mdl = data(json!({mdoc::MDL_NAMESPACE: {"birth_date": "1984-01-26"}}));
        let error = format.check_profile(&with_did, &mdl).expect_err("refused");
        assert!(error.contains("needs x5Chain"), "{error}");
        format.check_profile(&chained, &mdl).expect("a chain");
        let bad_date = data(json!({mdoc::MDL_NAMESPACE: {"birth_date": "1984-02-30"}}));
        let error = format
            .check_profile(&chained, &bad_date)
            .expect_err("refused");
        assert!(error.starts_with("credentialData: "), "{error}");
        assert!(error.contains("birth_date"), "{error}");
    }

    #[test]
    fn an_mdoc_development_signer_is_a_document_signer_of_the_issuing_country() {
        let format = format(json!({"format": "mso_mdoc", "doctype": mdoc::MDL_DOC_TYPE}));
        let data = |value: Value| value.as_object().cloned().expect("an object");
        let german = data(json!({mdoc::MDL_NAMESPACE: {"issuing_country": "DE"}}));
        assert_eq!(
            format.development_signer(&german),
            DevelopmentSigner {
                profile: CertificateProfile::MdocDocumentSigner,
                country: Some("DE"),
            }
        );
        for unnamed in [
            json!({}),
            json!({mdoc::MDL_NAMESPACE: {"issuing_country": "Deutschland"}}),
        ] {
            let unnamed = data(unnamed);
            assert_eq!(format.development_signer(&unnamed).country, None);
        }
    }
}
