//! The firmware side of device management (SPEC §9): the tenant's signing key and registered
//! public keys, firmware images, what each device runs (attestation and installed security
//! counter, which only grows), campaigns, and vulnerability advisories.

use async_trait::async_trait;
use rampart_core::{AttestationStatus, CampaignStatus};

use crate::sql_store::SqlStore;
use crate::table::Table;
use crate::value::{Row, Statement, Value, placeholders};
use crate::{StoreError, StoreResult};

/// The tenant's firmware signing key, the private half sealed under the tenant key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRow {
    pub tenant: String,
    pub private_sealed: Vec<u8>,
    pub public_key: Vec<u8>,
    pub created_at: i64,
}

impl std::fmt::Debug for SigningKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRow").field("tenant", &self.tenant).finish_non_exhaustive()
    }
}

/// A public key the tenant registered for images signed offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareKeyRow {
    pub tenant: String,
    pub id: String,
    pub public_key: Vec<u8>,
    pub created_at: i64,
}

/// One firmware image's record (its file lives under the data directory).
#[derive(Clone, PartialEq, Eq)]
pub struct FirmwareRow {
    pub tenant: String,
    pub id: String,
    pub name: String,
    pub version: String,
    pub hardware: String,
    pub security_counter: i64,
    pub sha256: String,
    pub size: i64,
    /// Base64 Ed25519 signature over the manifest.
    pub signature: String,
    /// The registered key that signed it; `None` for the tenant's own key.
    pub key_id: Option<String>,
    /// The image's file key, sealed under the tenant key.
    pub file_key_sealed: Vec<u8>,
    pub created_at: i64,
}

impl std::fmt::Debug for FirmwareRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirmwareRow")
            .field("tenant", &self.tenant)
            .field("id", &self.id)
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// What a device runs, as far as the platform knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFirmwareRow {
    pub tenant: String,
    pub device: String,
    /// The repository image it runs, when the hash is known.
    pub firmware_id: Option<String>,
    pub firmware_name: Option<String>,
    pub firmware_version: Option<String>,
    pub firmware_sha256: Option<String>,
    /// The highest security counter it has run; never decreases.
    pub security_counter: Option<i64>,
    pub secure_boot: Option<bool>,
    pub attestation_status: Option<AttestationStatus>,
    pub checked_at: Option<i64>,
    pub updated_at: i64,
}

/// A firmware campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignRow {
    pub tenant: String,
    pub id: String,
    pub firmware_id: String,
    /// The target as given (JSON).
    pub target: String,
    /// The strategy as given (JSON).
    pub strategy: String,
    /// The target devices in rollout order (JSON array of ids).
    pub devices: String,
    /// How many devices (from the front of `devices`) have had their operation created.
    pub dispatched: i64,
    /// How many devices (from the front) passed their wave's failure check, or were accepted
    /// by a person resuming the campaign.
    pub accepted: i64,
    pub status: CampaignStatus,
    pub reason: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A change of a campaign's progress or status, applied only while it is in `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignUpdate<'a> {
    pub tenant: &'a str,
    pub id: &'a str,
    pub from: &'a [CampaignStatus],
    pub to: CampaignStatus,
    /// The new `dispatched` count, if it changes.
    pub dispatched: Option<i64>,
    /// The new `accepted` count, if it changes.
    pub accepted: Option<i64>,
    pub reason: Option<&'a str>,
    pub now_ms: i64,
}

/// One advisory (an OSV record, validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvisoryRow {
    pub tenant: String,
    pub id: String,
    pub record: String,
    pub updated_at: i64,
}

const SIGNING_KEYS: Table =
    Table { name: "firmware_signing_keys", columns: &["tenant", "private_sealed", "public_key", "created_at"] };

const PUBLIC_KEYS: Table =
    Table { name: "firmware_public_keys", columns: &["tenant", "id", "public_key", "created_at"] };

const FIRMWARE: Table = Table {
    name: "firmware",
    columns: &[
        "tenant",
        "id",
        "name",
        "version",
        "hardware",
        "security_counter",
        "sha256",
        "size",
        "signature",
        "key_id",
        "file_key_sealed",
        "created_at",
    ],
};

