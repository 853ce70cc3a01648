//! `rampart audit verify|export`: check the audit chains without the server, and export one
//! tenant's chain so that anyone holding the platform audit public key can check it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use rampart_core::AuditAction;
use rampart_platform::rows::{AuditChain, AuditCheckpoint, AuditRecord};
use rampart_platform::{ChainVerifier, ExportLine, VerifyReport, parse_export_line};

use crate::cli::{AuditArgs, AuditCommand};
use crate::first_start::open_existing_platform;

/// Exit code when a chain was altered.
const TAMPERED: u8 = 1;

pub(crate) async fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AuditCommand::Verify { data_dir: Some(data_dir), storage, .. } => {
            verify_data_dir(&data_dir, storage.as_deref()).await
        }
        AuditCommand::Verify { file: Some(file), public_key: Some(public_key), .. } => verify_file(&file, &public_key),
        AuditCommand::Verify { .. } => bail!("give --data-dir DIR, or --file F.jsonl with --public-key K"),
        AuditCommand::Export { data_dir, storage, tenant, out } => {
            export(&data_dir, storage.as_deref(), &tenant, &out).await
        }
    }
}

/// How a chain is named in the output: its tenant, and the incarnation when it has one (a
/// deleted tenant's chain and its successor's share the id).
fn chain_name(chain: &AuditChain) -> String {
    match chain.incarnation.is_empty() {
        true => chain.tenant.clone(),
        false => format!("{} (incarnation {})", chain.tenant, chain.incarnation),
    }
}

fn report(chain: &AuditChain, report: &VerifyReport) -> bool {
    let tenant = chain_name(chain);
    match report {
        VerifyReport::Valid { records, head } => {
            let head = head.as_ref().map_or_else(|| "empty".to_owned(), |(seq, hash)| format!("head seq {seq} {hash}"));
            println!("tenant {tenant}: intact, {records} records, {head}");
            true
        }
        VerifyReport::Invalid { first_bad_seq, reason } => {
            println!("tenant {tenant}: TAMPERED: first bad record seq {first_bad_seq}: {reason}");
            false
        }
    }
}

async fn verify_data_dir(data_dir: &Path, storage: Option<&str>) -> anyhow::Result<ExitCode> {
    let platform = open_existing_platform(data_dir, storage).await?;
    let mut intact = true;
    for (chain, outcome) in platform.audit().verify_all().await? {
        intact &= report(&chain, &outcome);
    }
    Ok(if intact { ExitCode::SUCCESS } else { ExitCode::from(TAMPERED) })
}

fn read_public_key(value: &str) -> anyhow::Result<String> {
    let path = Path::new(value);
    if path.is_file() {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(text.trim().to_owned());
    }
    Ok(value.trim().to_owned())
}

fn verify_file(file: &Path, public_key: &str) -> anyhow::Result<ExitCode> {
    let public_key = read_public_key(public_key)?;
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut records: BTreeMap<AuditChain, Vec<AuditRecord>> = BTreeMap::new();
    let mut checkpoints: BTreeMap<AuditChain, Vec<AuditCheckpoint>> = BTreeMap::new();
    let chain_of =
        |tenant: &str, incarnation: &str| AuditChain { tenant: tenant.to_owned(), incarnation: incarnation.to_owned() };
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match parse_export_line(line) {
            Ok(ExportLine::Record(record)) => {
                records.entry(chain_of(&record.tenant, &record.incarnation)).or_default().push(record)
            }
            Ok(ExportLine::Checkpoint(cp)) => {
                checkpoints.entry(chain_of(&cp.tenant, &cp.incarnation)).or_default().push(cp)
            }
            Err(reason) => {
                println!("line {}: TAMPERED: unreadable: {reason}", number + 1);
                return Ok(ExitCode::from(TAMPERED));
            }
        }
    }
    if records.is_empty() {
        bail!("{} holds no audit records", file.display());
    }
    let mut intact = true;
    for (chain, chain_records) in &records {
        let cps = checkpoints.get(chain).map(Vec::as_slice).unwrap_or_default();
        if cps.is_empty() {
            println!("tenant {}: TAMPERED: the export carries no signed checkpoint", chain_name(chain));
            intact = false;
            continue;
        }
        let mut verifier = ChainVerifier::new(chain, cps, &public_key);
        chain_records.iter().for_each(|record| verifier.push(record));
        intact &= report(chain, &verifier.finish());
    }
    Ok(if intact { ExitCode::SUCCESS } else { ExitCode::from(TAMPERED) })
}

async fn export(data_dir: &Path, storage: Option<&str>, tenant: &str, out: &Path) -> anyhow::Result<ExitCode> {
    let platform = open_existing_platform(data_dir, storage).await?;
    let lines = platform.audit().export_lines(tenant).await?;
    if lines.is_empty() {
        bail!("tenant {tenant} has no audit records");
    }
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?);
    for line in &lines {
        writeln!(file, "{line}")?;
    }
    file.flush()?;
    let entry = rampart_platform::AuditEntry::success(
        tenant,
        rampart_platform::Actor::System,
        AuditAction::AuditExport,
        format!("tenant:{tenant}"),
    );
    platform.audit().append(entry).await?;
    println!("exported {} lines of tenant {tenant} to {}", lines.len(), out.display());
    println!("public key {}", platform.audit().public_key_base64());
    Ok(ExitCode::SUCCESS)
}
