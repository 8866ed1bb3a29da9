//! This instance's counters, in the Prometheus text exposition format (version 0.0.4): requests
//! by route template, method and status, their latency as histograms by route template, error
//! responses by their `code`/`error`, the steps of issuance (offers, token requests, credential
//! requests and credentials by format and outcome), webhook attempts by outcome, and the event
//! streams open now. Kept in memory per instance, as Prometheus expects (it sums instances
//! itself); counted by the HTTP layer, the features and the webhook dispatcher. The delivery backlog, shared by every instance, is
//! read from the store at each scrape and given to [`Metrics::render`].

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// One answered request: the route template (`/credential`, `/api/v1/sessions/{sessionId}`, or
/// `unmatched`), the method, the status and the error code when it was an error.
pub struct Answered<'a> {
    pub route: &'a str,
    pub method: &'a str,
    pub status: u16,
    pub error: Option<&'static str>,
    pub took: Duration,
}

#[derive(Default)]
struct Histogram {
    /// Per bucket (not cumulative); the last is +Inf.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
}

#[derive(Default)]
struct Counts {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    errors: BTreeMap<(&'static str, u16), u64>,
    attempts: BTreeMap<&'static str, u64>,
    offers: BTreeMap<String, u64>,
    tokens: BTreeMap<(String, String), u64>,
    credential_requests: BTreeMap<(String, String), u64>,
    credentials: BTreeMap<String, u64>,
}

/// One step of issuance, as it is counted.
pub enum Step<'a> {
    /// An offer was made, by authorization method.
    Offer { auth_method: &'a str },
    /// A token request reached its grant: by grant type and outcome (`issued`, or the error
    /// the wallet got).
    Token { grant: &'a str, outcome: &'a str },
    /// A credential request with an access token was answered: by format and outcome
    /// (`issued` with how many credentials, `deferred`, or the error the wallet got).
    Credential {
        format: &'a str,
        outcome: &'a str,
        credentials: u64,
    },
}

/// The pending deliveries to one webhook URL (shown without its query or user info).
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Queue {
    pub url: String,
    pub pending: i64,
    pub oldest_age_seconds: f64,
}

#[derive(Default)]
pub struct Metrics {
    counts: Mutex<Counts>,
    open_streams: AtomicI64,
}

/// Holds one open event stream in the gauge until dropped.
pub struct OpenStream(Arc<Metrics>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn record(&self, answered: &Answered<'_>) {
        let seconds = answered.took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts
            .requests
            .entry((
                answered.route.to_owned(),
                answered.method.to_owned(),
                answered.status,
            ))
            .or_default() += 1;
        let histogram = counts.latency.entry(answered.route.to_owned()).or_default();
        histogram.counts[bucket] += 1;
        histogram.sum += seconds;
        if let Some(code) = answered.error {
            *counts.errors.entry((code, answered.status)).or_default() += 1;
        }
    }

    /// Counts a webhook attempt whose outcome was recorded: `delivered`, `retrying`, `failed`
    /// (the schedule ran out) or `gone` (410).
    pub fn webhook_attempt(&self, outcome: &'static str) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.attempts.entry(outcome).or_default() += 1;
    }

    pub fn step(&self, step: Step<'_>) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match step {
            Step::Offer { auth_method } => {
                *counts.offers.entry(auth_method.to_owned()).or_default() += 1;
            }
            Step::Token { grant, outcome } => {
                *counts
                    .tokens
                    .entry((grant.to_owned(), outcome.to_owned()))
                    .or_default() += 1;
            }
            Step::Credential {
                format,
                outcome,
                credentials,
            } => {
                *counts
                    .credential_requests
                    .entry((format.to_owned(), outcome.to_owned()))
                    .or_default() += 1;
                if credentials > 0 {
                    *counts.credentials.entry(format.to_owned()).or_default() += credentials;
                }
            }
        }
    }

    /// Counts an event stream as open until the guard is dropped.
    pub fn stream_opened(self: &Arc<Self>) -> OpenStream {
        self.open_streams.fetch_add(1, Ordering::Relaxed);
        OpenStream(self.clone())
    }

