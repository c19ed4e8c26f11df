//! `strand postmortem` (in progress).

#[derive(clap::Args, Debug)]
pub struct PostmortemArgs {}

pub async fn run(_args: PostmortemArgs) -> anyhow::Result<()> {
    anyhow::bail!("`strand postmortem` is not implemented yet")
}
