//! `rampart bench connect`: one idle MQTT connection per credentials row, held open for a
//! while so the broker's memory per idle TLS connection can be measured from outside
//! (`bench/idle-rss.sh` reads the broker's VmRSS before and during the hold).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::conn::{Connection, Target};
use super::credentials::Credential;
use super::load::KEEP_ALIVE_S;
use super::stats::{ConnectSummary, Counters};
use super::wire;

/// PINGREQ interval while holding: well inside the 60 s keep-alive.
const PING_EVERY: Duration = Duration::from_secs(30);

pub(crate) struct ConnectSettings {
    pub target: Target,
    pub rows: Vec<Credential>,
    pub hold: Duration,
    pub connect_concurrency: usize,
}

pub(crate) async fn run(settings: ConnectSettings) -> ConnectSummary {
    let counters = Arc::new(Counters::default());
    let target = Arc::new(settings.target);
    let total = settings.rows.len() as u64;
    let (stop, stop_signal) = watch::channel(false);
    let progress = tokio::spawn(progress(counters.clone(), total));
    let holders: Vec<tokio::task::JoinHandle<()>> = futures::stream::iter(settings.rows)
        .map(|credential| {
            let target = target.clone();
            let counters = counters.clone();
            let stop_signal = stop_signal.clone();
            async move {
                match Connection::open(&target, &credential, KEEP_ALIVE_S).await {
                    Ok(connection) => {
                        Counters::add(&counters.connected, 1);
                        Some(tokio::spawn(hold(connection, counters, stop_signal)))
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
    let connected = Counters::get(&counters.connected);
    // Scripts wait for this line before they read the broker's memory.
    eprintln!(
        "holding {connected} connections ({} failed) for {} s",
        Counters::get(&counters.errors),
        settings.hold.as_secs()
    );
    let hold_started = Instant::now();
    tokio::time::sleep(settings.hold).await;
    let held = hold_started.elapsed();
    // Connections that dropped during the hold count as failed, not as held.
    let still_connected = Counters::get(&counters.connected);
    let _receivers_gone = stop.send(true);
    for holder in holders {
        let _finished = holder.await;
    }
    ConnectSummary {
        connected: still_connected,
        failed: total - still_connected,
        held_s: (held.as_secs_f64() * 10.0).round() / 10.0,
    }
}

async fn hold(mut connection: Connection, counters: Arc<Counters>, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            read = connection.fill() => match read {
                Ok(0) | Err(_) => {
                    counters.connected.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                Ok(_) => while let Ok(Some(_)) = connection.take_packet() {},
            },
            _ = ticker.tick() => {
                wire::encode_pingreq(&mut connection.write_buffer);
                if connection.flush().await.is_err() {
                    counters.connected.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
            }
        }
    }
    connection.close().await;
}

async fn progress(counters: Arc<Counters>, total: u64) {
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