    /// Everything, with the delivery `backlog`, in the text exposition format.
    pub fn render(&self, backlog: &[Queue]) -> String {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        family(
            &mut out,
            "vellum_http_requests_total",
            "counter",
            "Requests answered, by route template, method and status.",
            counts
                .requests
                .iter()
                .map(|((route, method, status), count)| {
                    (
                        labels(&[
                            ("route", route),
                            ("method", method),
                            ("status", &status.to_string()),
                        ]),
                        count.to_string(),
                    )
                }),
        );
        let mut latency = Vec::new();
        for (route, histogram) in &counts.latency {
            let mut cumulative = 0;
            for (index, count) in histogram.counts.iter().enumerate() {
                cumulative += count;
                let bound = BUCKETS
                    .get(index)
                    .map_or_else(|| "+Inf".to_owned(), f64::to_string);
                latency.push((
                    "_bucket",
                    labels(&[("route", route), ("le", &bound)]),
                    cumulative.to_string(),
                ));
            }
            let route = labels(&[("route", route)]);
            latency.push(("_sum", route.clone(), histogram.sum.to_string()));
            latency.push(("_count", route, cumulative.to_string()));
        }
        let name = "vellum_http_request_duration_seconds";
        header(
            &mut out,
            name,
            "histogram",
            "Time to answer a request (until its headers), by route template.",
        );
        for (suffix, labels, value) in latency {
            let _ = writeln!(out, "{name}{suffix}{{{labels}}} {value}");
        }
        family(
            &mut out,
            "vellum_error_responses_total",
            "counter",
            "Error responses, by the code they carry (management API code, OAuth or OID4VCI error) and status.",
            counts.errors.iter().map(|((code, status), count)| {
                (
                    labels(&[("code", code), ("status", &status.to_string())]),
                    count.to_string(),
                )
            }),
        );
        family(
            &mut out,
            "vellum_offers_created_total",
            "counter",
            "Offers made, by authorization method.",
            counts
                .offers
                .iter()
                .map(|(method, count)| (labels(&[("auth_method", method)]), count.to_string())),
        );
        family(
            &mut out,
            "vellum_token_requests_total",
            "counter",
            "Token requests that reached their grant, by grant type and outcome (issued, or the OAuth error).",
            counts.tokens.iter().map(|((grant, outcome), count)| {
                (
                    labels(&[("grant", grant), ("outcome", outcome)]),
                    count.to_string(),
                )
            }),
        );
        family(
            &mut out,
            "vellum_credential_requests_total",
            "counter",
            "Credential and deferred credential requests with a valid access token, by format and outcome (issued, deferred, or the OID4VCI error).",
            counts
                .credential_requests
                .iter()
                .map(|((format, outcome), count)| {
                    (
                        labels(&[("format", format), ("outcome", outcome)]),
                        count.to_string(),
                    )
                }),
        );
        family(
            &mut out,
            "vellum_credentials_issued_total",
            "counter",
            "Credentials issued, by format (a batch counts each).",
            counts
                .credentials
                .iter()
                .map(|(format, count)| (labels(&[("format", format)]), count.to_string())),
        );
        family(
            &mut out,
            "vellum_webhook_attempts_total",
            "counter",
            "Webhook attempts recorded by this instance, by outcome (delivered, retrying, failed: retries exhausted, gone: 410).",
            counts
                .attempts
                .iter()
                .map(|(outcome, count)| (labels(&[("outcome", outcome)]), count.to_string())),
        );
        family(
            &mut out,
            "vellum_webhook_deliveries_pending",
            "gauge",
            "Deliveries not yet made or given up, by webhook URL (every instance's).",
            backlog
                .iter()
                .map(|queue| (labels(&[("url", &queue.url)]), queue.pending.to_string())),
        );
        family(
            &mut out,
            "vellum_webhook_oldest_pending_age_seconds",
            "gauge",
            "Age of the oldest pending delivery, by webhook URL.",
            backlog.iter().map(|queue| {
                (
                    labels(&[("url", &queue.url)]),
                    queue.oldest_age_seconds.to_string(),
                )
            }),
        );
        header(
            &mut out,
            "vellum_open_event_streams",
            "gauge",
            "Server-Sent Event streams open now.",
        );
        let _ = writeln!(
            out,
            "vellum_open_event_streams {}",
            self.open_streams.load(Ordering::Relaxed)
        );
        out
    }
}

/// A metric family's `# HELP` and `# TYPE` lines.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A family and its samples, each given as its label text and value.
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl Iterator<Item = (String, String)>,
) {
    header(out, name, kind, help);
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// `name="value",...`, each value escaped.
fn labels(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// A label value as the format wants it: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_labels_escaped() {
        let metrics = Arc::new(Metrics::default());
        for millis in [0, 3, 3, 2_000, 60_000] {
            metrics.record(&Answered {
                route: "/a\"b",
                method: "GET",
                status: 200,
                error: None,
                took: Duration::from_millis(millis),
            });
        }
        let text = metrics.render(&[]);
        assert!(
            text.contains(
                "vellum_http_requests_total{route=\"/a\\\"b\",method=\"GET\",status=\"200\"} 5"
            ),
            "{text}"
        );
        assert!(text.contains("le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("le=\"0.005\"} 3\n"), "{text}");
        assert!(text.contains("le=\"2.5\"} 4\n"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 5\n"), "{text}");
        let guard = metrics.stream_opened();
        assert!(
            metrics
                .render(&[])
                .contains("vellum_open_event_streams 1\n")
        );
        drop(guard);
        assert!(
            metrics
                .render(&[])
                .contains("vellum_open_event_streams 0\n")
        );
    }
}
