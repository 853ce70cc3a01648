//! Retained messages across restarts (SPEC §7, §12). The router notes every retained-message
//! change in a journal (the latest per topic); one writer task per gateway drains it into the
//! store, behind the publish path, with the payload and the forwarded properties sealed under
//! the tenant key (the associated data binds tenant and topic; the topic, being the key, stays
//! clear). At start, every tenant's retained messages are loaded back into the router.
//!
//! A retained publish is acknowledged before its row is written: what can be lost on a crash is
//! the retained state of the last few milliseconds, see `docs/decisions/0006-retained-messages.md`.
//! One writer draining a latest-per-topic journal keeps the order of one topic's updates: the
//! store never ends up holding an older message of a topic than memory does.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rampart_mqtt::{Properties, QoS};
use rampart_platform::rows::{RetainedChange, RetainedMessageRow};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::Shared;
use crate::error::GatewayError;
use crate::router::{RetainedChanges, RoutedMessage};

/// Changes per store transaction: a burst over many topics is written in a few commits.
const CHANGES_PER_TRANSACTION: usize = 500;

fn payload_purpose(topic: &str) -> String {
    format!("mqtt-retained-payload:{topic}")
}

fn properties_purpose(topic: &str) -> String {
    format!("mqtt-retained-properties:{topic}")
}

/// The MQTT 5.0 properties a subscriber receives with a retained message, as sealed.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct StoredProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload_format_indicator: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response_topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    correlation_data: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    user_properties: Vec<(String, String)>,
}

impl StoredProperties {
    /// `None` when the message carries none of them (every 3.1.1 message).
    fn of(properties: &Properties) -> Option<StoredProperties> {
        let stored = StoredProperties {
            payload_format_indicator: properties.payload_format_indicator,
            content_type: properties.content_type.clone(),
            response_topic: properties.response_topic.clone(),
            correlation_data: properties.correlation_data.as_ref().map(|data| data.to_vec()),
            user_properties: properties.user_properties.clone(),
        };
        (stored != StoredProperties::default()).then_some(stored)
    }

    fn into_properties(self) -> Properties {
        Properties {
            payload_format_indicator: self.payload_format_indicator,
            content_type: self.content_type,
            response_topic: self.response_topic,
            correlation_data: self.correlation_data.map(Bytes::from),
            user_properties: self.user_properties,
            ..Properties::default()
        }
    }
}

/// The gateway's monotonic clock and the wall clock read at one moment, to carry a message
/// expiry from one scale to the other.
#[derive(Debug, Clone, Copy)]
struct Clocks {
    wall_ms: i64,
    monotonic_ms: u64,
}

impl Clocks {
    fn now(shared: &Shared) -> Clocks {
        Clocks { wall_ms: shared.platform.now_ms(), monotonic_ms: shared.now_ms() }
    }

    /// The wall-clock time of a monotonic deadline.
    fn to_wall(self, monotonic_ms: u64) -> i64 {
        let ahead = i64::try_from(monotonic_ms.abs_diff(self.monotonic_ms)).unwrap_or(i64::MAX);
        match monotonic_ms >= self.monotonic_ms {
            true => self.wall_ms.saturating_add(ahead),
            false => self.wall_ms.saturating_sub(ahead),
        }
    }

    /// The monotonic deadline of a wall-clock time; `None` when it has passed.
    fn to_monotonic(self, wall_ms: i64) -> Option<u64> {
        let ahead = u64::try_from(wall_ms.checked_sub(self.wall_ms)?).ok().filter(|ahead| *ahead > 0)?;
        Some(self.monotonic_ms.saturating_add(ahead))
    }
}

