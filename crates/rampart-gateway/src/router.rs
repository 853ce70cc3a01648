//! Topic routing, per tenant: subscriptions in a trie of topic levels, shared subscription
//! groups (`$share/<group>/<filter>`, round robin among members) and retained messages.
//!
//! Every structure is keyed by tenant first, so a message can only ever reach subscribers of
//! the tenant it was published in. Retained messages are served from memory; every change to
//! them is also noted in a journal of pending changes (latest per topic) that the `retained`
//! module's writer drains into the store, so they survive a restart.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use rampart_mqtt::topic::{matches, parse_shared};
use rampart_mqtt::{Properties, QoS};
use tokio::sync::Notify;

use crate::registry::SessionKey;

/// Options of one subscription, as granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// The 5.0 subscription identifier given with the SUBSCRIBE, if any.
    pub identifier: Option<u32>,
}

/// A message being routed.
#[derive(Debug, Clone)]
pub(crate) struct RoutedMessage {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// The properties forwarded to subscribers (no alias, no subscription ids).
    pub properties: Properties,
    /// On the gateway's monotonic millisecond scale.
    pub expires_at_ms: Option<u64>,
}

/// One subscriber a message goes to, with every subscription of it that matched merged:
/// the highest QoS, all subscription identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub session: SessionKey,
    pub qos: QoS,
    pub retain_as_published: bool,
    pub identifiers: Vec<u32>,
}

#[derive(Debug, Default)]
struct SharedGroup {
    members: Vec<(SessionKey, SubOptions)>,
    next: AtomicUsize,
}

#[derive(Debug, Default)]
struct Node {
    /// Children by level text; `+` and `#` are children like any other.
    children: HashMap<String, Node>,
    subscribers: HashMap<SessionKey, SubOptions>,
    shared: HashMap<String, SharedGroup>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subscribers.is_empty() && self.shared.is_empty()
    }

    /// Walks `levels` down from this node, creating nodes.
    fn node_mut(&mut self, filter: &str) -> &mut Node {
        filter.split('/').fold(self, |node, level| node.children.entry(level.to_owned()).or_default())
    }

    /// Removes what `remove` says from the node at `levels`, pruning empty nodes; answers
    /// whether something was removed.
    fn remove_at(&mut self, levels: &[&str], remove: &mut dyn FnMut(&mut Node) -> bool) -> bool {
        let Some((first, rest)) = levels.split_first() else { return remove(self) };
        let Some(child) = self.children.get_mut(*first) else { return false };
        let removed = child.remove_at(rest, remove);
        if child.is_empty() {
            self.children.remove(*first);
        }
        removed
    }

    fn collect<'n>(&'n self, levels: &[&str], dollar_topic: bool, out: &mut Vec<Match<'n>>) {
        let Some((level, rest)) = levels.split_first() else {
            // `a/#` also matches `a`.
            if let Some(hash) = self.children.get("#") {
                out.push(Match(hash));
            }
            return;
        };
        if let Some(child) = self.children.get(*level) {
            if rest.is_empty() {
                out.push(Match(child));
            }
            child.collect(rest, false, out);
        }
        if dollar_topic {
            // Wildcards at the first level do not match `$` topics.
            return;
        }
        if let Some(plus) = self.children.get("+") {
            if rest.is_empty() {
                out.push(Match(plus));
            }
            plus.collect(rest, false, out);
        }
        if let Some(hash) = self.children.get("#") {
            out.push(Match(hash));
        }
    }
}

/// A node whose subscribers match the topic.
struct Match<'a>(&'a Node);

/// A retained message as kept.
#[derive(Debug, Clone)]
struct Retained {
    message: RoutedMessage,
}

#[derive(Debug, Default)]
struct TenantRoutes {
    trie: RwLock<Node>,
    retained: RwLock<HashMap<String, Retained>>,
}

