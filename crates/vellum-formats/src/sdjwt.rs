//! SD-JWT VC issuance (RFC 9901 + SD-JWT VC): selective disclosures for object members and
//! array elements at any depth, optional decoy digests, and the compact `jwt~d1~...~dn~` form.

use std::collections::BTreeMap;

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::jose::{self, SigningKey};

/// The JOSE `typ` of an SD-JWT VC, and the one of drafts before SD-JWT VC -06.
pub const TYP: &str = "dc+sd-jwt";
pub const LEGACY_TYP: &str = "vc+sd-jwt";

/// Claims the holder and verifier always need in clear; they can never be disclosures.
pub const NEVER_DISCLOSED: &[&str] = &[
    "iss",
    "nbf",
    "exp",
    "iat",
    "cnf",
    "vct",
    "vct#integrity",
    "status",
    "_sd",
    "_sd_alg",
    "...",
];

/// Members only SD-JWT itself writes: the digests of concealed members (`_sd`) and of concealed
/// array elements (`...`). Data that carried one, at any depth, would let whoever wrote that
/// data make verifiers accept a disclosure the issuer never made.
pub const DIGEST_MEMBERS: &[&str] = &["_sd", "..."];

/// Claims the issuer sets in every SD-JWT VC: credential data may not.
pub const ISSUER_CLAIMS: &[&str] = &[
    "iss",
    "vct",
    "vct#integrity",
    "cnf",
    "iat",
    "status",
    "_sd_alg",
];

/// The path (`address._sd`, `list[2]....`) of the first member of `data` that only the issuer
/// may write: one of `issuer_claims` at the top level, or a [`DIGEST_MEMBERS`] member at any
/// depth, array elements included.
pub fn reserved_member(data: &Map<String, Value>, issuer_claims: &[&str]) -> Option<String> {
    fn walk(value: &Value, path: String) -> Option<String> {
        match value {
            Value::Object(object) => object.iter().find_map(|(name, member)| {
                let path = format!("{path}.{name}");
                if DIGEST_MEMBERS.contains(&name.as_str()) {
                    Some(path)
                } else {
                    walk(member, path)
                }
            }),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(index, item)| walk(item, format!("{path}[{index}]"))),
            _ => None,
        }
    }
    data.iter().find_map(|(name, member)| {
        if issuer_claims.contains(&name.as_str()) || DIGEST_MEMBERS.contains(&name.as_str()) {
            Some(name.clone())
        } else {
            walk(member, name.clone())
        }
    })
}

/// Which claims become disclosures, in the shape operators write in a credential profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SelectiveDisclosure {
    #[serde(default)]
    pub fields: BTreeMap<String, FieldDisclosure>,
    #[serde(default)]
    pub decoy_mode: DecoyMode,
    /// Decoy digests per `_sd` array: exactly this many (`FIXED`) or 1..=this many (`RANDOM`).
    #[serde(default)]
    pub decoys: u8,
}

