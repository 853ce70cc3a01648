//! Subscriptions and what they deliver: a SUBSCRIBE filter is authorised by the ACL (refused
//! only when the filter itself is denied) and the guard; every delivery is checked again, per
//! message, against the topic policy in force and, for a group-scoped application, against
//! the device's group, so overlapping wildcards never carry what the subscriber may not read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rampart_core::acl::{MAX_DEVICE_FILTERS, SubscribeDecision, authorize_subscribe, may_deliver, parse_device_topic};
use rampart_mqtt::topic::{parse_shared, valid_topic_filter};
use rampart_mqtt::{Action, OutgoingMessage, Packet, Properties, SubAck, Subscribe, UnsubAck, Unsubscribe};

use super::Connection;
use crate::guard::Verdict;
use crate::identity::Identity;
use crate::policy::TenantRules;
use crate::reasons;
use crate::router::SubOptions;

/// How long a group-scoped application trusts what it learnt about a device's group.
const VISIBILITY_TTL: std::time::Duration = std::time::Duration::from_secs(30);
/// Devices whose visibility one connection remembers.
const MAX_REMEMBERED_DEVICES: usize = 10_000;

/// Which devices a group-scoped application may receive data of, as looked up.
#[derive(Default)]
pub(super) struct VisibleDevices(HashMap<String, (bool, Instant)>);

impl Connection {
    /// Whether a message on `topic` may be delivered now: the topic policy in force (a policy
    /// change withdraws topics from live subscriptions too, and topics a granted wildcard
    /// overlaps but the subscriber may not read are withheld) and the subscriber's scope.
    pub(super) async fn may_receive(&mut self, topic: &str) -> bool {
        let Some(rules) = self.rules().await else { return false };
        if !may_deliver(&rules.topics, &self.identity.requester(), topic) {
            return false;
        }
        match (&*self.identity, parse_device_topic(topic)) {
            (Identity::Application { principal }, Some((device, _))) if !principal.scope.is_whole_tenant() => {
                self.sees_device(device).await
            }
            _ => true,
        }
    }

    /// Whether a group-scoped application may receive data of `device`, remembered a while.
    async fn sees_device(&mut self, device: &str) -> bool {
        let Identity::Application { principal } = &*self.identity else { return true };
        let known = self.visible.get_or_insert_with(Box::default);
        if let Some((visible, at)) = known.0.get(device)
            && at.elapsed() < VISIBILITY_TTL
        {
            return *visible;
        }
        let visible = self.shared.platform.sees_device(principal, device).await.unwrap_or(false);
        let known = self.visible.get_or_insert_with(Box::default);
        if known.0.len() >= MAX_REMEMBERED_DEVICES {
            known.0.clear();
        }
        known.0.insert(device.to_owned(), (visible, Instant::now()));
        visible
    }

    pub(super) async fn rules(&mut self) -> Option<Arc<TenantRules>> {
        match self.shared.policies.get(&self.shared.platform, &self.key.tenant).await {
            Ok(rules) => Some(rules),
            Err(error) => {
                tracing::error!(%error, "loading the topic policy failed");
                None
            }
        }
    }

    pub(super) async fn subscribe(&mut self, subscribe: Subscribe) -> Vec<Action> {
        let rules = self.rules().await.unwrap_or_default();
        let too_many = self.identity.device().is_some() && subscribe.filters.len() > MAX_DEVICE_FILTERS;
        let identifier = subscribe.properties.subscription_identifiers.first().copied();
        let now = self.shared.now_ms();
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        let mut granted_filters = Vec::new();
        for (filter, options) in &subscribe.filters {
            if !valid_topic_filter(filter) {
                codes.push(reasons::suback_refused(true, self.protocol));
                continue;
            }
            let mut decision = match too_many {
                true => SubscribeDecision::Denied("more than 8 filters in one SUBSCRIBE"),
                false => authorize_subscribe(&rules.topics, &self.identity.requester(), filter),
            };
            if decision == SubscribeDecision::Allowed
                && self.shared.guard.on_subscribe(&self.identity.origin(self.peer), filter) == Verdict::Deny
            {
                decision = SubscribeDecision::Denied("refused by the guard");
            }
            if let SubscribeDecision::Denied(why) = decision {
                self.denied(filter, "subscribe", why);
                codes.push(reasons::suback_refused(false, self.protocol));
                continue;
            }
            let granted = SubOptions {
                qos: options.qos,
                no_local: options.no_local,
                retain_as_published: options.retain_as_published,
                identifier,
            };
            let new = self.shared.router.subscribe(&self.key, filter, granted);
            self.entry.lock().subscriptions.insert(filter.clone(), granted);
            granted_filters.push((filter.clone(), granted));
            codes.push(options.qos as u8);
            let wants_retained = match options.retain_handling {
                0 => true,
                1 => new,
                _ => false,
            };
            if wants_retained && parse_shared(filter).is_none() {
                for message in self.shared.router.retained_for(&self.key.tenant, filter, now) {
                    retained.push((message, granted));
                }
            }
        }
        let mut actions = vec![Action::Send(Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            reasons: codes,
            properties: Properties::default(),
        }))];
        for (message, granted) in retained {
            if !self.may_receive(&message.topic).await {
                continue;
            }
            let mut properties = message.properties;
            properties.subscription_identifiers = granted.identifier.into_iter().collect();
            let outgoing = OutgoingMessage {
                topic: message.topic,
                payload: message.payload,
                qos: message.qos.min(granted.qos),
                retain: true,
                properties,
                expires_at_ms: message.expires_at_ms,
            };
            actions.extend(self.session.publish(outgoing, now));
        }
        // A device's own feeds: what stands on them now (its pending operations, its desired
        // state), as retained messages come on a subscription.
        actions.extend(Box::pin(self.standing_feeds(&granted_filters)).await);
        actions
    }

    pub(super) fn unsubscribe(&mut self, unsubscribe: Unsubscribe) {
        let mut codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            let existed = self.shared.router.unsubscribe(&self.key, filter);
            self.entry.lock().subscriptions.remove(filter);
            codes.push(reasons::unsuback(existed));
        }
        self.encode(&Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            reasons: codes,
            properties: Properties::default(),
        }));
    }
}
