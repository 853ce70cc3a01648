//! `rampart keys rotate-master`: re-wrap every tenant key and platform secret under a new
//! master key, with the server stopped.

use std::process::ExitCode;

use anyhow::Context;
use rampart_crypto::{load_or_create_master_key, write_new_key_file};

use crate::cli::{KeysArgs, KeysCommand};
use crate::first_start::open_existing_platform;

pub(crate) async fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        KeysCommand::RotateMaster { data_dir, storage, new_key_file } => {
            let platform = open_existing_platform(&data_dir, storage.as_deref()).await?;
            let new_master = if new_key_file.exists() {
                load_or_create_master_key(&new_key_file, false)?.0
            } else {
                write_new_key_file(&new_key_file)?
            };
            let rewrapped = platform.keyring().rewrap_all(&new_master).await.context("re-wrapping keys")?;
            let entry = rampart_platform::AuditEntry::success(
                rampart_core::PLATFORM_TENANT,
                rampart_platform::Actor::System,
                rampart_core::AuditAction::KeysRotateMaster,
                "master-key",
            )
            .with_details(serde_json::json!({ "rewrapped": rewrapped }));
            platform.audit().append(entry).await?;
            println!("re-wrapped {rewrapped} keys under {}", new_key_file.display());
            println!(
                "start the server with RAMPART_MASTER_KEY_FILE={} (or move it to DATA_DIR/master.key)",
                new_key_file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
