//! `vellum bench`: complete issuance flows against a running server (written next).

use clap::Args;

#[derive(Debug, Args)]
pub struct BenchOptions {}

pub async fn run(_options: BenchOptions) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
