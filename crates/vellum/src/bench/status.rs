//! `vellum bench status`: credential status at scale, against a running issuer. Issues N
//! credentials from a profile with `credentialStatus: "STATUS_LIST"` (complete pre-authorized
//! flows, as `bench flows` runs them), revokes every one through the management API, then reads
//! their status list many times (unchanged: served without a new signature). Prints issuance,
//! revocation and read rates and the list's size; and, computed here, the compressed size of
//! lists of 1,000,000 entries with 0, 1 and 10 percent of them revoked.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use rand::Rng as _;
use serde_json::json;
use vellum_formats::status_list::{self, StatusList};

use super::flows::{self, FlowOptions, expect_ok};
use super::{millis, percentile};

const PROFILE: &str = "bench-status";

#[derive(Debug, Clone, Args)]
pub struct StatusOptions {
    /// Base URL of the running issuer.
    #[arg(long, default_value = "http://127.0.0.1:7005")]
    pub url: String,
    /// Management API key (also: VELLUM_API_KEY).
    #[arg(long, env = "VELLUM_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// Credentials to issue, and then to revoke.
    #[arg(long, default_value_t = 10_000)]
    pub credentials: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Reads of the status list once every credential is revoked.
    #[arg(long, default_value_t = 20_000)]
    pub reads: usize,
    /// The profile the bench's profile copies, adding credentialStatus STATUS_LIST.
    #[arg(long, default_value = "demo-identity")]
    pub base_profile: String,
}

pub async fn run(options: StatusOptions) -> anyhow::Result<()> {
    if options.concurrency == 0 || options.credentials == 0 {
        bail!("--credentials and --concurrency must be at least 1");
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(options.concurrency)
        .build()?;
    let url = options.url.trim_end_matches('/').to_owned();
    super::derived_profile(
        &client,
        &url,
        &options.api_key,
        &options.base_profile,
        PROFILE,
        json!({"name": "Bench: status lists", "credentialStatus": "STATUS_LIST"}),
    )
    .await?;

    println!(
        "issuing {} credentials with a status list entry:",
        options.credentials
    );
    flows::run(FlowOptions {
        urls: vec![url.clone()],
        api_key: options.api_key.clone(),
        flows: options.credentials,
        concurrency: options.concurrency,
        profile: PROFILE.into(),
        tx_code: false,
        dpop: false,
        warmup: 0,
    })
    .await?;

    let sessions = successful_sessions(&client, &url, &options.api_key).await?;
    let bench = Arc::new(Bench {
        client,
        url,
        options,
    });
    let started = Instant::now();
    let latencies = bench.revoke_all(Arc::new(sessions)).await?;
    let elapsed = started.elapsed();
    let mut sorted = latencies;
    sorted.sort_unstable();
    println!(
        "revoked {} credentials (one session each) at concurrency {} in {:.2} s: {:.0} revocations/s, \
         p50 {:.2} ms, p99 {:.2} ms",
        sorted.len(),
        bench.options.concurrency,
        elapsed.as_secs_f64(),
        sorted.len() as f64 / elapsed.as_secs_f64(),
        millis(percentile(&sorted, 0.5)),
        millis(percentile(&sorted, 0.99)),
    );
    bench.read_lists().await?;
    report_sizes();
    Ok(())
}

struct Bench {
    client: reqwest::Client,
    url: String,
    options: StatusOptions,
}

/// The SUCCESSFUL sessions of the bench's profile, newest first.
async fn successful_sessions(
    client: &reqwest::Client,
    url: &str,
    api_key: &str,
) -> anyhow::Result<Vec<String>> {
    let mut sessions = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![
            ("profileId", PROFILE.to_owned()),
            ("status", "SUCCESSFUL".to_owned()),
            ("limit", "200".to_owned()),
        ];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let response = client
            .get(format!("{url}/api/v1/sessions"))
            .bearer_auth(api_key)
            .query(&query)
            .send()
            .await?;
        let page = expect_ok(response, "list sessions").await?;
        for session in page["items"].as_array().context("items")? {
            sessions.push(
                session["sessionId"]
                    .as_str()
                    .context("sessionId")?
                    .to_owned(),
            );
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(sessions),
        }
    }
}

