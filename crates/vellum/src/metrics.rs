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
        out.push_str("# HELP vellum_http_requests_total Requests answered, by route template, method and status.\n");
        out.push_str("# TYPE vellum_http_requests_total counter\n");
        for ((route, method, status), count) in &counts.requests {
            let _ = writeln!(
                out,
                "vellum_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {count}",
                escape(route),
                escape(method)
            );
        }
        out.push_str("# HELP vellum_http_request_duration_seconds Time to answer a request (until its headers), by route template.\n");
        out.push_str("# TYPE vellum_http_request_duration_seconds histogram\n");
        for (route, histogram) in &counts.latency {
            let route = escape(route);
            let mut cumulative = 0;
            for (index, count) in histogram.counts.iter().enumerate() {
                cumulative += count;
                let bound = BUCKETS
                    .get(index)
                    .map_or_else(|| "+Inf".to_owned(), f64::to_string);
                let _ = writeln!(
                    out,
                    "vellum_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "vellum_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                histogram.sum
            );
            let _ = writeln!(
                out,
                "vellum_http_request_duration_seconds_count{{route=\"{route}\"}} {cumulative}"
            );
        }
        out.push_str("# HELP vellum_error_responses_total Error responses, by the code they carry (management API code, OAuth or OID4VCI error) and status.\n");
        out.push_str("# TYPE vellum_error_responses_total counter\n");
        for ((code, status), count) in &counts.errors {
            let _ = writeln!(
                out,
                "vellum_error_responses_total{{code=\"{}\",status=\"{status}\"}} {count}",
                escape(code)
            );
        }
        out.push_str("# HELP vellum_offers_created_total Offers made, by authorization method.\n");
        out.push_str("# TYPE vellum_offers_created_total counter\n");
        for (method, count) in &counts.offers {
            let _ = writeln!(
                out,
                "vellum_offers_created_total{{auth_method=\"{}\"}} {count}",
                escape(method)
            );
        }
        out.push_str("# HELP vellum_token_requests_total Token requests that reached their grant, by grant type and outcome (issued, or the OAuth error).\n");
        out.push_str("# TYPE vellum_token_requests_total counter\n");
        for ((grant, outcome), count) in &counts.tokens {
            let _ = writeln!(
                out,
                "vellum_token_requests_total{{grant=\"{}\",outcome=\"{}\"}} {count}",
                escape(grant),
                escape(outcome)
            );
        }
        out.push_str("# HELP vellum_credential_requests_total Credential and deferred credential requests with a valid access token, by format and outcome (issued, deferred, or the OID4VCI error).\n");
        out.push_str("# TYPE vellum_credential_requests_total counter\n");
        for ((format, outcome), count) in &counts.credential_requests {
            let _ = writeln!(
                out,
                "vellum_credential_requests_total{{format=\"{}\",outcome=\"{}\"}} {count}",
                escape(format),
                escape(outcome)
            );
        }
        out.push_str("# HELP vellum_credentials_issued_total Credentials issued, by format (a batch counts each).\n");
        out.push_str("# TYPE vellum_credentials_issued_total counter\n");
        for (format, count) in &counts.credentials {
            let _ = writeln!(
                out,
                "vellum_credentials_issued_total{{format=\"{}\"}} {count}",
                escape(format)
            );
        }
        out.push_str("# HELP vellum_webhook_attempts_total Webhook attempts recorded by this instance, by outcome (delivered, retrying, failed: retries exhausted, gone: 410).\n");
        out.push_str("# TYPE vellum_webhook_attempts_total counter\n");
        for (outcome, count) in &counts.attempts {
            let _ = writeln!(
                out,
                "vellum_webhook_attempts_total{{outcome=\"{outcome}\"}} {count}"
            );
        }
        out.push_str("# HELP vellum_webhook_deliveries_pending Deliveries not yet made or given up, by webhook URL (every instance's).\n");
        out.push_str("# TYPE vellum_webhook_deliveries_pending gauge\n");
        for queue in backlog {
            let _ = writeln!(
                out,
                "vellum_webhook_deliveries_pending{{url=\"{}\"}} {}",
                escape(&queue.url),
                queue.pending
            );
        }
        out.push_str("# HELP vellum_webhook_oldest_pending_age_seconds Age of the oldest pending delivery, by webhook URL.\n");
        out.push_str("# TYPE vellum_webhook_oldest_pending_age_seconds gauge\n");
        for queue in backlog {
            let _ = writeln!(
                out,
                "vellum_webhook_oldest_pending_age_seconds{{url=\"{}\"}} {}",
                escape(&queue.url),
                queue.oldest_age_seconds
            );
        }
        out.push_str("# HELP vellum_open_event_streams Server-Sent Event streams open now.\n");
        out.push_str("# TYPE vellum_open_event_streams gauge\n");
        let _ = writeln!(
            out,
            "vellum_open_event_streams {}",
            self.open_streams.load(Ordering::Relaxed)
        );
        out
    }
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
