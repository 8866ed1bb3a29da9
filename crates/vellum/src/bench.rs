//! `vellum bench <what>`: load programs that print numbers (never timed tests). Each runs
//! against a running server, on the same machine or another.

use clap::Subcommand;

pub mod flows;
pub mod formats;
pub mod sse;
pub mod webhooks;

#[derive(Debug, Clone, Subcommand)]
pub enum Bench {
    /// Complete issuance flows: create offer -> resolve -> token -> nonce -> credential.
    Flows(flows::FlowOptions),
    /// Building and signing one credential of each format, in-process (no server).
    Formats(formats::FormatOptions),
    /// Webhook delivery: delivered events/s, and commit-to-receipt latency at a fixed rate.
    Webhooks(webhooks::WebhookOptions),
    /// Event-stream fan-out: many subscribers to the issuer-wide stream, offers at a fixed
    /// rate; deliveries/s, fan-out latency, and that every subscriber got every event.
    Sse(sse::SseOptions),
}

pub async fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Flows(options) => flows::run(options).await,
        Bench::Formats(options) => formats::run(options).await,
        Bench::Webhooks(options) => webhooks::run(options).await,
        Bench::Sse(options) => sse::run(options).await,
    }
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
