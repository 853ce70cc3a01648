//! `rampart bench run`: one publishing connection per credentials row, QoS 0 or 1, at a total
//! rate or flat out with a bounded window of unacknowledged messages per connection; an
//! optional subscriber measures publish→subscriber latency from the send time each payload
//! carries. Progress goes to stderr once per second; the result is one JSON line on stdout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::conn::{Connection, Target};
use super::credentials::Credential;
use super::payload;
use super::stats::{Counters, RunSummary, Samples, rate};
use super::wire::{self, Incoming};

/// After the send phase, wait this long for outstanding PUBACKs before counting them as errors.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// After the publishers finish, give in-flight deliveries this long to reach the subscriber.
const SUBSCRIBER_GRACE: Duration = Duration::from_secs(2);
/// QoS 0 flat out: messages written per flush.
const QOS0_BATCH: usize = 16;
/// Keep-alive announced in CONNECT; a PINGREQ goes out after half of it without traffic.
pub(crate) const KEEP_ALIVE_S: u16 = 60;
const PING_AFTER: Duration = Duration::from_secs(KEEP_ALIVE_S as u64 / 2);

/// Validated settings of one run.
pub(crate) struct RunSettings {
    pub target: Target,
    pub publishers: Vec<Credential>,
    pub qos: u8,
    pub payload_bytes: usize,
    pub duration: Duration,
    /// Total messages per second over all connections; `None` is flat out.
    pub rate: Option<f64>,
    /// Unacknowledged QoS 1 messages allowed per connection.
    pub inflight: usize,
    pub connect_concurrency: usize,
    /// Filter and identity of the extra subscriber connection.
    pub subscribe: Option<(String, Credential)>,
}

/// What every publisher task shares.
struct Shared {
    qos: u8,
    payload_bytes: usize,
    /// The process-local epoch that `sent_ns` in payloads counts from.
    epoch: Instant,
    start: Instant,
    send_end: Instant,
    /// Time between two messages of one connection in rate mode.
    period: Option<Duration>,
    inflight: usize,
    counters: Arc<Counters>,
}

struct PublisherResult {
    ack_samples: Samples,
    /// When this connection's last PUBACK (or, at QoS 0, its last write) happened.
    finished: Instant,
}

pub(crate) async fn run(settings: RunSettings) -> anyhow::Result<RunSummary> {
    let counters = Arc::new(Counters::default());
    let epoch = Instant::now();
    let target = Arc::new(settings.target);
    let n_publishers = settings.publishers.len();

    // The subscriber is connected and subscribed before anything is published.
    let (stop_subscriber, stop_signal) = watch::channel(false);
    let subscriber = match &settings.subscribe {
        Some((filter, credential)) => {
            let mut connection =
                Connection::open(&target, credential, KEEP_ALIVE_S).await.context("connecting the subscriber")?;
            subscribe(&mut connection, filter, settings.qos).await?;
            eprintln!("subscriber {} subscribed to {filter}", credential.client_id);
            Some(tokio::spawn(subscriber_loop(connection, epoch, counters.clone(), stop_signal)))
        }
        None => None,
    };

    eprintln!("connecting {n_publishers} publishers");
    let progress = tokio::spawn(connect_progress(counters.clone(), n_publishers as u64));
    let connections: Vec<(String, Connection)> = futures::stream::iter(settings.publishers)
        .map(|credential| {
            let target = target.clone();
            let counters = counters.clone();
            async move {
                match Connection::open(&target, &credential, KEEP_ALIVE_S).await {
                    Ok(connection) => {
                        Counters::add(&counters.connected, 1);
                        Some((credential.client_id, connection))
                    }
                    Err(error) => {
                        Counters::add(&counters.errors, 1);
                        eprintln!("connect {}: {error:#}", credential.client_id);
                        None
                    }
                }
            }
        })
        .buffer_unordered(settings.connect_concurrency.max(1))
        .filter_map(std::future::ready)
        .collect()
        .await;
    progress.abort();
    let connected = connections.len();
    eprintln!("{connected} of {n_publishers} publishers connected");
    if connected == 0 {
        bail!("no publisher could connect");
    }

    let start = Instant::now();
    let shared = Arc::new(Shared {
        qos: settings.qos,
        payload_bytes: settings.payload_bytes,
        epoch,
        start,
        send_end: start + settings.duration,
        period: settings.rate.map(|total| Duration::from_secs_f64(connected as f64 / total.max(0.001))),
        inflight: settings.inflight.max(1),
        counters: counters.clone(),
    });
    let progress = tokio::spawn(run_progress(counters.clone()));
    let mut tasks = Vec::with_capacity(connected);
    for (slot, (client_id, connection)) in connections.into_iter().enumerate() {
        let topic = format!("devices/{client_id}/telemetry");
        // Spread the connections' send times evenly over one period.
        let phase = slot as f64 / connected as f64;
        tasks.push(tokio::spawn(publisher_loop(topic, connection, shared.clone(), phase)));
    }
    let mut ack_samples = Samples::default();
    let mut finished = start;
    for task in tasks {
        match task.await {
            Ok(result) => {
                ack_samples.merge(result.ack_samples);
                finished = finished.max(result.finished);
            }
            Err(error) => {
                Counters::add(&counters.errors, 1);
                eprintln!("publisher task failed: {error}");
            }
        }
    }
    let e2e_samples = match subscriber {
        Some(task) => {
            tokio::time::sleep(SUBSCRIBER_GRACE).await;
            let _receivers_gone = stop_subscriber.send(true);
            task.await.unwrap_or_default()
        }
        None => Samples::default(),
    };
    progress.abort();

    let sent = Counters::get(&counters.sent);
    let acked = Counters::get(&counters.acked);
    let counted = if settings.qos == 0 { sent } else { acked };
    // The rate covers the whole send phase plus any time spent waiting for late
    // acknowledgements, so neither a stalled nor a slow broker is flattered.
    let elapsed = finished.max(shared.send_end).saturating_duration_since(start);
    let acks = ack_samples.into_sorted();
    let e2e = e2e_samples.into_sorted();
    Ok(RunSummary {
        sent,
        acked,
        received: Counters::get(&counters.received),
        msgs_per_s: rate(counted, elapsed),
        ack_p50_ms: acks.percentile_ms(0.50),
        ack_p99_ms: acks.percentile_ms(0.99),
        ack_p999_ms: acks.percentile_ms(0.999),
        e2e_p99_ms: e2e.percentile_ms(0.99),
        errors: Counters::get(&counters.errors),
    })
}

