//! Data functions: `mapping` values such as `"<uuid>"` or `"<timestamp-in-seconds:365d>"`,
//! parsed when a profile or offer is created (an unknown function is a 400 then) and evaluated
//! at issuance into claims that are merged over `credentialData`.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::clock::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFunction {
    /// `urn:uuid:` + a random UUID.
    Uuid,
    /// Now, RFC 3339.
    Timestamp,
    /// Now, Unix seconds.
    TimestampSeconds,
    /// Now plus/minus a duration, RFC 3339 or Unix seconds.
    TimestampIn(i64),
    TimestampInSeconds(i64),
    TimestampBefore(i64),
    TimestampBeforeSeconds(i64),
    IssuerDid,
    SubjectDid,
}

/// What functions are evaluated against.
pub struct Inputs<'a> {
    pub now: Millis,
    pub issuer_did: Option<&'a str>,
    /// The holder's DID; `did:jwk` of the proof key when the wallet sent a JWK.
    pub subject_did: &'a str,
}

impl DataFunction {
    pub fn parse(text: &str) -> Result<Self, String> {
        let inner = text
            .strip_prefix('<')
            .and_then(|rest| rest.strip_suffix('>'))
            .ok_or_else(|| {
                format!("{text:?} is not a data function of the form <name> or <name:argument>")
            })?;
        let (name, argument) = match inner.split_once(':') {
            Some((name, argument)) => (name, Some(argument)),
            None => (inner, None),
        };
        let duration = || -> Result<i64, String> {
            let argument =
                argument.ok_or_else(|| format!("<{name}:DURATION> needs a duration, e.g. 365d"))?;
            parse_duration(argument)
        };
        let no_argument = |function: DataFunction| match argument {
            None => Ok(function),
            Some(_) => Err(format!("<{name}> takes no argument")),
        };
        match name {
            "uuid" => no_argument(DataFunction::Uuid),
            "timestamp" => no_argument(DataFunction::Timestamp),
            "timestamp-seconds" => no_argument(DataFunction::TimestampSeconds),
            "timestamp-in" => Ok(DataFunction::TimestampIn(duration()?)),
            "timestamp-in-seconds" => Ok(DataFunction::TimestampInSeconds(duration()?)),
            "timestamp-before" => Ok(DataFunction::TimestampBefore(duration()?)),
            "timestamp-before-seconds" => Ok(DataFunction::TimestampBeforeSeconds(duration()?)),
            "issuerDid" => no_argument(DataFunction::IssuerDid),
            "subjectDid" => no_argument(DataFunction::SubjectDid),
            other => Err(format!("unknown data function <{other}>")),
        }
    }

    /// Whether the function yields whole Unix seconds (a JWT NumericDate).
    pub fn is_numeric_date(self) -> bool {
        matches!(
            self,
            DataFunction::TimestampSeconds
                | DataFunction::TimestampInSeconds(_)
                | DataFunction::TimestampBeforeSeconds(_)
        )
    }

    fn evaluate(self, inputs: &Inputs<'_>) -> Value {
        let seconds = inputs.now.div_euclid(1000);
        match self {
            DataFunction::Uuid => Value::from(format!("urn:uuid:{}", uuid::Uuid::new_v4())),
            DataFunction::Timestamp => rfc3339(seconds),
            DataFunction::TimestampSeconds => Value::from(seconds),
            DataFunction::TimestampIn(delta) => rfc3339(seconds.saturating_add(delta)),
            DataFunction::TimestampInSeconds(delta) => Value::from(seconds.saturating_add(delta)),
            DataFunction::TimestampBefore(delta) => rfc3339(seconds.saturating_sub(delta)),
            DataFunction::TimestampBeforeSeconds(delta) => {
                Value::from(seconds.saturating_sub(delta))
            }
            DataFunction::IssuerDid => inputs.issuer_did.map_or(Value::Null, Value::from),
            DataFunction::SubjectDid => Value::from(inputs.subject_did),
        }
    }
}

fn rfc3339(unix_seconds: i64) -> Value {
    OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .map_or(Value::Null, Value::from)
}

/// The longest duration accepted: 100 years, so that every evaluation stays far from overflow.
const MAX_DURATION_SECONDS: i64 = 100 * 366 * 86_400;

