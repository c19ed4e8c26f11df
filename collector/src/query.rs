//! `strand query` (in progress).

#[derive(clap::Args, Debug)]
pub struct QueryArgs {}

pub async fn run(_args: QueryArgs) -> anyhow::Result<()> {
    anyhow::bail!("`strand query` is not implemented yet")
}
