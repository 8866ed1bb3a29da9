//! The `vellum` subcommands that drive a running issuer through its management API: profiles,
//! offers (with a QR code in the terminal), sessions and their events (also followed live),
//! keys, development certificates and redeliveries. The issuer is `--url` (`VELLUM_URL`); the
//! API key is read from `VELLUM_API_KEY` only, so that it never shows in a process list.
//! Output is for people unless `--json` asks for the API's JSON, one document per line. The
//! exit code tells failures apart (see [`Failure`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::qr;

/// Time allowed to connect, and for a whole request (a followed stream excepted).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A followed stream sends a keep-alive comment at least this often; silence longer is a failure.
const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the issuer is and how to print.
#[derive(Debug, Args)]
pub struct Remote {
    /// The issuer's URL (its credential issuer identifier).
    #[arg(
        long,
        env = "VELLUM_URL",
        default_value = "http://127.0.0.1:7005",
        global = true
    )]
    url: String,
    /// Print the API's JSON (one document per line) instead of text for people.
    #[arg(long, global = true)]
    json: bool,
}

/// The management commands.
#[derive(Debug, Subcommand)]
pub enum Management {
    /// Credential profiles.
    #[command(subcommand)]
    Profiles(Profiles),
    /// Credential offers.
    #[command(subcommand)]
    Offers(Offers),
    /// Issuance sessions and their events.
    #[command(subcommand)]
    Sessions(Sessions),
    /// Issuer keys (private keys never leave the issuer).
    #[command(subcommand)]
    Keys(Keys),
    /// A development certificate for a managed key (`POST /api/v1/keys/{keyId}/certificates`).
    Certs {
        /// The key to certify.
        key: String,
        /// The certificate request, JSON (`profile`, `commonName`, ...); `-` reads stdin.
        file: PathBuf,
    },
    /// Webhook deliveries.
    #[command(subcommand)]
    Events(Events),
}

