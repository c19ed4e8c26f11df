//! `strand serve` (in progress).

#[derive(clap::Args, Debug)]
pub struct ServeArgs {}

pub async fn run(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("`strand serve` is not implemented yet")
}
