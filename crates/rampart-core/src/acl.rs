//! Tenant topic policies and the authorisation of MQTT publishes, subscriptions and
//! deliveries (SPEC §7), pure and free of IO. The policy document is parsed and checked here
//! (one schema, one parser), and every decision about a topic is made here.
//!
//! - A device publishes only to its own platform topics (`devices/{id}/telemetry`, `events`,
//!   `alarms`, `twin/reported`, `attestation`, `operations/{op}/status`) and subscribes only to
//!   `devices/{id}/operations` and `devices/{id}/twin/desired`.
//! - An application publishes to no device topic and subscribes to device data topics within
//!   its permissions (`telemetry:read` for telemetry, events, twin and attestation,
//!   `alarms:read` for alarms, `operations:read` for operations).
//! - The tenant's topic policy adds topics (`allow` rules, `${device}` standing for the
//!   device's own id), removes them (`deny` rules, which win), and may open a free namespace:
//!   every topic outside `devices/`, as on any broker.
//! - Topic names and filters over 256 bytes or 8 levels are refused.
//! - A SUBSCRIBE filter is refused only when the filter itself is denied (a deny rule covers
//!   it, or it can match nothing the requester may read); a filter that merely overlaps denied
//!   topics is granted, and [`may_deliver`] withholds those topics message by message, as
//!   Mosquitto does.
//!
//! Tenants never meet here: the caller routes per tenant, so a decision only ever concerns
//! topics of the caller's own tenant.

use serde::{Deserialize, Serialize};

use crate::permissions::{Permission, PermissionSet};
use crate::tenant_policy::PolicyError;
use crate::topic::{levels, matches, parse_shared, valid_topic_filter, valid_topic_name};

/// Longest topic name or filter accepted, in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;
/// Deepest topic name or filter accepted, in levels.
pub const MAX_TOPIC_LEVELS: usize = 8;
/// Most filters a device may send in one SUBSCRIBE.
pub const MAX_DEVICE_FILTERS: usize = 8;
/// Most rules one topic policy may hold.
pub const MAX_RULES: usize = 256;

const DEVICE_PLACEHOLDER: &str = "${device}";

/// Who a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RulePrincipal {
    Device,
    Application,
}

/// What a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    Publish,
    Subscribe,
    All,
}

/// Whether a rule opens or closes its topics; deny wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RuleEffect {
    Allow,
    Deny,
}

/// One rule of a tenant topic policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TopicRule {
    pub principal: RulePrincipal,
    pub action: RuleAction,
    /// An MQTT topic filter; `${device}` stands for the connected device's id.
    pub topic: String,
    pub effect: RuleEffect,
}

/// Which topics outside `devices/` are open to everyone of the tenant, as on any broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct FreeNamespace {
    pub applications: bool,
    pub devices: bool,
}

/// A tenant's topic policy (`GET/PUT /api/v1/tenant/topic-policies`). The default (no
/// document stored) adds nothing to the per-device namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct TopicPolicy {
    pub free_namespace: FreeNamespace,
    pub rules: Vec<TopicRule>,
}

impl TopicPolicy {
    /// The policy as stored; `None` (nothing stored) is the default.
    pub fn from_stored(text: Option<&str>) -> Result<TopicPolicy, PolicyError> {
        match text {
            None => Ok(TopicPolicy::default()),
            Some(text) => serde_json::from_str(text).map_err(|error| PolicyError::Stored(error.to_string())),
        }
    }

    /// The document to store.
    pub fn to_stored(&self) -> String {
        serde_json::to_value(self).map(|value| value.to_string()).unwrap_or_default()
    }

    /// Checks a policy before it is stored: at most [`MAX_RULES`] rules, each topic a valid
    /// filter within the topic limits (`${device}` counting as one level's text).
    pub fn check(&self) -> Result<(), PolicyError> {
        if self.rules.len() > MAX_RULES {
            return Err(PolicyError::Invalid(format!("at most {MAX_RULES} rules")));
        }
        self.rules.iter().enumerate().try_for_each(|(index, rule)| check_rule(index, rule))
    }
}