#[derive(Debug, Subcommand)]
pub enum Profiles {
    /// The active profiles.
    List,
    /// One profile, as the API shows it.
    Get { id: String },
    /// Creates the profile of FILE (JSON), or updates it (a new version) if it exists.
    Apply { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum Offers {
    /// Creates a pre-authorized offer and prints its URI, and its tx code if it has one.
    Create {
        #[arg(long)]
        profile: String,
        /// Protect the offer with a generated transaction code (PIN).
        #[arg(long)]
        tx_code: bool,
        /// Also draw the offer URI as a QR code.
        #[arg(long)]
        qr: bool,
        /// Seconds until the offer expires (the issuer's default otherwise).
        #[arg(long)]
        expires_in: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Sessions {
    /// Sessions, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        profile: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// One session.
    Get { id: String },
    /// A session's events with their deliveries.
    Events { id: String },
    /// Follows the events as they happen: one session's, or every session's without an id.
    Tail {
        id: Option<String>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Keys {
    List,
    /// Generates a key in the issuer.
    Generate {
        id: String,
        #[arg(long, default_value = "P-256")]
        key_type: String,
    },
    /// Imports a private key: FILE is the API's body, `{"id", "jwk"}` (`-` reads stdin).
    Import {
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum Events {
    /// Delivers a session's failed events again, or only EVENT.
    Redeliver {
        session: String,
        #[arg(long)]
        event: Option<String>,
    },
}

/// How a command failed, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 1: something here (a file, its JSON, `VELLUM_API_KEY` unset).
    Local = 1,
    /// 3: the issuer could not be reached in time.
    Unreachable = 3,
    /// 4: the API key was refused.
    Unauthorized = 4,
    /// 5: no such profile, session, key or event.
    NotFound = 5,
    /// 6: the issuer refused the request (invalid, or conflicting with what exists).
    Refused = 6,
    /// 7: the issuer failed, or answered what this command does not understand.
    Issuer = 7,
}

/// A failure and its message for stderr.
#[derive(Debug)]
pub struct Error {
    pub failure: Failure,
    pub message: String,
}

fn error(failure: Failure, message: impl Into<String>) -> Error {
    Error {
        failure,
        message: message.into(),
    }
}

/// Runs `command`; the exit code, the message of a failure printed on stderr.
pub async fn run(remote: Remote, command: Management) -> ExitCode {
    match execute(&remote, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failed) => {
            eprintln!("vellum: {}", failed.message);
            ExitCode::from(failed.failure as u8)
        }
    }
}

async fn execute(remote: &Remote, command: Management) -> Result<(), Error> {
    let api = Api::new(remote)?;
    let print = |value: &Value, human: &dyn Fn(&Value) -> String| {
        if remote.json {
            println!("{value}");
        } else {
            print!("{}", human(value));
        }
    };
    match command {
        Management::Profiles(Profiles::List) => {
            let listed = api.call(Method::GET, "/profiles", None).await?;
            print(&listed, &|value| {
                table(
                    value,
                    &["profileId", "version", "credentialConfigurationId", "name"],
                )
            });
        }
        Management::Profiles(Profiles::Get { id }) => {
            let profile = api
                .call(Method::GET, &format!("/profiles/{}", segment(&id)), None)
                .await?;
            print(&profile, &pretty);
        }
        Management::Profiles(Profiles::Apply { file }) => {
            let (applied, created) = apply_profile(&api, read_json(&file)?).await?;
            print(&applied, &|value| {
                format!(
                    "{} profile {} version {}\n",
                    if created { "created" } else { "updated" },
                    text(&value["profileId"]),
                    text(&value["version"])
                )
            });
        }
        Management::Offers(Offers::Create {
            profile,
            tx_code,
            qr: draw,
            expires_in,
        }) => {
            let mut body = json!({"profileId": profile, "authMethod": "PRE_AUTHORIZED"});
            if tx_code {
                body["txCode"] = json!({});
            }
            if let Some(seconds) = expires_in {
                body["expiresInSeconds"] = json!(seconds);
            }
            let created = api.call(Method::POST, "/offers", Some(body)).await?;
            let uri = created["credentialOffer"].as_str().unwrap_or_default();
            let code = if draw {
                Some(qr::terminal(uri).map_err(|e| error(Failure::Local, e.to_string()))?)
            } else {
                None
            };
            print(&created, &|value| {
                let mut out = format!(
                    "offer {}\n{}\n",
                    text(&value["offerId"]),
                    text(&value["credentialOffer"])
                );
                if let Some(pin) = value["txCodeValue"].as_str() {
                    out.push_str(&format!("tx code {pin}\n"));
                }
                out
            });
            // The QR code goes to the terminal even with --json: it is drawn on stderr there.
            if let Some(code) = code {
                if remote.json {
                    eprint!("{code}");
                } else {
                    print!("{code}");
                }
            }
        }
        Management::Sessions(Sessions::List {
            status,
            profile,
            limit,
        }) => {
            let mut query = Vec::new();
            query.extend(status.map(|s| ("status", s)));
            query.extend(profile.map(|p| ("profileId", p)));
            query.extend(limit.map(|l| ("limit", l.to_string())));
            let path = format!(
                "/sessions{}{}",
                if query.is_empty() { "" } else { "?" },
                serde_urlencoded::to_string(&query).unwrap_or_default()
            );
            let listed = api.call(Method::GET, &path, None).await?;
            print(&listed, &|value| {
                table(
                    value,
                    &[
                        "sessionId",
                        "status",
                        "profileId",
                        "credentialConfigurationId",
                    ],
                )
            });
        }
        Management::Sessions(Sessions::Get { id }) => {
            let session = api
                .call(Method::GET, &format!("/sessions/{}", segment(&id)), None)
                .await?;
            print(&session, &pretty);
        }
        Management::Sessions(Sessions::Events { id }) => {
            let events = api
                .call(
                    Method::GET,
                    &format!("/sessions/{}/events", segment(&id)),
                    None,
                )
                .await?;
            print(&events, &event_lines);
        }
        Management::Sessions(Sessions::Tail { id, count }) => {
            let path = match id {
                Some(id) => format!("/sessions/{}/events", segment(&id)),
                None => "/events".to_owned(),
            };
            api.follow(&path, count, |event| {
                print(event, &|value| event_lines(&json!({"items": [value]})));
            })
            .await?;
        }
        Management::Keys(Keys::List) => {
            let listed = api.call(Method::GET, "/keys", None).await?;
            print(&listed, &|value| {
                table(value, &["id", "keyType", "algorithm"])
            });
        }
        Management::Keys(Keys::Generate { id, key_type }) => {
            let key = api
                .call(
                    Method::POST,
                    "/keys",
                    Some(json!({"id": id, "keyType": key_type})),
                )
                .await?;
            print(&key, &pretty);
        }
        Management::Keys(Keys::Import { file }) => {
            let key = api
                .call(Method::POST, "/keys/import", Some(read_json(&file)?))
                .await?;
            print(&key, &pretty);
        }
        Management::Certs { key, file } => {
            let issued = api
                .call(
                    Method::POST,
                    &format!("/keys/{}/certificates", segment(&key)),
                    Some(read_json(&file)?),
                )
                .await?;
            print(&issued, &|value| text(&value["certificate"]));
        }
        Management::Events(Events::Redeliver { session, event }) => {
            let path = match event {
                Some(event) => format!(
                    "/sessions/{}/events/{}/redeliver",
                    segment(&session),
                    segment(&event)
                ),
                None => format!("/sessions/{}/events/redeliver", segment(&session)),
            };
            let answered = api.call(Method::POST, &path, None).await?;
            print(&answered, &|value| {
                format!("redelivered {}\n", text(&value["redelivered"]))
            });
        }
    }
    Ok(())
}

/// Creates the profile, or, when one with its id exists, updates it; and whether it was created.
async fn apply_profile(api: &Api, body: Value) -> Result<(Value, bool), Error> {
    let id = body["id"]
        .as_str()
        .ok_or_else(|| error(Failure::Local, "the profile file has no \"id\""))?
        .to_owned();
    let path = format!("/profiles/{}", segment(&id));
    match api.call(Method::GET, &path, None).await {
        Ok(_) => {
            let mut update = body;
            if let Value::Object(members) = &mut update {
                members.remove("id");
            }
            Ok((api.call(Method::PUT, &path, Some(update)).await?, false))
        }
        Err(failed) if failed.failure == Failure::NotFound => {
            Ok((api.call(Method::POST, "/profiles", Some(body)).await?, true))
        }
        Err(failed) => Err(failed),
    }
}

/// The management API of one issuer, with the API key.
struct Api {
    client: Client,
    base: String,
    key: String,
}

impl Api {
    fn new(remote: &Remote) -> Result<Api, Error> {
        let key = std::env::var("VELLUM_API_KEY")
            .ok()
            .filter(|key| !key.is_empty())
            .ok_or_else(|| {
                error(
                    Failure::Local,
                    "set VELLUM_API_KEY to the management API key",
                )
            })?;
        let client = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(STREAM_IDLE_TIMEOUT)
            .build()
            .map_err(|e| error(Failure::Local, format!("cannot make an HTTP client: {e}")))?;
        Ok(Api {
            client,
            base: format!("{}/api/v1", remote.url.trim_end_matches('/')),
            key,
        })
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
    }

    /// One request; its JSON (`null` for an empty answer), or the failure its status tells.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, Error> {
        let mut request = self.request(method, path).timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| unreachable(&self.base, &e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unreachable(&self.base, &e))?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|_| {
                error(
                    Failure::Issuer,
                    format!("{path} answered {status} with something other than JSON"),
                )
            })?
        };
        if status.is_success() {
            Ok(value)
        } else {
            Err(refusal(status, &value))
        }
    }

    /// Follows an event stream (Server-Sent Events), calling `each` with every event's JSON,
    /// until the issuer ends it or `count` events came.
    async fn follow(
        &self,
        path: &str,
        count: Option<u64>,
        mut each: impl FnMut(&Value),
    ) -> Result<(), Error> {
        let mut response = self
            .request(Method::GET, path)
            .header("Accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| unreachable(&self.base, &e))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.json::<Value>().await.unwrap_or(Value::Null);
            return Err(refusal(status, &body));
        }
        let mut pending = Vec::new();
        let mut seen = 0;
        while count.is_none_or(|count| seen < count) {
            let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| unreachable(&self.base, &e))?
            else {
                return Ok(());
            };
            pending.extend_from_slice(&chunk);
            // Events end with a blank line; their `data:` lines carry the JSON.
            while let Some(end) = pending.windows(2).position(|pair| pair == b"\n\n") {
                let block: Vec<u8> = pending.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&block);
                let data: String = text
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue;
                }
                let event = serde_json::from_str(&data).map_err(|_| {
                    error(
                        Failure::Issuer,
                        "the event stream sent something other than JSON",
                    )
                })?;
                each(&event);
                seen += 1;
                if count.is_some_and(|count| seen >= count) {
                    break;
                }
            }
        }
        Ok(())
    }
}