/// `365d`, `12h`, `1d12h`, `30m`, `45s`, `2w`, or a plain number of seconds; at most 100 years.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let invalid = || {
        format!("{text:?} is not a duration of at most 100 years such as 365d, 12h, 30m or 1d12h")
    };
    if let Ok(seconds) = text.parse::<i64>() {
        return (0..=MAX_DURATION_SECONDS)
            .contains(&seconds)
            .then_some(seconds)
            .ok_or_else(invalid);
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    for character in text.chars() {
        if character.is_ascii_digit() {
            digits.push(character);
            continue;
        }
        let unit = match character {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(invalid()),
        };
        let count: i64 = digits.parse().map_err(|_| invalid())?;
        total = count
            .checked_mul(unit)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(invalid)?;
        digits.clear();
    }
    if !digits.is_empty() || text.is_empty() || total > MAX_DURATION_SECONDS {
        return Err(invalid());
    }
    Ok(total)
}

/// Checks every leaf of a mapping; returns the functions used, for cross-field rules.
pub fn validate(mapping: &Map<String, Value>) -> Result<Vec<DataFunction>, String> {
    fn walk(value: &Value, path: &str, found: &mut Vec<DataFunction>) -> Result<(), String> {
        match value {
            Value::String(text) => {
                found.push(
                    DataFunction::parse(text)
                        .map_err(|error| format!("mapping.{path}: {error}"))?,
                );
                Ok(())
            }
            Value::Object(object) => object
                .iter()
                .try_for_each(|(name, value)| walk(value, &format!("{path}.{name}"), found)),
            _ => Err(format!(
                "mapping.{path}: values must be data functions (strings) or objects of them"
            )),
        }
    }
    let mut found = Vec::new();
    for (name, value) in mapping {
        walk(value, name, &mut found)?;
    }
    Ok(found)
}

/// Evaluates a validated mapping into an object of the same shape.
pub fn evaluate(mapping: &Map<String, Value>, inputs: &Inputs<'_>) -> Map<String, Value> {
    mapping
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Value::String(text) => DataFunction::parse(text)
                    .map(|function| function.evaluate(inputs))
                    .unwrap_or(Value::Null),
                Value::Object(object) => Value::Object(evaluate(object, inputs)),
                other => other.clone(),
            };
            (name.clone(), value)
        })
        .collect()
}

/// Objects merge member by member; scalars, arrays and null replace.
pub fn deep_merge(base: &mut Map<String, Value>, overlay: Map<String, Value>) {
    for (name, value) in overlay {
        match (base.get_mut(&name), value) {
            (Some(Value::Object(existing)), Value::Object(incoming)) => {
                deep_merge(existing, incoming)
            }
            (_, value) => {
                base.insert(name, value);
            }
        }
    }
}

/// The reference tokens of a JSON Pointer (RFC 6901): `/a/b~1c` is `["a", "b/c"]`. The empty
/// pointer (the whole document) is refused: a mapping names a member.
pub fn pointer_tokens(pointer: &str) -> Result<Vec<String>, String> {
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!(
            "{pointer:?} is not a JSON Pointer (it starts with /)"
        ));
    };
    let tokens: Vec<String> = rest
        .split('/')
        .map(|token| token.replace("~1", "/").replace("~0", "~"))
        .collect();
    if tokens.len() > 16 || tokens.iter().any(String::is_empty) {
        return Err(format!("{pointer:?} must name 1-16 non-empty members"));
    }
    Ok(tokens)
}

/// Checks an `idTokenClaimsMapping` (ID token claim pointer -> credentialData pointer): at most
/// 100 entries, every pointer well formed. Returns the credentialData paths, for the reserved-name
/// check.
pub fn validate_claims_mapping(mapping: &Map<String, Value>) -> Result<Vec<Vec<String>>, String> {
    if mapping.len() > 100 {
        return Err("idTokenClaimsMapping may have at most 100 entries".into());
    }
    mapping
        .iter()
        .map(|(claim, target)| {
            pointer_tokens(claim).map_err(|why| format!("idTokenClaimsMapping key {why}"))?;
            let target = target.as_str().ok_or_else(|| {
                format!(
                    "idTokenClaimsMapping[{claim:?}] must be a JSON Pointer into credentialData"
                )
            })?;
            pointer_tokens(target).map_err(|why| format!("idTokenClaimsMapping[{claim:?}]: {why}"))
        })
        .collect()
}

/// Writes each mapped ID token claim into `data` at its pointer, creating objects on the way
/// (and replacing a non-object in the way). A claim the token does not carry is left out.
pub fn apply_claims_mapping(
    mapping: &Map<String, Value>,
    claims: &Map<String, Value>,
    data: &mut Map<String, Value>,
) {
    for (claim, target) in mapping {
        let (Ok(source), Some(Ok(target))) =
            (pointer_tokens(claim), target.as_str().map(pointer_tokens))
        else {
            continue;
        };
        let Some(value) = source
            .iter()
            .try_fold(None::<&Value>, |at, token| {
                let object = match at {
                    None => Some(claims),
                    Some(Value::Object(object)) => Some(object),
                    Some(_) => None,
                }?;
                object.get(token).map(Some)
            })
            .flatten()
        else {
            continue;
        };
        set_at(data, &target, value.clone());
    }
}

