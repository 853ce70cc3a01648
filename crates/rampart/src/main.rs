//! `rampart`: one binary that serves the platform and carries the operator's tools.

mod advisories_cmd;
mod audit_cmd;
mod bench;
mod cli;
mod config;
mod first_start;
mod keys_cmd;
mod peer_cert;
mod rest;
mod serve;
mod simulate;
mod tls;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: the message path allocates and frees many small
/// buffers across threads, where glibc's malloc spent a quarter of the server's CPU time
/// (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rampart: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("rampart: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        cli::Command::Serve(args) => serve::run(args).await,
        cli::Command::Audit(args) => audit_cmd::run(args).await,
        cli::Command::Keys(args) => keys_cmd::run(args).await,
        cli::Command::Bench(args) => bench::run(args).await,
        cli::Command::Advisories(args) => advisories_cmd::run(args).await,
        cli::Command::Simulate(args) => simulate::run(args).await,
    }
}
