//! `rampart bench provision`: registers `bench-00001` … `bench-NNNNN` in the tenant of the
//! caller's token over the REST API, issues each a device token, and writes the credentials
//! file. Requests run a bounded number at a time; a device that already exists (409) simply
//! gets a new token, so a rerun tops a file up instead of failing. Optionally creates an API
//! key for an application subscriber (`--subscriber-out`), the identity `bench run
//! --subscribe` needs on Rampart, where devices may not subscribe to each other's telemetry.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, bail};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::json;

use super::conn::install_crypto_provider;
use super::credentials::{self, Credential};
use crate::rest::{Api, describe, https_client};

pub(crate) struct ProvisionSettings {
    pub url: String,
    pub ca: PathBuf,
    pub token: String,
    pub devices: usize,
    pub prefix: String,
    pub parallel: usize,
    pub out: PathBuf,
    pub subscriber_out: Option<PathBuf>,
}

/// The device id of row `index` (1-based): `bench-00001`.
pub(crate) fn device_id(prefix: &str, index: usize) -> String {
    format!("{prefix}{index:05}")
}

pub(crate) async fn run(settings: ProvisionSettings) -> anyhow::Result<usize> {
    install_crypto_provider();
    let client = https_client(&settings.ca)?;
    let api = Arc::new(Api::new(client, &settings.url, settings.token));
    let (status, me) = api.call(reqwest::Method::GET, "/api/v1/me", None).await?;
    if status != StatusCode::OK {
        bail!("GET /api/v1/me: {}", describe(status, &me));
    }
    let tenant = me["tenant"].as_str().ok_or_else(|| anyhow!("GET /api/v1/me: no tenant in the answer"))?.to_owned();
    eprintln!("provisioning {} devices in tenant {tenant}", settings.devices);

    let done = Arc::new(AtomicU64::new(0));
    let total = settings.devices;
    let mut results: Vec<(usize, anyhow::Result<Credential>)> = futures::stream::iter(1..=settings.devices)
        .map(|index| {
            let api = api.clone();
            let tenant = tenant.clone();
            let device = device_id(&settings.prefix, index);
            let done = done.clone();
            async move {
                let result = provision_device(&api, &tenant, &device).await;
                let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                if finished.is_multiple_of(500) || finished == total as u64 {
                    eprintln!("provisioned {finished}/{total}");
                }
                (index, result)
            }
        })
        .buffer_unordered(settings.parallel.max(1))
        .collect()
        .await;
    results.sort_by_key(|(index, _)| *index);
    let mut rows = Vec::with_capacity(results.len());
    let mut failures = 0;
    for (index, result) in results {
        match result {
            Ok(row) => rows.push(row),
            Err(error) => {
                failures += 1;
                if failures <= 10 {
                    eprintln!("{}: {error:#}", device_id(&settings.prefix, index));
                }
            }
        }
    }
    credentials::write(&settings.out, &rows)?;
    println!("wrote {} credentials for tenant {tenant} to {}", rows.len(), settings.out.display());
    if let Some(path) = &settings.subscriber_out {
        let row = provision_subscriber(&api, &tenant).await?;
        credentials::write(path, std::slice::from_ref(&row))?;
        println!("wrote the subscriber's API-key credentials to {}", path.display());
    }
    Ok(failures)
}

async fn provision_device(api: &Api, tenant: &str, device: &str) -> anyhow::Result<Credential> {
    let (status, answer) =
        api.call(reqwest::Method::POST, "/api/v1/devices", Some(&json!({"id": device, "type": "bench"}))).await?;
    if status != StatusCode::CREATED && status != StatusCode::CONFLICT {
        bail!("registering: {}", describe(status, &answer));
    }
    let (status, answer) = api.call(reqwest::Method::POST, &format!("/api/v1/devices/{device}/tokens"), None).await?;
    if status != StatusCode::CREATED {
        bail!("issuing a token: {}", describe(status, &answer));
    }
    let token = answer["token"].as_str().ok_or_else(|| anyhow!("issuing a token: no token in the answer"))?;
    Ok(Credential { client_id: device.to_owned(), username: format!("{tenant}/{device}"), password: token.to_owned() })
}

async fn provision_subscriber(api: &Api, tenant: &str) -> anyhow::Result<Credential> {
    let name = format!("bench-subscriber-{}", std::process::id());
    let body = json!({"name": name, "roles": ["viewer"]});
    let (status, answer) = api.call(reqwest::Method::POST, "/api/v1/api-keys", Some(&body)).await?;
    if status != StatusCode::CREATED {
        bail!("creating the subscriber's API key: {}", describe(status, &answer));
    }
    let id = answer["id"].as_str().ok_or_else(|| anyhow!("API key answer without id"))?;
    let key = answer["key"].as_str().ok_or_else(|| anyhow!("API key answer without key"))?;
    Ok(Credential {
        client_id: "bench-subscriber".to_owned(),
        username: format!("{tenant}/{id}"),
        password: key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_zero_padded_and_valid() {
        assert_eq!(device_id("bench-", 1), "bench-00001");
        assert_eq!(device_id("bench-", 10_000), "bench-10000");
        assert_eq!(device_id("bench-", 123_456), "bench-123456");
    }
}