/// The task writing retained-message changes to the store.
pub(crate) struct RetainedWriter {
    finish: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RetainedWriter {
    pub(crate) fn start(shared: Arc<Shared>) -> RetainedWriter {
        let (finish, finish_receiver) = oneshot::channel();
        RetainedWriter { finish, task: tokio::spawn(write_behind(shared, finish_receiver)) }
    }

    /// Writes every change noted so far and stops (waiting at most `grace`).
    pub(crate) async fn finish(self, grace: Duration) {
        let _writer_may_have_ended = self.finish.send(());
        if tokio::time::timeout(grace, self.task).await.is_err() {
            tracing::warn!("retained messages were still being written at shutdown");
        }
    }
}

async fn write_behind(shared: Arc<Shared>, mut finish: oneshot::Receiver<()>) {
    let mut finishing = false;
    loop {
        let changes = shared.router.take_retained_changes();
        if !changes.is_empty() {
            write(&shared, changes).await;
            continue;
        }
        if finishing {
            return;
        }
        tokio::select! {
            () = shared.router.retained_changed() => {}
            _ = &mut finish => finishing = true,
        }
    }
}

async fn write(shared: &Shared, changes: RetainedChanges) {
    let clocks = Clocks::now(shared);
    let mut sealed = Vec::with_capacity(changes.len());
    for ((tenant, topic), kept) in changes {
        match seal(shared, clocks, tenant, topic, kept).await {
            Ok(change) => sealed.push(change),
            // A tenant deleted meanwhile has no key any more: nothing to keep.
            Err((tenant, topic, error)) => tracing::warn!(%error, tenant, topic, "retained message not stored"),
        }
    }
    for batch in sealed.chunks(CHANGES_PER_TRANSACTION) {
        let Err(error) = shared.platform.write_retained(batch).await else { continue };
        // One change of a tenant deleted meanwhile fails the transaction: it must not cost
        // the other changes theirs.
        tracing::debug!(%error, "writing retained messages one by one");
        for change in batch {
            if let Err(error) = shared.platform.write_retained(std::slice::from_ref(change)).await {
                let (RetainedChange::Put(RetainedMessageRow { tenant, topic, .. })
                | RetainedChange::Delete { tenant, topic }) = change;
                tracing::warn!(%error, tenant, topic, "retained message not stored");
            }
        }
    }
}

type SealError = (String, String, rampart_platform::PlatformError);

/// The store change of one journal entry; an expired message is a deletion.
async fn seal(
    shared: &Shared,
    clocks: Clocks,
    tenant: String,
    topic: String,
    kept: Option<RoutedMessage>,
) -> Result<RetainedChange, SealError> {
    let expires_at = kept.as_ref().and_then(|message| message.expires_at_ms).map(|at| clocks.to_wall(at));
    let message = match kept {
        Some(message) if expires_at.is_none_or(|at| at > clocks.wall_ms) => message,
        _ => return Ok(RetainedChange::Delete { tenant, topic }),
    };
    let keyring = shared.platform.keyring();
    let payload_sealed = match keyring.seal_for_tenant(&tenant, &payload_purpose(&topic), &message.payload).await {
        Ok(sealed) => sealed,
        Err(error) => return Err((tenant, topic, error)),
    };
    let properties_sealed = match StoredProperties::of(&message.properties) {
        None => None,
        Some(properties) => {
            // Serialising plain strings, bytes and integers cannot fail.
            let json = serde_json::to_vec(&properties).unwrap_or_default();
            match keyring.seal_for_tenant(&tenant, &properties_purpose(&topic), &json).await {
                Ok(sealed) => Some(sealed),
                Err(error) => return Err((tenant, topic, error)),
            }
        }
    };
    Ok(RetainedChange::Put(RetainedMessageRow {
        tenant,
        topic,
        qos: i64::from(message.qos as u8),
        payload_sealed,
        properties_sealed,
        expires_at,
        updated_at: clocks.wall_ms,
    }))
}

/// Loads every tenant's unexpired retained messages into the router (and purges the expired
/// ones from the store). A row that cannot be opened is logged and skipped. Answers how many
/// were loaded.
pub(crate) async fn load(shared: &Shared) -> Result<usize, GatewayError> {
    let clocks = Clocks::now(shared);
    match shared.platform.purge_expired_retained().await {
        Ok(0) => {}
        Ok(purged) => tracing::debug!(purged, "expired retained messages purged"),
        Err(error) => tracing::warn!(%error, "purging expired retained messages failed"),
    }
    let rows = shared.platform.all_retained().await.map_err(|error| GatewayError::Retained(error.to_string()))?;
    let mut loaded = 0;
    for row in rows {
        let expires_at_ms = match row.expires_at {
            None => None,
            Some(at) => match clocks.to_monotonic(at) {
                Some(deadline) => Some(deadline),
                None => continue,
            },
        };
        match open(shared, &row, expires_at_ms).await {
            Ok(message) => {
                shared.router.restore_retained(&row.tenant, message);
                loaded += 1;
            }
            Err(error) => {
                tracing::warn!(%error, tenant = row.tenant, topic = row.topic,
                    "a stored retained message could not be opened; skipped");
            }
        }
    }
    Ok(loaded)
}

async fn open(shared: &Shared, row: &RetainedMessageRow, expires_at_ms: Option<u64>) -> Result<RoutedMessage, String> {
    let keyring = shared.platform.keyring();
    let qos = u8::try_from(row.qos).ok().and_then(QoS::from_u8).ok_or("invalid QoS")?;
    let payload = keyring
        .open_for_tenant(&row.tenant, &payload_purpose(&row.topic), &row.payload_sealed)
        .await
        .map_err(|error| format!("opening the payload: {error}"))?;
    let properties = match &row.properties_sealed {
        None => Properties::default(),
        Some(sealed) => {
            let json = keyring
                .open_for_tenant(&row.tenant, &properties_purpose(&row.topic), sealed)
                .await
                .map_err(|error| format!("opening the properties: {error}"))?;
            serde_json::from_slice::<StoredProperties>(&json)
                .map_err(|error| format!("decoding the properties: {error}"))?
                .into_properties()
        }
    };
    Ok(RoutedMessage {
        topic: row.topic.clone(),
        payload: Bytes::copy_from_slice(&payload),
        qos,
        retain: true,
        properties,
        expires_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_crosses_between_the_monotonic_and_the_wall_clock() {
        let clocks = Clocks { wall_ms: 1_700_000_000_000, monotonic_ms: 5_000 };
        assert_eq!(clocks.to_wall(65_000), 1_700_000_060_000);
        assert_eq!(clocks.to_wall(4_000), 1_699_999_999_000, "a deadline just passed");
        assert_eq!(clocks.to_wall(u64::MAX), i64::MAX);
        // After a restart the monotonic clock starts again near zero.
        let restarted = Clocks { wall_ms: 1_700_000_030_000, monotonic_ms: 20 };
        assert_eq!(restarted.to_monotonic(1_700_000_060_000), Some(30_020), "30 s left");
        assert_eq!(restarted.to_monotonic(1_700_000_030_000), None, "due now");
        assert_eq!(restarted.to_monotonic(1_600_000_000_000), None, "long gone");
        assert_eq!(restarted.to_monotonic(i64::MIN), None);
    }

    #[test]
    fn stored_properties_keep_what_subscribers_receive() {
        assert_eq!(StoredProperties::of(&Properties::default()), None, "3.1.1 messages store none");
        let properties = Properties {
            payload_format_indicator: Some(1),
            content_type: Some("application/json".into()),
            response_topic: Some("replies/1".into()),
            correlation_data: Some(Bytes::from_static(&[0, 255, 1])),
            user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
            ..Properties::default()
        };
        let stored = StoredProperties::of(&properties).expect("some");
        let json = serde_json::to_vec(&stored).expect("json");
        let back: StoredProperties = serde_json::from_slice(&json).expect("decode");
        assert_eq!(back.into_properties(), properties);
        let only_format = Properties { payload_format_indicator: Some(0), ..Properties::default() };
        assert!(StoredProperties::of(&only_format).is_some(), "an explicit 0 is kept");
    }
}
