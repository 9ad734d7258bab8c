//! The units directory: where the agent writes unit files, always named by a `UnitName`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::unit::{UnitFile, UnitHash, UnitName};

#[derive(Debug, Clone)]
pub struct UnitsDir {
    dir: PathBuf,
}

impl UnitsDir {
    pub fn create(dir: &Path) -> io::Result<UnitsDir> {
        std::fs::create_dir_all(dir)?;
        Ok(UnitsDir {
            dir: dir.to_owned(),
        })
    }

    pub fn path(&self, name: &UnitName) -> PathBuf {
        // A UnitName has no `/` and no `..`, so this stays inside the directory.
        self.dir.join(name.as_str())
    }

    /// Writes the unit file atomically: readers see the old file or the new one, never half.
    pub fn write(&self, name: &UnitName, file: &UnitFile) -> io::Result<PathBuf> {
        let path = self.path(name);
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)?;
        tmp.write_all(file.serialize().as_bytes())?;
        tmp.as_file().sync_all()?;
        // tempfile creates 0600; systemd and users read unit files.
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(path)
    }

    /// Removes a unit file; one already gone is fine.
    pub fn remove(&self, name: &UnitName) -> io::Result<()> {
        match std::fs::remove_file(self.path(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The unit files present, with the hash of their content. Files that are not unit files
    /// flotte wrote (bad names, unparsable content, leftovers of interrupted writes) are
    /// skipped with a warning.
    pub fn scan(&self) -> io::Result<BTreeMap<UnitName, UnitHash>> {
        let mut found = BTreeMap::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| UnitName::new(n).ok()) else {
                tracing::warn!(file = ?entry.path(), "ignoring a file that is not named as a unit");
                continue;
            };
            let bytes = std::fs::read(entry.path())?;
            match UnitFile::parse(&bytes) {
                Ok(parsed) => {
                    found.insert(name, parsed.file.hash());
                }
                Err(e) => {
                    tracing::warn!(file = ?entry.path(), error = %e, "ignoring an unreadable unit file")
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_scanned_and_removed_by_unit_name() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = UnitsDir::create(&tmp.path().join("units")).unwrap();
        let name = UnitName::new("web@1.service").unwrap();
        let file = UnitFile::parse(b"[Service]\nExecStart=/bin/true\n")
            .unwrap()
            .file;
        let path = dir.write(&name, &file).unwrap();
        assert_eq!(path, tmp.path().join("units/web@1.service"));
        std::fs::write(tmp.path().join("units/not a unit"), "x").unwrap();
        std::fs::write(tmp.path().join("units/broken.service"), "no section=1\n").unwrap();
        let scanned = dir.scan().unwrap();
        assert_eq!(scanned, BTreeMap::from([(name.clone(), file.hash())]));
        dir.remove(&name).unwrap();
        dir.remove(&name).unwrap();
        assert!(!path.exists());
    }
}
