//! Credential formats, one file each: a format's configuration members, its profile rules, its
//! metadata and how it builds a credential, behind [`Format`]. The encoding and signing
//! themselves are in `vellum-formats`; this is what the service decides around them.
//!
//! A new format is a file in `credentials/`, its `mod` line below and its line in [`FORMATS`].

mod jwt_vc_json;
mod mso_mdoc;
mod sd_jwt_vc;

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use vellum_formats::did;
use vellum_formats::jose::{Algorithm, Jwk, SigningKey};
use vellum_formats::sdjwt::SelectiveDisclosure;
use vellum_formats::x509::{self, CertificateProfile};

use crate::config::{ConfigError, CredentialConfiguration};
use crate::ids::KeyId;
use crate::store::StatusListKind;

/// Reads a configuration's own members (those beyond the ones every format has) into a format.
type Parse = fn(&Map<String, Value>) -> Result<Box<dyn Format>, Refusal>;

/// Why a format refused a credential configuration: the member at fault, if it is one.
struct Refusal {
    member: Option<String>,
    why: String,
}

impl From<&str> for Refusal {
    fn from(why: &str) -> Self {
        Refusal {
            member: None,
            why: why.to_owned(),
        }
    }
}

/// Every format, by the `format` name a credential configuration gives.
const FORMATS: &[(&str, Parse)] = &[
    ("dc+sd-jwt", sd_jwt_vc::parse),
    ("vc+sd-jwt", sd_jwt_vc::parse_legacy),
    ("jwt_vc_json", jwt_vc_json::parse),
    ("mso_mdoc", mso_mdoc::parse),
];

/// The `x5Chain` shorthand for a development chain that Vellum makes for the issuer key, its
/// leaf as [`Format::development_signer`] says; stored profiles always hold the certificates.
pub const DEVELOPMENT_CHAIN: &str = "development";

/// What one format decides. Its configuration members were read when it was made, at start.
pub trait Format: Send + Sync {
    /// The members this format adds to its entry of `credential_configurations_supported`.
    fn metadata(&self) -> Map<String, Value>;

    /// How `credential_signing_alg_values_supported` names an algorithm.
    fn signing_algorithm(&self, algorithm: Algorithm) -> Value {
        Value::from(algorithm.as_str())
    }

    /// Top-level members of the credential data that only the issuer writes.
    fn issuer_claims(&self) -> &'static [&'static str];

    /// The identity a profile must issue under, and the shape of its data, checked before
    /// anything is issued (and for configured profiles, before anything is created at start).
    fn check_profile(&self, issuer: &Issuer<'_>, data: &Map<String, Value>) -> Result<(), String>;

    /// What a profile's `x5Chain`, already verified for the issuer key, must also say.
    fn check_chain(&self, _chain: &[String], _issuer_url: &str) -> Result<(), String> {
        Ok(())
    }

    /// The leaf certificate of the development chain (`x5Chain = "development"`).
    fn development_signer<'d>(&self, _data: &'d Map<String, Value>) -> DevelopmentSigner<'d> {
        DevelopmentSigner::default()
    }

    /// The credential, signed, and the event that announces it.
    fn issue(&self, input: Input<'_>) -> Result<Issued, String>;

    /// The kind of status list this format's credentials reference their entry in, when it can
    /// carry one (`credentialStatus: "STATUS_LIST"`).
    fn status_list(&self) -> Option<StatusListKind> {
        None
    }
}

/// Who signs a status list for credentials issued as `issuer`, as JOSE-signed credentials are:
/// the key, the JWS `kid`, the `iss`, and the certificates (`x5c`) when the profile has a chain.
pub fn status_signer(issuer: &Issuer<'_>, issuer_url: &str) -> Result<Value, String> {
    let kid = match issuer.did {
        Some(did) => verification_method(did, issuer.key_id),
        None => issuer.key_id.to_string(),
    };
    Ok(serde_json::json!({
        "keyId": issuer.key_id.as_str(),
        "kid": kid,
        "iss": issuer.did.unwrap_or(issuer_url),
        "x5c": issuer.x5_chain.map(x5c).transpose()?,
    }))
}

