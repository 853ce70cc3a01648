-- Packed telemetry (telemetry_rows.rs): a row may hold several points of its device that one
-- batch committed within a second of each other; `points` says how many. Rows written before
-- this migration hold one point each, which is what the default says.
ALTER TABLE device_telemetry ADD COLUMN points INTEGER NOT NULL DEFAULT 1;
