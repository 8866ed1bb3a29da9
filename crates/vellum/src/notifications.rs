//! Notifications: the webhook settings of profiles and offers, the rules their targets must
//! meet (SSRF defence), Standard Webhooks signatures, and the dispatcher that delivers the
//! event log's outbox at least once.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use url::{Host, Url};

use crate::config::NotificationsConfig;
use crate::events;
use crate::limits;
use crate::secrets::{WebhookSecret, webhook_signing_key};
use crate::store::WebhookTarget;

pub mod dispatcher;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Notifications {
    pub webhook: Webhook,
}

/// `{"url", "bearerToken"}` as the contract has it, plus an optional Standard Webhooks signing
/// `secret` and the `events` wanted (default: all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Webhook {
    pub url: WebhookUrl,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "limits::not_null"
    )]
    pub bearer_token: Option<BearerToken>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "limits::not_null"
    )]
    pub secret: Option<WebhookSecret>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "limits::not_null"
    )]
    pub events: Option<Vec<EventType>>,
}

impl Webhook {
    /// What the dispatcher uses; the global signing secret applies when the webhook has none.
    pub fn target(&self, default_secret: Option<&WebhookSecret>) -> WebhookTarget {
        WebhookTarget {
            url: self.url.as_str().to_owned(),
            bearer_token: self.bearer_token.as_ref().map(|token| token.0.clone()),
            secret: self
                .secret
                .as_ref()
                .or(default_secret)
                .map(|secret| secret.as_str().to_owned()),
            events: self
                .events
                .as_ref()
                .map(|types| types.iter().map(|t| t.0.clone()).collect()),
        }
    }
}

/// An absolute http(s) URL with a host and no credentials in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("webhook url {text:?} {why}");
        if text.len() > 2048 {
            return Err(invalid("is longer than 2048 characters"));
        }
        let url = Url::parse(text).map_err(|error| invalid(&format!("is not a URL ({error})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("must use http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("must not carry credentials; use bearerToken"));
        }
        Ok(WebhookUrl(url.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for WebhookUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        WebhookUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// What a webhook sends as `Authorization: Bearer`: 1-4096 visible ASCII characters, so that
/// it is a valid header value (and storable anywhere) before it is accepted, not at delivery.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct BearerToken(String);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

impl<'de> Deserialize<'de> for BearerToken {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if (1..=4096).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(BearerToken(text))
        } else {
            Err(serde::de::Error::custom(
                "a bearer token is 1-4096 visible ASCII characters (no spaces)",
            ))
        }
    }
}

/// A known event type (see docs/EVENTS.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EventType(String);

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if events::ALL.contains(&text.as_str()) {
            Ok(EventType(text))
        } else {
            Err(serde::de::Error::custom(format!(
                "unknown event type {text:?}; known: {}",
                events::ALL.join(", ")
            )))
        }
    }
}

/// The Standard Webhooks signature header value for one attempt.
pub fn signature(secret: &str, message_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = webhook_signing_key(secret).ok()?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).ok()?;
    mac.update(message_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Which addresses webhook targets may reach: public ones, plus an operator's allowlist.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allow: Vec<IpNet>,
}

impl AddressPolicy {
    /// Public addresses, plus the networks `notifications.allow_private_targets` lists.
    pub fn new(allow: &[IpNet]) -> Self {
        AddressPolicy {
            allow: allow.to_vec(),
        }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(&ip)) || is_public(ip)
    }

    /// The URL's host, when it is an IP literal that the policy refuses.
    pub fn refused_literal(&self, url: &Url) -> Option<IpAddr> {
        let ip = match url.host()? {
            Host::Ipv4(ip) => IpAddr::V4(ip),
            Host::Ipv6(ip) => IpAddr::V6(ip),
            Host::Domain(_) => return None,
        };
        (!self.permits(ip)).then_some(ip)
    }
}

/// Globally routable unicast: not loopback, private, link-local, CGNAT, unique-local,
/// multicast, documentation, benchmarking, reserved, or an IPv6 form that embeds IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
                || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
                || (a == 198 && (18..20).contains(&b)) // benchmarking 198.18.0.0/15
                || a >= 240) // reserved
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (segments[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (segments[0] & 0xffc0) == 0xfe80 // link local fe80::/10
                || v6.to_ipv4_mapped().is_some() // ::ffff:0:0/96
                || segments[..6].iter().all(|s| *s == 0) // IPv4-compatible ::/96
                || (segments[0] == 0x64 && segments[1] == 0xff9b) // NAT64 64:ff9b::/96
                || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
                || segments[0] == 0x2002 // 6to4 embeds IPv4
                || (segments[0] == 0x2001 && segments[1] == 0)) // Teredo embeds IPv4
        }
    }
}

/// Checks a webhook target when a profile or offer is created: the URL must resolve, and to at
/// least one address the policy permits. (Delivery checks again at connect time.)
pub async fn check_target(config: &NotificationsConfig, url: &WebhookUrl) -> Result<(), String> {
    let policy = AddressPolicy::new(&config.allow_private_targets);
    let parsed = Url::parse(url.as_str()).map_err(|error| error.to_string())?;
    if let Some(ip) = policy.refused_literal(&parsed) {
        return Err(format!(
            "webhook url {} points to {ip}, a non-public address (see notifications.allow_private_targets)",
            url.as_str()
        ));
    }
    let Some(Host::Domain(host)) = parsed.host() else {
        return Ok(());
    };
    let port = parsed.port_or_known_default().unwrap_or(443);
    let lookup = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::lookup_host((host.to_owned(), port)),
    )
    .await;
    let addresses: Vec<IpAddr> = match lookup {
        Ok(Ok(addresses)) => addresses.map(|address| address.ip()).collect(),
        _ => {
            return Err(format!(
                "webhook url {}: the host does not resolve",
                url.as_str()
            ));
        }
    };
    if addresses.iter().any(|ip| policy.permits(*ip)) {
        Ok(())
    } else {
        Err(format!(
            "webhook url {} resolves only to non-public addresses (see notifications.allow_private_targets)",
            url.as_str()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_must_be_absolute_http_without_credentials() {
        assert!(WebhookUrl::parse("https://example.com/hook").is_ok());
        for bad in [
            "ftp://example.com",
            "not a url",
            "/relative",
            "https://user:pw@example.com/",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::a00:1",
            "ff02::1",
        ] {
            assert!(!is_public(refused.parse().expect("ip")), "{refused}");
        }
        for allowed in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(allowed.parse().expect("ip")), "{allowed}");
        }
    }

    #[test]
    fn the_allowlist_opens_exactly_what_it_lists() {
        let policy = AddressPolicy::new(&["127.0.0.1/32".parse().expect("network")]);
        assert!(policy.permits("127.0.0.1".parse().expect("ip")));
        assert!(!policy.permits("127.0.0.2".parse().expect("ip")));
        assert!(!policy.permits("::ffff:127.0.0.1".parse().expect("ip")));
    }

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The Standard Webhooks specification's example: secret, id, timestamp, payload.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }
}
