//! `vellum bench seed`: fills a store for the growth benchmarks, straight through the store
//! (no server needed, though one may run). Copies one finished session with everything it owns
//! (grants, access tokens, issued credentials with their status entries, events) many times, a
//! batch per transaction, spread over the past; so a store of 1,000,000 sessions and 10,000,000
//! events takes minutes, not the hours issuing them would. Make the template first with one real
//! flow (`vellum bench flows --flows 1`): the copies then have the shapes issuance writes.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Args;

use crate::config::Config;
use crate::ids::SessionId;
use crate::store::{self, SeedBatch, SessionFilter, SessionStatus};

#[derive(Debug, Clone, Args)]
pub struct SeedOptions {
    /// A TOML file layered over the built-in defaults (also: VELLUM_CONFIG): its database is
    /// the one filled.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Copies of the template session to write.
    #[arg(long, default_value_t = 1_000_000)]
    pub sessions: u64,
    /// Events each copy gets (the template's, in order, repeated or cut to this many).
    #[arg(long, default_value_t = 10)]
    pub events_per_session: u32,
    /// The copies spread evenly over this many days before the template finished.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// The finished session to copy (default: the newest SUCCESSFUL one).
    #[arg(long)]
    pub template: Option<String>,
    /// Copies per transaction.
    #[arg(long, default_value_t = 5_000)]
    pub batch: u64,
}

pub async fn run(options: SeedOptions) -> anyhow::Result<()> {
    if options.batch == 0 || options.events_per_session == 0 || options.days == 0 {
        bail!("--batch, --events-per-session and --days must be at least 1");
    }
    let config = Config::load(options.config.as_deref())?;
    let store = store::open(&config)
        .await
        .context("cannot open the store")?;
    let template = match &options.template {
        Some(text) => {
            let id = SessionId::parse(text).context("--template is not a session id")?;
            let session = store
                .session(id)
                .await?
                .context("--template: no such session")?;
            if session.finished_at.is_none() {
                bail!("--template: session {id} has not finished");
            }
            id
        }
        None => {
            let filter = SessionFilter {
                status: Some(SessionStatus::Successful),
                profile_id: None,
                before: None,
                limit: 1,
            };
            let newest = store.sessions(&filter).await?.rows.into_iter().next();
            match newest {
                Some(Ok(session)) => session.id,
                _ => bail!(
                    "no SUCCESSFUL session to copy: run one flow first \
                     (vellum bench flows --flows 1), or name one with --template"
                ),
            }
        }
    };
    let span_ms = i64::from(options.days) * 86_400_000;
    let step_ms = (span_ms / i64::try_from(options.sessions.max(1))?).max(1);
    let run: u16 = rand::random();
    println!(
        "copying session {template} {} times, {} events each, over {} days (run {run:04x})",
        options.sessions, options.events_per_session, options.days
    );
    let started = Instant::now();
    let (mut sessions, mut events) = (0_u64, 0_u64);
    while sessions < options.sessions {
        let count = options.batch.min(options.sessions - sessions);
        let batch = SeedBatch {
            run,
            first: sessions,
            count,
            step_ms,
            events_per_session: options.events_per_session,
        };
        events += store.seed(template, &batch).await?;
        sessions += count;
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "  {sessions} sessions, {events} events in {seconds:.1} s ({:.0} sessions/s)",
            sessions as f64 / seconds
        );
    }
    println!(
        "seeded {sessions} sessions and {events} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
