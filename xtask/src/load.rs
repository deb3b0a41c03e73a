//! `load`: still `scripts/load` (the shell script) until it is ported here.

pub(crate) fn run() -> anyhow::Result<()> {
    anyhow::bail!("run scripts/load")
}