/// Who a profile issues as: its key, and where verifiers find that key.
pub struct Issuer<'a> {
    pub key_id: &'a KeyId,
    pub did: Option<&'a str>,
    /// PEM certificates, leaf first.
    pub x5_chain: Option<&'a [String]>,
}

/// Everything a format builds one credential from.
pub struct Input<'a> {
    /// The profile's data with the mapping's values merged in (and `exp` taken out).
    pub data: Map<String, Value>,
    pub issuer: Issuer<'a>,
    /// The credential issuer identifier.
    pub issuer_url: &'a str,
    pub key: &'a SigningKey,
    /// The key the wallet proved, and its `did:jwk`.
    pub holder: &'a Jwk,
    pub holder_did: &'a str,
    /// Unix seconds.
    pub issued_at: i64,
    pub expires_at: i64,
    pub status: Option<&'a Value>,
    pub selective_disclosure: Option<&'a SelectiveDisclosure>,
}

/// A credential as the wallet receives it, and the event (type and data) that announces it.
pub struct Issued {
    pub credential: String,
    pub event_type: &'static str,
    pub event_data: Value,
}

/// The leaf of a development chain: for what, and the country its subject names (ISO 18013-5
/// wants an mDL's issuing_country in its signer's certificate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevelopmentSigner<'a> {
    pub profile: CertificateProfile,
    pub country: Option<&'a str>,
}

impl Default for DevelopmentSigner<'_> {
    /// A signer that names the issuer URL, as SD-JWT VC verifiers require.
    fn default() -> Self {
        DevelopmentSigner {
            profile: CertificateProfile::SdJwtSigner,
            country: None,
        }
    }
}

/// A credential configuration with its format.
pub struct Configured {
    pub configuration: CredentialConfiguration,
    pub format: Box<dyn Format>,
}

/// The configured credential configurations, each read by its format at start.
pub struct Configurations(BTreeMap<String, Configured>);

impl Configurations {
    /// Refuses the first configuration whose format is unknown or whose members that format
    /// does not accept, in one line naming it.
    pub fn from_config(
        configurations: &BTreeMap<String, CredentialConfiguration>,
    ) -> Result<Configurations, ConfigError> {
        let mut parsed = BTreeMap::new();
        for (id, configuration) in configurations {
            let key = format!("credential_configurations.{id}");
            let name = configuration.format.as_str();
            let Some((_, parse)) = FORMATS.iter().find(|(known, _)| *known == name) else {
                let known: Vec<&str> = FORMATS.iter().map(|(known, _)| *known).collect();
                return Err(ConfigError(format!(
                    "{key}.format: unknown format {name:?}; use one of {}",
                    known.join(", ")
                )));
            };
            let format = parse(&configuration.members).map_err(|refusal| {
                ConfigError(match refusal.member {
                    Some(member) => format!("{key}.{member}: {}", refusal.why),
                    None => format!("{key}: {}", refusal.why),
                })
            })?;
            let configured = Configured {
                configuration: configuration.clone(),
                format,
            };
            parsed.insert(id.clone(), configured);
        }
        Ok(Configurations(parsed))
    }

    pub fn get(&self, id: &str) -> Option<&Configured> {
        self.0.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Configured)> {
        self.0.iter()
    }
}

/// A format's own members, as its type `T` declares them; an error names the member.
fn members<T: DeserializeOwned>(members: &Map<String, Value>) -> Result<T, Refusal> {
    let value = Value::Object(members.clone());
    serde_path_to_error::deserialize(&value).map_err(|error| {
        let path = error.path().to_string();
        Refusal {
            member: (path != ".").then_some(path),
            why: error.inner().to_string(),
        }
    })
}

