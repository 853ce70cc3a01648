//! Live device data as Server-Sent Events (SPEC §8): `GET /api/v1/stream?device=&topics=`.
//! Only committed data of the caller's tenant, only devices in the caller's group scope, only
//! the topics asked for (`telemetry`, `events`, `alarms`; default all three). The event name is
//! the topic and the data a JSON object `{"device","ts",...}`. A comment every 15 s keeps the
//! connection alive through proxies. Requires `telemetry:read`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use rampart_core::{IdKind, Permission, validate_id};
use rampart_data::{LiveEvent, LiveTopic};
use serde::Deserialize;
use tokio::sync::broadcast;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::routes::data::ingestor;
use crate::routes::devices::visible_device;
use crate::state::AppState;

/// Topics a stream may ask for.
const TOPICS: [LiveTopic; 3] = [LiveTopic::Telemetry, LiveTopic::Events, LiveTopic::Alarms];
/// How long a group-scoped stream trusts what it learnt about a device's group.
const SCOPE_TTL: Duration = Duration::from_secs(30);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream))
}

/// `GET /api/v1/stream` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Only this device.
    pub device: Option<String>,
    /// Comma-separated topics among `telemetry`, `events`, `alarms` (default: all).
    pub topics: Option<String>,
}

fn parse_topics(topics: Option<&str>) -> ApiResult<HashSet<LiveTopic>> {
    let Some(topics) = topics.filter(|topics| !topics.trim().is_empty()) else {
        return Ok(TOPICS.into_iter().collect());
    };
    topics
        .split(',')
        .map(|name| {
            LiveTopic::parse(name.trim())
                .filter(|topic| TOPICS.contains(topic))
                .ok_or_else(|| ApiError::invalid("topics must be a comma-separated list of telemetry, events, alarms"))
        })
        .collect()
}

/// What one stream lets through.
struct Filter {
    tenant: String,
    device: Option<String>,
    topics: HashSet<LiveTopic>,
    /// Group scope of the caller; `None` = the whole tenant.
    scope: Option<BTreeSet<String>>,
    /// Devices whose visibility was looked up, with when.
    visible: HashMap<Arc<str>, (bool, Instant)>,
}

impl Filter {
    async fn admits(&mut self, state: &AppState, event: &LiveEvent) -> bool {
        if *event.tenant != *self.tenant || !self.topics.contains(&event.topic) {
            return false;
        }
        if self.device.as_deref().is_some_and(|device| device != &*event.device) {
            return false;
        }
        if self.scope.is_none() {
            return true;
        }
        if let Some((visible, at)) = self.visible.get(&event.device)
            && at.elapsed() < SCOPE_TTL
        {
            return *visible;
        }
        let visible = match state.platform.store.get_device(&self.tenant, &event.device).await {
            Ok(device) => Principal::sees_group(&self.scope, device.group.as_deref()),
            Err(_) => false,
        };
        if self.visible.len() > 10_000 {
            self.visible.clear();
        }
        self.visible.insert(Arc::clone(&event.device), (visible, Instant::now()));
        visible
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
    principal.require(&state, Permission::TelemetryRead).await?;
    let topics = parse_topics(params.topics.as_deref())?;
    if let Some(device) = &params.device {
        validate_id(IdKind::Device, device)?;
        visible_device(&state, &principal, device).await?;
    }
    let receiver = ingestor(&state)?.subscribe_live();
    let filter = Filter {
        tenant: principal.tenant.clone(),
        device: params.device,
        topics,
        scope: principal.device_scope(&state).await?,
        visible: HashMap::new(),
    };
    let events = futures::stream::unfold((receiver, filter, state), |(mut receiver, mut filter, state)| async move {
        loop {
            match receiver.recv().await {
                Ok(event) => {
                    if !filter.admits(&state, &event).await {
                        continue;
                    }
                    let sse = Event::default().event(event.topic.as_str()).data(event.data.to_string());
                    return Some((Ok(sse), (receiver, filter, state)));
                }
                // A slow client missed some events; tell it and carry on.
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let notice = Event::default().comment(format!("missed {missed} events"));
                    return Some((Ok(notice), (receiver, filter, state)));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
