//! Devices, credentials and audit through the API.
