//! Evidence bundles: a `.tar.gz` of flat files plus `MANIFEST.sha256` (`<hex>  <name>` per line,
//! sorted by name, every file but the manifest itself), the format `sha256sum -c` reads.
//!
//! Reading is bounded ([`MAX_ENTRIES`], [`MAX_ENTRY_BYTES`], [`MAX_TOTAL_BYTES`]) and accepts
//! only plain file names (no folders, no `..`), so a hostile bundle cannot fill the disk or
//! write anywhere: nothing is unpacked to disk at all.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// The manifest's name.
pub const MANIFEST: &str = "MANIFEST.sha256";
/// Most files in a bundle.
pub const MAX_ENTRIES: usize = 64;
/// Largest file in a bundle.
pub const MAX_ENTRY_BYTES: u64 = 256 * 1024 * 1024;
/// Largest bundle, unpacked.
pub const MAX_TOTAL_BYTES: u64 = 512 * 1024 * 1024;

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The manifest of `files`.
pub fn manifest(files: &BTreeMap<String, Vec<u8>>) -> String {
    files
        .iter()
        .filter(|(name, _)| name.as_str() != MANIFEST)
        .map(|(name, bytes)| format!("{}  {name}\n", sha256_hex(bytes)))
        .collect()
}

/// Writes `files` and their manifest as a `.tar.gz` at `path`.
pub fn write_bundle(path: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<(), String> {
    let mut all = files.clone();
    all.insert(MANIFEST.into(), manifest(files).into_bytes());
    write_raw(path, &all)
}

/// Writes exactly `files` as a `.tar.gz` at `path` (no manifest is added or checked).
pub fn write_raw(path: &Path, all: &BTreeMap<String, Vec<u8>>) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let file = std::fs::File::create(path).map_err(err)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in all {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes.as_slice())
            .map_err(err)?;
    }
    let gz = tar.into_inner().map_err(err)?;
    let mut file = gz.finish().map_err(err)?;
    file.flush().map_err(err)?;
    Ok(())
}

/// Reads every file of the bundle at `path`, by name.
pub fn read_bundle(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(err)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = BTreeMap::new();
    let mut total = 0u64;
    for entry in archive.entries().map_err(err)? {
        let entry = entry.map_err(err)?;
        if out.len() >= MAX_ENTRIES {
            return Err(format!("{}: more than {MAX_ENTRIES} files", path.display()));
        }
        let name = entry.path().map_err(err)?.to_string_lossy().into_owned();
        if name.is_empty() || name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return Err(format!(
                "{}: {name:?} is not a plain file name",
                path.display()
            ));
        }
        if !entry.header().entry_type().is_file() {
            return Err(format!(
                "{}: {name:?} is not a regular file",
                path.display()
            ));
        }
        let size = entry.header().size().map_err(err)?;
        total = total.saturating_add(size);
        if size > MAX_ENTRY_BYTES || total > MAX_TOTAL_BYTES {
            return Err(format!("{}: {name:?} is too large", path.display()));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        entry
            .take(MAX_ENTRY_BYTES)
            .read_to_end(&mut bytes)
            .map_err(err)?;
        if out.insert(name.clone(), bytes).is_some() {
            return Err(format!("{}: {name:?} appears twice", path.display()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_round_trips_with_its_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar.gz");
        let mut files = BTreeMap::new();
        files.insert("report.json".to_string(), b"{}".to_vec());
        files.insert("summary.md".to_string(), b"# x".to_vec());
        write_bundle(&path, &files).unwrap();
        let read = read_bundle(&path).unwrap();
        assert_eq!(read.len(), 3);
        let m = String::from_utf8(read[MANIFEST].clone()).unwrap();
        assert!(
            m.contains(&format!("{}  report.json", sha256_hex(b"{}"))),
            "{m}"
        );
    }
}