const DEVICE_FIRMWARE: Table = Table {
    name: "device_firmware",
    columns: &[
        "tenant",
        "device",
        "firmware_id",
        "firmware_name",
        "firmware_version",
        "firmware_sha256",
        "security_counter",
        "secure_boot",
        "attestation_status",
        "checked_at",
        "updated_at",
    ],
};

const CAMPAIGNS: Table = Table {
    name: "campaigns",
    columns: &[
        "tenant",
        "id",
        "firmware_id",
        "target",
        "strategy",
        "devices",
        "dispatched",
        "accepted",
        "status",
        "reason",
        "created_by",
        "created_at",
        "updated_at",
    ],
};

const ADVISORIES: Table = Table { name: "advisories", columns: &["tenant", "id", "record", "updated_at"] };

fn signing_key_from_row(mut row: Row) -> StoreResult<SigningKeyRow> {
    Ok(SigningKeyRow {
        tenant: row.text()?,
        private_sealed: row.blob()?,
        public_key: row.blob()?,
        created_at: row.int()?,
    })
}

fn public_key_from_row(mut row: Row) -> StoreResult<FirmwareKeyRow> {
    Ok(FirmwareKeyRow { tenant: row.text()?, id: row.text()?, public_key: row.blob()?, created_at: row.int()? })
}

fn firmware_from_row(mut row: Row) -> StoreResult<FirmwareRow> {
    Ok(FirmwareRow {
        tenant: row.text()?,
        id: row.text()?,
        name: row.text()?,
        version: row.text()?,
        hardware: row.text()?,
        security_counter: row.int()?,
        sha256: row.text()?,
        size: row.int()?,
        signature: row.text()?,
        key_id: row.opt_text()?,
        file_key_sealed: row.blob()?,
        created_at: row.int()?,
    })
}

fn device_firmware_from_row(mut row: Row) -> StoreResult<DeviceFirmwareRow> {
    Ok(DeviceFirmwareRow {
        tenant: row.text()?,
        device: row.text()?,
        firmware_id: row.opt_text()?,
        firmware_name: row.opt_text()?,
        firmware_version: row.opt_text()?,
        firmware_sha256: row.opt_text()?,
        security_counter: row.opt_int()?,
        secure_boot: row.opt_int()?.map(|flag| flag != 0),
        attestation_status: row
            .opt_text()?
            .map(|text| {
                AttestationStatus::parse(&text).ok_or_else(|| StoreError::Corrupt("unknown attestation status".into()))
            })
            .transpose()?,
        checked_at: row.opt_int()?,
        updated_at: row.int()?,
    })
}

fn campaign_from_row(mut row: Row) -> StoreResult<CampaignRow> {
    Ok(CampaignRow {
        tenant: row.text()?,
        id: row.text()?,
        firmware_id: row.text()?,
        target: row.text()?,
        strategy: row.text()?,
        devices: row.text()?,
        dispatched: row.int()?,
        accepted: row.int()?,
        status: CampaignStatus::parse(&row.text()?)
            .ok_or_else(|| StoreError::Corrupt("unknown campaign status".into()))?,
        reason: row.opt_text()?,
        created_by: row.text()?,
        created_at: row.int()?,
        updated_at: row.int()?,
    })
}

fn advisory_from_row(mut row: Row) -> StoreResult<AdvisoryRow> {
    Ok(AdvisoryRow { tenant: row.text()?, id: row.text()?, record: row.text()?, updated_at: row.int()? })
}

/// The firmware repository, device firmware state, campaigns and advisories.
#[async_trait]
pub trait FleetStore: Send + Sync {
    async fn get_signing_key(&self, tenant: &str) -> StoreResult<Option<SigningKeyRow>>;
    /// Stores the tenant's signing key unless one exists; answers the one that is stored.
    async fn put_signing_key_once(&self, row: &SigningKeyRow) -> StoreResult<SigningKeyRow>;

