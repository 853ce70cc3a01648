//! Incoming publishes: authorised by the ACL (and the guard), then either stored (a device's
//! platform topic; QoS 1/2 acknowledged only once durable) or routed, and answered with the
//! code `reasons` chooses; and the routing of messages (and wills) to subscribers.

use std::sync::Arc;

use bytes::Bytes;
use rampart_core::acl::{PlatformTopic, PublishDecision, authorize_publish};
use rampart_data::DataKind;
use rampart_mqtt::{Action, OutgoingMessage, Properties, Publish, QoS, Will};

use super::{Connection, StoreOutcome};
use crate::Shared;
use crate::guard::Verdict;
use crate::identity::Identity;
use crate::quotas::Quota;
use crate::reasons::{self, PublishOutcome};
use crate::registry::{ClientRef, SessionKey};
use crate::router::RoutedMessage;

impl Connection {
    pub(super) fn routed_message(&self, publish: &Publish) -> RoutedMessage {
        let now = self.shared.now_ms();
        let properties = forwarded_properties(&publish.properties);
        RoutedMessage {
            topic: publish.topic.clone(),
            payload: publish.payload.clone(),
            qos: publish.qos,
            retain: publish.retain,
            properties,
            expires_at_ms: publish.properties.message_expiry_interval.map(|s| now + u64::from(s) * 1000),
        }
    }

    pub(super) async fn incoming_publish(&mut self, publish: Publish) -> Vec<Action> {
        let rules = match self.rules().await {
            Some(rules) => rules,
            None => return self.answer_publish(&publish, PublishOutcome::Failed),
        };
        let mut decision = authorize_publish(&rules.topics, &self.identity.requester(), &publish.topic);
        let origin = self.identity.origin(self.peer);
        if !matches!(decision, PublishDecision::Denied(_))
            && self.shared.guard.on_publish(&origin, &publish.topic, publish.payload.len()) == Verdict::Deny
        {
            decision = PublishDecision::Denied("refused by the guard");
        }
        let message = self.routed_message(&publish);
        match decision {
            PublishDecision::Denied(why) => {
                self.denied(&publish.topic, "publish", why);
                self.answer_publish(&publish, PublishOutcome::Denied)
            }
            PublishDecision::Routed => {
                if message.retain && !self.shared.may_retain(&self.key.tenant, &message) {
                    self.shared.quota_exceeded(&self.identity, Quota::RetainedMessages, Some(self.peer));
                    return self.answer_publish(&publish, PublishOutcome::QuotaExceeded);
                }
                let delivered = self.shared.route(&self.key, message) > 0;
                self.answer_publish(&publish, PublishOutcome::Accepted { delivered })
            }
            PublishDecision::Platform(topic) => self.platform_publish(publish, topic, message),
        }
    }

    /// Acknowledges a QoS 1/2 publish with the code of its outcome (QoS 0 gets nothing).
    fn answer_publish(&mut self, publish: &Publish, outcome: PublishOutcome) -> Vec<Action> {
        match (publish.packet_id, reasons::puback(outcome, self.protocol)) {
            (Some(packet_id), Some(code)) if publish.qos != QoS::AtMostOnce => {
                self.session.inbound_stored(packet_id, code)
            }
            _ => Vec::new(),
        }
    }

    fn platform_publish(&mut self, publish: Publish, topic: PlatformTopic, message: RoutedMessage) -> Vec<Action> {
        let Identity::Device { tenant, device, .. } = &*self.identity else { return Vec::new() };
        if let PlatformTopic::OperationStatus(operation) = topic {
            return self.operation_status(publish, operation, message);
        }
        let kind = match data_kind(&topic) {
            Some(kind) => kind,
            None => {
                let delivered = self.shared.route(&self.key, message) > 0;
                return self.answer_publish(&publish, PublishOutcome::Accepted { delivered });
            }
        };
        let received_at = self.shared.platform.now_ms();
        let packet_id = match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) | (_, None) => {
                match self.shared.ingestor.submit_nowait(tenant, device, kind, &publish.payload, received_at) {
                    Ok(()) => {
                        self.shared.route(&self.key, message);
                    }
                    Err(error) => tracing::debug!(tenant, device, %error, "QoS 0 message not stored"),
                }
                return Vec::new();
            }
            (_, Some(packet_id)) => packet_id,
        };
        let ingestor = self.shared.ingestor.clone();
        let (tenant, device) = (tenant.clone(), device.clone());
        let payload: Bytes = publish.payload;
        self.pending.push(Box::pin(async move {
            let result = ingestor.submit(&tenant, &device, kind, &payload, received_at).await;
            StoreOutcome { packet_id, result, message }
        }));
        Vec::new()
    }

    /// A device reports on one of its operations: acknowledged once the new status is stored
    /// (5.0: 0x99 for a malformed report, 0x83 for another device's operation or a move
    /// backwards), then routed to the subscribers that may read it.
    fn operation_status(&mut self, publish: Publish, operation: String, message: RoutedMessage) -> Vec<Action> {
        let Identity::Device { tenant, device, .. } = &*self.identity else { return Vec::new() };
        let ingestor = self.shared.ingestor.clone();
        let (tenant, device) = (tenant.clone(), device.clone());
        let payload: Bytes = publish.payload;
        match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) | (_, None) => {
                let (shared, key) = (Arc::clone(&self.shared), self.key.clone());
                tokio::spawn(async move {
                    match ingestor.submit_operation_status(&tenant, &device, &operation, &payload).await {
                        Ok(()) => {
                            shared.route(&key, message);
                        }
                        Err(error) => tracing::debug!(tenant, device, %error, "QoS 0 status report refused"),
                    }
                });
                Vec::new()
            }
            (_, Some(packet_id)) => {
                self.pending.push(Box::pin(async move {
                    let result = ingestor.submit_operation_status(&tenant, &device, &operation, &payload).await;
                    StoreOutcome { packet_id, result, message }
                }));
                Vec::new()
            }
        }
    }

    /// A store finished: acknowledge (or refuse) and route what was stored.
    pub(super) async fn stored(&mut self, outcome: StoreOutcome) {
        let StoreOutcome { packet_id, result, message } = outcome;
        let answer = reasons::ingest_outcome(&result);
        match &result {
            Ok(()) => {
                self.shared.route(&self.key, message);
            }
            Err(error) if answer == PublishOutcome::Failed => {
                tracing::error!(%error, "storing a message failed; not acknowledged")
            }
            Err(error) => tracing::debug!(%error, client = ?self.key.client, "message refused"),
        }
        match reasons::puback(answer, self.protocol) {
            Some(code) => {
                let actions = self.session.inbound_stored(packet_id, code);
                self.carry_out(actions).await;
            }
            None => {
                // Without an acknowledgement the client re-sends after reconnecting.
                let code = reasons::puback(PublishOutcome::Failed, rampart_mqtt::Protocol::V5).unwrap_or_default();
                let actions = self.session.close(code, true);
                self.carry_out(actions).await;
            }
        }
    }
}

