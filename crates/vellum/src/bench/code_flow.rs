//! `vellum bench code-flow`: complete authorization code flows as HAIP has them, against a
//! running issuer: create an AUTHORIZED offer -> resolve it -> PAR (wallet attestation, DPoP,
//! PKCE) -> authorize -> the holder's login at the OpenID provider -> callback (the issuer
//! redeems the provider's code and checks its ID token) -> token (wallet attestation, DPoP) ->
//! nonce -> credential (DPoP). Prints throughput and per-step latency percentiles.
//!
//! The OpenID provider is the bench's own, minimal one (discovery, keys, a token endpoint that
//! checks the client secret and PKCE and signs an ID token; the login itself is instant), so that
//! its work stays out of the server's CPU figure: what is measured is the issuer's own share. The
//! tests log holders in at a real provider instead. The wallet provider's key is kept in a file
//! the issuer is told to trust (`--print-trusted-keys`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use clap::Args;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use vellum_formats::jose::{self, Algorithm, Jwk, SigningKey};

use super::flows::{dpop_proof, expect_ok, issuer_identifier, key_proof};
use super::{Instances, millis, percentile};
use crate::protocol::AUTHORIZATION_CODE_GRANT;

#[derive(Debug, Clone, Args)]
pub struct CodeFlowOptions {
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
    /// Flows run first and left out of the figures (connection set-up, caches).
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    /// The profile the bench's own profile copies, adding the provider and a claims mapping.
    #[arg(long, default_value = "demo-identity")]
    pub base_profile: String,
    /// Where the bench's OpenID provider listens. The issuer must name it:
    /// `[authorization.providers.<provider>]` with issuer `http://<address>`.
    #[arg(long, default_value = "127.0.0.1:7006")]
    pub provider_address: SocketAddr,
    /// The provider's id in the issuer's configuration.
    #[arg(long, default_value = "bench")]
    pub provider: String,
    /// The issuer's client id at the provider.
    #[arg(long, default_value = "vellum-bench")]
    pub provider_client_id: String,
    /// The issuer's client secret at the provider.
    #[arg(long, default_value = "bench-provider-secret")]
    pub provider_client_secret: String,
    /// The wallet provider's private key (a JWK file; made when missing). Its wallets attest
    /// their instance keys with it; the issuer must trust its public key.
    #[arg(long)]
    pub wallet_provider_key: PathBuf,
    /// Print the wallet provider's public key as a `client_attestation.trusted_keys` value (for
    /// VELLUM_CLIENT_ATTESTATION__TRUSTED_KEYS) and exit.
    #[arg(long)]
    pub print_trusted_keys: bool,
}

const STEPS: [&str; 9] = [
    "offer",
    "resolve",
    "par",
    "authorize",
    "callback",
    "token",
    "nonce",
    "credential",
    "flow",
];
const WALLET_CLIENT: &str = "bench-wallet";
const WALLET_REDIRECT: &str = "https://wallet.bench.example/callback";
const PROFILE: &str = "bench-code-flow";

#[derive(Default)]
struct Samples([Vec<Duration>; 9]);

pub async fn run(options: CodeFlowOptions) -> anyhow::Result<()> {
    let wallet_provider = wallet_provider_key(&options.wallet_provider_key)?;
    if options.print_trusted_keys {
        println!("{}", trusted_keys_value(&wallet_provider.public_jwk()));
        return Ok(());
    }
    if options.concurrency == 0 || options.flows == 0 {
        bail!("--flows and --concurrency must be at least 1");
    }
    let provider = Provider::start(&options).await?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(options.concurrency)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let instances = Instances::new(&options.urls)?;
    let issuer = issuer_identifier(&client, instances.first()).await?;
    let bench = Arc::new(Bench {
        client,
        instances,
        issuer,
        provider,
        wallet_provider,
        nonce_rounds: AtomicUsize::new(0),
        options,
    });
    bench.create_profile().await?;
    if bench.options.warmup > 0 {
        bench.drive(bench.options.warmup).await?;
    }
    bench.nonce_rounds.store(0, Ordering::Relaxed);
    let started = Instant::now();
    let samples = bench.drive(bench.options.flows).await?;
    bench.report(&samples, started.elapsed());
    Ok(())
}