    /// `Conflict` if the id is taken.
    async fn insert_firmware_key(&self, row: &FirmwareKeyRow) -> StoreResult<()>;
    async fn list_firmware_keys(&self, tenant: &str) -> StoreResult<Vec<FirmwareKeyRow>>;
    /// `NotFound` if there is no such key.
    async fn delete_firmware_key(&self, tenant: &str, id: &str) -> StoreResult<()>;

    /// `Conflict` if the id, or the name, version and hardware, are taken.
    async fn insert_firmware(&self, row: &FirmwareRow) -> StoreResult<()>;
    async fn get_firmware(&self, tenant: &str, id: &str) -> StoreResult<FirmwareRow>;
    /// The tenant's images, newest first.
    async fn list_firmware(&self, tenant: &str) -> StoreResult<Vec<FirmwareRow>>;
    /// The tenant's images with this SHA-256 (lowercase hex).
    async fn firmware_by_sha256(&self, tenant: &str, sha256: &str) -> StoreResult<Vec<FirmwareRow>>;

    async fn get_device_firmware(&self, tenant: &str, device: &str) -> StoreResult<Option<DeviceFirmwareRow>>;
    /// Every device's firmware state in the tenant.
    async fn list_device_firmware(&self, tenant: &str) -> StoreResult<Vec<DeviceFirmwareRow>>;
    /// Records what a device runs. With `attestation`, the attestation fields are written too
    /// (a report); without, they stay (an update the device confirmed). The security counter
    /// becomes the larger of the stored one and the row's. `NotFound` if the device is gone.
    async fn record_device_firmware(&self, row: &DeviceFirmwareRow, attestation: bool) -> StoreResult<()>;

    /// `Conflict` if the id is taken.
    async fn insert_campaign(&self, row: &CampaignRow) -> StoreResult<()>;
    async fn get_campaign(&self, tenant: &str, id: &str) -> StoreResult<CampaignRow>;
    /// The tenant's campaigns, newest first.
    async fn list_campaigns(&self, tenant: &str) -> StoreResult<Vec<CampaignRow>>;
    /// Running campaigns of every tenant (for the campaign runner).
    async fn list_running_campaigns(&self) -> StoreResult<Vec<CampaignRow>>;
    /// Applies `update` if the campaign is in `update.from`; `NotFound` if there is no such
    /// campaign, `Conflict` if it is in another status. Answers the campaign afterwards.
    async fn update_campaign(&self, update: &CampaignUpdate<'_>) -> StoreResult<CampaignRow>;
    /// How many of the campaign's operations are in each status.
    async fn campaign_operation_counts(&self, tenant: &str, campaign: &str) -> StoreResult<Vec<(String, i64)>>;

    /// Stores an advisory, replacing one with the same id.
    async fn put_advisory(&self, row: &AdvisoryRow) -> StoreResult<()>;
    async fn list_advisories(&self, tenant: &str) -> StoreResult<Vec<AdvisoryRow>>;
}

#[async_trait]
impl FleetStore for SqlStore {
    async fn get_signing_key(&self, tenant: &str) -> StoreResult<Option<SigningKeyRow>> {
        self.optional(&SIGNING_KEYS.select("WHERE tenant = ?"), vec![tenant.into()], signing_key_from_row).await
    }

    async fn put_signing_key_once(&self, row: &SigningKeyRow) -> StoreResult<SigningKeyRow> {
        let values =
            vec![(&row.tenant).into(), (&row.private_sealed).into(), (&row.public_key).into(), row.created_at.into()];
        self.insert(&SIGNING_KEYS.insert("ON CONFLICT (tenant) DO NOTHING"), values).await?;
        self.get_signing_key(&row.tenant).await?.ok_or(StoreError::NotFound)
    }

    async fn insert_firmware_key(&self, row: &FirmwareKeyRow) -> StoreResult<()> {
        let values = vec![(&row.tenant).into(), (&row.id).into(), (&row.public_key).into(), row.created_at.into()];
        self.insert(&PUBLIC_KEYS.insert(""), values).await
    }

