use rampart_store::*;
use std::time::Instant;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sqlite(&dir.path().join("r.db")).await.unwrap();
    store.create_tenant(&Tenant { id: "t".into(), name: "t".into(), parent: None, created_at: 1 }).await.unwrap();
    let devices: usize = std::env::var("DEVICES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    for i in 0..devices {
        store.create_device(&Device { tenant: "t".into(), id: format!("d{i}"), name: "x".into(), device_type: None, group: None, attributes_json: "{}".into(), required_interval_s: None, status: "registered".into(), connected: false, last_seen: None, last_address: None, firmware: None, created_at: 1 }).await.unwrap();
    }
    let seen_on = std::env::var("NOSEEN").is_err();
    let start = Instant::now();
    let mut seq = 0i64;
    for b in 0..100i64 {
        let mut batch = DeviceDataBatch::default();
        for i in 0..1000usize {
            seq += 1;
            let d = format!("d{}", i % devices);
            batch.rows.push(DeviceDataRow::Telemetry(TelemetryRow { tenant: "t".into(), device: d.clone(), ts: 1_764_000_000_000 + b * 1000, seq: seq * 7919 % 1_000_003 + seq, sealed: vec![7u8; 80] }));
            if seen_on { batch.seen.push(DeviceSeen { tenant: "t".into(), device: d, at_ms: b }); }
        }
        let t = Instant::now();
        store.insert_device_data_batch(&batch).await.unwrap();
        if b % 20 == 0 { eprintln!("batch {b}: {:?}", t.elapsed()); }
    }
    let e = start.elapsed();
    println!("devices={devices} seen={seen_on}: 100000 rows in {:.2}s = {:.0} rows/s", e.as_secs_f64(), 100000.0 / e.as_secs_f64());
}
