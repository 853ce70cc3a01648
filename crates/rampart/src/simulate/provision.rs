//! Registers the simulated devices (an existing one is reused) and gives each a credential:
//! a fresh device token, or a key pair of its own with a certificate from the tenant CA.

use anyhow::{Context, bail};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::json;
use zeroize::Zeroizing;

use super::{AuthMode, SimulateArgs};
use crate::bench::device_id;
use crate::rest::{Api, describe};

/// How one simulated device proves who it is.
pub(crate) enum Credential {
    Token(Zeroizing<String>),
    /// PEM certificate chain and PEM private key.
    Certificate {
        chain: String,
        key: Zeroizing<String>,
    },
}

/// A simulated device.
pub(crate) struct Identity {
    pub id: String,
    pub credential: Credential,
}

pub(crate) async fn provision(api: &Api, args: &SimulateArgs) -> anyhow::Result<Vec<Identity>> {
    let total = args.devices;
    let mut results: Vec<(usize, anyhow::Result<Identity>)> = futures::stream::iter(1..=total)
        .map(|index| {
            let id = device_id(&args.prefix, index);
            async move { (index, one(api, id, args.auth).await) }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.sort_by_key(|(index, _)| *index);
    let mut identities = Vec::with_capacity(total);
    for (index, result) in results {
        identities.push(result.with_context(|| format!("provisioning {}", device_id(&args.prefix, index)))?);
    }
    eprintln!("provisioned {total} devices");
    Ok(identities)
}

async fn one(api: &Api, id: String, auth: AuthMode) -> anyhow::Result<Identity> {
    let (status, answer) = api.call(Method::POST, "/api/v1/devices", Some(&json!({"id": id}))).await?;
    if status != StatusCode::CREATED && status != StatusCode::CONFLICT {
        bail!("registering: {}", describe(status, &answer));
    }
    let credential = match auth {
        AuthMode::Token => {
            let path = format!("/api/v1/devices/{id}/tokens");
            let (status, answer) = api.call(Method::POST, &path, Some(&json!({}))).await?;
            if status != StatusCode::CREATED {
                bail!("issuing a token: {}", describe(status, &answer));
            }
            let token = answer["token"].as_str().context("no token in the answer")?;
            Credential::Token(Zeroizing::new(token.to_owned()))
        }
        AuthMode::Certificate => {
            let key = rcgen::KeyPair::generate().context("generating a device key")?;
            let mut params = rcgen::CertificateParams::default();
            params.distinguished_name.push(rcgen::DnType::CommonName, id.clone());
            let csr = params.serialize_request(&key).context("building the CSR")?.pem().context("encoding the CSR")?;
            let path = format!("/api/v1/devices/{id}/certificates");
            let (status, answer) = api.call(Method::POST, &path, Some(&json!({"csr": csr}))).await?;
            if status != StatusCode::CREATED {
                bail!("signing the CSR: {}", describe(status, &answer));
            }
            let certificate = answer["certificate"].as_str().context("no certificate in the answer")?;
            let chain = format!("{certificate}\n{}", answer["ca_chain"].as_str().unwrap_or_default());
            Credential::Certificate { chain, key: Zeroizing::new(key.serialize_pem()) }
        }
    };
    Ok(Identity { id, credential })
}
