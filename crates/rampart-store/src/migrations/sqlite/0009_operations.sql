-- Remote operations (SPEC §9): one row per operation, its payload and result sealed under the
-- device's data key. `status` moves only forward (conditional updates name the statuses they
-- leave); `timeout_at` is when an unfinished operation fails with reason "timeout".
CREATE TABLE operations (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    device TEXT NOT NULL,
    op_type TEXT NOT NULL,
    payload_sealed BLOB,
    status TEXT NOT NULL,
    reason TEXT,
    result_sealed BLOB,
    campaign TEXT,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    timeout_at INTEGER,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX operations_by_device ON operations (tenant, device, id);
CREATE INDEX operations_unfinished ON operations (status, timeout_at);

-- The desired half of the device twin, sealed under the device's data key; `desired_version`
-- guards concurrent patches.
CREATE TABLE device_twin_desired (
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    desired_sealed BLOB NOT NULL,
    desired_version INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, device)
);
