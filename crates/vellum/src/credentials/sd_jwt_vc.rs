//! SD-JWT VC (`dc+sd-jwt`), also under its name before OID4VCI 1.0 (`vc+sd-jwt`, with that
//! `typ`) for older wallets. Issued as a DID or as the issuer URL under an `x5c` chain.

use rand::rngs::OsRng;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use vellum_formats::{sdjwt, x509};

use super::{
    DEVELOPMENT_CHAIN, Format, Input, Issued, Issuer, Refusal, members, verification_method,
    x5_chain_der,
};
use crate::events;
use crate::mapping;
use crate::store::StatusListKind;

struct SdJwtVc {
    vct: String,
    /// [`sdjwt::TYP`], or [`sdjwt::LEGACY_TYP`] under the legacy name.
    typ: &'static str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Members {
    vct: Option<String>,
}

pub(super) fn parse(given: &Map<String, Value>) -> Result<Box<dyn Format>, Refusal> {
    read(given, sdjwt::TYP)
}

pub(super) fn parse_legacy(given: &Map<String, Value>) -> Result<Box<dyn Format>, Refusal> {
    read(given, sdjwt::LEGACY_TYP)
}

fn read(given: &Map<String, Value>, typ: &'static str) -> Result<Box<dyn Format>, Refusal> {
    let Members { vct } = members(given)?;
    let vct = vct.ok_or("an SD-JWT VC configuration needs vct")?;
    Ok(Box::new(SdJwtVc { vct, typ }))
}

impl Format for SdJwtVc {
    fn metadata(&self) -> Map<String, Value> {
        Map::from_iter([("vct".to_owned(), Value::from(self.vct.as_str()))])
    }

    fn issuer_claims(&self) -> &'static [&'static str] {
        sdjwt::ISSUER_CLAIMS
    }

    fn check_profile(&self, issuer: &Issuer<'_>, _data: &Map<String, Value>) -> Result<(), String> {
        if issuer.did.is_none() && issuer.x5_chain.is_none() {
            return Err(format!(
                "an SD-JWT VC credential needs an issuer identity: issuerDid (e.g. \"did:jwk\") or \
                 x5Chain (a chain for issuerKeyId, or {DEVELOPMENT_CHAIN:?})"
            ));
        }
        Ok(())
    }

    /// SD-JWT VC verifiers accept an `x5c` key only when the leaf names the credential's `iss`
    /// (the issuer URL) as a URI subject alternative name, or its host as a DNS name.
    fn check_chain(&self, chain: &[String], issuer_url: &str) -> Result<(), String> {
        let der = x5_chain_der(chain)?;
        let names = x509::alt_names(&der[0]).map_err(|error| format!("x5Chain[0]: {error}"))?;
        let host = url::Url::parse(issuer_url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned));
        let named = names.iter().any(|name| match name {
            x509::AltName::Uri(uri) => uri == issuer_url,
            x509::AltName::Dns(dns) => host.as_deref() == Some(dns.as_str()),
        });
        if named {
            Ok(())
        } else {
            Err(format!(
                "x5Chain[0] must name the issuer {issuer_url} as a URI subject alternative name \
                 (or its host as a DNS name): SD-JWT VC verifiers match the credential's iss \
                 against it"
            ))
        }
    }

    fn status_list(&self) -> Option<StatusListKind> {
        Some(StatusListKind::Token)
    }

    fn issue(&self, input: Input<'_>) -> Result<Issued, String> {
        let Input {
            data,
            issuer,
            issuer_url,
            key,
            holder,
            issued_at,
            expires_at,
            status,
            selective_disclosure,
            ..
        } = input;
        let mut claims = Map::new();
        claims.insert("iat".into(), Value::from(issued_at));
        claims.insert("nbf".into(), Value::from(issued_at));
        claims.insert("exp".into(), Value::from(expires_at));
        mapping::deep_merge(&mut claims, data);
        claims.insert("iss".into(), Value::from(issuer.did.unwrap_or(issuer_url)));
        claims.insert("vct".into(), Value::from(self.vct.as_str()));
        claims.insert("cnf".into(), json!({ "jwk": holder.to_public() }));
        if let Some(status) = status {
            claims.insert("status".into(), status.clone());
        }
        let header = sdjwt::Header {
            typ: self.typ,
            // With a DID issuer the kid is the DID URL of the key, as DID-resolving verifiers
            // expect; otherwise the key id, resolvable through the jwt-vc-issuer metadata.
            kid: Some(match issuer.did {
                Some(did) => verification_method(did, issuer.key_id),
                None => issuer.key_id.to_string(),
            }),
            x5c: issuer.x5_chain.map(super::x5c).transpose()?,
        };
        let disclosure = selective_disclosure.cloned().unwrap_or_default();
        let credential = sdjwt::issue(&header, claims, &disclosure, key, &mut OsRng);
        Ok(Issued {
            event_data: json!({ "sdjwt": credential }),
            event_type: events::SDJWT_ISSUE,
            credential,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vellum_formats::x509::CertificateProfile;

    use super::super::tests::{configure, format};
    use super::*;
    use crate::ids::KeyId;

    #[test]
    fn an_sd_jwt_vc_configuration_needs_vct_under_either_name() {
        for name in ["dc+sd-jwt", "vc+sd-jwt"] {
            let error = configure(json!({"format": name})).err().expect("refused");
            assert!(
                error.contains("credential_configurations.c: an SD-JWT VC configuration needs vct"),
                "{name}: {error}"
            );
            let metadata = format(json!({"format": name, "vct": "urn:x"})).metadata();
            assert_eq!(Value::Object(metadata), json!({"vct": "urn:x"}));
        }
    }

    #[test]
    fn an_sd_jwt_vc_profile_needs_a_did_or_a_chain_and_gets_a_signer_naming_the_issuer() {
        let format = format(json!({"format": "dc+sd-jwt", "vct": "urn:x"}));
        let key_id = KeyId::parse("k").expect("key id");
        let chain = ["PEM".to_owned()];
        let issuer = |did, x5_chain| Issuer {
            key_id: &key_id,
            did,
            x5_chain,
        };
        let data = Map::new();
        let error = format
            .check_profile(&issuer(None, None), &data)
            .expect_err("refused");
        assert!(error.contains("needs an issuer identity"), "{error}");
        format
            .check_profile(&issuer(Some("did:web:issuer.example"), None), &data)
            .expect("a DID");
        format
            .check_profile(&issuer(None, Some(&chain)), &data)
            .expect("a chain");
        assert_eq!(
            format.development_signer(&data).profile,
            CertificateProfile::SdJwtSigner
        );
        assert_eq!(format.issuer_claims(), sdjwt::ISSUER_CLAIMS);
    }
}