/// Retained-message changes not yet handed to the store: (tenant, topic) → the message now
/// kept, or `None` when the topic was cleared. Only the latest change of a topic is kept, so
/// the journal is never larger than the number of retained topics touched since the last drain.
pub(crate) type RetainedChanges = HashMap<(String, String), Option<RoutedMessage>>;

/// The routing tables of every tenant.
#[derive(Debug, Default)]
pub(crate) struct Router {
    tenants: RwLock<HashMap<String, Arc<TenantRoutes>>>,
    retained_journal: Mutex<RetainedChanges>,
    retained_changed: Notify,
}

impl Router {
    fn tenant(&self, tenant: &str) -> Option<Arc<TenantRoutes>> {
        self.tenants.read().unwrap_or_else(PoisonError::into_inner).get(tenant).cloned()
    }

    fn tenant_or_create(&self, tenant: &str) -> Arc<TenantRoutes> {
        if let Some(routes) = self.tenant(tenant) {
            return routes;
        }
        let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(tenants.entry(tenant.to_owned()).or_default())
    }

    /// Adds or replaces the subscription of `session` to `filter` (plain or `$share/…`) in
    /// the session's tenant. Answers whether the subscription is new (not a replacement).
    pub(crate) fn subscribe(&self, session: &SessionKey, filter: &str, options: SubOptions) -> bool {
        let routes = self.tenant_or_create(&session.tenant);
        let mut trie = routes.trie.write().unwrap_or_else(PoisonError::into_inner);
        match parse_shared(filter) {
            Some((group, inner)) => {
                let group = trie.node_mut(inner).shared.entry(group.to_owned()).or_default();
                match group.members.iter_mut().find(|(member, _)| member == session) {
                    Some(existing) => {
                        existing.1 = options;
                        false
                    }
                    None => {
                        group.members.push((Arc::clone(session), options));
                        true
                    }
                }
            }
            None => trie.node_mut(filter).subscribers.insert(Arc::clone(session), options).is_none(),
        }
    }

    /// Removes the subscription of `session` to `filter`; answers whether it existed.
    pub(crate) fn unsubscribe(&self, session: &SessionKey, filter: &str) -> bool {
        let Some(routes) = self.tenant(&session.tenant) else { return false };
        let mut trie = routes.trie.write().unwrap_or_else(PoisonError::into_inner);
        match parse_shared(filter) {
            Some((group, inner)) => {
                let levels: Vec<&str> = inner.split('/').collect();
                trie.remove_at(&levels, &mut |node| {
                    let Entry::Occupied(mut entry) = node.shared.entry(group.to_owned()) else { return false };
                    let before = entry.get().members.len();
                    entry.get_mut().members.retain(|(member, _)| member != session);
                    let removed = entry.get().members.len() != before;
                    if entry.get().members.is_empty() {
                        entry.remove();
                    }
                    removed
                })
            }
            None => {
                let levels: Vec<&str> = filter.split('/').collect();
                trie.remove_at(&levels, &mut |node| node.subscribers.remove(session).is_some())
            }
        }
    }

    /// Every subscriber of `topic` in `tenant`, one delivery per session. `publisher` is the
    /// session that published, for No Local.
    pub(crate) fn route(&self, tenant: &str, topic: &str, publisher: Option<&SessionKey>) -> Vec<Delivery> {
        let Some(routes) = self.tenant(tenant) else { return Vec::new() };
        let trie = routes.trie.read().unwrap_or_else(PoisonError::into_inner);
        let levels: Vec<&str> = topic.split('/').collect();
        let mut matched = Vec::new();
        trie.collect(&levels, topic.starts_with('$'), &mut matched);
        let mut deliveries: Vec<Delivery> = Vec::new();
        let mut add = |session: &SessionKey, options: &SubOptions| {
            if options.no_local && publisher == Some(session) {
                return;
            }
            match deliveries.iter_mut().find(|delivery| &delivery.session == session) {
                Some(delivery) => {
                    delivery.qos = delivery.qos.max(options.qos);
                    delivery.retain_as_published |= options.retain_as_published;
                    delivery.identifiers.extend(options.identifier);
                }
                None => deliveries.push(Delivery {
                    session: Arc::clone(session),
                    qos: options.qos,
                    retain_as_published: options.retain_as_published,
                    identifiers: options.identifier.into_iter().collect(),
                }),
            }
        };
        for Match(node) in matched {
            for (session, options) in &node.subscribers {
                add(session, options);
            }
            for group in node.shared.values() {
                if group.members.is_empty() {
                    continue;
                }
                let index = group.next.fetch_add(1, Ordering::Relaxed) % group.members.len();
                let (session, options) = &group.members[index];
                add(session, options);
            }
        }
        deliveries
    }

