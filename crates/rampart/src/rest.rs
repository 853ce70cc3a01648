//! The CLI's REST client: HTTPS to Rampart with the platform CA, a bearer token or API key,
//! retries on `429` (after `Retry-After`) and on transport errors, and error descriptions that
//! never echo secrets. `bench provision`, `advisories` and `simulate` speak through it.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::Value;

/// How often one request is retried after `429 rate_limited` or a transport error.
const MAX_ATTEMPTS: u32 = 8;

/// A REST API endpoint with its credential.
pub(crate) struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    pub(crate) fn new(client: reqwest::Client, url: &str, token: String) -> Api {
        Api { client, base: url.trim_end_matches('/').to_owned(), token }
    }

    /// Sends one request, retrying on 429 (after `Retry-After`) and on transport errors.
    pub(crate) async fn call(
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
pub(crate) fn describe(status: StatusCode, answer: &Value) -> String {
    format!(
        "{status}: {} {}",
        answer["error"].as_str().unwrap_or("(no error code)"),
        answer["message"].as_str().unwrap_or_default()
    )
}

/// An HTTPS client that trusts only the CA in `ca` (PEM).
pub(crate) fn https_client(ca: &Path) -> anyhow::Result<reqwest::Client> {
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
    use serde_json::json;

    use super::*;

    #[test]
    fn errors_show_code_and_message_only() {
        let answer = json!({"error": "forbidden", "message": "missing devices:write"});
        assert_eq!(describe(StatusCode::FORBIDDEN, &answer), "403 Forbidden: forbidden missing devices:write");
        assert_eq!(describe(StatusCode::BAD_GATEWAY, &Value::Null), "502 Bad Gateway: (no error code) ");
    }
}
