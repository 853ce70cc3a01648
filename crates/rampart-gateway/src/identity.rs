//! Who a connection authenticated as: a device (with the credential it used, so that the
//! credential's deletion or a re-check reaches the connection) or an application (the
//! [`Principal`] of its API key, with its permissions and scope).

use std::net::SocketAddr;

use rampart_core::acl::Requester;
use rampart_platform::{DeviceAuthMethod, Principal};

use crate::guard::Origin;

#[derive(Debug, Clone)]
pub(crate) enum Identity {
    Device {
        tenant: String,
        device: String,
        method: DeviceAuthMethod,
    },
    /// Boxed: a principal is larger than a device's identity, and devices are the many.
    Application {
        principal: Box<Principal>,
    },
}

impl Identity {
    pub(crate) fn tenant(&self) -> &str {
        match self {
            Identity::Device { tenant, .. } => tenant,
            Identity::Application { principal } => &principal.tenant,
        }
    }

    pub(crate) fn requester(&self) -> Requester<'_> {
        match self {
            Identity::Device { device, .. } => Requester::Device(device),
            Identity::Application { principal } => Requester::Application(&principal.permissions),
        }
    }

    pub(crate) fn device(&self) -> Option<&str> {
        match self {
            Identity::Device { device, .. } => Some(device),
            Identity::Application { .. } => None,
        }
    }

    /// The API key id of an application.
    pub(crate) fn api_key(&self) -> Option<&str> {
        match self {
            Identity::Device { .. } => None,
            Identity::Application { principal } => principal.api_key_id(),
        }
    }

    pub(crate) fn origin(&self, peer: SocketAddr) -> Origin<'_> {
        Origin { tenant: self.tenant(), device: self.device(), peer }
    }
}