impl Bench {
    async fn revoke_all(
        self: &Arc<Self>,
        sessions: Arc<Vec<String>>,
    ) -> anyhow::Result<Vec<Duration>> {
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..self.options.concurrency.min(sessions.len()) {
            let (bench, next, sessions) = (self.clone(), next.clone(), sessions.clone());
            workers.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(session) = sessions.get(index) else {
                        return anyhow::Ok(latencies);
                    };
                    let started = Instant::now();
                    let response = bench
                        .client
                        .post(format!(
                            "{}/api/v1/sessions/{session}/credentials/status",
                            bench.url
                        ))
                        .bearer_auth(&bench.options.api_key)
                        .json(&json!({"status": "REVOKED", "reason": "bench"}))
                        .send()
                        .await?;
                    let changed = expect_ok(response, "revoke").await?;
                    if changed["items"].as_array().map(Vec::len) != Some(1) {
                        bail!("session {session}: not one credential revoked: {changed}");
                    }
                    latencies.push(started.elapsed());
                }
            }));
        }
        let mut all = Vec::new();
        for worker in workers {
            all.extend(worker.await??);
        }
        Ok(all)
    }

    /// The list every revoked credential is in: read once (signed again after the changes),
    /// then `reads` times (unchanged: served as signed).
    async fn read_lists(self: &Arc<Self>) -> anyhow::Result<()> {
        let sessions = successful_sessions(&self.client, &self.url, &self.options.api_key).await?;
        let first = sessions.first().context("no session")?;
        let response = self
            .client
            .get(format!("{}/api/v1/sessions/{first}/credentials", self.url))
            .bearer_auth(&self.options.api_key)
            .send()
            .await?;
        let listed = expect_ok(response, "credentials").await?;
        let uri = listed["items"][0]["statusList"]["uri"]
            .as_str()
            .context("no status list uri")?
            .to_owned();
        let started = Instant::now();
        let body = self.client.get(&uri).send().await?.bytes().await?;
        println!(
            "first read of the list after the revocations (signed again): {:.2} ms, {} bytes (JWT)",
            millis(started.elapsed()),
            body.len()
        );
        let uri = Arc::new(uri);
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..self.options.concurrency {
            let (bench, next, uri) = (self.clone(), next.clone(), uri.clone());
            workers.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < bench.options.reads {
                    let response = bench.client.get(uri.as_str()).send().await?;
                    if !response.status().is_success() {
                        bail!("read the list: {}", response.status());
                    }
                    response.bytes().await?;
                }
                anyhow::Ok(())
            }));
        }
        for worker in workers {
            worker.await??;
        }
        let elapsed = started.elapsed();
        println!(
            "{} reads of the unchanged list at concurrency {} in {:.2} s: {:.0} reads/s",
            self.options.reads,
            self.options.concurrency,
            elapsed.as_secs_f64(),
            self.options.reads as f64 / elapsed.as_secs_f64()
        );
        Ok(())
    }
}

/// The published size of lists of 1,000,000 entries, computed here: the Token Status List's
/// `lst` (2 bits, zlib, base64url) and the Bitstring list's `encodedList` (GZIP, multibase).
fn report_sizes() {
    const ENTRIES: usize = 1_000_000;
    let mut rng = rand::thread_rng();
    for percent in [0usize, 1, 10] {
        let mut token = StatusList::token(2, ENTRIES).unwrap_or_else(|_| unreachable!("2 bits"));
        let mut bitstring = StatusList::bitstring(ENTRIES);
        for _ in 0..ENTRIES * percent / 100 {
            let index = rng.gen_range(0..ENTRIES);
            let _ = token.set(index, status_list::INVALID);
            let _ = bitstring.set(index, 1);
        }
        println!(
            "1,000,000 entries, {percent}% revoked at random: Token Status List lst {} bytes, \
             Bitstring encodedList {} bytes",
            token.to_lst().len(),
            bitstring.to_encoded_list().len()
        );
    }
}
