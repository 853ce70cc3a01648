//! The firmware repository (SPEC §9): the tenant's Ed25519 signing key (created on first use,
//! private half sealed under the tenant key), registered public keys for images signed
//! offline, uploads streamed to an encrypted file and signed or verified, and device
//! downloads by byte range.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rampart_core::{AuditAction, Permission};
use rampart_crypto::{SecretKey256, random_id};
use rampart_data::QueryError;
use rampart_platform::Principal;
use rampart_store::{FirmwareKeyRow, FirmwareRow, SigningKeyRow, StoreError};
use serde_json::json;
use zeroize::Zeroizing;

use crate::Fleet;
use crate::files::{FileError, ImageReader, ImageWriter};
use crate::manifest::{FirmwareMetadata, manifest, public_key, verifies};

/// Sealing purposes (associated data) of what this module seals under the tenant key.
const SIGNING_KEY_PURPOSE: &str = "firmware.signing_key";
const FILE_KEY_PURPOSE: &str = "firmware.file_key";

/// A registered key's id: 1–64 of `A-Z a-z 0-9 . _ -`.
fn check_key_id(id: &str) -> Result<(), QueryError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    ok.then_some(()).ok_or_else(|| QueryError::Invalid("id must be 1-64 of A-Z a-z 0-9 . _ -".into()))
}

fn internal(error: impl std::fmt::Display) -> QueryError {
    QueryError::Internal(error.to_string())
}

/// A firmware image as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    pub id: String,
    pub name: String,
    pub version: String,
    pub hardware: String,
    pub security_counter: i64,
    pub sha256: String,
    pub size: i64,
    pub signature: String,
    pub key_id: Option<String>,
    pub created_at: i64,
}

impl From<FirmwareRow> for Firmware {
    fn from(row: FirmwareRow) -> Self {
        Firmware {
            id: row.id,
            name: row.name,
            version: row.version,
            hardware: row.hardware,
            security_counter: row.security_counter,
            sha256: row.sha256,
            size: row.size,
            signature: row.signature,
            key_id: row.key_id,
            created_at: row.created_at,
        }
    }
}

/// A registered public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareKey {
    pub id: String,
    /// Base64.
    pub public_key: String,
    pub created_at: i64,
}

/// An upload in progress: the image is written encrypted as it arrives.
pub struct Upload {
    tenant: String,
    id: String,
    file_key: SecretKey256,
    writer: ImageWriter,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("tenant", &self.tenant).field("id", &self.id).finish_non_exhaustive()
    }
}

impl Upload {
    /// Appends image bytes; `Invalid` past the size limit.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), QueryError> {
        self.writer.write(data).await.map_err(upload_error)
    }
}

fn upload_error(error: FileError) -> QueryError {
    match error {
        FileError::TooLarge => QueryError::Invalid("the image is larger than the firmware size limit".into()),
        FileError::Io(error) => internal(error),
        FileError::Corrupt => internal("image file state"),
    }
}

/// A byte range a device asks for (`Range: bytes=…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-last` or `bytes=first-` (`last` inclusive).
    From { first: u64, last: Option<u64> },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// A byte range of an image being served.
pub struct Download {
    pub size: u64,
    pub start: u64,
    pub end: u64,
    reader: ImageReader,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download").field("start", &self.start).field("end", &self.end).finish_non_exhaustive()
    }
}

impl Download {
    /// The next piece of the range, or `None` at its end.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, QueryError> {
        self.reader.next().await.map_err(|error| match error {
            FileError::Corrupt => internal("a firmware file does not open: changed on disk?"),
            other => upload_error(other),
        })
    }
}

impl Fleet {
    fn image_path(&self, tenant: &str, id: &str) -> std::path::PathBuf {
        self.0.dir.join(tenant).join(format!("{id}.img"))
    }

    /// The tenant's signing key, created (and its private half sealed) on first use.
    pub(crate) async fn signing_key(&self, tenant: &str) -> Result<SigningKey, QueryError> {
        let store = &self.0.store;
        let keyring = self.0.platform.keyring();
        let row = match store.get_signing_key(tenant).await? {
            Some(row) => row,
            None => {
                let seed: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
                let fresh = SigningKey::from_bytes(&seed);
                let sealed = keyring.seal_for_tenant(tenant, SIGNING_KEY_PURPOSE, &seed[..]).await.map_err(internal)?;
                let row = SigningKeyRow {
                    tenant: tenant.to_owned(),
                    private_sealed: sealed,
                    public_key: fresh.verifying_key().to_bytes().to_vec(),
                    created_at: self.0.platform.now_ms(),
                };
                store.put_signing_key_once(&row).await?
            }
        };
        let seed = keyring.open_for_tenant(tenant, SIGNING_KEY_PURPOSE, &row.private_sealed).await.map_err(internal)?;
        let seed: Zeroizing<[u8; 32]> =
            Zeroizing::new(seed.as_slice().try_into().map_err(|_| internal("signing key length"))?);
        Ok(SigningKey::from_bytes(&seed))
    }

