-- Gateway tables (SPEC §7); see gateway_store.rs.

-- The tenant's MQTT topic policy document (JSON text owned by the API layer). It goes with
-- its tenant: deleting the tenant row deletes it.
CREATE TABLE topic_policies (
    tenant TEXT PRIMARY KEY NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    policy_json TEXT NOT NULL
);

-- HTTPS devices authenticate with a bare bearer token: find its row by hash.
CREATE INDEX device_tokens_hash ON device_tokens (token_hash);

-- Client certificates from external CAs: find the tenants trusting the leaf's issuer.
CREATE INDEX trusted_cas_subject ON trusted_cas (subject);
