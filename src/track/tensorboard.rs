//! TensorBoard event files written by hand: TFRecord framing (length, masked CRC-32C of the
//! length, payload, masked CRC-32C of the payload) around `Event` protobuf messages with a
//! `Summary` of scalar or PNG image values. TensorBoard's `EventAccumulator` reads them.
//!
//! Wire format (tensorflow/core/util/event.proto, summary.proto): `Event { double wall_time = 1;
//! int64 step = 2; string file_version = 3; Summary summary = 5; }`, `Summary { repeated Value
//! value = 1; }`, `Value { string tag = 1; float simple_value = 2; Image image = 4; }`,
//! `Image { int32 height = 1; int32 width = 2; int32 colorspace = 3; bytes
//! encoded_image_string = 4; }`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::fsutil::IoError;

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        std::array::from_fn(|i| {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
            c
        })
    });
    !data.iter().fold(!0u32, |c, &b| {
        table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8)
    })
}

/// TFRecord's masked CRC.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(field: u32, wire: u8, out: &mut Vec<u8>) {
    varint(((field as u64) << 3) | wire as u64, out);
}

fn bytes_field(field: u32, data: &[u8], out: &mut Vec<u8>) {
    key(field, 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

/// One summary value.
pub enum SummaryValue<'a> {
    /// A scalar.
    Scalar(f32),
    /// A PNG image of `width` x `height` with `channels` (1, 3 or 4).
    Png {
        /// Encoded PNG bytes.
        png: &'a [u8],
        /// Pixels.
        width: u32,
        /// Pixels.
        height: u32,
        /// 1 gray, 3 RGB, 4 RGBA.
        channels: u32,
    },
}

fn event(wall_time: f64, step: i64, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut e = Vec::new();
    key(1, 1, &mut e);
    e.extend_from_slice(&wall_time.to_le_bytes());
    key(2, 0, &mut e);
    varint(step as u64, &mut e);
    body(&mut e);
    e
}

/// A TensorBoard event file open for appending.
pub struct EventWriter {
    path: PathBuf,
    file: File,
}

impl EventWriter {
    /// Creates `dir/events.out.tfevents.<seconds>.<host>` and writes the version record.
    pub fn create(dir: &Path) -> Result<Self, IoError> {
        crate::fsutil::create_dir_all(dir)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "deepsynth".into());
        let path = dir.join(format!("events.out.tfevents.{}.{host}", now.as_secs()));
        let file = File::create(&path).map_err(|e| IoError::new("create", &path, e))?;
        let mut w = Self { path, file };
        let version = event(now.as_secs_f64(), 0, |e| {
            bytes_field(3, b"brain.Event:2", e)
        });
        w.record(&version)?;
        Ok(w)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn record(&mut self, data: &[u8]) -> Result<(), IoError> {
        let len = (data.len() as u64).to_le_bytes();
        let mut rec = Vec::with_capacity(data.len() + 16);
        rec.extend_from_slice(&len);
        rec.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
        rec.extend_from_slice(data);
        rec.extend_from_slice(&masked_crc32c(data).to_le_bytes());
        self.file
            .write_all(&rec)
            .and_then(|()| self.file.flush())
            .map_err(|e| IoError::new("write", &self.path, e))
    }

    /// Appends one summary value under `tag` at `step`.
    pub fn add(&mut self, tag: &str, step: i64, value: SummaryValue) -> Result<(), IoError> {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let mut v = Vec::new();
        bytes_field(1, tag.as_bytes(), &mut v);
        match value {
            SummaryValue::Scalar(x) => {
                key(2, 5, &mut v);
                v.extend_from_slice(&x.to_le_bytes());
            }
            SummaryValue::Png {
                png,
                width,
                height,
                channels,
            } => {
                let mut img = Vec::new();
                key(1, 0, &mut img);
                varint(height as u64, &mut img);
                key(2, 0, &mut img);
                varint(width as u64, &mut img);
                key(3, 0, &mut img);
                varint(channels as u64, &mut img);
                bytes_field(4, png, &mut img);
                bytes_field(4, &img, &mut v);
            }
        }
        let mut summary = Vec::new();
        bytes_field(1, &v, &mut summary);
        let data = event(wall, step, |e| bytes_field(5, &summary, e));
        self.record(&data)
    }

    /// Appends a scalar.
    pub fn scalar(&mut self, tag: &str, step: i64, value: f32) -> Result<(), IoError> {
        self.add(tag, step, SummaryValue::Scalar(value))
    }
}

/// The payloads of a TFRecord file, each CRC checked (`None` on a corrupt or truncated record).
pub fn read_records(bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut p = 0;
    while p < bytes.len() {
        let len_bytes = bytes.get(p..p + 8)?;
        let crc = u32::from_le_bytes(bytes.get(p + 8..p + 12)?.try_into().ok()?);
        if crc != masked_crc32c(len_bytes) {
            return None;
        }
        let n = u64::from_le_bytes(len_bytes.try_into().ok()?) as usize;
        let data = bytes.get(p + 12..p + 12 + n)?;
        let dcrc = u32::from_le_bytes(bytes.get(p + 12 + n..p + 16 + n)?.try_into().ok()?);
        if dcrc != masked_crc32c(data) {
            return None;
        }
        out.push(data);
        p += 16 + n;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3720 (iSCSI) test vectors for CRC-32C.
    #[test]
    fn crc32c_reference_vectors() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        let inc: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&inc), 0x46DD_794E);
    }

    #[test]
    fn records_round_trip_and_corruption_is_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(tmp.path()).unwrap();
        w.scalar("train/loss", 1, 2.5).unwrap();
        w.scalar("train/loss", 2, 1.5).unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        let recs = read_records(&bytes).unwrap();
        assert_eq!(recs.len(), 3);
        assert!(recs[0].windows(13).any(|x| x == b"brain.Event:2"));
        assert!(recs[2].windows(10).any(|x| x == b"train/loss"));
        assert!(recs[2].windows(4).any(|x| x == 1.5f32.to_le_bytes()));
        let mut bad = bytes.clone();
        let last = bad.len() - 6;
        bad[last] ^= 1;
        assert!(read_records(&bad).is_none());
    }
}
