-- Retained MQTT messages (SPEC §7), one per (tenant, topic); see gateway_store.rs. The topic
-- is clear (it is the key); the payload and the forwarded MQTT 5.0 properties are sealed under
-- the tenant key by the gateway (SPEC §12). `expires_at` is the wall-clock end of the message
-- expiry interval (epoch ms), NULL when the message does not expire. Rows go with their
-- tenant (delete_tenant, and the foreign key behind it).
CREATE TABLE retained_messages (
    tenant TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    topic TEXT NOT NULL,
    qos SMALLINT NOT NULL,
    payload_sealed BYTEA NOT NULL,
    properties_sealed BYTEA,
    expires_at BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, topic)
);