    /// The tenant's firmware signing public key, base64 (`firmware:read`).
    pub async fn signing_public_key(&self, principal: &Principal) -> Result<String, QueryError> {
        self.0.platform.authorize(principal, Permission::FirmwareRead).await.map_err(QueryError::from_service)?;
        let key = self.signing_key(&principal.tenant).await?;
        Ok(STANDARD.encode(key.verifying_key().to_bytes()))
    }

    /// Registers a public key for images signed offline (`firmware:write`, audited).
    pub async fn register_key(
        &self,
        principal: &Principal,
        id: Option<String>,
        public_key_base64: &str,
    ) -> Result<FirmwareKey, QueryError> {
        self.0.platform.authorize(principal, Permission::FirmwareWrite).await.map_err(QueryError::from_service)?;
        let id = id.unwrap_or_else(|| random_id(8));
        check_key_id(&id)?;
        let key = public_key(public_key_base64)
            .ok_or_else(|| QueryError::Invalid("public_key must be a base64 Ed25519 public key (32 bytes)".into()))?;
        let row = FirmwareKeyRow {
            tenant: principal.tenant.clone(),
            id: id.clone(),
            public_key: key.to_bytes().to_vec(),
            created_at: self.0.platform.now_ms(),
        };
        match self.0.store.insert_firmware_key(&row).await {
            Err(StoreError::Conflict(_)) => return Err(QueryError::Conflict(format!("key {id} exists"))),
            other => other?,
        }
        let details = json!({"key": id});
        self.0
            .platform
            .audit_by(principal, AuditAction::FirmwareKeyCreate, format!("firmware_key:{id}"), details)
            .await;
        Ok(FirmwareKey { id, public_key: STANDARD.encode(key.to_bytes()), created_at: row.created_at })
    }

    /// The tenant's registered keys (`firmware:read`).
    pub async fn keys(&self, principal: &Principal) -> Result<Vec<FirmwareKey>, QueryError> {
        self.0.platform.authorize(principal, Permission::FirmwareRead).await.map_err(QueryError::from_service)?;
        let rows = self.0.store.list_firmware_keys(&principal.tenant).await?;
        Ok(rows
            .into_iter()
            .map(|row| FirmwareKey {
                id: row.id,
                public_key: STANDARD.encode(&row.public_key),
                created_at: row.created_at,
            })
            .collect())
    }

    /// Removes a registered key (`firmware:write`, audited); images it signed stay.
    pub async fn delete_key(&self, principal: &Principal, id: &str) -> Result<(), QueryError> {
        self.0.platform.authorize(principal, Permission::FirmwareWrite).await.map_err(QueryError::from_service)?;
        self.0.store.delete_firmware_key(&principal.tenant, id).await?;
        let details = json!({"key": id});
        self.0
            .platform
            .audit_by(principal, AuditAction::FirmwareKeyDelete, format!("firmware_key:{id}"), details)
            .await;
        Ok(())
    }

    /// Starts an upload (`firmware:write`): the image is written encrypted as it arrives.
    pub async fn begin_upload(&self, principal: &Principal) -> Result<Upload, QueryError> {
        self.0.platform.authorize(principal, Permission::FirmwareWrite).await.map_err(QueryError::from_service)?;
        let id = random_id(12);
        let file_key = SecretKey256::generate();
        let path = self.image_path(&principal.tenant, &id);
        let writer = ImageWriter::create(path, &file_key, &principal.tenant, &id, self.0.settings.max_image_bytes)
            .await
            .map_err(upload_error)?;
        Ok(Upload { tenant: principal.tenant.clone(), id, file_key, writer })
    }

