-- Device ids are incarnations (SPEC §2): when a device is deleted its id is remembered with the
-- time of the deletion, and a device later created under that id takes only credentials issued
-- after it (`devices.credentials_valid_after`), so a certificate of the deleted device, e.g. one
-- issued by a trusted CA with CN = the id, never authenticates its successor.
CREATE TABLE device_tombstones (
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    deleted_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, device)
);