fn check_rule(index: usize, rule: &TopicRule) -> Result<(), PolicyError> {
    let topic = &rule.topic;
    let invalid = |why: &str| Err(PolicyError::Invalid(format!("rules[{index}].topic {why}")));
    if topic.is_empty() || topic.len() > MAX_TOPIC_BYTES {
        return invalid(&format!("must be 1 to {MAX_TOPIC_BYTES} bytes"));
    }
    if levels(topic) > MAX_TOPIC_LEVELS {
        return invalid(&format!("must have at most {MAX_TOPIC_LEVELS} levels"));
    }
    if topic.chars().any(char::is_control) || topic.starts_with("$share/") {
        return invalid("must be a plain topic filter");
    }
    // `${device}` is replaced by a device id before matching; check the filter with one.
    if !valid_topic_filter(&topic.replace(DEVICE_PLACEHOLDER, "device")) {
        return invalid("is not a valid MQTT topic filter");
    }
    Ok(())
}

/// Who asks, as far as authorisation cares.
#[derive(Debug, Clone, Copy)]
pub enum Requester<'a> {
    Device(&'a str),
    Application(&'a PermissionSet),
}

impl Requester<'_> {
    fn principal(&self) -> RulePrincipal {
        match self {
            Requester::Device(_) => RulePrincipal::Device,
            Requester::Application(_) => RulePrincipal::Application,
        }
    }
}

/// The platform topics a device publishes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformTopic {
    Telemetry,
    Events,
    Alarms,
    TwinReported,
    Attestation,
    OperationStatus(String),
}

/// What may happen to a PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishDecision {
    /// A device's own platform topic: store it, then route it.
    Platform(PlatformTopic),
    /// A topic the policy opens (allow rule or free namespace): route it only.
    Routed,
    Denied(&'static str),
}

/// What may happen to one SUBSCRIBE filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeDecision {
    Allowed,
    Denied(&'static str),
}

/// Whether `topic` lies in the platform's `devices/` namespace, where the platform, not the
/// broker, keeps what stands (the desired state, pending operations).
pub fn in_device_namespace(topic: &str) -> bool {
    first_level(topic) == "devices"
}

/// `devices/{device}/{kind}` → the device id and the platform topic.
pub fn parse_device_topic(topic: &str) -> Option<(&str, PlatformTopic)> {
    let rest = topic.strip_prefix("devices/")?;
    let (device, kind) = rest.split_once('/')?;
    if device.is_empty() {
        return None;
    }
    let kind = match kind {
        "telemetry" => PlatformTopic::Telemetry,
        "events" => PlatformTopic::Events,
        "alarms" => PlatformTopic::Alarms,
        "twin/reported" => PlatformTopic::TwinReported,
        "attestation" => PlatformTopic::Attestation,
        other => {
            let operation = other.strip_prefix("operations/")?.strip_suffix("/status")?;
            if operation.is_empty() || operation.contains('/') {
                return None;
            }
            PlatformTopic::OperationStatus(operation.to_owned())
        }
    };
    Some((device, kind))
}

fn within_limits(topic: &str) -> bool {
    topic.len() <= MAX_TOPIC_BYTES && levels(topic) <= MAX_TOPIC_LEVELS
}

fn first_level(topic: &str) -> &str {
    topic.split('/').next().unwrap_or("")
}

/// A rule's filter for this requester: `${device}` becomes the device's id, or `+` (any
/// device) for applications. `None` when the result is not a valid filter.
fn rule_filter(rule: &TopicRule, requester: &Requester<'_>) -> Option<String> {
    let filter = rule
        .topic
        .split('/')
        .map(|level| match (level.contains(DEVICE_PLACEHOLDER), requester) {
            (false, _) => level.to_owned(),
            (true, Requester::Device(device)) => level.replace(DEVICE_PLACEHOLDER, device),
            (true, Requester::Application(_)) => "+".to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/");
    valid_topic_filter(&filter).then_some(filter)
}

fn rules_for<'p>(
    policy: &'p TopicPolicy,
    requester: &Requester<'p>,
    subscribe: bool,
    effect: RuleEffect,
) -> impl Iterator<Item = String> + 'p {
    let principal = requester.principal();
    let requester = *requester;
    policy.rules.iter().filter_map(move |rule| {
        let action_applies = match rule.action {
            RuleAction::All => true,
            RuleAction::Publish => !subscribe,
            RuleAction::Subscribe => subscribe,
        };
        if rule.principal != principal || rule.effect != effect || !action_applies {
            return None;
        }
        rule_filter(rule, &requester)
    })
}