/// Puts `value` at `path` (one or more member names) in `data`, creating objects on the way and
/// replacing a non-object in the way.
pub fn set_at(data: &mut Map<String, Value>, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = data;
    for token in parents {
        let entry = at
            .entry(token.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(object) = entry else {
            return;
        };
        at = object;
    }
    at.insert(last.clone(), value);
}

#[cfg(test)]
mod claims_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_are_mapped_by_pointer_into_nested_data() {
        let mapping = json!({
            "/given_name": "/org.iso.18013.5.1/given_name",
            "/address/locality": "/address/city",
            "/a~1b": "/plain",
            "/missing": "/never",
        });
        let claims = json!({"given_name": "Erika", "address": {"locality": "Köln"}, "a/b": 1});
        let mut data = json!({"address": "replaced", "kept": true});
        apply_claims_mapping(
            mapping.as_object().unwrap(),
            claims.as_object().unwrap(),
            data.as_object_mut().unwrap(),
        );
        assert_eq!(
            data,
            json!({"org.iso.18013.5.1": {"given_name": "Erika"}, "address": {"city": "Köln"},
                   "plain": 1, "kept": true})
        );
        assert!(validate_claims_mapping(mapping.as_object().unwrap()).is_ok());
        for bad in [
            json!({"given_name": "/x"}),
            json!({"/x": "y"}),
            json!({"/x": 1}),
            json!({"/x": "/a//b"}),
        ] {
            assert!(
                validate_claims_mapping(bad.as_object().unwrap()).is_err(),
                "{bad}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(object) => object,
            _ => panic!("object"),
        }
    }

    #[test]
    fn functions_parse_and_unknown_ones_are_refused() {
        assert_eq!(DataFunction::parse("<uuid>"), Ok(DataFunction::Uuid));
        assert_eq!(
            DataFunction::parse("<timestamp-in-seconds:365d>"),
            Ok(DataFunction::TimestampInSeconds(365 * 86_400))
        );
        assert_eq!(
            DataFunction::parse("<timestamp-before-seconds:1d12h>"),
            Ok(DataFunction::TimestampBeforeSeconds(129_600))
        );
        for bad in [
            "<nope>",
            "uuid",
            "<uuid:3>",
            "<timestamp-in>",
            "<timestamp-in:soon>",
            "<timestamp-in:5x>",
            "<timestamp-in-seconds:9223372036854775807>",
            "<timestamp-in:999999999999d>",
            "<timestamp-in:-5>",
        ] {
            assert!(DataFunction::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn evaluation_follows_the_clock_and_inputs() {
        let mapping = object(json!({
            "id": "<uuid>", "iat": "<timestamp-seconds>", "exp": "<timestamp-in-seconds:1d>",
            "issued": "<timestamp>", "holder": {"id": "<subjectDid>"}, "by": "<issuerDid>"
        }));
        validate(&mapping).expect("valid");
        let inputs = Inputs {
            now: 1_704_067_200_000,
            issuer_did: Some("did:web:i"),
            subject_did: "did:jwk:x",
        };
        let out = evaluate(&mapping, &inputs);
        assert!(out["id"].as_str().expect("id").starts_with("urn:uuid:"));
        assert_eq!(out["iat"], 1_704_067_200);
        assert_eq!(out["exp"], 1_704_067_200 + 86_400);
        assert_eq!(out["issued"], "2024-01-01T00:00:00Z");
        assert_eq!(out["holder"]["id"], "did:jwk:x");
        assert_eq!(out["by"], "did:web:i");
    }

    #[test]
    fn mapping_leaves_must_be_functions() {
        assert!(validate(&object(json!({"a": 1}))).is_err());
        assert!(
            validate(&object(json!({"a": {"b": "<bogus>"}})))
                .unwrap_err()
                .contains("mapping.a.b")
        );
    }

    #[test]
    fn deep_merge_merges_objects_and_replaces_everything_else() {
        let mut base = object(json!({"a": {"x": 1, "y": [1, 2]}, "b": 1, "c": {"k": 1}}));
        deep_merge(
            &mut base,
            object(json!({"a": {"y": [3], "z": true}, "b": null, "c": 5})),
        );
        assert_eq!(
            Value::Object(base),
            json!({"a": {"x": 1, "y": [3], "z": true}, "b": null, "c": 5})
        );
    }
}
