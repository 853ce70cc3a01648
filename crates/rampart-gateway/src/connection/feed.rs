//! What the platform sends a device on its own topics (SPEC §7): each pending operation on
//! `devices/{id}/operations`, and the desired state, retained, on `devices/{id}/twin/desired`.
//! A new item reaches the connected subscribers at once (control event `DeviceFeedChanged`);
//! a device that subscribes, or resumes a session holding the subscription, gets what stands:
//! every operation still PENDING (so again after each reconnect, until it takes it up) and the
//! current desired state.

use bytes::Bytes;
use rampart_mqtt::{Action, OutgoingMessage, Properties, QoS};
use rampart_platform::DeviceFeed;

use super::Connection;
use crate::Shared;
use crate::router::{RoutedMessage, SubOptions};

/// The topic of a device's operations.
pub(crate) fn operations_topic(device: &str) -> String {
    format!("devices/{device}/operations")
}

/// The topic of a device's desired state.
pub(crate) fn desired_topic(device: &str) -> String {
    format!("devices/{device}/twin/desired")
}

fn message(topic: String, payload: &serde_json::Value, retain: bool) -> RoutedMessage {
    RoutedMessage {
        topic,
        payload: Bytes::from(payload.to_string()),
        qos: QoS::AtLeastOnce,
        retain,
        properties: Properties { payload_format_indicator: Some(1), ..Properties::default() },
        expires_at_ms: None,
    }
}

impl Shared {
    /// The messages that stand on one of `device`'s feeds: its PENDING operations, oldest
    /// first, or its desired state (none before the first patch).
    async fn standing(&self, tenant: &str, device: &str, topic: &str) -> Vec<RoutedMessage> {
        let ingestor = &self.ingestor;
        if topic == operations_topic(device) {
            match ingestor.pending_operations(tenant, device).await {
                Ok(pending) => {
                    pending.iter().map(|op| message(topic.to_owned(), &op.device_message(), false)).collect()
                }
                Err(error) => {
                    tracing::warn!(%error, tenant, device, "reading pending operations failed");
                    Vec::new()
                }
            }
        } else if topic == desired_topic(device) {
            match ingestor.desired_message(tenant, device).await {
                Ok(desired) => desired.map(|desired| message(topic.to_owned(), &desired, true)).into_iter().collect(),
                Err(error) => {
                    tracing::warn!(%error, tenant, device, "reading the desired state failed");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        }
    }

    /// Routes a new feed item to the tenant's subscribers (the device, and applications that
    /// may read it; every delivery is checked per message as usual).
    pub(crate) async fn publish_feed(&self, tenant: &str, device: &str, feed: &DeviceFeed) {
        let messages = match feed {
            DeviceFeed::Operation { id } => match self.ingestor.operation_of_device(tenant, device, id).await {
                Ok(op) if op.status == rampart_core::OperationStatus::Pending => {
                    vec![message(operations_topic(device), &op.device_message(), false)]
                }
                Ok(_) => Vec::new(),
                Err(error) => {
                    tracing::debug!(%error, tenant, device, "a new operation could not be read");
                    Vec::new()
                }
            },
            DeviceFeed::DesiredTwin => self.standing(tenant, device, &desired_topic(device)).await,
        };
        for message in messages {
            self.route_within(tenant, None, message);
        }
    }
}

impl Connection {
    /// What stands on the device's own feeds among `filters` (just granted, or held by a
    /// resumed session), as actions publishing it to this connection.
    pub(super) async fn standing_feeds(&mut self, filters: &[(String, SubOptions)]) -> Vec<Action> {
        let Some(device) = self.identity.device().map(str::to_owned) else { return Vec::new() };
        let tenant = self.key.tenant.clone();
        let mut actions = Vec::new();
        for (filter, granted) in filters {
            if *filter != operations_topic(&device) && *filter != desired_topic(&device) {
                continue;
            }
            for message in self.shared.standing(&tenant, &device, filter).await {
                let now = self.shared.now_ms();
                let outgoing = OutgoingMessage {
                    topic: message.topic,
                    payload: message.payload,
                    qos: message.qos.min(granted.qos),
                    retain: message.retain,
                    properties: Properties {
                        subscription_identifiers: granted.identifier.into_iter().collect(),
                        ..message.properties
                    },
                    expires_at_ms: None,
                };
                actions.extend(self.session.publish(outgoing, now));
            }
        }
        actions
    }

    /// A resumed device session with subscriptions to its own feeds gets what stands on them.
    pub(super) async fn resume_feeds(&mut self) {
        if self.identity.device().is_none() {
            return;
        }
        let held: Vec<(String, SubOptions)> =
            self.entry.lock().subscriptions.iter().map(|(filter, options)| (filter.clone(), *options)).collect();
        if held.is_empty() {
            return;
        }
        let actions = self.standing_feeds(&held).await;
        self.carry_out(actions).await;
    }
}
