//! The journal file fjall is appending to, so the group commit can `fdatasync` it without
//! holding fjall's journal lock (which every write needs).
//!
//! fjall names journals `0.jnl`, `1.jnl`, … in the data dir and rotates to `id + 1` only after it
//! has synced the sealed one under that lock. So data flushed to the OS before a look here is
//! either in the file found (and synced by the caller) or in a journal that fjall synced before
//! the file found existed.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

pub struct ActiveJournal {
    dir: PathBuf,
    id: u64,
    file: File,
}

impl ActiveJournal {
    /// The newest journal in `dir`.
    pub fn open(dir: &Path) -> io::Result<ActiveJournal> {
        let mut newest = None;
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let id = name
                .to_str()
                .and_then(|n| n.strip_suffix(".jnl"))
                .and_then(|n| n.parse::<u64>().ok());
            newest = newest.max(id);
        }
        let id = newest
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no journal in the data dir"))?;
        Ok(ActiveJournal {
            dir: dir.to_path_buf(),
            id,
            file: File::open(dir.join(format!("{id}.jnl")))?,
        })
    }

    /// The journal being appended to now, following rotations since the last call.
    pub fn current(&mut self) -> io::Result<&File> {
        loop {
            let next = self.dir.join(format!("{}.jnl", self.id + 1));
            match File::open(&next) {
                Ok(file) => (self.id, self.file) = (self.id + 1, file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(&self.file),
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_rotations_to_the_newest_journal() {
        let dir = tempfile::tempdir().unwrap();
        for id in [3, 4] {
            std::fs::write(dir.path().join(format!("{id}.jnl")), [id as u8]).unwrap();
        }
        std::fs::write(dir.path().join("7.other"), b"x").unwrap();
        let mut j = ActiveJournal::open(dir.path()).unwrap();
        assert_eq!(j.id, 4);
        std::fs::write(dir.path().join("5.jnl"), b"").unwrap();
        std::fs::write(dir.path().join("6.jnl"), b"").unwrap();
        j.current().unwrap().sync_data().unwrap();
        assert_eq!(j.id, 6);
    }
}
