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
    pub bearer_token: Option<String>,
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
            bearer_token: self.bearer_token.clone(),
            secret: self
                .secret
                .as_ref()
                .or(default_secret)
                .map(|secret| secret.0.clone()),
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

/// `whsec_` + base64 of 24-64 random bytes (Standard Webhooks).
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct WebhookSecret(String);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

impl WebhookSecret {
    pub fn parse(text: &str) -> Result<Self, String> {
        let key = signing_key(text)?;
        if !(24..=64).contains(&key.len()) {
            return Err("a webhook secret must hold 24 to 64 bytes".into());
        }
        Ok(WebhookSecret(text.to_owned()))
    }
}

impl<'de> Deserialize<'de> for WebhookSecret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        WebhookSecret::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn signing_key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .strip_prefix("whsec_")
        .ok_or("a webhook secret starts with whsec_")?;
    STANDARD
        .decode(encoded)
        .map_err(|_| "a webhook secret is whsec_ followed by base64".to_owned())
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
    let key = signing_key(secret).ok()?;
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
    pub fn new(allow: &[String]) -> Result<Self, String> {
        let allow = allow
            .iter()
            .map(|net| {
                net.parse::<IpNet>()
                    .or_else(|_| net.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("allow_private_targets: {net:?} is not an address or CIDR")
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(AddressPolicy { allow })
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
pub async fn check_target(policy: &AddressPolicy, url: &WebhookUrl) -> Result<(), String> {
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

/// `notifications.*` settings, parsed.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub retry_schedule: Vec<Duration>,
    pub retry_jitter: f64,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// How long a claimed delivery belongs to the instance that claimed it.
    pub lease: Duration,
    pub max_response_bytes: usize,
    pub max_in_flight: usize,
    pub max_in_flight_per_url: usize,
    pub poll_interval: Duration,
    pub signing_secret: Option<WebhookSecret>,
    pub policy: AddressPolicy,
}

/// `250ms`, `5s`, `5m`, `2h`, `1d`.
pub fn parse_delay(text: &str) -> Result<Duration, String> {
    let invalid = || format!("{text:?} is not a delay such as 250ms, 5s, 5m, 2h or 1d");
    let (number, unit_ms) = if let Some(number) = text.strip_suffix("ms") {
        (number, 1)
    } else if let Some(number) = text.strip_suffix('s') {
        (number, 1000)
    } else if let Some(number) = text.strip_suffix('m') {
        (number, 60_000)
    } else if let Some(number) = text.strip_suffix('h') {
        (number, 3_600_000)
    } else if let Some(number) = text.strip_suffix('d') {
        (number, 86_400_000)
    } else {
        return Err(invalid());
    };
    let number: u64 = number.parse().map_err(|_| invalid())?;
    number
        .checked_mul(unit_ms)
        .filter(|ms| *ms <= 7 * 86_400_000)
        .map(Duration::from_millis)
        .ok_or_else(invalid)
}

impl DeliverySettings {
    /// Parses the settings; errors name the key below `notifications.`.
    pub fn from_config(config: &NotificationsConfig) -> Result<Self, String> {
        let retry_schedule = config
            .retry_schedule
            .iter()
            .map(|delay| parse_delay(delay))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| format!("retry_schedule: {why}"))?;
        if !(0.0..=1.0).contains(&config.retry_jitter) {
            return Err("retry_jitter: must be between 0 and 1".into());
        }
        let delay = |key: &str, text: &str| {
            parse_delay(text)
                .and_then(|delay| {
                    (!delay.is_zero())
                        .then_some(delay)
                        .ok_or_else(|| "must be positive".into())
                })
                .map_err(|why| format!("{key}: {why}"))
        };
        if config.max_in_flight == 0 || config.max_in_flight_per_url == 0 {
            return Err("max_in_flight: must be at least 1".into());
        }
        if config.max_response_bytes == 0 {
            return Err("max_response_bytes: must be at least 1".into());
        }
        let timeout = delay("timeout", &config.timeout)?;
        let lease = delay("lease", &config.lease)?;
        if lease <= timeout {
            return Err(
                "lease: must be longer than timeout (an attempt must end inside it)".into(),
            );
        }
        Ok(DeliverySettings {
            retry_schedule,
            retry_jitter: config.retry_jitter,
            connect_timeout: delay("connect_timeout", &config.connect_timeout)?,
            timeout,
            lease,
            max_response_bytes: config.max_response_bytes,
            max_in_flight: config.max_in_flight,
            max_in_flight_per_url: config.max_in_flight_per_url,
            poll_interval: delay("poll_interval", &config.poll_interval)?,
            signing_secret: if config.signing_secret.is_empty() {
                None
            } else {
                Some(
                    WebhookSecret::parse(&config.signing_secret)
                        .map_err(|why| format!("signing_secret: {why}"))?,
                )
            },
            policy: AddressPolicy::new(&config.allow_private_targets)?,
        })
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
        let policy = AddressPolicy::new(&["127.0.0.1/32".into()]).expect("policy");
        assert!(policy.permits("127.0.0.1".parse().expect("ip")));
        assert!(!policy.permits("127.0.0.2".parse().expect("ip")));
        assert!(!policy.permits("::ffff:127.0.0.1".parse().expect("ip")));
        assert!(AddressPolicy::new(&["nope".into()]).is_err());
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

    #[test]
    fn delays_parse_with_units() {
        assert_eq!(parse_delay("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_delay("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_delay("5").is_err());
        assert!(parse_delay("30d").is_err());
    }
}