/// The wallet provider's key from its file, or a new one written there.
fn wallet_provider_key(path: &PathBuf) -> anyhow::Result<SigningKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let jwk: Jwk = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a JWK", path.display()))?;
            SigningKey::from_jwk(&jwk).with_context(|| format!("{}", path.display()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::generate(Algorithm::ES256);
            let text = serde_json::to_string(&key.private_jwk())?;
            std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
            Ok(key)
        }
        Err(error) => Err(error).with_context(|| format!("read {}", path.display())),
    }
}

/// `[{kty = "EC", ...}]`: a list of one inline table, as configuration from the environment
/// takes it.
fn trusted_keys_value(jwk: &Jwk) -> String {
    let members: Vec<String> = jwk
        .to_value()
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, value)| Some(format!("{name} = \"{}\"", value.as_str()?)))
        .collect();
    format!("[{{{}}}]", members.join(", "))
}

struct Bench {
    options: CodeFlowOptions,
    client: reqwest::Client,
    instances: Instances,
    issuer: String,
    provider: Arc<Provider>,
    wallet_provider: SigningKey,
    /// Requests sent again after use_dpop_nonce.
    nonce_rounds: AtomicUsize,
}

/// One wallet instance: its attested key and the attestation its provider gave it.
struct Wallet {
    key: SigningKey,
    attestation: String,
    /// The latest DPoP-Nonce the issuer gave.
    dpop_nonce: Option<String>,
}

impl Bench {
    /// The bench's profile: the base profile's definition, its holders logging in at the bench's
    /// provider. Made again (a new version) on every run.
    async fn create_profile(&self) -> anyhow::Result<()> {
        let changes = json!({
            "name": "Bench: authorization code flow",
            "identityProvider": self.options.provider,
            "idTokenClaimsMapping": {"/given_name": "/given_name", "/family_name": "/family_name"},
        });
        super::derived_profile(
            &self.client,
            self.instances.first(),
            &self.options.api_key,
            &self.options.base_profile,
            PROFILE,
            changes,
        )
        .await
    }

    fn new_wallet(&self) -> Wallet {
        let key = SigningKey::generate(Algorithm::ES256);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut header = Map::new();
        header.insert("typ".into(), Value::from("oauth-client-attestation+jwt"));
        let attestation = jose::sign_compact(
            header,
            &json!({
                "iss": "https://wallet-provider.bench.example",
                "sub": WALLET_CLIENT,
                "iat": now,
                "exp": now + 3600,
                "cnf": {"jwk": key.public_jwk().to_value()},
            }),
            &self.wallet_provider,
        );
        Wallet {
            key,
            attestation,
            dpop_nonce: None,
        }
    }

    async fn drive(self: &Arc<Self>, flows: usize) -> anyhow::Result<Samples> {
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..self.options.concurrency.min(flows) {
            let (bench, next) = (self.clone(), next.clone());
            workers.push(tokio::spawn(async move {
                let mut samples = Samples::default();
                let mut wallet = bench.new_wallet();
                while next.fetch_add(1, Ordering::Relaxed) < flows {
                    let timings = bench.one_flow(&mut wallet).await?;
                    for (step, timing) in timings.into_iter().enumerate() {
                        samples.0[step].push(timing);
                    }
                }
                anyhow::Ok(samples)
            }));
        }
        let mut all = Samples::default();
        for worker in workers {
            for (step, timings) in worker.await??.0.into_iter().enumerate() {
                all.0[step].extend(timings);
            }
        }
        Ok(all)
    }