fn unreachable(base: &str, cause: &reqwest::Error) -> Error {
    let what = if cause.is_timeout() {
        "did not answer in time"
    } else {
        "cannot be reached"
    };
    error(Failure::Unreachable, format!("{base} {what}"))
}

/// The failure of an error answer, with the API's `{code, detail}`.
fn refusal(status: StatusCode, body: &Value) -> Error {
    let failure = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Failure::Unauthorized,
        StatusCode::NOT_FOUND => Failure::NotFound,
        status if status.is_client_error() => Failure::Refused,
        _ => Failure::Issuer,
    };
    let detail = match (body["code"].as_str(), body["detail"].as_str()) {
        (Some(code), Some(detail)) => format!("{code}: {detail}"),
        (Some(code), None) => code.to_owned(),
        _ => "no details".to_owned(),
    };
    error(failure, format!("{status}: {detail}"))
}

/// A path segment: percent-encodes what would change the path.
fn segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn read_json(file: &Path) -> Result<Value, Error> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    }
    .map_err(|e| {
        error(
            Failure::Local,
            format!("cannot read {}: {e}", file.display()),
        )
    })?;
    serde_json::from_str(&text).map_err(|e| {
        error(
            Failure::Local,
            format!("{} is not JSON: {e}", file.display()),
        )
    })
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn pretty(value: &Value) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_default()
    )
}

/// The entries of a listing (an array, or a page's `items`), one line each, `columns` separated
/// by two spaces.
fn table(listing: &Value, columns: &[&str]) -> String {
    let items = listing
        .as_array()
        .or_else(|| listing["items"].as_array())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut out = String::new();
    for item in items {
        let cells: Vec<String> = columns.iter().map(|column| text(&item[*column])).collect();
        out.push_str(&cells.join("  "));
        out.push('\n');
    }
    out
}

/// Events, one line each: time (Unix ms), type, session, and each delivery's status.
fn event_lines(listing: &Value) -> String {
    let items = listing["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut out = String::new();
    for event in items {
        let deliveries: Vec<String> = event["deliveries"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|delivery| text(&delivery["status"]))
            .collect();
        out.push_str(&format!(
            "{}  {}  {}{}\n",
            text(&event["timestamp"]),
            text(&event["type"]),
            text(&event["id"]),
            if deliveries.is_empty() {
                String::new()
            } else {
                format!("  {}", deliveries.join(","))
            }
        ));
    }
    out
}
