//! `vellum bench flows`: complete pre-authorized flows (create offer -> resolve -> token -> nonce ->
//! credential) against a running issuer, at a given concurrency, with a fresh holder key per
//! flow (and with `--dpop` a fresh DPoP key, proofs at the token and credential endpoints; with
//! `--batch N` N fresh holder keys, N proofs on one nonce and N credentials per flow).
//! Prints throughput and per-step latency percentiles. Given several instances (on one database,
//! behind one public URL), each step of a flow goes to the next instance in turn.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use vellum_formats::jose::{self, Algorithm, SigningKey};

use super::{Instances, millis, percentile};
use crate::protocol::PRE_AUTHORIZED_GRANT;

#[derive(Debug, Clone, Args)]
pub struct FlowOptions {
    /// Base URL of the running issuer. Give it once per instance (`--url A --url B`) to send
    /// the steps of every flow to the instances in turn.
    #[arg(
        long = "url",
        value_name = "URL",
        default_value = "http://127.0.0.1:7005"
    )]
    pub urls: Vec<String>,
    /// Management API key (also: VELLUM_API_KEY).
    #[arg(long, env = "VELLUM_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// Number of complete flows to run.
    #[arg(long, default_value_t = 2000)]
    pub flows: usize,
    /// Flows in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Profile to make offers from.
    #[arg(long, default_value = "demo-identity")]
    pub profile: String,
    /// Require a tx_code on every offer.
    #[arg(long)]
    pub tx_code: bool,
    /// Bind every access token with DPoP (a fresh key per flow). Each flow in flight keeps the
    /// latest DPoP-Nonce it was given, as a wallet does, so only its first token request is
    /// answered use_dpop_nonce and sent again.
    #[arg(long)]
    pub dpop: bool,
    /// Flows run first and left out of the figures (connection set-up, caches).
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
}

/// The command line of `vellum bench flows`: the flows, and how many credentials each asks for.
/// (Other benches run flows of one credential each with [`run`].)
#[derive(Debug, Clone, Args)]
pub struct FlowsCommand {
    #[command(flatten)]
    pub flows: FlowOptions,
    /// Credentials per flow (batch issuance): N proofs of N fresh holder keys on one nonce in
    /// one credential request, N credentials expected back. The server's `protocol.batch_size`
    /// must allow N.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
}

const STEPS: [&str; 6] = ["offer", "resolve", "token", "nonce", "credential", "flow"];

#[derive(Default)]
struct Samples([Vec<Duration>; 6]);

/// What every flow needs: the options, one HTTP client, the instances and the credential
/// issuer identifier they share.
struct Flows {
    options: FlowOptions,
    /// Credentials per flow.
    batch: usize,
    client: reqwest::Client,
    instances: Instances,
    issuer: String,
    /// Token requests sent again after use_dpop_nonce.
    nonce_rounds: AtomicUsize,
}

/// Flows of one credential each.
pub async fn run(options: FlowOptions) -> anyhow::Result<()> {
    run_batch(options, 1).await
}

/// Flows of `batch` credentials each.
pub async fn run_batch(options: FlowOptions, batch: usize) -> anyhow::Result<()> {
    if options.concurrency == 0 || options.flows == 0 || batch == 0 {
        bail!("--flows, --concurrency and --batch must be at least 1");
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(options.concurrency)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let instances = Instances::new(&options.urls)?;
    let issuer = issuer_identifier(&client, instances.first()).await?;
    let flows = Arc::new(Flows {
        options,
        batch,
        client,
        instances,
        issuer,
        nonce_rounds: AtomicUsize::new(0),
    });
    if flows.options.warmup > 0 {
        flows.drive(flows.options.warmup).await?;
    }
    flows.nonce_rounds.store(0, Ordering::Relaxed);
    let started = Instant::now();
    let samples = flows.drive(flows.options.flows).await?;
    let elapsed = started.elapsed();
    flows.report(&samples, elapsed);
    Ok(())
}

/// The credential issuer identifier, from the issuer metadata (RFC 8615: a path of the base URL
/// goes after the well-known segment). Proofs are addressed to it, and offer URIs start with it,
/// whichever instance made them.
pub(super) async fn issuer_identifier(
    client: &reqwest::Client,
    base: &str,
) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(base).with_context(|| format!("--url {base}"))?;
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("/.well-known/openid-credential-issuer{path}"));
    let metadata = expect_ok(client.get(url).send().await?, "issuer metadata").await?;
    metadata["credential_issuer"]
        .as_str()
        .map(str::to_owned)
        .context("the issuer metadata has no credential_issuer")
}