    async fn list_firmware_keys(&self, tenant: &str) -> StoreResult<Vec<FirmwareKeyRow>> {
        self.all(&PUBLIC_KEYS.select("WHERE tenant = ? ORDER BY id"), vec![tenant.into()], public_key_from_row).await
    }

    async fn delete_firmware_key(&self, tenant: &str, id: &str) -> StoreResult<()> {
        self.change_one("DELETE FROM firmware_public_keys WHERE tenant = ? AND id = ?", vec![tenant.into(), id.into()])
            .await
    }

    async fn insert_firmware(&self, row: &FirmwareRow) -> StoreResult<()> {
        let values = vec![
            (&row.tenant).into(),
            (&row.id).into(),
            (&row.name).into(),
            (&row.version).into(),
            (&row.hardware).into(),
            row.security_counter.into(),
            (&row.sha256).into(),
            row.size.into(),
            (&row.signature).into(),
            row.key_id.as_ref().into(),
            (&row.file_key_sealed).into(),
            row.created_at.into(),
        ];
        self.insert(&FIRMWARE.insert(""), values).await
    }

    async fn get_firmware(&self, tenant: &str, id: &str) -> StoreResult<FirmwareRow> {
        self.one(&FIRMWARE.select("WHERE tenant = ? AND id = ?"), vec![tenant.into(), id.into()], firmware_from_row)
            .await
    }

    async fn list_firmware(&self, tenant: &str) -> StoreResult<Vec<FirmwareRow>> {
        self.all(
            &FIRMWARE.select("WHERE tenant = ? ORDER BY created_at DESC, id"),
            vec![tenant.into()],
            firmware_from_row,
        )
        .await
    }

    async fn firmware_by_sha256(&self, tenant: &str, sha256: &str) -> StoreResult<Vec<FirmwareRow>> {
        let sql = FIRMWARE.select("WHERE tenant = ? AND sha256 = ? ORDER BY id");
        self.all(&sql, vec![tenant.into(), sha256.into()], firmware_from_row).await
    }

    async fn get_device_firmware(&self, tenant: &str, device: &str) -> StoreResult<Option<DeviceFirmwareRow>> {
        let sql = DEVICE_FIRMWARE.select("WHERE tenant = ? AND device = ?");
        self.optional(&sql, vec![tenant.into(), device.into()], device_firmware_from_row).await
    }

    async fn list_device_firmware(&self, tenant: &str) -> StoreResult<Vec<DeviceFirmwareRow>> {
        let sql = DEVICE_FIRMWARE.select("WHERE tenant = ? ORDER BY device");
        self.all(&sql, vec![tenant.into()], device_firmware_from_row).await
    }

    async fn record_device_firmware(&self, row: &DeviceFirmwareRow, attestation: bool) -> StoreResult<()> {
        let larger_counter = "security_counter = CASE WHEN device_firmware.security_counter IS NULL \
             OR excluded.security_counter > device_firmware.security_counter THEN excluded.security_counter \
             ELSE device_firmware.security_counter END";
        let mut set = String::from(
            "firmware_id = excluded.firmware_id, firmware_name = excluded.firmware_name, \
             firmware_version = excluded.firmware_version, firmware_sha256 = excluded.firmware_sha256, \
             updated_at = excluded.updated_at, ",
        );
        set.push_str(larger_counter);
        if attestation {
            set.push_str(
                ", secure_boot = excluded.secure_boot, attestation_status = excluded.attestation_status, \
                 checked_at = excluded.checked_at",
            );
        }
        let values = vec![
            (&row.tenant).into(),
            (&row.device).into(),
            row.firmware_id.as_ref().into(),
            row.firmware_name.as_ref().into(),
            row.firmware_version.as_ref().into(),
            row.firmware_sha256.as_ref().into(),
            row.security_counter.into(),
            row.secure_boot.map(i64::from).into(),
            row.attestation_status.map(|status| status.as_str().to_owned()).as_ref().into(),
            row.checked_at.into(),
            row.updated_at.into(),
        ];
        let upsert = Statement::new(
            DEVICE_FIRMWARE.insert(&format!("ON CONFLICT (tenant, device) DO UPDATE SET {set}")),
            values,
        );
        let device_must_exist = Statement::new(
            "UPDATE devices SET id = id WHERE tenant = ? AND id = ?",
            vec![(&row.tenant).into(), (&row.device).into()],
        )
        .must_change_row();
        self.driver.transaction(vec![device_must_exist, upsert]).await
    }

