//! `vellum bench <what>`: load programs that print numbers (never timed tests). Each runs
//! against a running server, on the same machine or another; `seed` fills a store for them.

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::bail;
use clap::Subcommand;

pub mod code_flow;
pub mod flows;
pub mod formats;
pub mod seed;
pub mod sse;
pub mod status;
pub mod webhooks;

#[derive(Debug, Clone, Subcommand)]
pub enum Bench {
    /// Complete issuance flows: create offer -> resolve -> token -> nonce -> credential.
    Flows(flows::FlowsCommand),
    /// Complete authorization code flows to HAIP: AUTHORIZED offer -> resolve -> PAR (wallet
    /// attestation, DPoP, PKCE) -> authorize -> login -> callback -> token -> nonce -> credential.
    CodeFlow(Box<code_flow::CodeFlowOptions>),
    /// Building and signing one credential of each format, in-process (no server).
    Formats(formats::FormatOptions),
    /// Webhook delivery: delivered events/s, and commit-to-receipt latency at a fixed rate.
    Webhooks(webhooks::WebhookOptions),
    /// Event-stream fan-out: many subscribers to the issuer-wide stream, offers at a fixed
    /// rate; deliveries/s, fan-out latency, and that every subscriber got every event.
    Sse(sse::SseOptions),
    /// Credential status at scale: credentials issued with a status list entry, all revoked,
    /// the list read many times; and the size of lists of 1,000,000 entries.
    Status(status::StatusOptions),
    /// Fills a store for the growth benchmarks: copies of one finished session with its
    /// grants, tokens, credentials and events, straight through the store.
    Seed(seed::SeedOptions),
}

pub async fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Flows(command) => flows::run_batch(command.flows, command.batch).await,
        Bench::CodeFlow(options) => code_flow::run(*options).await,
        Bench::Formats(options) => formats::run(options).await,
        Bench::Webhooks(options) => webhooks::run(options).await,
        Bench::Sse(options) => sse::run(options).await,
        Bench::Status(options) => status::run(options).await,
        Bench::Seed(options) => seed::run(options).await,
    }
}

/// Makes (or versions) profile `id` as a copy of profile `base` with `changes` merged over it:
/// what a bench issues from.
pub async fn derived_profile(
    client: &reqwest::Client,
    url: &str,
    api_key: &str,
    base: &str,
    id: &str,
    changes: serde_json::Value,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let response = client
        .get(format!("{url}/api/v1/profiles/{base}"))
        .bearer_auth(api_key)
        .send()
        .await?;
    let mut profile = flows::expect_ok(response, "read the base profile").await?;
    let definition = profile.as_object_mut().context("a profile is an object")?;
    for view_only in ["profileId", "version", "active", "createdAt", "updatedAt"] {
        definition.remove(view_only);
    }
    if let serde_json::Value::Object(changes) = changes {
        definition.extend(changes);
    }
    let response = client
        .put(format!("{url}/api/v1/profiles/{id}"))
        .bearer_auth(api_key)
        .json(&definition)
        .send()
        .await?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        definition.insert("id".into(), serde_json::Value::from(id));
        let response = client
            .post(format!("{url}/api/v1/profiles"))
            .bearer_auth(api_key)
            .json(&definition)
            .send()
            .await?;
        flows::expect_ok(response, "create the bench profile").await?;
    } else {
        flows::expect_ok(response, "update the bench profile").await?;
    }
    Ok(())
}

/// Value at `fraction` (0..=1) of sorted samples, nearest-rank.
pub fn percentile(sorted: &[std::time::Duration], fraction: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * fraction).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn millis(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The running instances a bench spreads its requests over: each `--url`, in the order given.
/// Instances on one database behind one public URL serve any request, so which one answers
/// is the bench's choice.
pub struct Instances {
    urls: Vec<String>,
    turn: AtomicUsize,
}

impl Instances {
    pub fn new(urls: &[String]) -> anyhow::Result<Self> {
        if urls.is_empty() {
            bail!("give at least one --url");
        }
        Ok(Instances {
            urls: urls
                .iter()
                .map(|url| url.trim_end_matches('/').to_owned())
                .collect(),
            turn: AtomicUsize::new(0),
        })
    }

    /// The first instance's base URL, for requests that any instance answers alike.
    pub fn first(&self) -> &str {
        &self.urls[0]
    }

    /// Successive instances for successive steps of one piece of work, starting one further
    /// along than the previous rotation did: with several instances no two consecutive steps
    /// go to the same one, and the work as a whole spreads evenly.
    pub fn rotation(&self) -> Rotation<'_> {
        Rotation {
            urls: &self.urls,
            at: self.turn.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The next instance in turn, for requests spread one by one (round robin).
    pub fn next_url(&self) -> &str {
        self.rotation().next_url()
    }

    /// " over N instances" when there are several, for a report's first line; nothing for
    /// one, so that the single-instance output stays as it was.
    pub fn label(&self) -> String {
        match self.urls.len() {
            1 => String::new(),
            count => format!(" over {count} instances"),
        }
    }
}

/// See [`Instances::rotation`].
pub struct Rotation<'a> {
    urls: &'a [String],
    at: usize,
}

impl<'a> Rotation<'a> {
    /// The base URL of the instance for the next step.
    pub fn next_url(&mut self) -> &'a str {
        let url = &self.urls[self.at % self.urls.len()];
        self.at = self.at.wrapping_add(1);
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instances(urls: &[&str]) -> Instances {
        let urls: Vec<String> = urls.iter().map(|url| (*url).to_owned()).collect();
        Instances::new(&urls).expect("instances")
    }

    #[test]
    fn a_rotation_visits_the_instances_in_turn_and_the_next_one_starts_further_along() {
        let instances = instances(&["http://a/", "http://b", "http://c"]);
        let mut first = instances.rotation();
        let steps: Vec<&str> = (0..5).map(|_| first.next_url()).collect();
        assert_eq!(
            steps,
            ["http://a", "http://b", "http://c", "http://a", "http://b"]
        );
        assert_eq!(instances.rotation().next_url(), "http://b");
        assert_eq!(instances.next_url(), "http://c");
        assert_eq!(instances.next_url(), "http://a");
    }

    #[test]
    fn one_instance_answers_everything_and_is_not_labelled() {
        let instances = instances(&["http://a"]);
        let mut rotation = instances.rotation();
        assert_eq!(
            (rotation.next_url(), rotation.next_url()),
            ("http://a", "http://a")
        );
        assert_eq!(instances.label(), "");
        assert!(Instances::new(&[]).is_err());
    }
}
