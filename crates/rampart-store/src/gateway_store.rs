//! Store methods the MQTT gateway needs (topic policies, certificate lookups, …), as a
//! supertrait of [`crate::Store`] so it can grow without touching the core trait.

use async_trait::async_trait;

use crate::sql_store::SqlStore;

/// Gateway-specific persistence.
#[async_trait]
pub trait GatewayStore: Send + Sync {}

#[async_trait]
impl GatewayStore for SqlStore {}