    async fn insert_campaign(&self, row: &CampaignRow) -> StoreResult<()> {
        let values = vec![
            (&row.tenant).into(),
            (&row.id).into(),
            (&row.firmware_id).into(),
            (&row.target).into(),
            (&row.strategy).into(),
            (&row.devices).into(),
            row.dispatched.into(),
            row.accepted.into(),
            row.status.as_str().into(),
            row.reason.as_ref().into(),
            (&row.created_by).into(),
            row.created_at.into(),
            row.updated_at.into(),
        ];
        self.insert(&CAMPAIGNS.insert(""), values).await
    }

    async fn get_campaign(&self, tenant: &str, id: &str) -> StoreResult<CampaignRow> {
        self.one(&CAMPAIGNS.select("WHERE tenant = ? AND id = ?"), vec![tenant.into(), id.into()], campaign_from_row)
            .await
    }

    async fn list_campaigns(&self, tenant: &str) -> StoreResult<Vec<CampaignRow>> {
        self.all(&CAMPAIGNS.select("WHERE tenant = ? ORDER BY id DESC"), vec![tenant.into()], campaign_from_row).await
    }

    async fn list_running_campaigns(&self) -> StoreResult<Vec<CampaignRow>> {
        let sql = CAMPAIGNS.select("WHERE status = ? ORDER BY tenant, id");
        self.all(&sql, vec![CampaignStatus::Running.as_str().into()], campaign_from_row).await
    }

    async fn update_campaign(&self, update: &CampaignUpdate<'_>) -> StoreResult<CampaignRow> {
        if update.from.is_empty() {
            return Err(StoreError::Conflict(format!("nothing moves to {}", update.to)));
        }
        let sql = format!(
            "UPDATE campaigns SET status = ?, dispatched = COALESCE(?, dispatched), accepted = COALESCE(?, accepted), \
             reason = COALESCE(?, reason), \
             updated_at = ? WHERE tenant = ? AND id = ? AND status IN ({})",
            placeholders(update.from.len())
        );
        let mut params: Vec<Value> = vec![
            update.to.as_str().into(),
            update.dispatched.into(),
            update.accepted.into(),
            update.reason.into(),
            update.now_ms.into(),
            update.tenant.into(),
            update.id.into(),
        ];
        params.extend(update.from.iter().map(|status| Value::from(status.as_str())));
        let changed = self.driver.execute(&sql, params).await?;
        let current = self.get_campaign(update.tenant, update.id).await?;
        match changed {
            0 => Err(StoreError::Conflict(format!("the campaign is {}", current.status))),
            _ => Ok(current),
        }
    }

    async fn campaign_operation_counts(&self, tenant: &str, campaign: &str) -> StoreResult<Vec<(String, i64)>> {
        let sql = "SELECT status, COUNT(*) FROM operations WHERE tenant = ? AND campaign = ? GROUP BY status";
        self.all(sql, vec![tenant.into(), campaign.into()], |mut row| Ok((row.text()?, row.int()?))).await
    }

    async fn put_advisory(&self, row: &AdvisoryRow) -> StoreResult<()> {
        let values = vec![(&row.tenant).into(), (&row.id).into(), (&row.record).into(), row.updated_at.into()];
        let sql = ADVISORIES.insert(
            "ON CONFLICT (tenant, id) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at",
        );
        self.insert(&sql, values).await
    }

    async fn list_advisories(&self, tenant: &str) -> StoreResult<Vec<AdvisoryRow>> {
        self.all(&ADVISORIES.select("WHERE tenant = ? ORDER BY id"), vec![tenant.into()], advisory_from_row).await
    }
}
