//! `strand import` (in progress).

#[derive(clap::Subcommand, Debug)]
pub enum ImportCommand {
    /// PyTorch profiler (Kineto) JSON traces.
    Kineto {},
}

pub async fn run(_cmd: ImportCommand) -> anyhow::Result<()> {
    anyhow::bail!("`strand import` is not implemented yet")
}
