//! Closing a connection: the last writes, the outstanding stores, the will (now or after its
//! delay), the persistent session parked with what was routed to it (or a clean one
//! forgotten), and the disconnect recorded.

use futures::StreamExt;
use rampart_mqtt::{OutgoingMessage, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout, timeout_at};

use super::publish::will_message;
use super::{Connection, DISCONNECT_LINGER, Ending, STALLED_WRITE_GRACE, STORE_DRAIN_WAIT, Stream, write_and_flush};
use crate::identity::Identity;
use crate::reasons::{PublishOutcome, puback};
use crate::registry::{Parked, PendingWill};

impl Connection {
    /// Writes what is left, closes the socket and cleans up.
    pub(super) async fn close_down(self, mut stream: Stream, receiver: mpsc::Receiver<Box<OutgoingMessage>>) {
        if !self.out.is_empty() {
            let written = timeout(STALLED_WRITE_GRACE, write_and_flush(&mut stream, &self.out)).await;
            if self.sent_disconnect && matches!(written, Ok(Ok(()))) {
                // Some clients stop reading at end of stream before handling what came with
                // it; give them a moment to read the reason and close first.
                let _peer_closed_or_timed_out = timeout(DISCONNECT_LINGER, async {
                    let mut scratch = [0u8; 256];
                    while matches!(stream.read(&mut scratch).await, Ok(n) if n > 0) {}
                })
                .await;
            }
        }
        let _best_effort = timeout(STALLED_WRITE_GRACE, stream.shutdown()).await;
        drop(stream);
        Box::pin(self.finish(receiver)).await;
    }

    /// After the socket is gone: finish outstanding stores, publish or schedule the will,
    /// park a persistent session or drop a clean one, record the disconnect.
    async fn finish(mut self, mut receiver: mpsc::Receiver<Box<OutgoingMessage>>) {
        self.report_suppressed();
        let drain_until = Instant::now() + STORE_DRAIN_WAIT;
        while !self.pending.is_empty() {
            match timeout_at(drain_until, self.pending.next()).await {
                Ok(Some(outcome)) => {
                    if outcome.result.is_ok() {
                        self.shared.route(&self.key, outcome.message);
                        let code = puback(PublishOutcome::Accepted { delivered: true }, self.protocol);
                        self.session.inbound_stored(outcome.packet_id, code.unwrap_or_default());
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!("outstanding stores did not finish in time");
                    break;
                }
            }
        }
        let publish_will = match self.closing {
            Some(Ending::Session { will }) => will,
            Some(Ending::Abrupt) | None => true,
        };
        let now = self.shared.now_ms();
        let expiry_s = self.session.session_expiry_interval().min(self.shared.settings.max_session_expiry_s);
        let mut state = self.session.into_state();
        let mut will_now = None;
        let still_ours = {
            let mut slot = self.entry.lock();
            let ours = slot.live.as_ref().is_some_and(|live| live.connection_id == self.connection_id);
            if ours {
                let overflow = slot.live.take().and_then(|live| live.overflow);
                let overflowed = overflow.is_some();
                let persistent = expiry_s > 0;
                // What was routed to this connection and not handled yet: the channel, then what
                // was held after the channel overflowed. A persistent session keeps the QoS 1/2
                // ones (up to its queue limit); beyond that, or when the gateway closed a clean
                // session for overflowing, they are lost, and counted.
                let mut lost = 0u64;
                let max_queued = self.shared.session_config.max_queued;
                let leftovers = std::iter::from_fn(|| receiver.try_recv().ok().map(|message| *message));
                for message in leftovers.chain(overflow.into_iter().flatten()) {
                    let qos = message.qos;
                    let kept = persistent && state.enqueue(message, max_queued);
                    if !kept && qos != QoS::AtMostOnce && (persistent || overflowed) {
                        lost += 1;
                    }
                }
                if lost > 0 {
                    self.shared.count_dropped(lost);
                    tracing::warn!(tenant = %self.key.tenant, client = ?self.key.client, lost, "undelivered messages lost at disconnect");
                }
                if persistent {
                    slot.parked = Some(Box::new(Parked {
                        state,
                        expires_at_ms: (expiry_s != u32::MAX).then(|| now + u64::from(expiry_s) * 1000),
                    }));
                } else {
                    for filter in std::mem::take(&mut slot.subscriptions).into_keys() {
                        self.shared.router.unsubscribe(&self.key, &filter);
                    }
                    // A clean session is gone: the client id is free for any key again.
                    slot.owner_key = None;
                }
                slot.persistent = persistent;
                if publish_will && let Some(will) = self.will.take() {
                    let delay_s = will.properties.will_delay_interval.unwrap_or(0).min(expiry_s);
                    let message = will_message(&will, now);
                    if delay_s == 0 {
                        will_now = Some(message);
                    } else {
                        let fire_at_ms = now + u64::from(delay_s) * 1000;
                        slot.pending_will = Some(Box::new(PendingWill { fire_at_ms, message }));
                    }
                }
            }
            ours
        };
        if let Some(message) = will_now {
            self.shared.publish_will(&self.key, message);
        }
        self.shared.registry.remove_if_idle(&self.key);
        if still_ours
            && let Identity::Device { tenant, device, .. } = &*self.identity
            && let Err(error) = self.shared.platform.device_disconnected(tenant, device).await
        {
            tracing::debug!(%error, tenant, device, "recording the disconnect failed");
        }
        tracing::debug!(tenant = %self.key.tenant, client = ?self.key.client, peer = %self.peer, "disconnected");
    }
}
