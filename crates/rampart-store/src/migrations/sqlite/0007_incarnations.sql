-- Ids are incarnations (SPEC §2): nothing of a deleted tenant or user reaches whoever later gets
-- the same id. Each tenant and user row carries a random `uid` (empty for rows made before this
-- migration); access tokens name it, and audit chains and security events are kept per tenant
-- incarnation. Also: trusted CAs are unique across tenants by fingerprint and need a
-- registration code (proof of possession); a revocation fences off every credential issued
-- before it (`credentials_valid_after`); API keys name the user they act for and the groups
-- they are confined to.

ALTER TABLE tenants ADD COLUMN uid TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN uid TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN credentials_valid_after INTEGER NOT NULL DEFAULT 0;

ALTER TABLE api_keys ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN owner_uid TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN groups_json TEXT NOT NULL DEFAULT '[]';
-- Keys made by a person act for that person; keys made by another key act for nobody until
-- re-created (their owner is unknown).
UPDATE api_keys SET owner = created_by WHERE created_by NOT LIKE 'api-key:%';

ALTER TABLE trusted_cas ADD COLUMN fingerprint TEXT;
CREATE UNIQUE INDEX trusted_cas_fingerprint ON trusted_cas (fingerprint);

-- Single-use challenges for trusted-CA proof of possession.
CREATE TABLE registration_codes (
    code TEXT PRIMARY KEY NOT NULL,
    tenant TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL
);
CREATE INDEX registration_codes_tenant ON registration_codes (tenant);

ALTER TABLE security_events ADD COLUMN incarnation TEXT NOT NULL DEFAULT '';

-- The audit tables get the incarnation in their key. SQLite cannot change a primary key in
-- place: the tables are rebuilt (dropping a table drops its triggers first, so the
-- append-only triggers do not fire) and the triggers re-created.
CREATE TABLE audit_records_v7 (
    tenant TEXT NOT NULL,
    incarnation TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    actor_type TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    source_ip TEXT,
    outcome TEXT NOT NULL,
    details_json TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (tenant, incarnation, seq)
);
INSERT INTO audit_records_v7 (tenant, incarnation, seq, ts, actor_type, actor_id, action, target, source_ip,
    outcome, details_json, prev_hash, hash)
SELECT tenant, '', seq, ts, actor_type, actor_id, action, target, source_ip, outcome, details_json, prev_hash, hash
FROM audit_records;
DROP TABLE audit_records;
ALTER TABLE audit_records_v7 RENAME TO audit_records;
CREATE INDEX audit_records_ts ON audit_records (tenant, incarnation, ts);
CREATE INDEX audit_records_action ON audit_records (tenant, incarnation, action);

CREATE TABLE audit_checkpoints_v7 (
    tenant TEXT NOT NULL,
    incarnation TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    ts INTEGER NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (tenant, incarnation, seq)
);
INSERT INTO audit_checkpoints_v7 (tenant, incarnation, seq, hash, ts, signature)
SELECT tenant, '', seq, hash, ts, signature FROM audit_checkpoints;
DROP TABLE audit_checkpoints;
ALTER TABLE audit_checkpoints_v7 RENAME TO audit_checkpoints;

CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