/// One claim: `sd` makes it a disclosure; `children` applies the same rules one level down.
/// For arrays, children are keyed by element index, or `"*"` for every element.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDisclosure {
    #[serde(default)]
    pub sd: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub children: BTreeMap<String, FieldDisclosure>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DecoyMode {
    #[default]
    None,
    Fixed,
    Random,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdJwtError {
    #[error("claim {0:?} is always in clear and cannot be selectively disclosed")]
    ReservedClaim(String),
    #[error("decoyMode {0:?} needs decoys between 1 and 32")]
    DecoyCount(DecoyMode),
    #[error("array child key {0:?} is neither an index nor \"*\"")]
    ArrayChildKey(String),
}

impl SelectiveDisclosure {
    /// Checks the rules that do not depend on the claim values.
    pub fn validate(&self) -> Result<(), SdJwtError> {
        if let Some(name) = self
            .fields
            .iter()
            .find(|(name, field)| field.sd && NEVER_DISCLOSED.contains(&name.as_str()))
            .map(|(name, _)| name)
        {
            return Err(SdJwtError::ReservedClaim(name.clone()));
        }
        match self.decoy_mode {
            DecoyMode::None => Ok(()),
            mode if !(1..=32).contains(&self.decoys) => Err(SdJwtError::DecoyCount(mode)),
            _ => Ok(()),
        }
    }
}

/// What goes into the issuer-signed JWT besides the claims.
pub struct Header {
    /// [`TYP`], or [`LEGACY_TYP`] for verifiers that predate it.
    pub typ: &'static str,
    /// Key id resolvable through the issuer's JWKS (or DID document); written beside `x5c`
    /// too, so that verifiers may resolve the key either way.
    pub kid: Option<String>,
    /// Base64 (standard, padded) DER certificates, leaf first.
    pub x5c: Option<Vec<String>>,
}

/// Builds and signs an SD-JWT VC. `claims` already holds every registered claim
/// (`iss`, `vct`, `iat`, `nbf`, `exp`, `cnf`, ...); `disclosure` decides which of the others
/// are concealed. Salts and decoys come from `rng`, fresh for every call.
pub fn issue(
    header: &Header,
    mut claims: Map<String, Value>,
    disclosure: &SelectiveDisclosure,
    key: &SigningKey,
    rng: &mut impl RngCore,
) -> String {
    let mut concealer = Concealer {
        rng,
        disclosures: Vec::new(),
        disclosure,
    };
    concealer.conceal_object(&mut claims, &disclosure.fields);
    claims.insert("_sd_alg".into(), Value::from("sha-256"));

    let mut jws_header = Map::new();
    jws_header.insert("typ".into(), Value::from(header.typ));
    if let Some(kid) = &header.kid {
        jws_header.insert("kid".into(), Value::from(kid.as_str()));
    }
    if let Some(x5c) = &header.x5c {
        jws_header.insert("x5c".into(), json!(x5c));
    }
    let jwt = jose::sign_compact(jws_header, &Value::Object(claims), key);

    let mut compact = jwt;
    for disclosure in &concealer.disclosures {
        compact.push('~');
        compact.push_str(disclosure);
    }
    compact.push('~');
    compact
}

/// The digest a verifier recomputes for a disclosure string.
pub fn digest(disclosure: &str) -> String {
    jose::b64(Sha256::digest(disclosure.as_bytes()))
}

struct Concealer<'a, R> {
    rng: &'a mut R,
    disclosures: Vec<String>,
    disclosure: &'a SelectiveDisclosure,
}

impl<R: RngCore> Concealer<'_, R> {
    fn salt(&mut self) -> String {
        let mut salt = [0u8; 16];
        self.rng.fill_bytes(&mut salt);
        jose::b64(salt)
    }

    fn disclose(&mut self, array: Value) -> String {
        let encoded = jose::b64(array.to_string());
        let digest = digest(&encoded);
        self.disclosures.push(encoded);
        digest
    }

    fn decoys(&mut self) -> usize {
        match self.disclosure.decoy_mode {
            DecoyMode::None => 0,
            DecoyMode::Fixed => usize::from(self.disclosure.decoys),
            DecoyMode::Random => self
                .rng
                .gen_range(1..=usize::from(self.disclosure.decoys.max(1))),
        }
    }

    fn recurse(&mut self, value: &mut Value, children: &BTreeMap<String, FieldDisclosure>) {
        if children.is_empty() {
            return;
        }
        match value {
            Value::Object(object) => self.conceal_object(object, children),
            Value::Array(array) => self.conceal_array(array, children),
            _ => {}
        }
    }

    fn conceal_object(
        &mut self,
        object: &mut Map<String, Value>,
        fields: &BTreeMap<String, FieldDisclosure>,
    ) {
        let mut digests = Vec::new();
        for (name, field) in fields {
            let Some(value) = object.get_mut(name) else {
                continue; // optional data absent from this credential
            };
            self.recurse(value, &field.children);
            if field.sd {
                let value = object.remove(name).unwrap_or(Value::Null);
                let salt = self.salt();
                digests.push(self.disclose(json!([salt, name, value])));
            }
        }
        if digests.is_empty() {
            return;
        }
        for _ in 0..self.decoys() {
            let salt = self.salt();
            digests.push(digest(&jose::b64(salt)));
        }
        // Sorted, so the order of digests reveals nothing about the order of claims.
        digests.sort_unstable();
        object.insert("_sd".into(), json!(digests));
    }

    fn conceal_array(&mut self, array: &mut [Value], children: &BTreeMap<String, FieldDisclosure>) {
        let every = children.get("*");
        for (index, element) in array.iter_mut().enumerate() {
            let Some(field) = children.get(&index.to_string()).or(every) else {
                continue;
            };
            self.recurse(element, &field.children);
            if field.sd {
                let value = std::mem::take(element);
                let salt = self.salt();
                let digest = self.disclose(json!([salt, value]));
                *element = json!({ "...": digest });
            }
        }
    }
}

