-- Rampart schema v1 (PostgreSQL). Booleans are BOOLEAN, times epoch milliseconds, lists JSON
-- text. Every tenant-owned table has the tenant in its primary key.

CREATE TABLE platform_secrets (
    name TEXT PRIMARY KEY NOT NULL,
    sealed BYTEA NOT NULL
);

CREATE TABLE tenants (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    parent TEXT REFERENCES tenants (id),
    created_at BIGINT NOT NULL
);
CREATE INDEX tenants_parent ON tenants (parent, id);

CREATE TABLE tenant_policies (
    tenant TEXT PRIMARY KEY NOT NULL,
    policy_json TEXT NOT NULL
);

CREATE TABLE tenant_keys (
    tenant TEXT NOT NULL,
    key_id TEXT NOT NULL,
    wrapped BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, key_id)
);

CREATE TABLE users (
    tenant TEXT NOT NULL,
    username TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    roles_json TEXT NOT NULL,
    groups_json TEXT NOT NULL,
    disabled BOOLEAN NOT NULL,
    token_version BIGINT NOT NULL,
    mfa_enabled BOOLEAN NOT NULL,
    mfa_secret_sealed BYTEA,
    mfa_pending_sealed BYTEA,
    mfa_last_step BIGINT NOT NULL,
    email_sealed BYTEA,
    failed_logins BIGINT NOT NULL,
    failed_window_start BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    password_changed_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, username)
);

CREATE TABLE roles (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    permissions_json TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE device_groups (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    parent TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, id),
    FOREIGN KEY (tenant, parent) REFERENCES device_groups (tenant, id)
);
CREATE INDEX device_groups_parent ON device_groups (tenant, parent);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY NOT NULL,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    roles_json TEXT NOT NULL,
    key_hash BYTEA NOT NULL,
    expires_at BIGINT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX api_keys_tenant ON api_keys (tenant, id);

CREATE TABLE devices (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    device_type TEXT,
    group_id TEXT,
    attributes_json TEXT NOT NULL,
    required_interval_s BIGINT,
    status TEXT NOT NULL,
    connected BOOLEAN NOT NULL,
    last_seen BIGINT,
    last_address TEXT,
    firmware TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, id),
    FOREIGN KEY (tenant, group_id) REFERENCES device_groups (tenant, id)
);
CREATE INDEX devices_group ON devices (tenant, group_id, id);
CREATE INDEX devices_status ON devices (tenant, status, id);

CREATE TABLE device_keys (
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    tenant_key_id TEXT NOT NULL,
    wrapped BYTEA NOT NULL,
    PRIMARY KEY (tenant, device)
);

CREATE TABLE device_tokens (
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    id TEXT NOT NULL,
    token_hash BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, device, id),
    FOREIGN KEY (tenant, device) REFERENCES devices (tenant, id)
);

CREATE TABLE tenant_cas (
    tenant TEXT PRIMARY KEY NOT NULL,
    cert_pem TEXT NOT NULL,
    key_sealed BYTEA NOT NULL,
    crl_number BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- No foreign key to devices: certificates outlive their device, revoked, for the CRL.
CREATE TABLE device_certificates (
    tenant TEXT NOT NULL,
    serial TEXT NOT NULL,
    device TEXT NOT NULL,
    not_after BIGINT NOT NULL,
    revoked_at BIGINT,
    cert_pem TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, serial)
);
CREATE INDEX device_certificates_device ON device_certificates (tenant, device);

CREATE TABLE trusted_cas (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    cert_pem TEXT NOT NULL,
    subject TEXT NOT NULL,
    auto_register BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);

-- Audit: no foreign keys (records outlive their tenant) and append-only by trigger.
CREATE TABLE audit_records (
    tenant TEXT NOT NULL,
    seq BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    actor_type TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    source_ip TEXT,
    outcome TEXT NOT NULL,
    details_json TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (tenant, seq)
);
CREATE INDEX audit_records_ts ON audit_records (tenant, ts);
CREATE INDEX audit_records_action ON audit_records (tenant, action);

CREATE TABLE audit_checkpoints (
    tenant TEXT NOT NULL,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    ts BIGINT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (tenant, seq)
);

CREATE FUNCTION rampart_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_records_no_change BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION rampart_audit_append_only();
CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION rampart_audit_append_only();
CREATE TRIGGER audit_checkpoints_no_change BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION rampart_audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION rampart_audit_append_only();
