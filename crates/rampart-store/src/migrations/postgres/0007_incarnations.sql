-- Ids are incarnations (SPEC §2): nothing of a deleted tenant or user reaches whoever later gets
-- the same id. Each tenant and user row carries a random `uid` (empty for rows made before this
-- migration); access tokens name it, and audit chains and security events are kept per tenant
-- incarnation. Also: trusted CAs are unique across tenants by fingerprint and need a
-- registration code (proof of possession); a revocation fences off every credential issued
-- before it (`credentials_valid_after`); API keys name the user they act for and the groups
-- they are confined to.

ALTER TABLE tenants ADD COLUMN uid TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN uid TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN credentials_valid_after BIGINT NOT NULL DEFAULT 0;

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
    expires_at BIGINT NOT NULL
);
CREATE INDEX registration_codes_tenant ON registration_codes (tenant);

ALTER TABLE security_events ADD COLUMN incarnation TEXT NOT NULL DEFAULT '';

-- The audit tables get the incarnation in their key. Adding a column with a default rewrites
-- nothing and fires no row trigger.
ALTER TABLE audit_records ADD COLUMN incarnation TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_records DROP CONSTRAINT audit_records_pkey;
ALTER TABLE audit_records ADD PRIMARY KEY (tenant, incarnation, seq);
DROP INDEX audit_records_ts;
DROP INDEX audit_records_action;
CREATE INDEX audit_records_ts ON audit_records (tenant, incarnation, ts);
CREATE INDEX audit_records_action ON audit_records (tenant, incarnation, action);

ALTER TABLE audit_checkpoints ADD COLUMN incarnation TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_checkpoints DROP CONSTRAINT audit_checkpoints_pkey;
ALTER TABLE audit_checkpoints ADD PRIMARY KEY (tenant, incarnation, seq);
