-- Device data (SPEC §8, §12); see data_store.rs. Payloads are sealed (AES-256-GCM) under the
-- device key by the caller; only tenant, device, times, ids, statuses and alarm types are clear.
-- Rows are deleted with their device (delete_device) and their tenant (delete_tenant).

-- One row per telemetry message (or per element of an array message); `seq` is random and
-- only orders rows with the same time. Rowid tables on purpose: rows are appended in arrival
-- order (a commit writes a few sequential pages) and only the small primary-key index is
-- clustered by device; clustering the rows themselves by device (WITHOUT ROWID) made every
-- message of a batch dirty its own 4 KiB page and cut group-commit throughput by 3x.
CREATE TABLE device_telemetry (
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    ts INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (tenant, device, ts, seq)
);

-- `type_tag` is a keyed hash of the event type under the device key, for `?type=` filters.
CREATE TABLE device_events (
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    ts INTEGER NOT NULL,
    id TEXT NOT NULL,
    type_tag TEXT NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (tenant, device, ts, id)
);
CREATE INDEX device_events_type ON device_events (tenant, device, type_tag, ts, id);

-- At most one alarm per (device, type) that is not CLEARED; ids sort by creation time.
CREATE TABLE alarms (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    device TEXT NOT NULL,
    alarm_type TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    alarm_count INTEGER NOT NULL,
    text_sealed BLOB,
    first_ts INTEGER NOT NULL,
    last_ts INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX alarms_open ON alarms (tenant, device, alarm_type) WHERE status <> 'CLEARED';
CREATE INDEX alarms_device ON alarms (tenant, device, id);
CREATE INDEX alarms_status ON alarms (tenant, status, id);

CREATE TABLE device_attestations (
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    ts INTEGER NOT NULL,
    id TEXT NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (tenant, device, ts, id)
);

-- The reported half of the device twin; `reported_version` guards concurrent merges.
CREATE TABLE device_twins (
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    reported_sealed BLOB NOT NULL,
    reported_version INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, device)
);
