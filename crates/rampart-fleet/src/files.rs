//! Firmware image files, encrypted at rest: the image is cut into 64 KiB chunks, each sealed
//! with AES-256-GCM under the image's own key, the associated data binding tenant, image,
//! chunk index and whether it is the last chunk (so chunks cannot be reordered, moved to
//! another image or cut off). Chunks have a fixed sealed size, so a byte range is served by
//! opening only the chunks it covers.

use std::path::{Path, PathBuf};

use rampart_crypto::{SealingKey, SecretKey256};
use sha2::{Digest, Sha256};
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Plaintext bytes per chunk.
pub(crate) const CHUNK: usize = 64 * 1024;
/// What sealing adds to a chunk (version, nonce, tag).
const OVERHEAD: usize = 1 + 12 + 16;

fn chunk_aad(tenant: &str, image: &str, index: u64, last: bool) -> Vec<u8> {
    format!("rampart-fw-chunk\0{tenant}\0{image}\0{index}\0{}", u8::from(last)).into_bytes()
}

/// The number of chunks an image of `size` bytes is stored in (an empty image has one).
fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK as u64).max(1)
}

/// Why writing or reading an image failed.
#[derive(Debug)]
pub(crate) enum FileError {
    TooLarge,
    Io(std::io::Error),
    /// A chunk did not open: the file was changed or belongs elsewhere.
    Corrupt,
}

impl From<std::io::Error> for FileError {
    fn from(error: std::io::Error) -> Self {
        FileError::Io(error)
    }
}

/// An image being written: encrypted chunk by chunk, hashed as it goes, bounded in bytes.
/// Dropped before [`ImageWriter::finish`], it removes its file.
pub(crate) struct ImageWriter {
    path: PathBuf,
    file: Option<File>,
    key: SealingKey,
    tenant: String,
    image: String,
    buffer: Vec<u8>,
    index: u64,
    size: u64,
    limit: u64,
    hasher: Sha256,
}

impl ImageWriter {
    pub(crate) async fn create(
        path: PathBuf,
        key: &SecretKey256,
        tenant: &str,
        image: &str,
        limit: u64,
    ) -> Result<ImageWriter, FileError> {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await?;
        Ok(ImageWriter {
            path,
            file: Some(file),
            key: SealingKey::new(key),
            tenant: tenant.to_owned(),
            image: image.to_owned(),
            buffer: Vec::with_capacity(CHUNK),
            index: 0,
            size: 0,
            limit,
            hasher: Sha256::new(),
        })
    }

    /// Appends image bytes.
    pub(crate) async fn write(&mut self, mut data: &[u8]) -> Result<(), FileError> {
        self.size = self.size.saturating_add(data.len() as u64);
        if self.size > self.limit {
            return Err(FileError::TooLarge);
        }
        self.hasher.update(data);
        while !data.is_empty() {
            let room = CHUNK - self.buffer.len();
            let (now, rest) = data.split_at(room.min(data.len()));
            self.buffer.extend_from_slice(now);
            data = rest;
            // A full chunk is written only once more data follows: the last one is marked.
            if self.buffer.len() == CHUNK && !data.is_empty() {
                self.flush_chunk(false).await?;
            }
        }
        Ok(())
    }

    async fn flush_chunk(&mut self, last: bool) -> Result<(), FileError> {
        let sealed = self.key.seal(&self.buffer, &chunk_aad(&self.tenant, &self.image, self.index, last));
        let file = self.file.as_mut().ok_or(FileError::Corrupt)?;
        file.write_all(&sealed).await?;
        self.buffer.clear();
        self.index += 1;
        Ok(())
    }

    /// Writes the last chunk and syncs; answers the SHA-256 (hex) and the size. The file
    /// stays until [`ImageWriter::remove`] or drop of an unfinished writer.
    pub(crate) async fn finish(&mut self) -> Result<(String, u64), FileError> {
        // A buffer that is exactly full and followed by nothing is the last chunk.
        self.flush_chunk(true).await?;
        let mut file = self.file.take().ok_or(FileError::Corrupt)?;
        file.flush().await?;
        file.sync_all().await?;
        let hash = hex::encode(std::mem::take(&mut self.hasher).finalize());
        Ok((hash, self.size))
    }