    /// Finishes an upload: checks the hash the uploader expects, signs the manifest with the
    /// tenant key or verifies the offline signature against the registered keys, and records
    /// the image (audited). A refused upload leaves nothing behind.
    pub async fn finish_upload(
        &self,
        principal: &Principal,
        mut upload: Upload,
        metadata: FirmwareMetadata,
    ) -> Result<Firmware, QueryError> {
        if upload.tenant != principal.tenant {
            return Err(QueryError::Forbidden);
        }
        let (sha256, size) = upload.writer.finish().await.map_err(upload_error)?;
        if let Some(expected) = &metadata.sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(QueryError::Invalid(format!(
                "sha256 mismatch: the image hashes to {sha256}, metadata.sha256 says {expected}"
            )));
        }
        let text = manifest(&metadata.name, &metadata.version, &metadata.hardware, metadata.security_counter, &sha256);
        let (signature, key_id) = match &metadata.signature {
            None => {
                let key = self.signing_key(&principal.tenant).await?;
                (STANDARD.encode(key.sign(text.as_bytes()).to_bytes()), None)
            }
            Some(signature) => (
                signature.trim().to_owned(),
                Some(self.verifying_key_for(principal, &metadata, &text, signature).await?),
            ),
        };
        let file_key_sealed = self
            .0
            .platform
            .keyring()
            .seal_for_tenant(&principal.tenant, FILE_KEY_PURPOSE, upload.file_key.expose_bytes())
            .await
            .map_err(internal)?;
        let row = FirmwareRow {
            tenant: principal.tenant.clone(),
            id: upload.id.clone(),
            name: metadata.name,
            version: metadata.version,
            hardware: metadata.hardware,
            security_counter: metadata.security_counter,
            sha256,
            size: i64::try_from(size).map_err(internal)?,
            signature,
            key_id,
            file_key_sealed,
            created_at: self.0.platform.now_ms(),
        };
        match self.0.store.insert_firmware(&row).await {
            Err(StoreError::Conflict(_)) => {
                return Err(QueryError::Conflict(format!(
                    "firmware {} {} for {} exists",
                    row.name, row.version, row.hardware
                )));
            }
            other => other?,
        }
        upload.writer.keep();
        let details = json!({"firmware": row.id, "name": row.name, "version": row.version,
            "security_counter": row.security_counter, "sha256": row.sha256});
        self.0.platform.audit_by(principal, AuditAction::FirmwareUpload, format!("firmware:{}", row.id), details).await;
        Ok(row.into())
    }

    /// The registered key an offline signature verifies with: the one named, or any.
    async fn verifying_key_for(
        &self,
        principal: &Principal,
        metadata: &FirmwareMetadata,
        manifest: &str,
        signature: &str,
    ) -> Result<String, QueryError> {
        let keys = self.0.store.list_firmware_keys(&principal.tenant).await?;
        let candidates: Vec<_> =
            keys.iter().filter(|key| metadata.key_id.as_ref().is_none_or(|wanted| *wanted == key.id)).collect();
        if candidates.is_empty() {
            return Err(QueryError::Invalid(match &metadata.key_id {
                Some(id) => format!("metadata.key_id: no registered key {id}"),
                None => "metadata.signature given but no public key is registered (POST /api/v1/firmware/keys)".into(),
            }));
        }
        for key in candidates {
            let Ok(bytes) = <[u8; 32]>::try_from(key.public_key.as_slice()) else { continue };
            let Ok(verifying) = VerifyingKey::from_bytes(&bytes) else { continue };
            if verifies(&verifying, manifest, signature) {
                return Ok(key.id.clone());
            }
        }
        Err(QueryError::Invalid("metadata.signature does not verify: bad signature for this image and manifest".into()))
    }

    /// The tenant's images, newest first (`firmware:read`).
    pub async fn list_firmware(&self, principal: &Principal) -> Result<Vec<Firmware>, QueryError> {
        self.0.platform.authorize(principal, Permission::FirmwareRead).await.map_err(QueryError::from_service)?;
        Ok(self.0.store.list_firmware(&principal.tenant).await?.into_iter().map(Firmware::from).collect())
    }

    /// One image (`firmware:read`).
    pub async fn firmware(&self, principal: &Principal, id: &str) -> Result<Firmware, QueryError> {
        self.0.platform.authorize(principal, Permission::FirmwareRead).await.map_err(QueryError::from_service)?;
        Ok(self.0.store.get_firmware(&principal.tenant, id).await?.into())
    }

    /// An image's bytes for a device of its tenant: `range`, or the whole image. An
    /// unsatisfiable range is `Conflict`.
    pub async fn download(
        &self,
        tenant: &str,
        id: &str,
        range: Option<ByteRange>,
    ) -> Result<(Firmware, Download), QueryError> {
        let row = self.0.store.get_firmware(tenant, id).await?;
        let size = u64::try_from(row.size).map_err(internal)?;
        let (start, end) = match range {
            None => (0, size),
            Some(ByteRange::From { first, last }) => {
                (first, last.map_or(size, |last| last.saturating_add(1).min(size)))
            }
            Some(ByteRange::Suffix(length)) => (size.saturating_sub(length), if length == 0 { 0 } else { size }),
        };
        if range.is_some() && (start >= size || start >= end) {
            return Err(QueryError::Conflict(format!("range not satisfiable: the image has {size} bytes")));
        }
        let file_key = self
            .0
            .platform
            .keyring()
            .open_for_tenant(tenant, FILE_KEY_PURPOSE, &row.file_key_sealed)
            .await
            .map_err(internal)?;
        let file_key = SecretKey256::from_bytes(&file_key).map_err(internal)?;
        let path = self.image_path(tenant, id);
        let reader =
            ImageReader::open(&path, &file_key, tenant, id, size, start, end).await.map_err(|error| match error {
                FileError::Io(error) if error.kind() == std::io::ErrorKind::NotFound => QueryError::NotFound,
                other => upload_error(other),
            })?;
        Ok((row.into(), Download { size, start, end, reader }))
    }
}