/// Whether every topic matched by `inner` is also matched by `outer`.
pub fn filter_covers(outer: &str, inner: &str) -> bool {
    let mut outer_levels = outer.split('/');
    let mut inner_levels = inner.split('/');
    loop {
        match (outer_levels.next(), inner_levels.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
            (Some("+"), Some(level)) => {
                if level == "#" {
                    return false;
                }
            }
            (Some(outer_level), Some(inner_level)) => {
                if outer_level != inner_level || inner_level == "+" || inner_level == "#" {
                    return false;
                }
            }
        }
    }
}

/// Whether some topic is matched by both filters.
pub fn filters_overlap(first: &str, second: &str) -> bool {
    let mut first_levels = first.split('/');
    let mut second_levels = second.split('/');
    loop {
        match (first_levels.next(), second_levels.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
            (Some(a), Some(b)) => {
                if a != "+" && b != "+" && a != b {
                    return false;
                }
            }
        }
    }
}

/// Decides a PUBLISH to `topic`.
pub fn authorize_publish(policy: &TopicPolicy, requester: &Requester<'_>, topic: &str) -> PublishDecision {
    if !valid_topic_name(topic) {
        return PublishDecision::Denied("invalid topic name");
    }
    if !within_limits(topic) {
        return PublishDecision::Denied("topic too long or too deep");
    }
    if let Requester::Application(_) = requester
        && in_device_namespace(topic)
    {
        return PublishDecision::Denied("applications publish to no device topic");
    }
    if rules_for(policy, requester, false, RuleEffect::Deny).any(|rule| matches(&rule, topic)) {
        return PublishDecision::Denied("denied by the topic policy");
    }
    if let Requester::Device(own) = requester
        && let Some((device, kind)) = parse_device_topic(topic)
        && device == *own
    {
        return PublishDecision::Platform(kind);
    }
    if rules_for(policy, requester, false, RuleEffect::Allow).any(|rule| matches(&rule, topic)) {
        return PublishDecision::Routed;
    }
    if outside_device_namespace(topic) && free_for(policy, requester) {
        return PublishDecision::Routed;
    }
    PublishDecision::Denied("outside the client's namespace")
}

fn free_for(policy: &TopicPolicy, requester: &Requester<'_>) -> bool {
    match requester {
        Requester::Device(_) => policy.free_namespace.devices,
        Requester::Application(_) => policy.free_namespace.applications,
    }
}

/// A topic or filter whose first level is a literal other than `devices` and not a
/// `$`-topic: it cannot reach any device's topics.
fn outside_device_namespace(topic: &str) -> bool {
    let first = first_level(topic);
    first != "devices" && first != "+" && first != "#" && !first.starts_with('$')
}

/// The device data topics an application may read, with the permission each needs.
const DEVICE_DATA_TOPICS: [(&str, Permission); 8] = [
    ("devices/+/telemetry", Permission::TelemetryRead),
    ("devices/+/events", Permission::TelemetryRead),
    ("devices/+/twin/reported", Permission::TelemetryRead),
    ("devices/+/attestation", Permission::TelemetryRead),
    ("devices/+/alarms", Permission::AlarmsRead),
    ("devices/+/operations/+/status", Permission::OperationsRead),
    ("devices/+/operations", Permission::OperationsRead),
    ("devices/+/twin/desired", Permission::DevicesRead),
];

