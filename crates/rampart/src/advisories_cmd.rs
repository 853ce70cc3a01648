//! `rampart advisories`: vulnerability advisories over the REST API (SPEC §9, §14).
//! `import FILE.json` posts an OSV record (or an array of them) and stops at the first one
//! the platform refuses, printing its message (which names the field); `exposure` prints the
//! devices running affected firmware.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::rest::{Api, describe, https_client};

/// Largest advisory file read, in bytes.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Args)]
pub(crate) struct AdvisoriesArgs {
    /// Rampart's HTTPS base URL, e.g. https://127.0.0.1:8443.
    #[arg(long, env = "RAMPART_URL")]
    pub url: String,
    /// PEM file of the CA to trust (DATA_DIR/tls/ca.pem).
    #[arg(long)]
    pub ca: PathBuf,
    /// Access token or API key (firmware:write to import, firmware:read for exposure).
    #[arg(long, env = "RAMPART_TOKEN", hide_env_values = true)]
    pub token: String,
    #[command(subcommand)]
    pub command: AdvisoriesCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AdvisoriesCommand {
    /// Import an OSV record (or a JSON array of records) from a file.
    Import { file: PathBuf },
    /// List the devices running firmware that an advisory affects.
    Exposure,
}

pub(crate) async fn run(args: AdvisoriesArgs) -> anyhow::Result<ExitCode> {
    crate::bench::install_crypto_provider();
    let api = Api::new(https_client(&args.ca)?, &args.url, args.token);
    match args.command {
        AdvisoriesCommand::Import { file } => import(&api, &file).await,
        AdvisoriesCommand::Exposure => {
            let (status, answer) = api.call(Method::GET, "/api/v1/advisories/exposure", None).await?;
            if status != StatusCode::OK {
                bail!("GET /api/v1/advisories/exposure: {}", describe(status, &answer));
            }
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn import(api: &Api, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let size = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?.len();
    if size > MAX_FILE_BYTES {
        bail!("{}: larger than {MAX_FILE_BYTES} bytes", file.display());
    }
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let parsed: Value = serde_json::from_slice(&text).with_context(|| format!("{}: not valid JSON", file.display()))?;
    let records = match parsed {
        Value::Array(records) => records,
        record => vec![record],
    };
    for (index, record) in records.iter().enumerate() {
        let (status, answer) = api.call(Method::POST, "/api/v1/advisories", Some(record)).await?;
        if status != StatusCode::CREATED {
            let which = record["id"].as_str().map_or_else(|| format!("record {index}"), |id| format!("advisory {id}"));
            bail!("{}: {which} refused: {}", file.display(), describe(status, &answer));
        }
        println!("imported {}", answer["id"].as_str().unwrap_or("?"));
    }
    Ok(ExitCode::SUCCESS)
}