    /// Keeps (or, for an empty payload, deletes) the retained message of its topic, and notes
    /// the change in the journal for the store.
    pub(crate) fn retain(&self, tenant: &str, message: &RoutedMessage, max_per_tenant: usize) {
        let routes = self.tenant_or_create(tenant);
        let mut retained = routes.retained.write().unwrap_or_else(PoisonError::into_inner);
        let kept = match message.payload.is_empty() {
            true => {
                retained.remove(&message.topic);
                None
            }
            // The tenant's quota: a new topic beyond it is not kept (a known one is replaced).
            false if retained.len() >= max_per_tenant && !retained.contains_key(&message.topic) => return,
            false => {
                retained.insert(message.topic.clone(), Retained { message: message.clone() });
                Some(message.clone())
            }
        };
        // Noted while the topic's lock is held, so the journal sees the changes of one topic in
        // the order memory did.
        let key = (tenant.to_owned(), message.topic.clone());
        self.retained_journal.lock().unwrap_or_else(PoisonError::into_inner).insert(key, kept);
        drop(retained);
        self.retained_changed.notify_one();
    }

    /// Whether `message` would be kept as retained within the tenant's quota.
    pub(crate) fn may_retain(&self, tenant: &str, message: &RoutedMessage, max_per_tenant: usize) -> bool {
        if message.payload.is_empty() {
            return true;
        }
        let Some(routes) = self.tenant(tenant) else { return max_per_tenant > 0 };
        let retained = routes.retained.read().unwrap_or_else(PoisonError::into_inner);
        retained.len() < max_per_tenant || retained.contains_key(&message.topic)
    }

    /// Keeps a retained message loaded from the store, without noting it in the journal.
    pub(crate) fn restore_retained(&self, tenant: &str, message: RoutedMessage) {
        let routes = self.tenant_or_create(tenant);
        let mut retained = routes.retained.write().unwrap_or_else(PoisonError::into_inner);
        retained.insert(message.topic.clone(), Retained { message });
    }

