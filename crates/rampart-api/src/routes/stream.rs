//! Live device data as Server-Sent Events (SPEC §8): `GET /api/v1/stream?device=&topics=`.
//! Only committed data of the caller's tenant, only devices in the caller's group scope, only
//! the topics asked for (`telemetry`, `events` need `telemetry:read`, `alarms` needs
//! `alarms:read`; without `topics`, every topic the caller may read). The event name is the
//! topic and the data a JSON object `{"device","ts",...}`. A comment every 15 s keeps the
//! connection alive through proxies.
//!
//! Authority is live: the stream asks the platform again every few seconds, and at once when
//! the bus says its user or key changed, and ends when the principal lost its credential,
//! its enablement or its permission, or its token expired. A client that stops reading is
//! dropped once it has a megabyte of unread events.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use rampart_core::{DeviceId, Permission};
use rampart_data::{LiveEvent, LiveReceiver, LiveTopic};
use rampart_platform::{BusMessage, BusReceiver, ControlEvent, Principal};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// Topics a stream may ask for, with the permission each needs.
const TOPICS: [(LiveTopic, Permission); 4] = [
    (LiveTopic::Telemetry, Permission::TelemetryRead),
    (LiveTopic::Events, Permission::TelemetryRead),
    (LiveTopic::Alarms, Permission::AlarmsRead),
    (LiveTopic::Operations, Permission::OperationsRead),
];
/// How long a group-scoped stream trusts what it learnt about a device's group.
const SCOPE_TTL: Duration = Duration::from_secs(30);
/// Devices whose visibility one stream remembers.
const MAX_REMEMBERED_DEVICES: usize = 10_000;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream))
}

/// `GET /api/v1/stream` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct StreamParams {
    /// Only this device.
    pub device: Option<String>,
    /// Comma-separated topics among `telemetry`, `events`, `alarms` (default: every topic the
    /// caller may read).
    pub topics: Option<String>,
}

fn permission_of(topic: LiveTopic) -> Option<Permission> {
    TOPICS.iter().find(|(known, _)| *known == topic).map(|(_, permission)| *permission)
}

/// The topics asked for; each must be readable by the principal (403 otherwise). Without a
/// list, every topic it may read (403 when none).
async fn topics(state: &AppState, principal: &Principal, asked: Option<&str>) -> ApiResult<HashSet<LiveTopic>> {
    let Some(asked) = asked.filter(|asked| !asked.trim().is_empty()) else {
        let readable: HashSet<LiveTopic> =
            TOPICS.iter().filter(|(_, permission)| principal.has(*permission)).map(|(topic, _)| *topic).collect();
        if readable.is_empty() {
            state.platform.authorize(principal, Permission::TelemetryRead).await?;
        }
        return Ok(readable);
    };
    let mut topics = HashSet::new();
    for name in asked.split(',') {
        let topic = LiveTopic::parse(name.trim())
            .filter(|topic| permission_of(*topic).is_some())
            .ok_or_else(|| ApiError::invalid("topics must be a comma-separated list of telemetry, events, alarms"))?;
        topics.insert(topic);
    }
    for topic in &topics {
        if let Some(permission) = permission_of(*topic) {
            state.platform.authorize(principal, permission).await?;
        }
    }
    Ok(topics)
}

/// One stream: what it lets through, and the authority it still has.
struct Feed {
    state: AppState,
    principal: Principal,
    device: Option<String>,
    topics: HashSet<LiveTopic>,
    live: LiveReceiver,
    bus: BusReceiver,
    next_check: tokio::time::Instant,
    /// Devices whose visibility was looked up, with when.
    visible: HashMap<Arc<str>, (bool, Instant)>,
}

/// What woke a stream.
enum Wake {
    Event(Option<LiveEvent>),
    Bus(Option<BusMessage>),
    Recheck,
}