impl Flows {
    async fn drive(self: &Arc<Self>, flows: usize) -> anyhow::Result<Samples> {
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..self.options.concurrency.min(flows) {
            let (bench, next) = (self.clone(), next.clone());
            workers.push(tokio::spawn(async move {
                let mut samples = Samples::default();
                let mut dpop_nonce = None;
                while next.fetch_add(1, Ordering::Relaxed) < flows {
                    let timings = bench.one_flow(&mut dpop_nonce).await?;
                    for (step, timing) in timings.into_iter().enumerate() {
                        samples.0[step].push(timing);
                    }
                }
                anyhow::Ok(samples)
            }));
        }
        let mut all = Samples::default();
        for worker in workers {
            let samples = worker.await??;
            for (step, timings) in samples.0.into_iter().enumerate() {
                all.0[step].extend(timings);
            }
        }
        Ok(all)
    }

    /// One flow; `dpop_nonce` is the latest DPoP-Nonce this worker was given.
    async fn one_flow(&self, dpop_nonce: &mut Option<String>) -> anyhow::Result<[Duration; 6]> {
        let (client, options) = (&self.client, &self.options);
        // Each step on the next instance: what "any step on any instance" costs.
        let mut instance = self.instances.rotation();
        let flow_started = Instant::now();
        let mut timings = [Duration::ZERO; 6];
        let mut step = Instant::now();
        let mut lap = |index: usize, step: &mut Instant| {
            timings[index] = step.elapsed();
            *step = Instant::now();
        };

        let mut request = json!({"profileId": options.profile, "authMethod": "PRE_AUTHORIZED"});
        if options.tx_code {
            request["txCode"] = json!({"input_mode": "numeric", "length": 6});
        }
        let created: Value = expect_ok(
            client
                .post(format!("{}/api/v1/offers", instance.next_url()))
                .bearer_auth(&options.api_key)
                .json(&request)
                .send()
                .await?,
            "create offer",
        )
        .await?;
        lap(0, &mut step);

        let offer_uri = created["credentialOfferUri"]
            .as_str()
            .context("the offer has no credentialOfferUri")?;
        // The URI names the public URL; resolve it on the instance whose turn it is.
        let offer_path = offer_uri.strip_prefix(&self.issuer).with_context(|| {
            format!(
                "the offer URI {offer_uri} does not start with the issuer identifier {}",
                self.issuer
            )
        })?;
        let offer: Value = expect_ok(
            client
                .get(format!("{}{offer_path}", instance.next_url()))
                .send()
                .await?,
            "resolve offer",
        )
        .await?;
        lap(1, &mut step);

        let code = offer["grants"][PRE_AUTHORIZED_GRANT]["pre-authorized_code"]
            .as_str()
            .context("no pre-authorized_code")?;
        let mut form = vec![
            ("grant_type", PRE_AUTHORIZED_GRANT),
            ("pre-authorized_code", code),
        ];
        if let Some(tx_code) = created["txCodeValue"].as_str() {
            form.push(("tx_code", tx_code));
        }
        let dpop_key = options.dpop.then(|| SigningKey::generate(Algorithm::ES256));
        let token_url = format!("{}/token", instance.next_url());
        let token = loop {
            let mut request = client.post(&token_url).form(&form);
            if let Some(key) = &dpop_key {
                let proof = self.dpop_proof(key, "/token", dpop_nonce.as_deref(), None);
                request = request.header("DPoP", proof);
            }
            let response = request.send().await?;
            let given = response
                .headers()
                .get("DPoP-Nonce")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let retry = dpop_key.is_some() && response.status() == 400 && given.is_some();
            if given.is_some() {
                *dpop_nonce = given;
            }
            if retry {
                let body: Value = response.json().await?;
                if body["error"] == "use_dpop_nonce" {
                    self.nonce_rounds.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                bail!("token failed with 400: {body}");
            }
            break expect_ok(response, "token").await?;
        };
        lap(2, &mut step);

        let nonce: Value = expect_ok(
            client
                .post(format!("{}/nonce", instance.next_url()))
                .send()
                .await?,
            "nonce",
        )
        .await?;
        lap(3, &mut step);

        // One proof per credential wanted, each by a fresh holder key, all on this nonce.
        let proofs: Vec<String> = (0..self.batch)
            .map(|_| key_proof(&self.issuer, &nonce["c_nonce"]))
            .collect();
        let configuration = offer["credential_configuration_ids"][0].clone();
        let access_token = token["access_token"].as_str().context("no access_token")?;
        let mut request = client
            .post(format!("{}/credential", instance.next_url()))
            .json(&json!({
                "credential_configuration_id": configuration,
                "proofs": {"jwt": proofs}
            }));
        request = match &dpop_key {
            Some(key) => request
                .header("Authorization", format!("DPoP {access_token}"))
                .header(
                    "DPoP",
                    self.dpop_proof(
                        key,
                        "/credential",
                        dpop_nonce.as_deref(),
                        Some(access_token),
                    ),
                ),
            None => request.bearer_auth(access_token),
        };
        let credential: Value = expect_ok(request.send().await?, "credential").await?;
        lap(4, &mut step);
        // One credential per proof, or the run stops: a short batch must not pass as a flow.
        let batch = self.batch;
        let credentials = credential["credentials"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        if credentials.len() != batch
            || credentials
                .iter()
                .any(|issued| issued["credential"].as_str().is_none())
        {
            bail!(
                "{batch} proofs sent, but the response does not hold {batch} credentials: {credential}"
            );
        }
        timings[5] = flow_started.elapsed();
        Ok(timings)
    }

    /// A DPoP proof (RFC 9449) for `POST <issuer><path>`.
    fn dpop_proof(
        &self,
        key: &SigningKey,
        path: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> String {
        dpop_proof(&self.issuer, key, path, nonce, access_token)
    }

    fn report(&self, samples: &Samples, elapsed: Duration) {
        let flows = samples.0[5].len();
        let rounds = self.nonce_rounds.load(Ordering::Relaxed);
        println!(
            "{flows} complete flows{} at concurrency {}{} in {:.2} s: {:.0} flows/s ({:.0} HTTP requests/s)",
            if self.options.dpop { " with DPoP" } else { "" },
            self.options.concurrency,
            self.instances.label(),
            elapsed.as_secs_f64(),
            flows as f64 / elapsed.as_secs_f64(),
            (flows * 5 + rounds) as f64 / elapsed.as_secs_f64()
        );
        if self.batch > 1 {
            let batch = self.batch;
            println!(
                "credentials: {} ({batch} per flow): {:.0}/s",
                flows * batch,
                (flows * batch) as f64 / elapsed.as_secs_f64()
            );
        }
        if self.options.dpop {
            println!("token requests sent again after use_dpop_nonce: {rounds}");
        }
        println!(
            "{:<11} {:>9} {:>9} {:>9} {:>9}",
            "step", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for (index, name) in STEPS.iter().enumerate() {
            let mut sorted = samples.0[index].clone();
            sorted.sort_unstable();
            println!(
                "{:<11} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                name,
                millis(percentile(&sorted, 0.50)),
                millis(percentile(&sorted, 0.90)),
                millis(percentile(&sorted, 0.99)),
                millis(sorted.last().copied().unwrap_or_default()),
            );
        }
    }
}

pub(super) async fn expect_ok(response: reqwest::Response, step: &str) -> anyhow::Result<Value> {
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        bail!("{step} failed with {status}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("{step}: response is not JSON"))
}

/// A DPoP proof (RFC 9449) for `POST <issuer><path>`, with the server's nonce and the access
/// token's hash when given.
pub(super) fn dpop_proof(
    issuer: &str,
    key: &SigningKey,
    path: &str,
    nonce: Option<&str>,
    access_token: Option<&str>,
) -> String {
    let mut header = Map::new();
    header.insert("typ".into(), Value::from("dpop+jwt"));
    header.insert("jwk".into(), key.public_jwk().to_value());
    let mut claims = json!({
        "jti": uuid::Uuid::new_v4().to_string(),
        "htm": "POST",
        "htu": format!("{issuer}{path}"),
        "iat": time::OffsetDateTime::now_utc().unix_timestamp(),
    });
    if let Some(nonce) = nonce {
        claims["nonce"] = Value::from(nonce);
    }
    if let Some(token) = access_token {
        claims["ath"] = Value::from(jose::b64(Sha256::digest(token.as_bytes())));
    }
    jose::sign_compact(header, &claims, key)
}

/// A key proof (OID4VCI 1.0 Appendix F.1) by a fresh holder key over the issuer's `c_nonce`.
pub(super) fn key_proof(issuer: &str, c_nonce: &Value) -> String {
    let holder = SigningKey::generate(Algorithm::ES256);
    let mut header = Map::new();
    header.insert("typ".into(), Value::from("openid4vci-proof+jwt"));
    header.insert("jwk".into(), holder.public_jwk().to_value());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    jose::sign_compact(
        header,
        &json!({"aud": issuer, "iat": now, "nonce": c_nonce}),
        &holder,
    )
}