    /// Sends the request `build` makes for the current DPoP nonce, again with the new nonce
    /// when the issuer answers use_dpop_nonce, as a wallet does.
    async fn with_dpop_nonce(
        &self,
        wallet: &mut Wallet,
        build: impl Fn(&Wallet) -> reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        loop {
            let response = build(wallet).send().await?;
            let given = response
                .headers()
                .get("DPoP-Nonce")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let status = response.status();
            if let Some(nonce) = given {
                wallet.dpop_nonce = Some(nonce);
            }
            if status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED {
                let body: Value = response.json().await?;
                if body["error"] == "use_dpop_nonce" {
                    self.nonce_rounds.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                bail!("failed with {status}: {body}");
            }
            return Ok(response);
        }
    }

    /// The two attestation headers, with a fresh PoP.
    fn attested(
        &self,
        wallet: &Wallet,
        request: reqwest::RequestBuilder,
    ) -> reqwest::RequestBuilder {
        let mut header = Map::new();
        header.insert(
            "typ".into(),
            Value::from("oauth-client-attestation-pop+jwt"),
        );
        let pop = jose::sign_compact(
            header,
            &json!({
                "aud": self.issuer,
                "jti": uuid::Uuid::new_v4().to_string(),
                "iat": time::OffsetDateTime::now_utc().unix_timestamp(),
            }),
            &wallet.key,
        );
        request
            .header("OAuth-Client-Attestation", &wallet.attestation)
            .header("OAuth-Client-Attestation-PoP", pop)
    }

    /// A URL the issuer gave (its public URL) on the instance whose turn it is.
    fn on(&self, instance: &str, url: &str) -> anyhow::Result<String> {
        let path = url
            .strip_prefix(&self.issuer)
            .with_context(|| format!("{url} does not start with the issuer {}", self.issuer))?;
        Ok(format!("{instance}{path}"))
    }

    async fn one_flow(&self, wallet: &mut Wallet) -> anyhow::Result<[Duration; 9]> {
        let (client, options) = (&self.client, &self.options);
        let mut instance = self.instances.rotation();
        let flow_started = Instant::now();
        let mut timings = [Duration::ZERO; 9];
        let mut step = Instant::now();
        let mut lap = |index: usize, step: &mut Instant| {
            timings[index] = step.elapsed();
            *step = Instant::now();
        };

        let created = expect_ok(
            client
                .post(format!("{}/api/v1/offers", instance.next_url()))
                .bearer_auth(&options.api_key)
                .json(&json!({"profileId": PROFILE, "authMethod": "AUTHORIZED"}))
                .send()
                .await?,
            "create offer",
        )
        .await?;
        lap(0, &mut step);

        let offer_uri = created["credentialOfferUri"]
            .as_str()
            .context("the offer has no credentialOfferUri")?;
        let offer_url = self.on(instance.next_url(), offer_uri)?;
        let offer = expect_ok(client.get(offer_url).send().await?, "resolve offer").await?;
        lap(1, &mut step);

        let issuer_state = offer["grants"][AUTHORIZATION_CODE_GRANT]["issuer_state"]
            .as_str()
            .context("no issuer_state")?;
        let configuration = offer["credential_configuration_ids"][0]
            .as_str()
            .context("no credential configuration")?;
        let verifier = jose::b64(uuid::Uuid::new_v4().as_bytes().repeat(2));
        let challenge = jose::b64(Sha256::digest(verifier.as_bytes()));
        let state = uuid::Uuid::new_v4().to_string();
        let details =
            json!([{"type": "openid_credential", "credential_configuration_id": configuration}])
                .to_string();
        let form = [
            ("response_type", "code"),
            ("client_id", WALLET_CLIENT),
            ("redirect_uri", WALLET_REDIRECT),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", &state),
            ("issuer_state", issuer_state),
            ("authorization_details", &details),
        ];
        let dpop_key = SigningKey::generate(Algorithm::ES256);
        let par_url = format!("{}/par", instance.next_url());
        let response = self
            .with_dpop_nonce(wallet, |wallet| {
                let proof = dpop_proof(
                    &self.issuer,
                    &dpop_key,
                    "/par",
                    wallet.dpop_nonce.as_deref(),
                    None,
                );
                self.attested(
                    wallet,
                    client.post(&par_url).form(&form).header("DPoP", proof),
                )
            })
            .await?;
        let pushed = expect_ok(response, "PAR").await?;
        lap(2, &mut step);

        let request_uri = pushed["request_uri"].as_str().context("no request_uri")?;
        let response = client
            .get(format!("{}/authorize", instance.next_url()))
            .query(&[("client_id", WALLET_CLIENT), ("request_uri", request_uri)])
            .send()
            .await?;
        let to_provider = redirect(response, "authorize").await?;
        lap(3, &mut step);

        let callback = self.provider.log_in(&to_provider)?;
        let response = client
            .get(self.on(instance.next_url(), &callback)?)
            .send()
            .await?;
        let to_wallet = url::Url::parse(&redirect(response, "callback").await?)?;
        let parameter = |name: &str| {
            to_wallet
                .query_pairs()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
        };
        if parameter("state").as_deref() != Some(state.as_str()) {
            bail!("the callback did not send the wallet its state: {to_wallet}");
        }
        let code = parameter("code").with_context(|| format!("no code: {to_wallet}"))?;
        lap(4, &mut step);

        let token_url = format!("{}/token", instance.next_url());
        let token_form = [
            ("grant_type", AUTHORIZATION_CODE_GRANT),
            ("code", &code),
            ("redirect_uri", WALLET_REDIRECT),
            ("code_verifier", &verifier),
        ];
        let response = self
            .with_dpop_nonce(wallet, |wallet| {
                let proof = dpop_proof(
                    &self.issuer,
                    &dpop_key,
                    "/token",
                    wallet.dpop_nonce.as_deref(),
                    None,
                );
                self.attested(
                    wallet,
                    client
                        .post(&token_url)
                        .form(&token_form)
                        .header("DPoP", proof),
                )
            })
            .await?;
        let token = expect_ok(response, "token").await?;
        if token["token_type"] != "DPoP" {
            bail!("the access token is not DPoP-bound: {token}");
        }
        lap(5, &mut step);

        let nonce = expect_ok(
            client
                .post(format!("{}/nonce", instance.next_url()))
                .send()
                .await?,
            "nonce",
        )
        .await?;
        lap(6, &mut step);

        let proof = key_proof(&self.issuer, &nonce["c_nonce"]);
        let access_token = token["access_token"].as_str().context("no access_token")?;
        let credential_url = format!("{}/credential", instance.next_url());
        let body = json!({"credential_identifier": configuration, "proofs": {"jwt": [proof]}});
        let response = self
            .with_dpop_nonce(wallet, |wallet| {
                let proof = dpop_proof(
                    &self.issuer,
                    &dpop_key,
                    "/credential",
                    wallet.dpop_nonce.as_deref(),
                    Some(access_token),
                );
                client
                    .post(&credential_url)
                    .header("Authorization", format!("DPoP {access_token}"))
                    .header("DPoP", proof)
                    .json(&body)
            })
            .await?;
        let credential = expect_ok(response, "credential").await?;
        lap(7, &mut step);
        if credential["credentials"][0]["credential"]
            .as_str()
            .is_none()
        {
            bail!("credential response without a credential: {credential}");
        }
        timings[8] = flow_started.elapsed();
        Ok(timings)
    }

    fn report(&self, samples: &Samples, elapsed: Duration) {
        let flows = samples.0[8].len();
        let rounds = self.nonce_rounds.load(Ordering::Relaxed);
        println!(
            "{flows} complete authorization code flows (PAR, PKCE, DPoP, wallet attestation, login) \
             at concurrency {}{} in {:.2} s: {:.0} flows/s ({:.0} HTTP requests/s to the issuer)",
            self.options.concurrency,
            self.instances.label(),
            elapsed.as_secs_f64(),
            flows as f64 / elapsed.as_secs_f64(),
            // offer, resolve, PAR, authorize, callback, token, nonce, credential.
            (flows * 8 + rounds) as f64 / elapsed.as_secs_f64()
        );
        println!(
            "requests sent again after use_dpop_nonce: {rounds}; provider token requests: {}",
            self.provider.redeemed.load(Ordering::Relaxed)
        );
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

/// The `Location` of a 302.
async fn redirect(response: reqwest::Response, step: &str) -> anyhow::Result<String> {
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    match location {
        Some(location) if status == StatusCode::FOUND => Ok(location),
        _ => bail!("{step} answered {status}: {}", response.text().await?),
    }
}

/// The bench's OpenID provider: discovery, its key, and a token endpoint for the codes its
/// instant logins give.
struct Provider {
    issuer: String,
    client_id: String,
    client_secret: String,
    key: SigningKey,
    /// Code -> the login it ends.
    logins: Mutex<HashMap<String, Login>>,
    redeemed: AtomicUsize,
}

struct Login {
    nonce: String,
    code_challenge: String,
    redirect_uri: String,
}

const PROVIDER_KID: &str = "bench-provider";

impl Provider {
    async fn start(options: &CodeFlowOptions) -> anyhow::Result<Arc<Provider>> {
        let provider = Arc::new(Provider {
            issuer: format!("http://{}", options.provider_address),
            client_id: options.provider_client_id.clone(),
            client_secret: options.provider_client_secret.clone(),
            key: SigningKey::generate(Algorithm::ES256),
            logins: Mutex::new(HashMap::new()),
            redeemed: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .with_state(provider.clone());
        let listener = tokio::net::TcpListener::bind(options.provider_address)
            .await
            .with_context(|| format!("the bench's provider on {}", options.provider_address))?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(provider)
    }

    /// The holder logs in at once: the authorization request is checked and answered with a
    /// code, as the URL the browser is sent back to.
    fn log_in(&self, authorization_url: &str) -> anyhow::Result<String> {
        let url = url::Url::parse(authorization_url)?;
        if !authorization_url.starts_with(&format!("{}/authorize?", self.issuer)) {
            bail!("the issuer sent the holder elsewhere: {authorization_url}");
        }
        let parameters: HashMap<String, String> = url.query_pairs().into_owned().collect();
        let parameter = |name: &str| {
            parameters
                .get(name)
                .cloned()
                .with_context(|| format!("the authorization request has no {name}"))
        };
        if parameter("client_id")? != self.client_id
            || parameter("code_challenge_method")? != "S256"
            || parameter("response_type")? != "code"
        {
            bail!("an authorization request the provider refuses: {authorization_url}");
        }
        let redirect_uri = parameter("redirect_uri")?;
        let code = uuid::Uuid::new_v4().to_string();
        let login = Login {
            nonce: parameter("nonce")?,
            code_challenge: parameter("code_challenge")?,
            redirect_uri: redirect_uri.clone(),
        };
        self.logins
            .lock()
            .map_err(|_| anyhow::anyhow!("the provider's logins are poisoned"))?
            .insert(code.clone(), login);
        let mut back = url::Url::parse(&redirect_uri)?;
        back.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &parameter("state")?);
        Ok(back.into())
    }

    fn id_token(&self, nonce: &str) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut header = Map::new();
        header.insert("typ".into(), Value::from("JWT"));
        header.insert("kid".into(), Value::from(PROVIDER_KID));
        jose::sign_compact(
            header,
            &json!({
                "iss": self.issuer,
                "sub": uuid::Uuid::new_v4().to_string(),
                "aud": self.client_id,
                "iat": now,
                "exp": now + 300,
                "nonce": nonce,
                "given_name": "Erika",
                "family_name": "Mustermann",
            }),
            &self.key,
        )
    }
}

async fn discovery(State(provider): State<Arc<Provider>>) -> axum::Json<Value> {
    let issuer = &provider.issuer;
    axum::Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    }))
}

