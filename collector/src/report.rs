//! `strand report` (in progress).

#[derive(clap::Subcommand, Debug)]
pub enum ReportCommand {
    /// The stranded-capacity report.
    Stranded {},
}

pub async fn run(_cmd: ReportCommand) -> anyhow::Result<()> {
    anyhow::bail!("`strand report` is not implemented yet")
}
