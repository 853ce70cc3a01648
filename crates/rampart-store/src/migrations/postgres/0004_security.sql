-- Security events (SPEC §10). Ids sort by time: 16 hex digits of the ms timestamp + random.
CREATE TABLE security_events (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    severity TEXT NOT NULL,
    source_ip TEXT,
    device TEXT,
    user_name TEXT,
    details_json TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX security_events_type ON security_events (tenant, event_type, id);