/// Checks that array children use index or `*` keys wherever the data has an array.
pub fn validate_against(
    disclosure: &SelectiveDisclosure,
    data: &Map<String, Value>,
) -> Result<(), SdJwtError> {
    fn walk(value: &Value, children: &BTreeMap<String, FieldDisclosure>) -> Result<(), SdJwtError> {
        match value {
            Value::Object(object) => {
                for (name, field) in children {
                    if let Some(value) = object.get(name) {
                        walk(value, &field.children)?;
                    }
                }
            }
            Value::Array(array) => {
                for (key, field) in children {
                    if key != "*" && key.parse::<usize>().is_err() {
                        return Err(SdJwtError::ArrayChildKey(key.clone()));
                    }
                    for element in array {
                        walk(element, &field.children)?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
    walk(&Value::Object(data.clone()), &disclosure.fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::{Algorithm, UnverifiedJws, b64_decode};
    use rand::rngs::OsRng;

    fn spec(value: Value) -> SelectiveDisclosure {
        serde_json::from_value(value).expect("spec")
    }

    fn decode(disclosure: &str) -> Value {
        serde_json::from_slice(&b64_decode(disclosure).expect("b64")).expect("json")
    }

    fn issue_with(claims: Value, sd: &SelectiveDisclosure) -> (Map<String, Value>, Vec<String>) {
        let key = SigningKey::generate(Algorithm::ES256);
        let Value::Object(claims) = claims else {
            panic!("object")
        };
        let header = Header {
            typ: TYP,
            kid: Some("k1".into()),
            x5c: None,
        };
        let compact = issue(&header, claims, sd, &key, &mut OsRng);
        assert!(compact.ends_with('~'));
        let mut parts: Vec<String> = compact.split('~').map(str::to_owned).collect();
        assert_eq!(parts.pop().as_deref(), Some(""));
        let jwt = parts.remove(0);
        let jws = UnverifiedJws::parse(&jwt).expect("jws");
        jws.verify_with(&key.public_jwk()).expect("signature");
        assert_eq!(jws.header["typ"], TYP);
        assert_eq!(jws.header["kid"], "k1");
        (jws.payload, parts)
    }

    #[test]
    fn top_level_nested_and_array_claims_become_disclosures_with_matching_digests() {
        let sd = spec(json!({"fields": {
            "given_name": {"sd": true},
            "address": {"sd": true, "children": {"locality": {"sd": true}}},
            "nationalities": {"children": {"*": {"sd": true}}}
        }}));
        let (payload, disclosures) = issue_with(
            json!({"iss": "https://i", "given_name": "Erika", "family_name": "M",
                   "address": {"locality": "Köln", "country": "DE"},
                   "nationalities": ["DE", "FR"]}),
            &sd,
        );
        assert_eq!(disclosures.len(), 5);
        assert_eq!(payload["_sd_alg"], "sha-256");
        assert_eq!(payload["family_name"], "M");
        assert!(payload.get("given_name").is_none());
        assert!(payload.get("address").is_none());
        let top: Vec<&str> = payload["_sd"]
            .as_array()
            .expect("_sd")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(top.len(), 2);
        let array_digests: Vec<&str> = payload["nationalities"]
            .as_array()
            .expect("array")
            .iter()
            .map(|element| element["..."].as_str().expect("digest"))
            .collect();
        for disclosure in &disclosures {
            let decoded = decode(disclosure);
            let d = digest(disclosure);
            match decoded.as_array().expect("array").len() {
                3 if decoded[1] == "address" => {
                    assert!(top.contains(&d.as_str()));
                    assert_eq!(decoded[2]["country"], "DE");
                    assert_eq!(decoded[2]["_sd"].as_array().map(Vec::len), Some(1));
                }
                3 => assert!(top.contains(&d.as_str()) || decoded[1] == "locality"),
                2 => assert!(array_digests.contains(&d.as_str())),
                n => panic!("unexpected disclosure length {n}"),
            }
            assert!(
                b64_decode(decoded[0].as_str().expect("salt"))
                    .expect("salt")
                    .len()
                    >= 16
            );
        }
    }

    #[test]
    fn salts_are_fresh_for_every_credential() {
        let sd = spec(json!({"fields": {"a": {"sd": true}}}));
        let (_, first) = issue_with(json!({"a": 1}), &sd);
        let (_, second) = issue_with(json!({"a": 1}), &sd);
        assert_ne!(first, second);
    }

    #[test]
    fn fixed_decoys_add_exactly_that_many_digests() {
        let sd = spec(json!({"fields": {"a": {"sd": true}}, "decoyMode": "FIXED", "decoys": 3}));
        let (payload, disclosures) = issue_with(json!({"a": 1}), &sd);
        assert_eq!(disclosures.len(), 1);
        assert_eq!(payload["_sd"].as_array().map(Vec::len), Some(4));
    }

    #[test]
    fn digest_members_are_found_at_any_depth_and_issuer_claims_at_the_top() {
        let data = |value: Value| match value {
            Value::Object(object) => object,
            _ => panic!("object"),
        };
        let found = |value: Value| reserved_member(&data(value), ISSUER_CLAIMS);
        assert_eq!(found(json!({"a": {"b": 1}, "list": [1, {"x": 2}]})), None);
        assert_eq!(found(json!({"cnf": {}})).as_deref(), Some("cnf"));
        assert_eq!(found(json!({"_sd": []})).as_deref(), Some("_sd"));
        assert_eq!(
            found(json!({"address": {"street": "x", "_sd": ["forged"]}})).as_deref(),
            Some("address._sd")
        );
        assert_eq!(
            found(json!({"list": [1, {"...": "forged"}]})).as_deref(),
            Some("list[1]....")
        );
        assert_eq!(
            found(json!({"a": [[{"b": {"_sd": []}}]]})).as_deref(),
            Some("a[0][0].b._sd")
        );
        // Issuer claims are the issuer's at the top level only: nested, they are data.
        assert_eq!(found(json!({"holder": {"iss": "x", "cnf": 1}})), None);
    }

    #[test]
    fn reserved_claims_and_bad_decoy_counts_are_refused() {
        assert_eq!(
            spec(json!({"fields": {"cnf": {"sd": true}}})).validate(),
            Err(SdJwtError::ReservedClaim("cnf".into()))
        );
        assert_eq!(
            spec(json!({"decoyMode": "RANDOM", "decoys": 0})).validate(),
            Err(SdJwtError::DecoyCount(DecoyMode::Random))
        );
        let data = json!({"list": [1, 2]});
        let Value::Object(data) = data else { panic!() };
        assert_eq!(
            validate_against(
                &spec(json!({"fields": {"list": {"children": {"first": {"sd": true}}}}})),
                &data
            ),
            Err(SdJwtError::ArrayChildKey("first".into()))
        );
    }
}
