-- Firmware repository, campaigns, device firmware state and advisories (SPEC §9).

-- The tenant's Ed25519 firmware signing key: the private half sealed under the tenant key.
CREATE TABLE firmware_signing_keys (
    tenant TEXT NOT NULL,
    private_sealed BYTEA NOT NULL,
    public_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant)
);

-- Public keys a tenant registered to upload images signed offline.
CREATE TABLE firmware_public_keys (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    public_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);

-- Firmware images: the file lives under the data directory, encrypted with file_key, which is
-- sealed under the tenant key. key_id names the registered key that signed it (NULL: the
-- tenant's own signing key).
CREATE TABLE firmware (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    hardware TEXT NOT NULL,
    security_counter BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    signature TEXT NOT NULL,
    key_id TEXT,
    file_key_sealed BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, id),
    UNIQUE (tenant, name, version, hardware)
);
CREATE INDEX firmware_by_hash ON firmware (tenant, sha256);

-- What a device runs: from its last attestation and its last successful firmware update. The
-- installed security_counter only ever grows (anti-rollback).
CREATE TABLE device_firmware (
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    firmware_id TEXT,
    firmware_name TEXT,
    firmware_version TEXT,
    firmware_sha256 TEXT,
    security_counter BIGINT,
    secure_boot BIGINT,
    attestation_status TEXT,
    checked_at BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, device)
);

-- Firmware campaigns: the ordered target devices, how many got their operation so far, how
-- many of those passed their wave's failure check (or were accepted on resume), and the
-- status (running, paused, cancelled, completed).
CREATE TABLE campaigns (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    firmware_id TEXT NOT NULL,
    target TEXT NOT NULL,
    strategy TEXT NOT NULL,
    devices TEXT NOT NULL,
    dispatched BIGINT NOT NULL,
    accepted BIGINT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX campaigns_by_status ON campaigns (status);

-- Vulnerability advisories (OSV records, validated on the way in).
CREATE TABLE advisories (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    record TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);
