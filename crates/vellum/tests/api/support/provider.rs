//! A real OpenID provider for the authorization code flow (interop/provider.mjs, oidc-provider)
//! run as a child process (its log discarded: what it does shows in the flow), and a holder who
//! logs in at it without a browser (interop/login.mjs).

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::interop::{CHILD_TIMEOUT, interop_dir, require_installed, run, stdout_json};
use crate::support::{TestApp, free_port, spawn_app_with};

pub const CLIENT_ID: &str = "vellum-issuer";
pub const CLIENT_SECRET: &str = "provider-client-secret-for-tests";
pub const PROVIDER: &str = "corp";

/// A running provider; stopped when dropped.
pub struct Provider {
    pub issuer: String,
    pub port: u16,
    child: Child,
}

impl Provider {
    /// Starts the provider on `port` with the issuer at `issuer_url` as its one client.
    pub async fn start(port: u16, issuer_url: &str) -> Provider {
        Self::start_tampering(port, issuer_url, None).await
    }

    /// [`Provider::start`], spoiling every ID token as `tamper` says (`signature`, `nonce`,
    /// `aud`, `expired`).
    pub async fn start_tampering(port: u16, issuer_url: &str, tamper: Option<&str>) -> Provider {
        let dir = interop_dir();
        require_installed(
            &dir.join("node_modules/oidc-provider"),
            "the OpenID provider (npm oidc-provider)",
        );
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .args(["--port", &port.to_string()])
            .args(["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
            .args([
                "--redirect-uri",
                &format!("{issuer_url}/authorize/callback"),
            ])
            .args(
                tamper
                    .map(|tamper| ["--tamper", tamper])
                    .into_iter()
                    .flatten(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start node interop/provider.mjs");
        let stdout = child.stdout.take().expect("stdout");
        let line = tokio::time::timeout(CHILD_TIMEOUT, async {
            BufReader::new(stdout).lines().next_line().await
        })
        .await
        .expect("the provider did not start in time")
        .expect("read the provider's stdout")
        .expect("the provider printed nothing");
        let ready: Value = serde_json::from_str(&line).expect("the provider's ready line");
        Provider {
            issuer: ready["issuer"].as_str().expect("issuer").to_owned(),
            port,
            child,
        }
    }

    /// Stops the provider and waits until it has let go of its port.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// The issuer's `[authorization.providers.corp]` for this provider.
    pub fn settings(&self) -> Value {
        json!({"providers": {PROVIDER: {
            "issuer": self.issuer,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scopes": ["openid", "profile", "email", "address"],
        }}})
    }
}

/// An issuer whose holders log in at a provider of its own (spoiling its ID tokens as `tamper`
/// says), with `authorization` merged into its `[authorization]` settings and `config` (other
/// than `http` and `authorization`) layered over the test defaults.
pub async fn app_with_provider_over(
    config: Value,
    authorization: Value,
    tamper: Option<&str>,
) -> (TestApp, Provider) {
    let (app_port, provider_port) = (free_port(), free_port());
    let issuer_url = format!("http://127.0.0.1:{app_port}");
    let provider = Provider::start_tampering(provider_port, &issuer_url, tamper).await;
    let mut settings = provider.settings();
    if let (Value::Object(settings), Value::Object(extra)) = (&mut settings, authorization) {
        settings.extend(extra);
    }
    let Value::Object(mut config) = config else {
        panic!("the configuration overrides must be an object")
    };
    config.insert("http".into(), json!({"port": app_port}));
    config.insert("authorization".into(), settings);
    let app = spawn_app_with(Value::Object(config)).await;
    (app, provider)
}

/// The holder opens `authorization_url` and logs in; returns the URL the browser is finally sent
/// to (starting with `redirect_uri`), not fetched.
pub async fn log_in(authorization_url: &str, username: &str, redirect_uri: &str) -> String {
    let mut command = Command::new("node");
    command
        .arg(interop_dir().join("login.mjs"))
        .arg(authorization_url)
        .arg(username)
        .arg(format!("{username}-password"))
        .arg(redirect_uri);
    let output = run(command, None, "the holder's login (node interop/login.mjs)").await;
    stdout_json(&output, "the holder's login")["url"]
        .as_str()
        .expect("url")
        .to_owned()
}