async fn jwks(State(provider): State<Arc<Provider>>) -> axum::Json<Value> {
    let mut jwk = provider.key.public_jwk().to_value();
    jwk["kid"] = Value::from(PROVIDER_KID);
    jwk["use"] = Value::from("sig");
    jwk["alg"] = Value::from("ES256");
    axum::Json(json!({ "keys": [jwk] }))
}

/// The code exchange: client_secret_basic, the code once, its redirect_uri and PKCE verifier.
async fn token(
    State(provider): State<Arc<Provider>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    let refuse = |error: &str| {
        (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error}))).into_response()
    };
    let credentials = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", provider.client_id, provider.client_secret));
    let authorization = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok());
    if authorization != Some(&format!("Basic {credentials}")) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let login = form.get("code").and_then(|code| {
        provider
            .logins
            .lock()
            .ok()
            .and_then(|mut logins| logins.remove(code))
    });
    let Some(login) = login else {
        return refuse("invalid_grant");
    };
    let verified = form.get("code_verifier").is_some_and(|verifier| {
        jose::b64(Sha256::digest(verifier.as_bytes())) == login.code_challenge
    });
    if !verified || form.get("redirect_uri") != Some(&login.redirect_uri) {
        return refuse("invalid_grant");
    }
    provider.redeemed.fetch_add(1, Ordering::Relaxed);
    axum::Json(json!({
        "access_token": uuid::Uuid::new_v4().to_string(),
        "token_type": "Bearer",
        "expires_in": 60,
        "id_token": provider.id_token(&login.nonce),
    }))
    .into_response()
}