/// The DID URL of the issuer's signing key: `#0` for did:jwk, the multibase key for did:key,
/// the key id for other methods (did:web documents list keys under their ids).
fn verification_method(did: &str, key: &KeyId) -> String {
    if did.starts_with("did:jwk:") {
        did::did_jwk_verification_method(did)
    } else if did.starts_with("did:key:") {
        did::did_key_verification_method(did)
    } else {
        format!("{did}#{key}")
    }
}

/// The chain's certificates, DER, leaf first.
pub fn x5_chain_der(chain: &[String]) -> Result<Vec<Vec<u8>>, String> {
    if chain.is_empty() {
        return Err("x5Chain is empty".into());
    }
    chain
        .iter()
        .enumerate()
        .map(|(index, pem)| {
            x509::from_pem(pem).map_err(|error| format!("x5Chain[{index}]: {error}"))
        })
        .collect()
}

/// The certificates a credential header carries (`x5c`, COSE `x5chain`), DER, leaf first: the
/// chain without its root, which verifiers hold as their trust anchor and which HAIP and
/// ISO 18013-5 keep out of the header. A lone certificate stays.
fn header_chain(chain: &[String]) -> Result<Vec<Vec<u8>>, String> {
    let mut der = x5_chain_der(chain)?;
    if der.len() > 1
        && der
            .last()
            .is_some_and(|root| x509::is_self_issued(root).unwrap_or(false))
    {
        der.pop();
    }
    Ok(der)
}

/// The `x5c` JOSE header value: each certificate of [`header_chain`] as standard base64 DER.
pub fn x5c(chain: &[String]) -> Result<Vec<String>, String> {
    use base64::Engine as _;
    Ok(header_chain(chain)?
        .iter()
        .map(|der| base64::engine::general_purpose::STANDARD.encode(der))
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::Config;

    /// Credential configuration `c`: the members every format needs, then `given`, read as
    /// at start. An error is the line the start would print.
    pub(crate) fn configure(given: Value) -> Result<Configurations, String> {
        let mut entry = json!({
            "credential_signing_alg_values_supported": ["ES256"],
            "cryptographic_binding_methods_supported": ["jwk"],
            "proof_signing_alg_values_supported": ["ES256"],
        });
        crate::mapping::deep_merge(
            entry.as_object_mut().expect("an object"),
            given.as_object().cloned().expect("an object"),
        );
        let config =
            Config::with_overrides(json!({"credential_configurations": {"c": entry}}), false)
                .map_err(|error| error.to_string())?;
        Configurations::from_config(&config.credential_configurations)
            .map_err(|error| error.to_string())
    }

    /// The format of [`configure`]'s configuration, which must be accepted.
    pub(crate) fn format(given: Value) -> Box<dyn Format> {
        let mut configurations = configure(given).expect("accepted");
        configurations.0.remove("c").expect("configured").format
    }

    #[test]
    fn an_unknown_format_is_refused_naming_the_key_and_the_known_ones() {
        let error = configure(json!({"format": "ldp_vc"}))
            .err()
            .expect("refused");
        assert!(
            error.contains("credential_configurations.c.format") && error.contains("mso_mdoc"),
            "{error}"
        );
    }

    #[test]
    fn a_member_its_format_does_not_know_is_refused_naming_the_configuration() {
        let error = configure(json!({"format": "dc+sd-jwt", "vct": "urn:x", "doctype": "d"}))
            .err()
            .expect("refused");
        assert!(
            error.contains("credential_configurations.c.doctype: unknown field"),
            "{error}"
        );
    }

    #[test]
    fn a_member_of_the_wrong_type_is_named() {
        let error = configure(json!({"format": "dc+sd-jwt", "vct": 5}))
            .err()
            .expect("refused");
        assert!(
            error.contains("credential_configurations.c.vct: invalid type"),
            "{error}"
        );
    }

    #[test]
    fn the_demo_configuration_is_accepted_by_its_format() {
        let config = Config::with_overrides(json!({}), true).expect("valid");
        let configurations =
            Configurations::from_config(&config.credential_configurations).expect("accepted");
        assert!(configurations.get("identity_credential").is_some());
    }
}