    /// Takes every retained-message change noted since the last call.
    pub(crate) fn take_retained_changes(&self) -> RetainedChanges {
        std::mem::take(&mut *self.retained_journal.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Resolves once a retained-message change was noted after the last time it resolved (or
    /// at once if one was noted and nobody waited).
    pub(crate) async fn retained_changed(&self) {
        self.retained_changed.notified().await;
    }

    /// The retained messages matching `filter` (a plain filter), unexpired at `now_ms`.
    pub(crate) fn retained_for(&self, tenant: &str, filter: &str, now_ms: u64) -> Vec<RoutedMessage> {
        let Some(routes) = self.tenant(tenant) else { return Vec::new() };
        let mut retained = routes.retained.write().unwrap_or_else(PoisonError::into_inner);
        retained.retain(|_, kept| kept.message.expires_at_ms.is_none_or(|at| at > now_ms));
        retained.values().filter(|kept| matches(filter, &kept.message.topic)).map(|kept| kept.message.clone()).collect()
    }

    /// Forgets everything of a deleted tenant, its retained messages and their pending
    /// changes included (the store deleted its rows).
    pub(crate) fn drop_tenant(&self, tenant: &str) {
        self.tenants.write().unwrap_or_else(PoisonError::into_inner).remove(tenant);
        self.retained_journal.lock().unwrap_or_else(PoisonError::into_inner).retain(|(owner, _), _| owner != tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{ClientRef, SessionId};

    fn session(tenant: &str, client: &str) -> SessionKey {
        Arc::new(SessionId { tenant: tenant.to_owned(), client: ClientRef::Application(client.to_owned()) })
    }

    fn options(qos: QoS, identifier: Option<u32>) -> SubOptions {
        SubOptions { qos, no_local: false, retain_as_published: false, identifier }
    }

    fn message(topic: &str, payload: &'static [u8]) -> RoutedMessage {
        RoutedMessage {
            topic: topic.to_owned(),
            payload: Bytes::from_static(payload),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
            expires_at_ms: None,
        }
    }

    fn receivers(router: &Router, tenant: &str, topic: &str) -> Vec<String> {
        let mut names: Vec<String> = router
            .route(tenant, topic, None)
            .into_iter()
            .map(|delivery| match &delivery.session.client {
                ClientRef::Application(name) | ClientRef::Device(name) => name.clone(),
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn wildcards_match_like_the_spec_says() {
        let router = Router::default();
        for (client, filter) in
            [("hash", "#"), ("a-hash", "a/#"), ("a-plus", "a/+"), ("exact", "a/b"), ("sys", "$SYS/#")]
        {
            router.subscribe(&session("t1", client), filter, options(QoS::AtMostOnce, None));
        }
        assert_eq!(receivers(&router, "t1", "a/b"), ["a-hash", "a-plus", "exact", "hash"]);
        assert_eq!(receivers(&router, "t1", "a"), ["a-hash", "hash"]);
        assert_eq!(receivers(&router, "t1", "a/b/c"), ["a-hash", "hash"]);
        assert_eq!(receivers(&router, "t1", "$SYS/x"), ["sys"]);
        assert!(receivers(&router, "t2", "a/b").is_empty(), "tenants never share routes");
    }

    #[test]
    fn overlapping_subscriptions_deliver_once_at_the_highest_qos() {
        let router = Router::default();
        let app = session("t1", "app");
        router.subscribe(&app, "a/+", options(QoS::AtMostOnce, Some(1)));
        router.subscribe(&app, "a/#", options(QoS::ExactlyOnce, Some(2)));
        let deliveries = router.route("t1", "a/b", None);
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].qos, QoS::ExactlyOnce);
        let mut identifiers = deliveries[0].identifiers.clone();
        identifiers.sort_unstable();
        assert_eq!(identifiers, [1, 2]);
        assert!(router.unsubscribe(&app, "a/#"));
        assert!(!router.unsubscribe(&app, "a/#"));
        assert_eq!(router.route("t1", "a/b", None)[0].qos, QoS::AtMostOnce);
        assert!(router.unsubscribe(&app, "a/+"));
        assert!(router.route("t1", "a/b", None).is_empty());
    }

    #[test]
    fn shared_subscriptions_take_turns_and_no_local_skips_the_publisher() {
        let router = Router::default();
        let (one, two) = (session("t1", "one"), session("t1", "two"));
        router.subscribe(&one, "$share/g/jobs/+", options(QoS::AtLeastOnce, None));
        router.subscribe(&two, "$share/g/jobs/+", options(QoS::AtLeastOnce, None));
        let mut counts = HashMap::new();
        for _ in 0..10 {
            for delivery in router.route("t1", "jobs/x", None) {
                *counts.entry(delivery.session.clone()).or_insert(0) += 1;
            }
        }
        assert_eq!(counts.get(&one), Some(&5));
        assert_eq!(counts.get(&two), Some(&5));

        let echo = session("t1", "echo");
        router.subscribe(&echo, "chat", SubOptions { no_local: true, ..options(QoS::AtMostOnce, None) });
        assert!(router.route("t1", "chat", Some(&echo)).is_empty());
        assert_eq!(router.route("t1", "chat", None).len(), 1);
    }

    #[test]
    fn retained_messages_are_kept_per_topic_and_cleared_by_empty_payloads() {
        let router = Router::default();
        router.retain("t1", &message("a/b", b"1"), usize::MAX);
        router.retain("t1", &message("a/b", b"2"), usize::MAX);
        router.retain("t1", &message("a/c", b"3"), usize::MAX);
        let mut seen: Vec<Bytes> = router.retained_for("t1", "a/+", 0).into_iter().map(|m| m.payload).collect();
        seen.sort();
        assert_eq!(seen, [Bytes::from_static(b"2"), Bytes::from_static(b"3")]);
        assert!(router.retained_for("t2", "#", 0).is_empty());
        router.retain("t1", &message("a/b", b""), usize::MAX);
        assert_eq!(router.retained_for("t1", "#", 0).len(), 1);
        let expiring = RoutedMessage { expires_at_ms: Some(10), ..message("x", b"x") };
        router.retain("t1", &expiring, usize::MAX);
        assert_eq!(router.retained_for("t1", "x", 5).len(), 1);
        assert!(router.retained_for("t1", "x", 10).is_empty());
    }

    #[test]
    fn a_tenant_keeps_no_more_retained_topics_than_its_quota() {
        let router = Router::default();
        router.retain("t1", &message("a", b"1"), 2);
        router.retain("t1", &message("b", b"1"), 2);
        assert!(!router.may_retain("t1", &message("c", b"1"), 2), "a third topic is over the quota");
        router.retain("t1", &message("c", b"1"), 2);
        assert!(router.retained_for("t1", "c", 0).is_empty(), "and is not kept");
        assert!(router.may_retain("t1", &message("a", b"2"), 2), "a kept topic may be replaced");
        assert!(router.may_retain("t1", &message("c", b""), 2), "clearing is always allowed");
        assert!(router.may_retain("t2", &message("c", b"1"), 2), "quotas are per tenant");
    }

    fn journal(router: &Router) -> Vec<(String, String, Option<Bytes>)> {
        let mut changes: Vec<_> = router
            .take_retained_changes()
            .into_iter()
            .map(|((tenant, topic), kept)| (tenant, topic, kept.map(|message| message.payload)))
            .collect();
        changes.sort();
        changes
    }

    #[test]
    fn the_journal_holds_the_latest_retained_change_per_topic() {
        let router = Router::default();
        router.retain("t1", &message("a", b"1"), usize::MAX);
        router.retain("t1", &message("a", b"2"), usize::MAX);
        router.retain("t1", &message("b", b"1"), usize::MAX);
        router.retain("t1", &message("b", b""), usize::MAX);
        router.retain("t2", &message("a", b"9"), usize::MAX);
        let one = |payload: &'static [u8]| Some(Bytes::from_static(payload));
        assert_eq!(
            journal(&router),
            [
                ("t1".into(), "a".into(), one(b"2")),
                ("t1".into(), "b".into(), None),
                ("t2".into(), "a".into(), one(b"9"))
            ]
        );
        assert!(journal(&router).is_empty(), "taken once");

        // Restored messages are served but not written back; a deleted tenant's changes go.
        router.restore_retained("t3", message("r", b"loaded"));
        assert_eq!(router.retained_for("t3", "#", 0).len(), 1);
        router.retain("t1", &message("c", b"1"), usize::MAX);
        router.retain("t2", &message("c", b"1"), usize::MAX);
        router.drop_tenant("t2");
        assert_eq!(journal(&router), [("t1".into(), "c".into(), one(b"1"))]);
        assert!(router.retained_for("t2", "#", 0).is_empty());
    }
}