/// The kind of data a device's platform topic carries; `None` for a topic that is routed but
/// not stored.
fn data_kind(topic: &PlatformTopic) -> Option<DataKind> {
    match topic {
        PlatformTopic::Telemetry => Some(DataKind::Telemetry),
        PlatformTopic::Events => Some(DataKind::Events),
        PlatformTopic::Alarms => Some(DataKind::Alarms),
        PlatformTopic::TwinReported => Some(DataKind::TwinReported),
        PlatformTopic::Attestation => Some(DataKind::Attestation),
        // Not device data: handled by `operation_status`.
        PlatformTopic::OperationStatus(_) => None,
    }
}

/// The properties a subscriber receives from a publish (5.0).
pub(super) fn forwarded_properties(properties: &Properties) -> Properties {
    Properties {
        payload_format_indicator: properties.payload_format_indicator,
        content_type: properties.content_type.clone(),
        response_topic: properties.response_topic.clone(),
        correlation_data: properties.correlation_data.clone(),
        user_properties: properties.user_properties.clone(),
        ..Properties::default()
    }
}

pub(super) fn will_message(will: &Will, now: u64) -> RoutedMessage {
    RoutedMessage {
        topic: will.topic.clone(),
        payload: will.payload.clone(),
        qos: will.qos,
        retain: will.retain,
        properties: forwarded_properties(&will.properties),
        expires_at_ms: will.properties.message_expiry_interval.map(|s| now + u64::from(s) * 1000),
    }
}

impl Shared {
    /// Routes a message published in `publisher`'s tenant to every matching subscriber (and
    /// keeps it when retained). Answers how many sessions accepted it.
    pub(crate) fn route(&self, publisher: &SessionKey, message: RoutedMessage) -> usize {
        self.route_within(&publisher.tenant, Some(publisher), message)
    }

    /// Routes a message in `tenant`, from `publisher` or (`None`) from the platform itself.
    pub(crate) fn route_within(&self, tenant: &str, publisher: Option<&SessionKey>, message: RoutedMessage) -> usize {
        if message.retain && !rampart_core::acl::in_device_namespace(&message.topic) {
            self.router.retain(tenant, &message, self.settings.max_retained_per_tenant);
        }
        let deliveries = self.router.route(tenant, &message.topic, publisher);
        let mut accepted = 0;
        for delivery in deliveries {
            let mut properties = message.properties.clone();
            properties.subscription_identifiers = delivery.identifiers;
            let outgoing = OutgoingMessage {
                topic: message.topic.clone(),
                payload: message.payload.clone(),
                qos: message.qos.min(delivery.qos),
                retain: message.retain && delivery.retain_as_published,
                properties,
                expires_at_ms: message.expires_at_ms,
            };
            match self.registry.offer(&delivery.session, outgoing, self.session_config.max_queued) {
                crate::registry::Offer::Accepted | crate::registry::Offer::Held => accepted += 1,
                crate::registry::Offer::Dropped => {
                    self.count_dropped(1);
                }
            }
        }
        accepted
    }

    /// Whether the tenant may keep `message` as retained: clearing one always, a new topic
    /// only while the tenant's retained messages are under its quota.
    pub(crate) fn may_retain(&self, tenant: &str, message: &RoutedMessage) -> bool {
        self.router.may_retain(tenant, message, self.settings.max_retained_per_tenant)
    }

    /// Publishes a will (now due). A will on a device's platform topic is stored first, like
    /// any QoS 0 message of the device.
    pub(crate) fn publish_will(&self, publisher: &SessionKey, message: RoutedMessage) {
        if let ClientRef::Device(device) = &publisher.client
            && let Some((owner, kind)) = rampart_core::acl::parse_device_topic(&message.topic)
            && owner == device
            && let Some(kind) = data_kind(&kind)
        {
            let now = self.platform.now_ms();
            if let Err(error) = self.ingestor.submit_nowait(&publisher.tenant, device, kind, &message.payload, now) {
                tracing::debug!(%error, "will message not stored");
                return;
            }
        }
        self.route(publisher, message);
    }

    /// Counts messages lost to a subscriber that did not keep up.
    pub(crate) fn count_dropped(&self, messages: u64) {
        self.stats.dropped.fetch_add(messages, std::sync::atomic::Ordering::Relaxed);
    }
}