/// Decides one SUBSCRIBE filter (possibly `$share/<group>/<filter>`). A filter is refused
/// only when the filter itself is denied: a deny rule covers it, or nothing it can match is
/// open to the requester. Deliveries on a granted filter still go through [`may_deliver`].
pub fn authorize_subscribe(policy: &TopicPolicy, requester: &Requester<'_>, filter: &str) -> SubscribeDecision {
    if !valid_topic_filter(filter) {
        return SubscribeDecision::Denied("invalid topic filter");
    }
    let (shared, filter) = match parse_shared(filter) {
        Some((_, inner)) => (true, inner),
        None => (false, filter),
    };
    if !within_limits(filter) {
        return SubscribeDecision::Denied("topic filter too long or too deep");
    }
    if rules_for(policy, requester, true, RuleEffect::Deny).any(|rule| filter_covers(&rule, filter)) {
        return SubscribeDecision::Denied("denied by the topic policy");
    }
    let allowed_by_rule =
        || rules_for(policy, requester, true, RuleEffect::Allow).any(|rule| filter_covers(&rule, filter));
    match requester {
        Requester::Device(own) => {
            let own_topic =
                filter == format!("devices/{own}/operations") || filter == format!("devices/{own}/twin/desired");
            if own_topic && !shared {
                return SubscribeDecision::Allowed;
            }
            if allowed_by_rule() || (outside_device_namespace(filter) && policy.free_namespace.devices) {
                return SubscribeDecision::Allowed;
            }
            SubscribeDecision::Denied("outside the device's namespace")
        }
        Requester::Application(permissions) => {
            if allowed_by_rule() {
                return SubscribeDecision::Allowed;
            }
            let first = first_level(filter);
            if first.starts_with('$') {
                return SubscribeDecision::Denied("system topics are not available");
            }
            let free = policy.free_namespace.applications;
            if first != "devices" && first != "+" && first != "#" {
                return match free {
                    true => SubscribeDecision::Allowed,
                    false => SubscribeDecision::Denied("outside the application's namespace"),
                };
            }
            // The filter reaches device topics: it is granted when it can match some data the
            // application may read (or the open free namespace); the rest is withheld per
            // message.
            let mut reaches_data = false;
            for (data_topic, permission) in DEVICE_DATA_TOPICS {
                if filters_overlap(filter, data_topic) {
                    reaches_data = true;
                    if permissions.contains(&permission) {
                        return SubscribeDecision::Allowed;
                    }
                }
            }
            let wildcard_first = first != "devices";
            match (wildcard_first && free, reaches_data) {
                (true, _) => SubscribeDecision::Allowed,
                (false, true) => SubscribeDecision::Denied("missing permission for device data"),
                (false, false) if wildcard_first => SubscribeDecision::Denied("wildcard over every namespace"),
                (false, false) => SubscribeDecision::Denied("not a device data topic"),
            }
        }
    }
}

