//! Device data (SPEC §7 payloads, §8 data, §12 encryption at rest) and what the platform sends
//! devices (SPEC §9 operations and desired twins): parsing and validation of what devices
//! publish, encryption under per-device keys, a group-commit writer that acknowledges only
//! durable data, queries (measurements, aggregates, events, alarms), alarm semantics,
//! `unavailable` alarms, operations with their lifecycle and deadlines, device twins, and a
//! live channel for Server-Sent Events.
//!
//! The edges (MQTT gateway, HTTPS device API, REST API) hold one [`Ingestor`] (cheap to clone)
//! and call [`Ingestor::submit`] with the untrusted payload bytes of a device:
//!
//! ```no_run
//! # async fn example(platform: std::sync::Arc<rampart_platform::Platform>, store: std::sync::Arc<dyn rampart_store::Store>) {
//! use rampart_data::{DataKind, IngestError, IngestSettings, Ingestor};
//! let ingestor = Ingestor::start(platform, store, IngestSettings::default());
//! match ingestor.submit("acme", "pump-1", DataKind::Telemetry, br#"{"temp":21.5}"#, 1_764_000_000_000).await {
//!     Ok(()) => { /* durable: send PUBACK */ }
//!     Err(IngestError::Malformed(_)) => { /* PUBACK 0x99 (5.0) / drop (3.1.1) */ }
//!     Err(_) => { /* storage trouble: 0x80, do not acknowledge */ }
//! }
//! # }
//! ```

mod attestation;
mod availability;
mod desired;
mod error;
mod firmware_update;
mod ingest;
mod keys;
mod kind;
mod live;
mod operations;
mod payload;
mod queries;
mod seal;
mod twin;
mod writer;

pub use attestation::DeviceAttestation;
pub use desired::{Twin, delta};
pub use error::{IngestError, QueryError};
pub use firmware_update::{FIRMWARE_UPDATE, FirmwareUpdate};
pub use ingest::{IngestSettings, Ingestor, QUEUED_MESSAGE_OVERHEAD, check_payload};
pub use kind::DataKind;
pub use live::{LiveEvent, LiveReceiver, LiveTopic};
pub use operations::{
    MAX_OPERATION_JSON_BYTES, MAX_OPERATION_TIMEOUT_S, NewOperation, Operation, StatusReport, created_by,
};
pub use queries::{
    AggregateFn, AggregateInterval, AggregateQuery, Alarm, AlarmQuery, Bucket, DeviceEvent, EventQuery, ListPage,
    MAX_AGGREGATE_ROWS, MAX_SCAN_ROWS, Measurement, MeasurementQuery, ReportedTwin,
};
