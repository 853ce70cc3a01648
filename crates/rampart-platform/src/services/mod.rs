//! The service layer: every state change of tenants, people, devices, credentials and
//! policies is one typed method of [`crate::Platform`] that authorises (permission and scope),
//! writes, audits and publishes its control event, so the edges (API, gateway, CLI) parse,
//! call and answer, and never reach the store themselves.

pub(crate) mod api_keys;
pub(crate) mod audit_log;
pub(crate) mod connections;
pub(crate) mod credentials;
pub(crate) mod devices;
pub(crate) mod groups;
pub(crate) mod login;
pub(crate) mod policies;
pub(crate) mod roles;
pub(crate) mod tenants;
pub(crate) mod trusted_cas;
pub(crate) mod users;