async fn subscribe(connection: &mut Connection, filter: &str, qos: u8) -> anyhow::Result<()> {
    wire::encode_subscribe(&mut connection.write_buffer, 1, filter, qos);
    connection.flush().await?;
    let deadline = Instant::now() + super::conn::CONNECT_TIMEOUT;
    loop {
        let packet = tokio::time::timeout_at(deadline, connection.next_packet())
            .await
            .map_err(|_| anyhow::anyhow!("no SUBACK for {filter}"))??;
        match packet {
            Incoming::SubAck { return_codes, .. } if return_codes.iter().all(|&code| code < 0x80) => return Ok(()),
            Incoming::SubAck { return_codes, .. } => {
                bail!("the broker refused the subscription to {filter}: {return_codes:?}")
            }
            _ => continue,
        }
    }
}

async fn subscriber_loop(
    mut connection: Connection,
    epoch: Instant,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> Samples {
    let mut samples = Samples::default();
    let mut last_write = Instant::now();
    loop {
        let ping_at = last_write + PING_AFTER;
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            read = connection.fill() => match read {
                Ok(0) | Err(_) => {
                    Counters::add(&counters.errors, 1);
                    eprintln!("the subscriber's connection closed");
                    return samples;
                }
                Ok(_) => {}
            },
            _ = tokio::time::sleep_until(ping_at) => {
                wire::encode_pingreq(&mut connection.write_buffer);
            }
        }
        let now = Instant::now();
        loop {
            match connection.take_packet() {
                Ok(Some(Incoming::Publish { qos, packet_id, payload, .. })) => {
                    Counters::add(&counters.received, 1);
                    if let Some(sent_ns) = payload::sent_ns(&payload) {
                        let sent_at = epoch + Duration::from_nanos(sent_ns);
                        samples.record(now.saturating_duration_since(sent_at));
                    }
                    if let (1, Some(packet_id)) = (qos, packet_id) {
                        wire::encode_puback(&mut connection.write_buffer, packet_id);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(error) => {
                    Counters::add(&counters.errors, 1);
                    eprintln!("subscriber: {error:#}");
                    return samples;
                }
            }
        }
        if !connection.write_buffer.is_empty() {
            if connection.flush().await.is_err() {
                Counters::add(&counters.errors, 1);
                return samples;
            }
            last_write = Instant::now();
        }
    }
    connection.close().await;
    samples
}

async fn publisher_loop(topic: String, mut connection: Connection, shared: Arc<Shared>, phase: f64) -> PublisherResult {
    let counters = &shared.counters;
    let mut ack_samples = Samples::default();
    let mut inflight: HashMap<u16, Instant> = HashMap::with_capacity(shared.inflight);
    let mut next_packet_id: u16 = 1;
    let mut seq: u64 = 0;
    let mut payload_buffer = Vec::with_capacity(shared.payload_bytes + 64);
    let mut next_send = match shared.period {
        Some(period) => shared.start + period.mul_f64(phase),
        None => shared.start,
    };
    let drain_deadline = shared.send_end + DRAIN_TIMEOUT;
    let mut last_write = Instant::now();
    let mut finished = shared.start;
    loop {
        let now = Instant::now();
        let sending = now < shared.send_end;
        if !sending && (shared.qos == 0 || inflight.is_empty()) {
            break;
        }
        if now >= drain_deadline {
            Counters::add(&counters.errors, inflight.len() as u64);
            eprintln!("{topic}: {} messages never acknowledged", inflight.len());
            break;
        }
        // Queue what is due: flat out, as many as the window (or a QoS 0 batch) allows; with a
        // rate, every message whose time has come while the window has room.
        let mut queued: u64 = 0;
        if sending {
            loop {
                let room = shared.qos == 0 || inflight.len() < shared.inflight;
                let due = match shared.period {
                    None => queued < QOS0_BATCH.max(shared.inflight) as u64,
                    Some(_) => next_send <= now,
                };
                if !room || !due {
                    break;
                }
                seq += 1;
                let sent_at = Instant::now();
                let sent_ns = u64::try_from((sent_at - shared.epoch).as_nanos()).unwrap_or(u64::MAX);
                payload::build(&mut payload_buffer, shared.payload_bytes, unix_millis(), seq, sent_ns);
                let packet_id = if shared.qos == 0 {
                    0
                } else {
                    while next_packet_id == 0 || inflight.contains_key(&next_packet_id) {
                        next_packet_id = next_packet_id.wrapping_add(1);
                    }
                    let id = next_packet_id;
                    next_packet_id = next_packet_id.wrapping_add(1);
                    inflight.insert(id, sent_at);
                    id
                };
                wire::encode_publish(&mut connection.write_buffer, &topic, shared.qos, packet_id, &payload_buffer);
                queued += 1;
                if let Some(period) = shared.period {
                    next_send += period;
                }
            }
        }
        if now >= last_write + PING_AFTER && queued == 0 {
            wire::encode_pingreq(&mut connection.write_buffer);
        }
        if !connection.write_buffer.is_empty() {
            if let Err(error) = connection.flush().await {
                return connection_lost(&topic, &error, inflight.len(), counters, ack_samples, finished);
            }
            Counters::add(&counters.sent, queued);
            last_write = Instant::now();
            if shared.qos == 0 {
                finished = last_write;
            }
        }
        // Wait for the broker, the next due message, the end of the send phase or a ping.
        let window_open = shared.qos == 0 || inflight.len() < shared.inflight;
        let can_send_now = sending && shared.period.is_none() && window_open;
        let mut wake = if sending { shared.send_end } else { drain_deadline };
        // With the window full, a due message waits for an acknowledgement, not for its time
        // (which may have passed: waking for it would spin).
        if sending && shared.period.is_some() && window_open {
            wake = wake.min(next_send);
        }
        wake = wake.min(last_write + PING_AFTER);
        tokio::select! {
            biased;
            read = connection.fill() => match read {
                Ok(0) => {
                    let error = anyhow::anyhow!("the broker closed the connection");
                    return connection_lost(&topic, &error, inflight.len(), counters, ack_samples, finished);
                }
                Err(error) => {
                    let error = anyhow::Error::from(error);
                    return connection_lost(&topic, &error, inflight.len(), counters, ack_samples, finished);
                }
                Ok(_) => {}
            },
            () = std::future::ready(()), if can_send_now => {}
            () = tokio::time::sleep_until(wake), if !can_send_now => {}
        }
        let now = Instant::now();
        loop {
            match connection.take_packet() {
                Ok(Some(Incoming::PubAck { packet_id })) => {
                    if let Some(sent_at) = inflight.remove(&packet_id) {
                        ack_samples.record(now - sent_at);
                        Counters::add(&counters.acked, 1);
                        finished = now;
                    }
                }
                Ok(Some(Incoming::Publish { qos: 1, packet_id: Some(packet_id), .. })) => {
                    wire::encode_puback(&mut connection.write_buffer, packet_id);
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(error) => {
                    return connection_lost(&topic, &error, inflight.len(), counters, ack_samples, finished);
                }
            }
        }
    }
    connection.close().await;
    PublisherResult { ack_samples, finished }
}

/// Counts a dropped connection and its unacknowledged messages as errors.
fn connection_lost(
    topic: &str,
    error: &anyhow::Error,
    unacked: usize,
    counters: &Counters,
    ack_samples: Samples,
    finished: Instant,
) -> PublisherResult {
    eprintln!("{topic}: connection lost with {unacked} unacknowledged messages: {error:#}");
    Counters::add(&counters.errors, 1 + unacked as u64);
    PublisherResult { ack_samples, finished }
}

fn unix_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as u64).unwrap_or(0)
}

async fn connect_progress(counters: Arc<Counters>, total: u64) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        eprintln!(
            "connecting: {}/{total} connected, {} failed",
            Counters::get(&counters.connected),
            Counters::get(&counters.errors)
        );
    }
}

async fn run_progress(counters: Arc<Counters>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let (mut sent, mut acked, mut received) = (0, 0, 0);
    let mut second = 0;
    loop {
        ticker.tick().await;
        second += 1;
        let now_sent = Counters::get(&counters.sent);
        let now_acked = Counters::get(&counters.acked);
        let now_received = Counters::get(&counters.received);
        eprintln!(
            "t={second:>4}s sent {:>7}/s acked {:>7}/s received {:>7}/s | totals sent {now_sent} acked {now_acked} received {now_received} errors {}",
            now_sent - sent,
            now_acked - acked,
            now_received - received,
            Counters::get(&counters.errors)
        );
        (sent, acked, received) = (now_sent, now_acked, now_received);
    }
}
