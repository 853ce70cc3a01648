//! What the simulated fleet did: counters, latency samples, a progress line and the summary.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;

/// Shared counters of all simulated devices.
pub(crate) struct Stats {
    pub devices: usize,
    pub connected: AtomicU64,
    pub connects: AtomicU64,
    pub connect_errors: AtomicU64,
    pub telemetry: AtomicU64,
    pub operations: AtomicU64,
    pub successful: AtomicU64,
    pub failed: AtomicU64,
    pub injected_failures: AtomicU64,
    pub signature_failures: AtomicU64,
    pub hash_failures: AtomicU64,
    pub desired: AtomicU64,
    pub downloads: AtomicU64,
    pub download_bytes: AtomicU64,
    /// Milliseconds from an operation's creation to its receipt by the device.
    receipt_ms: Mutex<Vec<f64>>,
    /// (start, end) of each download, seconds since the first, for the aggregate rate.
    download_windows: Mutex<Vec<(std::time::Instant, std::time::Instant)>>,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    pub(crate) fn new(devices: usize) -> Stats {
        Stats {
            devices,
            connected: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            telemetry: AtomicU64::new(0),
            operations: AtomicU64::new(0),
            successful: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            injected_failures: AtomicU64::new(0),
            signature_failures: AtomicU64::new(0),
            hash_failures: AtomicU64::new(0),
            desired: AtomicU64::new(0),
            downloads: AtomicU64::new(0),
            download_bytes: AtomicU64::new(0),
            receipt_ms: Mutex::new(Vec::new()),
            download_windows: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn count(&self, counter: impl Fn(&Stats) -> &AtomicU64) {
        bump(counter(self));
    }

    pub(crate) fn receipt(&self, ms: f64) {
        if let Ok(mut samples) = self.receipt_ms.lock() {
            samples.push(ms);
        }
    }

    pub(crate) fn download(&self, bytes: u64, started: std::time::Instant, ended: std::time::Instant) {
        bump(&self.downloads);
        self.download_bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Ok(mut windows) = self.download_windows.lock() {
            windows.push((started, ended));
        }
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn line(&self) -> String {
        format!(
            "connected {}/{} · telemetry {} · operations {} (ok {}, failed {}, injected {}) · firmware downloads {} · desired {} · bad signatures {}",
            Self::get(&self.connected),
            self.devices,
            Self::get(&self.telemetry),
            Self::get(&self.operations),
            Self::get(&self.successful),
            Self::get(&self.failed),
            Self::get(&self.injected_failures),
            Self::get(&self.downloads),
            Self::get(&self.desired),
            Self::get(&self.signature_failures),
        )
    }

    /// The results as one JSON line.
    pub(crate) fn summary(&self, elapsed: Duration) -> String {
        let mut samples = self.receipt_ms.lock().map(|samples| samples.clone()).unwrap_or_default();
        samples.sort_by(f64::total_cmp);
        let quantile = |q: f64| -> Option<f64> {
            if samples.is_empty() {
                return None;
            }
            let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(index).map(|value| (value * 10.0).round() / 10.0)
        };
        let bytes = Self::get(&self.download_bytes);
        let windows = self.download_windows.lock().map(|windows| windows.clone()).unwrap_or_default();
        let span = match (windows.iter().map(|w| w.0).min(), windows.iter().map(|w| w.1).max()) {
            (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
            _ => 0.0,
        };
        let mb_per_s = if span > 0.0 { (bytes as f64 / 1e6 / span * 100.0).round() / 100.0 } else { 0.0 };
        json!({
            "devices": self.devices,
            "connected": Self::get(&self.connected),
            "connect_errors": Self::get(&self.connect_errors),
            "telemetry": Self::get(&self.telemetry),
            "operations": Self::get(&self.operations),
            "successful": Self::get(&self.successful),
            "failed": Self::get(&self.failed),
            "injected_failures": Self::get(&self.injected_failures),
            "signature_failures": Self::get(&self.signature_failures),
            "hash_failures": Self::get(&self.hash_failures),
            "desired": Self::get(&self.desired),
            "firmware_downloads": Self::get(&self.downloads),
            "firmware_bytes": bytes,
            "firmware_mb_per_s": mb_per_s,
            "receipt_p50_ms": quantile(0.5),
            "receipt_p99_ms": quantile(0.99),
            "elapsed_s": (elapsed.as_secs_f64() * 10.0).round() / 10.0,
        })
        .to_string()
    }
}

/// Prints the progress line every two seconds.
pub(crate) async fn progress(stats: std::sync::Arc<Stats>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    loop {
        ticker.tick().await;
        eprintln!("{}", stats.line());
    }
}