impl Feed {
    /// Whether the bus message concerns this stream's principal.
    fn concerns_us(&self, message: &BusMessage) -> bool {
        let principal = &self.principal;
        match message {
            BusMessage::Resync => true,
            BusMessage::Event(event) => match event {
                ControlEvent::PrincipalChanged { tenant, username } => {
                    *tenant == principal.tenant && username == principal.acting_user()
                }
                ControlEvent::ApiKeyRevoked { tenant, key_id } => {
                    *tenant == principal.tenant && principal.api_key_id() == Some(key_id.as_str())
                }
                ControlEvent::TenantDeleted { tenant } => *tenant == principal.tenant,
                _ => false,
            },
        }
    }

    /// Authenticates the principal again; `false` when it no longer may read this stream.
    async fn still_authorized(&mut self) -> bool {
        match self.state.platform.reauthenticate(&self.principal).await {
            Ok(principal) => {
                let keeps = self.topics.iter().all(|topic| permission_of(*topic).is_none_or(|p| principal.has(p)));
                if principal.scope != self.principal.scope {
                    self.visible.clear();
                }
                self.principal = principal;
                keeps
            }
            Err(_) => false,
        }
    }

    async fn admits(&mut self, event: &LiveEvent) -> bool {
        if !self.topics.contains(&event.topic) {
            return false;
        }
        if self.device.as_deref().is_some_and(|device| device != &*event.device) {
            return false;
        }
        if self.principal.scope.is_whole_tenant() {
            return true;
        }
        if let Some((visible, at)) = self.visible.get(&event.device)
            && at.elapsed() < SCOPE_TTL
        {
            return *visible;
        }
        let visible = self.state.platform.sees_device(&self.principal, &event.device).await.unwrap_or(false);
        if self.visible.len() >= MAX_REMEMBERED_DEVICES {
            self.visible.clear();
        }
        self.visible.insert(Arc::clone(&event.device), (visible, Instant::now()));
        visible
    }

    /// The next SSE event, or `None` when the stream ends.
    async fn next(&mut self) -> Option<Event> {
        loop {
            let wake = tokio::select! {
                event = self.live.recv() => Wake::Event(event),
                message = self.bus.recv() => Wake::Bus(message),
                () = tokio::time::sleep_until(self.next_check) => Wake::Recheck,
            };
            match wake {
                // Dropped for falling behind, or the data service stopped: the client reconnects.
                Wake::Event(None) | Wake::Bus(None) => return None,
                Wake::Event(Some(event)) => {
                    if self.admits(&event).await {
                        return Some(Event::default().event(event.topic.as_str()).data(event.data.to_string()));
                    }
                }
                Wake::Bus(Some(message)) => {
                    if self.concerns_us(&message) && !self.still_authorized().await {
                        return None;
                    }
                }
                Wake::Recheck => {
                    if !self.still_authorized().await {
                        return None;
                    }
                    self.next_check = tokio::time::Instant::now() + self.state.settings.stream_recheck;
                }
            }
        }
    }
}

/// Streams live device data as Server-Sent Events.
#[utoipa::path(
    get,
    path = "/api/v1/stream",
    tag = "data",
    params(StreamParams),
    responses(
        (status = 200, description = "text/event-stream; event = topic, data = JSON {\"device\",\"ts\",...}"),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn stream(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<StreamParams>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let topics = topics(&state, &principal, params.topics.as_deref()).await?;
    if let Some(device) = &params.device {
        let permission = topics.iter().find_map(|topic| permission_of(*topic)).unwrap_or(Permission::TelemetryRead);
        state.platform.visible_device(&principal, permission, &DeviceId::parse(device)?).await?;
    }
    // Subscribe to the bus before the live data, so no change of authority slips in between.
    let bus = state.platform.subscribe();
    let live = state.ingestor.subscribe_live(&principal.tenant);
    let next_check = tokio::time::Instant::now() + state.settings.stream_recheck;
    let feed = Feed { state, principal, device: params.device, topics, live, bus, next_check, visible: HashMap::new() };
    let events = futures::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok(event), feed))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