    /// Keeps the file: the image is recorded.
    pub(crate) fn keep(mut self) {
        self.path = PathBuf::new();
    }
}

impl Drop for ImageWriter {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _already_gone_is_fine = std::fs::remove_file(&self.path);
        }
    }
}

/// Reads the plaintext bytes `start..end` of an image (end exclusive), one chunk at a time.
pub(crate) struct ImageReader {
    file: File,
    key: SealingKey,
    tenant: String,
    image: String,
    chunks: u64,
    next: u64,
    position: u64,
    end: u64,
}

impl ImageReader {
    pub(crate) async fn open(
        path: &Path,
        key: &SecretKey256,
        tenant: &str,
        image: &str,
        size: u64,
        start: u64,
        end: u64,
    ) -> Result<ImageReader, FileError> {
        let mut file = File::open(path).await?;
        let first = start / CHUNK as u64;
        file.seek(std::io::SeekFrom::Start(first * (CHUNK + OVERHEAD) as u64)).await?;
        Ok(ImageReader {
            file,
            key: SealingKey::new(key),
            tenant: tenant.to_owned(),
            image: image.to_owned(),
            chunks: chunk_count(size),
            next: first,
            position: start,
            end: end.min(size),
        })
    }

    /// The next piece of the range, or `None` at its end.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<u8>>, FileError> {
        if self.position >= self.end || self.next >= self.chunks {
            return Ok(None);
        }
        let last = self.next + 1 == self.chunks;
        let mut sealed = Vec::with_capacity(CHUNK + OVERHEAD);
        (&mut self.file).take((CHUNK + OVERHEAD) as u64).read_to_end(&mut sealed).await?;
        let plain = self
            .key
            .open(&sealed, &chunk_aad(&self.tenant, &self.image, self.next, last))
            .map_err(|_| FileError::Corrupt)?;
        let chunk_start = self.next * CHUNK as u64;
        self.next += 1;
        let from = usize::try_from(self.position - chunk_start).map_err(|_| FileError::Corrupt)?;
        let to = usize::try_from((self.end - chunk_start).min(plain.len() as u64)).map_err(|_| FileError::Corrupt)?;
        if from > to {
            return Err(FileError::Corrupt);
        }
        self.position = chunk_start + to as u64;
        Ok(Some(plain[from..to].to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn round_trip(size: usize) {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("img");
        let key = SecretKey256::generate();
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let mut writer = ImageWriter::create(path.clone(), &key, "t", "i", 1 << 30).await.expect("create");
        for piece in data.chunks(10_000) {
            writer.write(piece).await.expect("write");
        }
        let (hash, written) = writer.finish().await.expect("finish");
        writer.keep();
        assert_eq!((hash, written), (hex::encode(Sha256::digest(&data)), size as u64));
        assert!(!std::fs::read(&path).expect("file").windows(64).any(|w| data.len() >= 64 && w == &data[..64]));
        for (start, end) in [(0, size), (1, size.saturating_sub(1)), (CHUNK - 1, CHUNK + 1), (size / 2, size)] {
            if start > end || end > size {
                continue;
            }
            let mut reader =
                ImageReader::open(&path, &key, "t", "i", size as u64, start as u64, end as u64).await.expect("open");
            let mut out = Vec::new();
            while let Some(piece) = reader.next().await.expect("read") {
                out.extend(piece);
            }
            assert_eq!(out, data[start..end], "{size}: {start}..{end}");
        }
        // Another image's name opens nothing.
        let mut other = ImageReader::open(&path, &key, "t", "j", size as u64, 0, size as u64).await.expect("open");
        if size > 0 {
            assert!(other.next().await.is_err());
        }
    }

    #[tokio::test]
    async fn images_round_trip_at_chunk_edges_and_ranges() {
        for size in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
            round_trip(size).await;
        }
    }

    #[tokio::test]
    async fn the_limit_is_enforced_and_an_unfinished_file_is_removed() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("img");
        let mut writer =
            ImageWriter::create(path.clone(), &SecretKey256::generate(), "t", "i", 10).await.expect("create");
        assert!(matches!(writer.write(&[0; 11]).await, Err(FileError::TooLarge)));
        drop(writer);
        assert!(!path.exists());
    }
}
