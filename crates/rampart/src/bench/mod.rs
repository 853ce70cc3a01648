//! `rampart bench`: load generation against Rampart or any MQTT broker (SPEC §14).

use std::process::ExitCode;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.command {}
}
