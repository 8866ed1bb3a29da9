//! Limits on the JSON that enters: checked where a body or a configured document is read, at
//! every depth, so that whatever was accepted can be stored, read back and issued. (Stored
//! documents wrap what was sent a few levels deeper, and every JSON reader has a recursion
//! limit; serde_json's is 128.)

use serde::Deserialize;
use serde_json::{Map, Number, Value};

/// Deepest nesting of objects and arrays accepted anywhere, counting the outermost value.
pub const MAX_DEPTH: usize = 32;

/// Longest `event_description` a wallet's notification may carry into an event.
pub const MAX_EVENT_DESCRIPTION: usize = 1000;

/// A reason an operator gives (a status change, a failed deferred issuance), kept for the
/// records and put in events: 1-200 characters, none of them control characters.
pub fn check_reason(reason: &str) -> Result<(), String> {
    if reason.is_empty() || reason.chars().count() > 200 || reason.chars().any(char::is_control) {
        return Err("reason must be 1-200 characters without control characters".into());
    }
    Ok(())
}

/// Why a value was refused, and where: `path` is the dotted member path (`credentialData.a.b`,
/// `x5Chain[2]`), empty for the whole document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{why}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct LimitError {
    pub path: String,
    pub why: String,
}

/// Checks `value` (found at `path`) against the limits.
pub fn check(path: &str, value: &Value) -> Result<(), LimitError> {
    walk(path, value, 1)
}

/// [`check`] for an object's members, each under `path`.
pub fn check_members(path: &str, members: &Map<String, Value>) -> Result<(), LimitError> {
    members
        .iter()
        .try_for_each(|(name, member)| walk(&join(path, name), member, 2))
}

fn walk(path: &str, value: &Value, depth: usize) -> Result<(), LimitError> {
    let nested = matches!(value, Value::Object(_) | Value::Array(_));
    if nested && depth > MAX_DEPTH {
        return Err(LimitError {
            path: path.to_owned(),
            why: format!("nests deeper than {MAX_DEPTH} levels"),
        });
    }
    match value {
        Value::Object(members) => members
            .iter()
            .try_for_each(|(name, member)| walk(&join(path, name), member, depth + 1)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(index, item)| walk(&format!("{path}[{index}]"), item, depth + 1)),
        _ => Ok(()),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// Numbers written with a fraction of zero (`1252.0`) become integers: JSON Schema, and so the
/// OpenAPI description, counts them as integers, and typed fields then accept them.
pub fn normalize_integers(value: &mut Value) {
    match value {
        Value::Number(number) => {
            if let Some(float) = number.as_f64().filter(|_| number.is_f64())
                && float.fract() == 0.0
            {
                let integer = if float >= 0.0 && float <= u64::MAX as f64 {
                    Some(Number::from(float as u64))
                } else if float < 0.0 && float >= i64::MIN as f64 {
                    Some(Number::from(float as i64))
                } else {
                    None
                };
                if let Some(integer) = integer {
                    *number = integer;
                }
            }
        }
        Value::Object(members) => members.values_mut().for_each(normalize_integers),
        Value::Array(items) => items.iter_mut().for_each(normalize_integers),
        _ => {}
    }
}

/// `value` as a `T`; on failure, why, after the path of the member at fault (`txCode.length:
/// invalid type: ...`) unless it is the whole document.
pub fn deserialize<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        if path == "." {
            error.inner().to_string()
        } else {
            format!("{path}: {}", error.inner())
        }
    })
}

/// For an optional member (`#[serde(default, deserialize_with = "limits::not_null")]`): left
/// out, it is `None`; given, it must be a value. `null` is refused rather than read as left
/// out, as the OpenAPI description says (no optional member is nullable), and as members with
/// a default value (`credentialData`, `decoys`) refuse it too.
pub fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    match Option::<T>::deserialize(deserializer)? {
        Some(value) => Ok(Some(value)),
        None => Err(serde::de::Error::custom(NULL_REFUSED)),
    }
}

pub(crate) const NULL_REFUSED: &str = "null is refused: leave the member out instead";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> Value {
        (1..depth).fold(json!({}), |inner, _| json!({ "a": inner }))
    }

    #[test]
    fn depth_is_counted_from_the_outermost_value_and_the_path_is_named() {
        check("", &nested(MAX_DEPTH)).expect("at the limit");
        let error = check("", &nested(MAX_DEPTH + 1)).expect_err("too deep");
        assert_eq!(error.path, vec!["a"; MAX_DEPTH].join("."));
        check("x5Chain", &json!([[[1]]])).expect("shallow");
        let deep_array = (1..=MAX_DEPTH).fold(json!(1), |inner, _| json!([inner]));
        let error = check("list", &json!({ "k": deep_array })).expect_err("too deep");
        assert!(error.path.starts_with("list.k[0]"), "{}", error.path);
        assert!(
            error.to_string().contains("nests deeper than 32"),
            "{error}"
        );
    }

    #[test]
    fn members_count_one_level_below_their_object() {
        let Value::Object(members) = nested(MAX_DEPTH) else {
            panic!("object")
        };
        check_members("credentialData", &members).expect("the object itself is level 1");
        let Value::Object(members) = nested(MAX_DEPTH + 1) else {
            panic!("object")
        };
        let error = check_members("credentialData", &members).expect_err("too deep");
        assert!(error.path.starts_with("credentialData.a"), "{}", error.path);
    }

    #[test]
    fn integral_floats_become_integers_and_the_rest_stay() {
        let mut value = json!({"a": 1252.0, "b": [-3.0, 2.5], "c": 1e300, "d": "1.0", "e": 7});
        normalize_integers(&mut value);
        assert_eq!(
            value,
            json!({"a": 1252, "b": [-3, 2.5], "c": 1e300, "d": "1.0", "e": 7})
        );
        assert!(value["a"].is_u64() && value["b"][0].is_i64());
    }

    #[derive(Debug, serde::Deserialize)]
    struct Optional {
        #[serde(default, deserialize_with = "not_null")]
        member: Option<Value>,
    }

    #[test]
    fn an_optional_member_may_be_left_out_but_not_given_as_null() {
        let parse = |body: Value| serde_json::from_value::<Optional>(body);
        assert_eq!(parse(json!({})).expect("left out").member, None);
        assert_eq!(
            parse(json!({"member": {}})).expect("given").member,
            Some(json!({}))
        );
        let error = parse(json!({"member": null})).expect_err("null");
        assert!(error.to_string().contains(NULL_REFUSED), "{error}");
    }
}
