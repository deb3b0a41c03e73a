//! `bench`: still `scripts/bench` (the shell script) until it is ported here.

pub(crate) fn run() -> anyhow::Result<()> {
    anyhow::bail!("run scripts/bench")
}
