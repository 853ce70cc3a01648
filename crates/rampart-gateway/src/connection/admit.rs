//! Admitting a CONNECT: authentication (device certificate, device token or an application's
//! API key), the client id rules, the guard, and the will's topic.

use std::net::SocketAddr;

use rampart_core::acl::{PublishDecision, authorize_publish};
use rampart_mqtt::{Connect, Protocol};
use rampart_platform::{AuthenticatedDevice, DeviceAuthError, split_username};
use rustls_pki_types::CertificateDer;

use crate::Shared;
use crate::guard::Verdict;
use crate::identity::Identity;
use crate::reasons::Refusal;

/// A successful authentication: who, with what, and the client id to use.
pub(super) struct Admitted {
    pub(super) identity: Identity,
    pub(super) client_id: String,
    /// Set when the server chose the client id (5.0 Assigned Client Identifier).
    pub(super) assigned: bool,
}

/// Authenticates the CONNECT and checks its client id and will.
pub(super) async fn admit(
    shared: &Shared,
    connect: &Connect,
    chain: Option<&[CertificateDer<'static>]>,
    peer: SocketAddr,
) -> Result<Admitted, Refusal> {
    let platform = &shared.platform;
    let source_ip = peer.ip().to_string();
    let password = connect.password.as_deref();
    let is_api_key = password.is_some_and(|p| p.starts_with(rampart_platform::API_KEY_PREFIX.as_bytes()));
    let identity = match chain {
        Some(chain) if !chain.is_empty() && !is_api_key => {
            let device = match platform.authenticate_device_certificate(chain, platform.now_ms()).await {
                Ok(device) => device,
                Err(error) => {
                    platform.record_device_auth_failure(&error, Some(&source_ip), "mqtt").await;
                    return Err(auth_refusal(&error));
                }
            };
            let expected = format!("{}/{}", device.device.tenant, device.device.id);
            if connect.username.as_deref().is_some_and(|username| username != expected) {
                let error = DeviceAuthError::BadCredentials {
                    tenant: Some(device.device.tenant.clone()),
                    device: Some(device.device.id.clone()),
                    reason: "username does not match the certificate",
                };
                platform.record_device_auth_failure(&error, Some(&source_ip), "mqtt").await;
                return Err(Refusal::BadCredentials);
            }
            device_identity(device)
        }
        _ => {
            let (Some(username), Some(password)) = (connect.username.as_deref(), password) else {
                return Err(Refusal::BadCredentials);
            };
            let Some((tenant, name)) = split_username(username) else { return Err(Refusal::BadCredentials) };
            if is_api_key {
                match platform.authenticate_application(tenant, name, password, Some(source_ip.clone())).await {
                    Ok(principal) => Identity::Application { principal: Box::new(principal) },
                    Err(error) => {
                        platform.record_device_auth_failure(&error, Some(&source_ip), "mqtt").await;
                        return Err(auth_refusal(&error));
                    }
                }
            } else {
                match platform.authenticate_device_token(tenant, name, password).await {
                    Ok(device) => device_identity(device),
                    Err(error) => {
                        platform.record_device_auth_failure(&error, Some(&source_ip), "mqtt").await;
                        return Err(auth_refusal(&error));
                    }
                }
            }
        }
    };
    let (client_id, assigned) = match (&identity, connect.client_id.as_str()) {
        (Identity::Device { device, .. }, "") => (device.clone(), true),
        (Identity::Device { device, .. }, client_id) if client_id == device => (device.clone(), false),
        (Identity::Device { tenant, device, .. }, _) => {
            let error = DeviceAuthError::BadCredentials {
                tenant: Some(tenant.clone()),
                device: Some(device.clone()),
                reason: "client id is not the device id",
            };
            platform.record_device_auth_failure(&error, Some(&source_ip), "mqtt").await;
            return Err(Refusal::BadClientId);
        }
        // [MQTT-3.1.3-8]: 3.1.1 refuses an empty client id for a persistent session. 5.0 dropped
        // that rule: the assigned id (told in CONNACK) names the session for a later resume.
        (Identity::Application { .. }, "") if !connect.clean_start && connect.protocol == Protocol::V311 => {
            return Err(Refusal::BadClientId);
        }
        (Identity::Application { .. }, "") => (format!("auto-{}", rampart_crypto::random_id(8)), true),
        (Identity::Application { .. }, client_id) => (client_id.to_owned(), false),
    };
    if shared.guard.on_connect(&identity.origin(peer)) == Verdict::Deny {
        return Err(Refusal::NotAuthorized);
    }
    if let Some(will) = &connect.will {
        let rules = shared.policies.get(platform, identity.tenant()).await.map_err(|error| {
            tracing::error!(%error, "loading the topic policy failed");
            Refusal::Unavailable
        })?;
        if let PublishDecision::Denied(why) = authorize_publish(&rules.topics, &identity.requester(), &will.topic) {
            shared.count_denial();
            shared.raise_acl_violation(&identity, &will.topic, "will", why, Some(peer), 0);
            return Err(Refusal::NotAuthorized);
        }
    }
    Ok(Admitted { identity, client_id, assigned })
}

fn device_identity(device: AuthenticatedDevice) -> Identity {
    Identity::Device { tenant: device.device.tenant, device: device.device.id, method: device.method }
}

fn auth_refusal(error: &DeviceAuthError) -> Refusal {
    match error {
        DeviceAuthError::BadCredentials { .. } => Refusal::BadCredentials,
        DeviceAuthError::NotAuthorized { .. } => Refusal::NotAuthorized,
        DeviceAuthError::Platform(platform_error) => {
            tracing::error!(error = %platform_error, "authentication could not complete");
            Refusal::Unavailable
        }
    }
}