/// Whether a message published on `topic` may be delivered to the requester now (checked for
/// every delivery, so a policy change also withdraws topics from live subscriptions, and topics
/// a granted wildcard overlaps but the requester may not read are withheld).
pub fn may_deliver(policy: &TopicPolicy, requester: &Requester<'_>, topic: &str) -> bool {
    // A topic name is a filter that matches exactly itself.
    matches!(authorize_subscribe(policy, requester, topic), SubscribeDecision::Allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> TopicPolicy {
        TopicPolicy::from_stored(Some(json)).unwrap_or_else(|error| panic!("bad test policy {json}: {error}"))
    }

    fn check_publish(policy: &TopicPolicy, requester: Requester<'_>, topic: &str, expected: &PublishDecision) {
        let decision = authorize_publish(policy, &requester, topic);
        match (expected, &decision) {
            (PublishDecision::Denied(_), PublishDecision::Denied(_)) => {}
            _ => assert_eq!(&decision, expected, "publish {topic:?} by {requester:?}"),
        }
    }

    fn check_subscribe(policy: &TopicPolicy, requester: Requester<'_>, filter: &str, allowed: bool) {
        let decision = authorize_subscribe(policy, &requester, filter);
        assert_eq!(
            decision == SubscribeDecision::Allowed,
            allowed,
            "subscribe {filter:?} by {requester:?}: {decision:?}"
        );
    }

    const DENIED: PublishDecision = PublishDecision::Denied("");

    #[test]
    fn devices_publish_only_to_their_own_platform_topics() {
        let empty = TopicPolicy::default();
        let me = Requester::Device("d1");
        for (topic, expected) in [
            ("devices/d1/telemetry", PublishDecision::Platform(PlatformTopic::Telemetry)),
            ("devices/d1/events", PublishDecision::Platform(PlatformTopic::Events)),
            ("devices/d1/alarms", PublishDecision::Platform(PlatformTopic::Alarms)),
            ("devices/d1/twin/reported", PublishDecision::Platform(PlatformTopic::TwinReported)),
            ("devices/d1/attestation", PublishDecision::Platform(PlatformTopic::Attestation)),
            (
                "devices/d1/operations/op-7/status",
                PublishDecision::Platform(PlatformTopic::OperationStatus("op-7".into())),
            ),
            ("devices/d2/telemetry", DENIED),
            ("devices/d1/operations", DENIED),
            ("devices/d1/twin/desired", DENIED),
            ("devices/d1/operations/a/b/status", DENIED),
            ("devices/d1/other", DENIED),
            ("custom/d1", DENIED),
            ("$SYS/x", DENIED),
            ("devices/+/telemetry", DENIED),
        ] {
            check_publish(&empty, me, topic, &expected);
        }
    }

    #[test]
    fn devices_subscribe_only_to_their_own_inbound_topics() {
        let empty = TopicPolicy::default();
        let me = Requester::Device("d1");
        for (filter, allowed) in [
            ("devices/d1/operations", true),
            ("devices/d1/twin/desired", true),
            ("devices/d2/operations", false),
            ("devices/+/operations", false),
            ("devices/#", false),
            ("#", false),
            ("+/d1/operations", false),
            ("devices/d1/telemetry", false),
            ("$share/g/devices/d1/operations", false),
            ("free/topic", false),
        ] {
            check_subscribe(&empty, me, filter, allowed);
        }
    }

    #[test]
    fn limits_apply_to_everyone() {
        let open = policy(r#"{"free_namespace":{"applications":true,"devices":true}}"#);
        let long = format!("free/{}", "x".repeat(300));
        let deep = "a/b/c/d/e/f/g/h/i";
        let permissions = PermissionSet::new();
        for requester in [Requester::Device("d1"), Requester::Application(&permissions)] {
            check_publish(&open, requester, &long, &DENIED);
            check_publish(&open, requester, deep, &DENIED);
            check_publish(&open, requester, "a/b/c/d/e/f/g/h", &PublishDecision::Routed);
            check_subscribe(&open, requester, &long, false);
            check_subscribe(&open, requester, deep, false);
        }
    }

    #[test]
    fn the_free_namespace_opens_everything_outside_devices() {
        let open = policy(r#"{"free_namespace":{"applications":true,"devices":true}}"#);
        let apps_only = policy(r#"{"free_namespace":{"applications":true}}"#);
        let read_all: PermissionSet =
            [Permission::TelemetryRead, Permission::AlarmsRead, Permission::OperationsRead, Permission::DevicesRead]
                .into_iter()
                .collect();
        let telemetry_only: PermissionSet = [Permission::TelemetryRead].into_iter().collect();
        let device = Requester::Device("d1");
        let app = Requester::Application(&read_all);

        check_publish(&open, device, "plant/line-1/temp", &PublishDecision::Routed);
        check_publish(&apps_only, device, "plant/line-1/temp", &DENIED);
        check_publish(&apps_only, app, "plant/line-1/temp", &PublishDecision::Routed);
        check_publish(&open, app, "devices/d1/telemetry", &DENIED);
        check_publish(&open, device, "devices/d2/telemetry", &DENIED);

        check_subscribe(&open, device, "plant/#", true);
        check_subscribe(&open, device, "$share/g/plant/+", true);
        check_subscribe(&open, device, "#", false);
        check_subscribe(&open, device, "+/x", false);
        check_subscribe(&apps_only, device, "plant/#", false);
        check_subscribe(&open, app, "plant/#", true);
        check_subscribe(&open, app, "#", true);
        // Granted: what the application may not read is withheld per message.
        check_subscribe(&open, Requester::Application(&telemetry_only), "#", true);
        assert!(!may_deliver(&open, &Requester::Application(&telemetry_only), "devices/d1/alarms"));
        assert!(may_deliver(&open, &Requester::Application(&telemetry_only), "devices/d1/telemetry"));
        check_subscribe(&TopicPolicy::default(), app, "plant/#", false);
        check_subscribe(&TopicPolicy::default(), Requester::Application(&PermissionSet::new()), "#", false);
        assert!(!may_deliver(&TopicPolicy::default(), &app, "plant/x"));
    }

    #[test]
    fn applications_read_device_data_within_their_permissions() {
        let empty = TopicPolicy::default();
        let telemetry: PermissionSet = [Permission::TelemetryRead].into_iter().collect();
        let nothing = PermissionSet::new();
        let app = Requester::Application(&telemetry);
        check_subscribe(&empty, app, "devices/+/telemetry", true);
        check_subscribe(&empty, app, "devices/d1/events", true);
        check_subscribe(&empty, app, "$share/workers/devices/+/telemetry", true);
        check_subscribe(&empty, app, "devices/+/alarms", false);
        check_subscribe(&empty, app, "devices/#", true);
        assert!(!may_deliver(&empty, &app, "devices/d1/alarms"));
        check_subscribe(&empty, app, "devices/d1/nothing-here", false);
        check_subscribe(&empty, Requester::Application(&nothing), "devices/+/telemetry", false);
    }

    #[test]
    fn rules_add_and_deny_topics_and_deny_wins() {
        let rules = policy(
            r#"{"rules":[
                {"principal":"device","action":"all","topic":"custom/${device}/#","effect":"allow"},
                {"principal":"device","action":"publish","topic":"custom/${device}/secret","effect":"deny"},
                {"principal":"device","action":"publish","topic":"devices/${device}/attestation","effect":"deny"},
                {"principal":"application","action":"subscribe","topic":"custom/${device}/#","effect":"allow"}
            ]}"#,
        );
        let me = Requester::Device("d1");
        check_publish(&rules, me, "custom/d1/x", &PublishDecision::Routed);
        check_publish(&rules, me, "custom/d2/x", &DENIED);
        check_publish(&rules, me, "custom/d1/secret", &DENIED);
        check_publish(&rules, me, "devices/d1/attestation", &DENIED);
        check_publish(&rules, me, "devices/d1/telemetry", &PublishDecision::Platform(PlatformTopic::Telemetry));
        check_subscribe(&rules, me, "custom/d1/#", true);
        check_subscribe(&rules, me, "custom/d1/a/+", true);
        check_subscribe(&rules, me, "custom/+/#", false);
        check_subscribe(&rules, me, "custom/#", false);
        let nothing = PermissionSet::new();
        check_subscribe(&rules, Requester::Application(&nothing), "custom/+/x", true);
        check_publish(&rules, Requester::Application(&nothing), "custom/d1/x", &DENIED);
    }

    #[test]
    fn covering_and_overlapping_filters() {
        for (outer, inner, covers) in [
            ("a/#", "a", true),
            ("a/#", "a/b/+", true),
            ("a/+", "a/b", true),
            ("a/+", "a/#", false),
            ("a/+", "a/+", true),
            ("a/b", "a/+", false),
            ("#", "anything/#", true),
            ("a/b", "a/b/c", false),
        ] {
            assert_eq!(filter_covers(outer, inner), covers, "{outer} ⊇ {inner}");
        }
        for (first, second, overlap) in [
            ("a/#", "a", true),
            ("a/+", "+/b", true),
            ("a/b", "a/c", false),
            ("a/+/c", "a/b", false),
            ("#", "x/y", true),
            ("devices/+/telemetry", "devices/d1/#", true),
        ] {
            assert_eq!(filters_overlap(first, second), overlap, "{first} ∩ {second}");
            assert_eq!(filters_overlap(second, first), overlap, "{second} ∩ {first}");
        }
    }

    #[test]
    fn a_filter_overlapping_a_deny_rule_is_granted_and_the_denied_topic_withheld() {
        let deny = policy(
            r#"{"free_namespace":{"applications":true},"rules":[
                {"principal":"application","action":"subscribe","topic":"test/nosubscribe","effect":"deny"}]}"#,
        );
        let nothing = PermissionSet::new();
        let app = Requester::Application(&nothing);
        for filter in ["#", "+/+", "test/#", "test/+", "$share/g/test/#"] {
            check_subscribe(&deny, app, filter, true);
        }
        check_subscribe(&deny, app, "test/nosubscribe", false);
        check_subscribe(&deny, app, "$share/g/test/nosubscribe", false);
        assert!(!may_deliver(&deny, &app, "test/nosubscribe"));
        assert!(may_deliver(&deny, &app, "test/open"));
        let wider = policy(
            r#"{"free_namespace":{"applications":true},"rules":[
                {"principal":"application","action":"all","topic":"secret/#","effect":"deny"}]}"#,
        );
        check_subscribe(&wider, app, "secret/+/x", false);
        check_subscribe(&wider, app, "+/x", true);
        assert!(!may_deliver(&wider, &app, "secret/x"));
    }

    #[test]
    fn stored_policies_parse_with_defaults_and_are_checked() {
        assert_eq!(policy("{}"), TopicPolicy::default());
        assert!(
            TopicPolicy::from_stored(Some(
                r#"{"rules":[{"principal":"robot","action":"all","topic":"x","effect":"allow"}]}"#
            ))
            .is_err()
        );
        assert!(TopicPolicy::from_stored(Some(r#"{"free":true}"#)).is_err());
        let rule = |topic: &str| TopicRule {
            principal: RulePrincipal::Device,
            action: RuleAction::All,
            topic: topic.to_owned(),
            effect: RuleEffect::Allow,
        };
        for (topic, ok) in [
            ("custom/${device}/#", true),
            ("a/+/b", true),
            ("#", true),
            ("", false),
            ("a/#/b", false),
            ("a/b+", false),
            ("$share/g/a", false),
            ("a/b/c/d/e/f/g/h/i", false),
        ] {
            let policy = TopicPolicy { rules: vec![rule(topic)], ..TopicPolicy::default() };
            assert_eq!(policy.check().is_ok(), ok, "{topic:?}");
        }
    }
}
