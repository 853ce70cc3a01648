//! `rampart bench provision`: registers `bench-00001` … `bench-NNNNN` in the tenant of the
//! caller's token over the REST API, issues each a device token, and writes the credentials
//! file. Requests run a bounded number at a time; a device that already exists (409) simply
//! gets a new token, so a rerun tops a file up instead of failing. Optionally creates an API
//! key for an application subscriber (`--subscriber-out`), the identity `bench run
//! --subscribe` needs on Rampart, where devices may not subscribe to each other's telemetry.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::conn::install_crypto_provider;
use super::credentials::{self, Credential};

/// How often one request is retried after `429 rate_limited` or a transport error.
const MAX_ATTEMPTS: u32 = 8;

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

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    /// Sends one request, retrying on 429 (after `Retry-After`) and on transport errors.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request =
                self.client.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(&self.token);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!("retrying {path}: {error}");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    continue;
                }
                Err(error) => return Err(error).with_context(|| format!("{method} {path}")),
            };
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS && attempt < MAX_ATTEMPTS {
                let wait = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<u64>().ok())
                    .unwrap_or(1)
                    .min(60);
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            let text = response.text().await.with_context(|| format!("{method} {path}: reading the answer"))?;
            return Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)));
        }
    }
}

/// `{"error","message"}` of a REST error, for messages that must not echo secrets.
fn describe(status: StatusCode, answer: &Value) -> String {
    format!(
        "{status}: {} {}",
        answer["error"].as_str().unwrap_or("(no error code)"),
        answer["message"].as_str().unwrap_or_default()
    )
}

pub(crate) async fn run(settings: ProvisionSettings) -> anyhow::Result<usize> {
    install_crypto_provider();
    let client = https_client(&settings.ca)?;
    let api = Arc::new(Api { client, base: settings.url.trim_end_matches('/').to_owned(), token: settings.token });
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

fn https_client(ca: &Path) -> anyhow::Result<reqwest::Client> {
    let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
    let certificate = reqwest::Certificate::from_pem(&pem).with_context(|| format!("parsing {}", ca.display()))?;
    reqwest::Client::builder()
        .add_root_certificate(certificate)
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTPS client")
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

    #[test]
    fn errors_show_code_and_message_only() {
        let answer = json!({"error": "forbidden", "message": "missing devices:write"});
        assert_eq!(describe(StatusCode::FORBIDDEN, &answer), "403 Forbidden: forbidden missing devices:write");
        assert_eq!(describe(StatusCode::BAD_GATEWAY, &Value::Null), "502 Bad Gateway: (no error code) ");
    }
}
