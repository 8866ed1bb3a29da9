//! Identifiers, parsed at the edge: once one exists it is well-formed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Operator-chosen identifiers (profiles, keys): 1-64 of `A-Z a-z 0-9 . _ -`, not starting with
/// a dot, so they are safe in URLs, logs and file names alike.
fn is_slug(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && !text.starts_with('.')
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

macro_rules! slug_id {
    ($name:ident, $what:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(text: &str) -> Result<Self, String> {
                if is_slug(text) {
                    Ok($name(text.to_owned()))
                } else {
                    Err(format!(
                        "{} must be 1-64 characters of A-Z a-z 0-9 . _ - (got {:?})",
                        $what, text
                    ))
                }
            }

            pub fn generate() -> Self {
                $name(uuid::Uuid::new_v4().to_string())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $name::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

slug_id!(ProfileId, "a profile id");
slug_id!(KeyId, "a key id");
slug_id!(ProviderId, "a provider id");

/// An issuance session, created by an offer: the offer id, the session id and the `id` of its
/// events are the same value. Random (UUID v4), never chosen by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(uuid::Uuid);

impl SessionId {
    pub fn generate() -> Self {
        SessionId(uuid::Uuid::new_v4())
    }

    pub fn parse(text: &str) -> Option<Self> {
        uuid::Uuid::parse_str(text).ok().map(SessionId)
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_accept_safe_names_and_refuse_the_rest() {
        assert!(ProfileId::parse("demo-identity_v1.2").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(ProfileId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
