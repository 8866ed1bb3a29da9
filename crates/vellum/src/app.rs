//! Building and running the service: `App::build(config)` then `run_until_stopped(shutdown)`.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::context::{Context, KeyCache, ProviderCache, SignedCache};
use crate::credentials::Configurations;
use crate::events::tail::LogTail;
use crate::keys;
use crate::notifications::dispatcher;
use crate::profiles;
use crate::secrets::{Secrets, SecretsError, hash_secret, random_token};
use crate::sessions;
use crate::store::{Store, StoreError};

/// Why the service did not start: one line that names the setting to look at. (No variant
/// has a `source`: the message already holds the cause, and a chain would repeat it.)
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("http.host, http.port: cannot listen on {address}: {reason}")]
    Listen { address: String, reason: String },
    #[error("database.url: {0}")]
    Store(String),
    #[error("{0}")]
    Secrets(String),
    #[error("{0}")]
    Setup(String),
}

impl From<ConfigError> for StartError {
    fn from(error: ConfigError) -> Self {
        StartError::Config(error.to_string())
    }
}

impl From<StoreError> for StartError {
    fn from(error: StoreError) -> Self {
        StartError::Store(one_line(&error))
    }
}

impl From<SecretsError> for StartError {
    fn from(error: SecretsError) -> Self {
        StartError::Secrets(one_line(&error))
    }
}

/// An error and its causes on one line, each said once (drivers often repeat their cause in
/// their own message).
pub fn one_line(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let said = next.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = next.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub struct App {
    listener: TcpListener,
    ctx: Arc<Context>,
}

impl App {
    pub async fn build(config: Config) -> Result<App, StartError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<App, StartError> {
        // What needs neither disk nor network is checked first: a bad setting stops the start
        // before a master key, a database or a key has been made.
        let credential_configurations =
            Configurations::from_config(&config.credential_configurations)?;
        profiles::check_configured(&config, &credential_configurations)
            .map_err(StartError::Setup)?;
        let address = format!("{}:{}", config.http.host, config.http.port);
        let listen_error = |address: &str, error: std::io::Error| StartError::Listen {
            address: address.to_owned(),
            reason: one_line(&error),
        };
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|error| listen_error(&address, error))?;
        let port = listener
            .local_addr()
            .map_err(|error| listen_error(&address, error))?;
        let issuer_url = config.issuer_url(port.port());
        let base_path = Url::parse(&issuer_url)
            .map(|url| url.path().trim_end_matches('/').to_owned())
            .map_err(|error| StartError::Setup(format!("public_url: {error}")))?;

        // TLS for https webhooks, on ring; a second install (tests start many apps) is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The database before the master key file: a database that cannot be reached leaves no
        // new master key behind.
        let store = crate::store::open(&config).await?;
        let secrets = Secrets::load(&config.master_key, &config.master_key_file)?;
        check_master_key(&secrets, store.as_ref()).await?;
        let log_tail = LogTail::new(*store.watch_events().borrow());
        let api_key_hash = api_key_hash(&config, store.as_ref()).await?;
        let provider_client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.authorization.provider_timeout)
            .timeout(config.authorization.provider_timeout)
            .user_agent(concat!("Vellum/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| StartError::Setup(format!("provider client: {error}")))?;
        let request_key = secrets.request_encryption_key();
        let request_key_id = request_key.public_jwk().thumbprint();
        let ctx = Arc::new(Context {
            config,
            credential_configurations,
            issuer_url,
            base_path,
            store,
            secrets,
            clock,
            api_key_hash,
            keys: KeyCache::default(),
            provider_client,
            providers: ProviderCache::default(),
            status_lists: SignedCache::default(),
            stopping: CancellationToken::new(),
            log_tail,
            request_key,
            request_key_id,
            metrics: Arc::default(),
        });
        keys::ensure_declared_keys(&ctx)
            .await
            .map_err(|error| StartError::Setup(format!("keys: {error}")))?;
        profiles::load_configured_profiles(&ctx)
            .await
            .map_err(StartError::Setup)?;
        // Signed once at start, so a key or chain that cannot sign stops the start, not a wallet.
        crate::metadata::signed_credential_issuer(&ctx)
            .await
            .map_err(|error| StartError::Setup(format!("metadata: {error}")))?;
        Ok(App { listener, ctx })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn context(&self) -> Arc<Context> {
        self.ctx.clone()
    }

    /// Serves until `shutdown` is cancelled; in-flight requests finish first.
    /// The worker role runs the session sweeper and the webhook dispatcher; the api role serves
    /// the endpoints (without it, only `/health`).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let roles = self.ctx.config.roles;
        let mut workers = Vec::new();
        if roles.worker {
            let ctx = self.ctx.clone();
            let stop = shutdown.child_token();
            workers.push((
                "session sweeper",
                tokio::spawn(async move { sessions::sweep_until_cancelled(&ctx, stop).await }),
            ));
            workers.push((
                "webhook dispatcher",
                tokio::spawn(dispatcher::run(self.ctx.clone(), shutdown.child_token())),
            ));
        }
        let router = if roles.api {
            crate::http::router(self.ctx.clone())
        } else {
            crate::http::health_router(self.ctx.clone())
        };
        tracing::info!(
            issuer = %self.ctx.issuer_url,
            api = roles.api,
            worker = roles.worker,
            "Vellum is serving"
        );
        let stopping = {
            let (shutdown, ctx) = (shutdown.clone(), self.ctx.clone());
            async move {
                shutdown.cancelled().await;
                ctx.stopping.cancel();
            }
        };
        let limits = crate::http::server::ConnectionLimits {
            header_read_timeout: self.ctx.config.http.header_read_timeout,
            max_connections: self.ctx.config.http.max_connections,
        };
        crate::http::server::serve(self.listener, router, limits, stopping).await;
        shutdown.cancel();
        for (task, handle) in workers {
            if let Err(error) = handle.await {
                tracing::error!(%error, task, "background task ended abnormally");
            }
        }
        Ok(())
    }
}

/// Private keys in the database are sealed under the master key: an instance with another one
/// (a second instance that generated its own) could neither use them nor the codes and tokens
/// derived from it, so it must not start.
async fn check_master_key(secrets: &Secrets, store: &dyn Store) -> Result<(), StartError> {
    let fingerprint = secrets.fingerprint();
    if store.init_setting("master_key_check", &fingerprint).await? != fingerprint {
        return Err(StartError::Setup(
            "master_key: this database was set up with another master key; give every \
             instance the same one (VELLUM_MASTER_KEY)"
                .into(),
        ));
    }
    Ok(())
}

/// The hash of the management API key: from configuration, or generated once and printed.
async fn api_key_hash(config: &Config, store: &dyn Store) -> Result<String, StoreError> {
    if !config.api_key.is_empty() {
        return Ok(hash_secret(&config.api_key));
    }
    let candidate = random_token();
    let hash = hash_secret(&candidate);
    let stored = store.init_setting("api_key_sha256", &hash).await?;
    if stored == hash {
        // Printed once, to the terminal, never to the log: only its hash is kept.
        println!(
            "\n  Management API key (shown once, store it now):\n\n    {candidate}\n\n  \
             Use it as: Authorization: Bearer <key>. Set VELLUM_API_KEY to choose your own.\n"
        );
    }
    Ok(stored)
}
