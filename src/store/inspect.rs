//! Opening a data dir with its checks, and the operator's `hookrelay store verify` / `store
//! repair`: a store whose files were deleted, emptied or cut short is refused with what was
//! found, never opened short.
//!
//! Neither engine reports a damaged journal: fjall reads its journal up to the first bad record
//! and cuts the file there (it takes any damage for a torn tail), sled likewise stops at a bad
//! log entry, and both start empty when their files are gone. So the store numbers every ingest
//! write (`keys::seq`) and the marker keeps the number last acknowledged: an engine that opens
//! with a lower one lost acknowledged events.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::kv::Kv;
use super::kv_store::{Audit, KvStore};
use super::marker::{self, Keeper, Marker};
use super::{Backend, Store, StoreError, fjall, sled};

/// Opens the store in `dir` on `engine`, refusing a data dir of the other engine, one whose
/// files are missing, and one that holds fewer writes than it acknowledged.
pub fn open(engine: Backend, dir: &Path, cache_bytes: u64) -> Result<Arc<dyn Store>, StoreError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
    let (marker, before) = look(engine, dir)?;
    Ok(match engine {
        Backend::Fjall => keep(checked(
            open_fjall(dir, cache_bytes)?,
            dir,
            engine,
            marker,
            &before,
        )?)?,
        Backend::Sled => keep(checked(
            open_sled(dir, cache_bytes)?,
            dir,
            engine,
            marker,
            &before,
        )?)?,
    })
}

fn open_fjall(dir: &Path, cache: u64) -> Result<KvStore<fjall::FjallKv>, StoreError> {
    let d = dir.to_path_buf();
    KvStore::new(move || fjall::open_kv(&d, cache)).map_err(|e| opening(dir, e))
}

fn open_sled(dir: &Path, cache: u64) -> Result<KvStore<sled::SledKv>, StoreError> {
    let d = dir.to_path_buf();
    KvStore::new(move || sled::open_kv(&d, cache)).map_err(|e| opening(dir, e))
}

/// An engine that finds its files damaged says so in its own words; the operator is pointed
/// at verify. Other failures (a lock held by a running relay, permissions) pass as they are.
fn opening(dir: &Path, e: StoreError) -> StoreError {
    if !matches!(e, StoreError::Damaged(_) | StoreError::Corrupt(_)) {
        return e;
    }
    StoreError::Damaged(format!(
        "{}: the storage engine cannot open it: {e}. `hookrelay store verify` reports what it \
         holds; `hookrelay store repair --accept-loss` sets the damaged files aside",
        dir.display()
    ))
}

/// What the data dir holds before the engine touches it: its marker, and the sizes of the
/// files an engine cuts short when it finds them damaged.
fn look(
    engine: Backend,
    dir: &Path,
) -> Result<(Option<Marker>, BTreeMap<String, u64>), StoreError> {
    let marker = Marker::read(dir)?;
    let files = Backend::found_in(dir);
    if let Some(m) = &marker
        && m.engine != engine.name()
    {
        return Err(other_engine(dir, &m.engine, engine));
    }
    if let Some(f) = files.filter(|&f| f != engine) {
        return Err(other_engine(dir, f.name(), engine));
    }
    if let Some(m) = &marker
        && files.is_none()
        && m.acknowledged > 0
    {
        return Err(StoreError::Damaged(format!(
            "{}: the marker ({}) says this {} store acknowledged {} ingest writes, but its files \
             are gone ({} missing). The relay will not start empty on it: restore the files or \
             mount the right volume; to start over deliberately, `hookrelay store repair --accept-loss`",
            dir.display(),
            marker::FILE,
            m.engine,
            m.acknowledged,
            engine.own_files()
        )));
    }
    Ok((marker, journals(engine, dir)))
}

fn other_engine(dir: &Path, found: &str, engine: Backend) -> StoreError {
    StoreError::Io(format!(
        "{} holds a {found} store but store = \"{}\"; set store = \"{found}\" (or use another data_dir)",
        dir.display(),
        engine.name(),
    ))
}

/// The files whose tail an engine cuts at a damaged record: fjall's journals, sled's log.
fn journals(engine: Backend, dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let journal = match engine {
            Backend::Fjall => name.ends_with(".jnl"),
            Backend::Sled => name == "db",
        };
        if journal && let Ok(meta) = entry.metadata() {
            out.insert(name, meta.len());
        }
    }
    out
}

/// Refuses a store that opened with fewer writes than its marker says were acknowledged.
fn checked<K: Kv>(
    store: KvStore<K>,
    dir: &Path,
    engine: Backend,
    marker: Option<Marker>,
    before: &BTreeMap<String, u64>,
) -> Result<(KvStore<K>, PathBuf, Marker), StoreError> {
    let stored = store.stored_seq();
    match marker {
        Some(m) if stored < m.acknowledged => {
            let _ = store.close();
            Err(StoreError::Damaged(format!(
                "{}: the store is damaged: {}. The relay will not start on it: \
                 `hookrelay store verify` reports what it holds, `hookrelay store repair \
                 --accept-loss` accepts the loss",
                dir.display(),
                Loss::new(m.acknowledged, stored, before, &journals(engine, dir))
            )))
        }
        Some(m) => Ok((store, dir.to_path_buf(), m)),
        None => {
            let m = Marker::new(engine.name(), stored);
            m.write(dir).map_err(|e| {
                StoreError::Io(format!(
                    "cannot write {}: {e}",
                    dir.join(marker::FILE).display()
                ))
            })?;
            Ok((store, dir.to_path_buf(), m))
        }
    }
}

/// Starts the marker's keeper on an opened store.
fn keep<K: Kv>(
    (store, dir, m): (KvStore<K>, PathBuf, Marker),
) -> Result<Arc<dyn Store>, StoreError> {
    let keeper = Keeper::start(dir, m, store.acknowledged())
        .map_err(|e| StoreError::Io(format!("cannot start the marker's keeper: {e}")))?;
    store.keep_marker(keeper);
    Ok(Arc::new(store))
}

/// What is missing from a store, and which files show it.
struct Loss {
    acknowledged: u64,
    stored: u64,
    changes: Vec<String>,
}

impl Loss {
    fn new(
        acknowledged: u64,
        stored: u64,
        before: &BTreeMap<String, u64>,
        after: &BTreeMap<String, u64>,
    ) -> Loss {
        let mut changes = Vec::new();
        if before.is_empty() {
            changes.push("no journal file was there when it opened (deleted?)".to_string());
        }
        for (name, &was) in before {
            match after.get(name) {
                Some(&now) if now < was => changes.push(format!(
                    "the engine cut {name} from {was} to {now} bytes at a damaged record"
                )),
                None => changes.push(format!("{name} is gone")),
                _ => {}
            }
        }
        if changes.is_empty() {
            let names: Vec<&str> = after.keys().map(String::as_str).collect();
            changes.push(format!(
                "the engine stops reading {} at a damaged record",
                names.join(", ")
            ));
        }
        Loss {
            acknowledged,
            stored,
            changes,
        }
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "its files end at ingest write #{}, but #{} was acknowledged ({}): {} acknowledged \
             writes are missing",
            self.stored,
            self.acknowledged,
            marker::FILE,
            self.acknowledged - self.stored
        )?;
        for c in &self.changes {
            write!(f, "; {c}")?;
        }
        Ok(())
    }
}

/// What `store verify` found.
#[derive(Debug)]
pub struct Report {
    pub dir: PathBuf,
    pub engine: Backend,
    pub marker: Option<Marker>,
    /// Problems found; empty when the store is whole.
    pub problems: Vec<String>,
    pub events: u64,
    pub deliveries: u64,
    pub pending: u64,
    pub dead: u64,
}

impl Report {
    fn of(
        dir: &Path,
        engine: Backend,
        marker: Option<Marker>,
        problems: Vec<String>,
        counts: super::Counts,
    ) -> Report {
        Report {
            dir: dir.to_path_buf(),
            engine,
            marker,
            problems,
            events: counts.events,
            deliveries: counts.deliveries,
            pending: counts.pending,
            dead: counts.dead,
        }
    }

    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "data dir: {} ({})",
            self.dir.display(),
            self.engine.name()
        )?;
        match &self.marker {
            Some(m) => writeln!(
                f,
                "marker: created by {}, {} ingest writes acknowledged",
                m.created_by, m.acknowledged
            )?,
            None => writeln!(f, "marker: none")?,
        }
        writeln!(
            f,
            "holds: {} events, {} deliveries ({} pending, {} dead)",
            self.events, self.deliveries, self.pending, self.dead
        )?;
        if self.problems.is_empty() {
            write!(f, "ok: nothing is missing or unreadable")
        } else {
            for p in &self.problems {
                writeln!(f, "damaged: {p}")?;
            }
            write!(f, "{} problems", self.problems.len())
        }
    }
}

/// Checks the store in `dir` without changing it: a copy is opened (an engine cuts a damaged
/// journal when it opens it), every record is read, and the count is held against the marker.
pub fn verify(engine: Backend, dir: &Path) -> Result<Report, StoreError> {
    let copy = Snapshot::of(dir)?;
    examine(engine, dir, &copy.0, false)
}

/// Like [`verify`], on the store itself; with `accept_loss`, what is missing or unreadable is
/// given up: unreadable records are removed and the marker is set to what the store holds.
pub fn repair(engine: Backend, dir: &Path, accept_loss: bool) -> Result<Report, StoreError> {
    let report = verify(engine, dir)?;
    if report.is_clean() || !accept_loss {
        return Ok(report);
    }
    examine(engine, dir, dir, true)
}

/// Opens the store in `at` (the data dir `dir` or a copy of it) and reports on it; with `fix`,
/// gives up what is lost and rewrites the marker of `dir`.
fn examine(engine: Backend, dir: &Path, at: &Path, fix: bool) -> Result<Report, StoreError> {
    let marker = Marker::read(at)?;
    let mut problems = Vec::new();
    let files = Backend::found_in(at);
    if let Some(m) = &marker
        && m.engine != engine.name()
    {
        return Err(other_engine(dir, &m.engine, engine));
    }
    if let Some(m) = marker
        .as_ref()
        .filter(|m| files.is_none() && m.acknowledged > 0)
    {
        problems.push(format!(
            "the store's files are gone ({}), but {} ingest writes were acknowledged",
            engine.own_files(),
            m.acknowledged
        ));
    }
    let before = journals(engine, at);
    let audited = match engine {
        Backend::Fjall => open_fjall(at, 8 << 20).and_then(|s| audit(s, fix)),
        Backend::Sled => open_sled(at, 8 << 20).and_then(|s| audit(s, fix)),
    };
    let audit = match audited {
        Ok(a) => a,
        Err(e @ (StoreError::Damaged(_) | StoreError::Corrupt(_))) => {
            problems.push(e.to_string());
            if !fix {
                return Ok(Report::of(
                    dir,
                    engine,
                    marker,
                    problems,
                    Default::default(),
                ));
            }
            // Nothing can be read: the damaged files go aside and the store starts empty.
            let aside = set_aside(dir)?;
            problems.push(format!("its files were moved to {}", aside.display()));
            match engine {
                Backend::Fjall => audit(open_fjall(at, 8 << 20)?, false)?,
                Backend::Sled => audit(open_sled(at, 8 << 20)?, false)?,
            }
        }
        Err(e) => return Err(e),
    };
    if let Some(m) = &marker
        && audit.stored < m.acknowledged
        && files.is_some()
    {
        let loss = Loss::new(m.acknowledged, audit.stored, &before, &journals(engine, at));
        problems.push(loss.to_string());
    }
    if audit.unreadable > 0 {
        problems.push(format!(
            "{} records do not decode{}",
            audit.unreadable,
            if fix { " (removed)" } else { "" }
        ));
    }
    if fix {
        Marker::new(engine.name(), audit.stored)
            .write(dir)
            .map_err(|e| StoreError::Io(format!("cannot write the marker: {e}")))?;
    }
    Ok(Report::of(dir, engine, marker, problems, audit.counts))
}

/// Moves an engine's files out of the way (into `damaged-<ms>/` inside the data dir).
fn set_aside(dir: &Path) -> Result<PathBuf, StoreError> {
    let aside = dir.join(format!("damaged-{}", crate::ids::now_ms()));
    let moved = std::fs::create_dir(&aside).and_then(|()| {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let keep = name == marker::FILE || name.to_string_lossy().starts_with("damaged-");
            if !keep {
                std::fs::rename(entry.path(), aside.join(&name))?;
            }
        }
        Ok(())
    });
    moved.map_err(|e| StoreError::Io(format!("setting {} aside: {e}", dir.display())))?;
    Ok(aside)
}

/// Reads every record of `store`; with `fix`, removes the unreadable ones.
fn audit<K: Kv>(store: KvStore<K>, fix: bool) -> Result<Audit, StoreError> {
    let audit = store.audit(fix)?;
    store.close()?;
    Ok(audit)
}

/// A copy of a data dir beside it (table files, which the engines never change, are linked),
/// removed when dropped.
struct Snapshot(PathBuf);

impl Snapshot {
    fn of(dir: &Path) -> Result<Snapshot, StoreError> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "data".into());
        let copy = dir.with_file_name(format!(".{name}.verify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&copy);
        let snap = Snapshot(copy);
        copy_tree(dir, &snap.0).map_err(|e| {
            StoreError::Io(format!(
                "copying {} to {}: {e}",
                dir.display(),
                snap.0.display()
            ))
        })?;
        Ok(snap)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else if from.file_name().is_some_and(|n| n == "tables") {
            std::fs::hard_link(&src, &dst).or_else(|_| std::fs::copy(&src, &dst).map(drop))?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::suite::{delivery, new_event};

    const EVENTS: usize = 600;

    /// A closed store in `dir` that acknowledged [`EVENTS`] events, in batches of 20.
    async fn filled(engine: Backend, dir: &Path) {
        let store = open(engine, dir, 8 << 20).unwrap();
        for b in 0..EVENTS / 20 {
            let batch = (0..20)
                .map(|i| new_event(&format!("e{b}-{i}"), (b * 20 + i) as u64, vec![delivery(0)]))
                .collect();
            store.enqueue(batch).await.unwrap();
        }
        store.close().await.unwrap();
    }

    /// The file an engine appends acknowledged writes to (fjall's newest journal, sled's log).
    fn journal(engine: Backend, dir: &Path) -> PathBuf {
        let names = journals(engine, dir);
        dir.join(names.keys().last().expect("a journal"))
    }

    /// Overwrites 4 KiB at `at` (a fraction of the written part of `file`) with noise.
    fn garble(file: &Path, at: f64) {
        use std::io::{Seek, SeekFrom, Write};
        let bytes = std::fs::read(file).unwrap();
        let written = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        let offset = (written as f64 * at) as u64;
        let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
        f.seek(SeekFrom::Start(offset)).unwrap();
        let noise: Vec<u8> = (0..4096).map(|_| rand::random::<u8>()).collect();
        f.write_all(&noise).unwrap();
        f.sync_all().unwrap();
    }

    /// Damage is refused at open with a message naming `names`, verify reports it without
    /// changing anything, repair needs `--accept-loss`, and after it the relay opens.
    async fn refused_then_repaired(engine: Backend, damage: impl Fn(&Path), names: &str) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        filled(engine, &data).await;
        let intact = verify(engine, &data).unwrap();
        assert!(intact.is_clean(), "{intact}");
        assert_eq!(intact.events, EVENTS as u64);
        damage(&data);
        let refused = open(engine, &data, 8 << 20)
            .err()
            .expect("a damaged store is refused");
        let text = refused.to_string();
        assert!(text.contains(names), "{}: {text}", engine.name());
        assert!(text.contains("store repair --accept-loss"), "{text}");
        let report = verify(engine, &data).unwrap();
        assert!(
            !report.is_clean(),
            "{}: verify found nothing: {report}",
            engine.name()
        );
        assert!(
            open(engine, &data, 8 << 20).is_err(),
            "verify changed nothing"
        );
        let unasked = repair(engine, &data, false).unwrap();
        assert!(!unasked.is_clean());
        assert!(
            open(engine, &data, 8 << 20).is_err(),
            "repair needs --accept-loss"
        );
        repair(engine, &data, true).unwrap();
        let store = open(engine, &data, 8 << 20).expect("opens after repair");
        assert!(store.counts().await.unwrap().events < EVENTS as u64);
        store.close().await.unwrap();
        assert!(verify(engine, &data).unwrap().is_clean());
    }

    #[tokio::test]
    async fn a_journal_garbled_in_the_middle_is_refused() {
        for engine in [Backend::Fjall, Backend::Sled] {
            let name = if engine == Backend::Fjall {
                ".jnl"
            } else {
                "db"
            };
            refused_then_repaired(engine, |d| garble(&journal(engine, d), 0.5), name).await;
        }
    }

    #[tokio::test]
    async fn a_journal_garbled_at_its_head_is_refused() {
        for engine in [Backend::Fjall, Backend::Sled] {
            let name = if engine == Backend::Fjall {
                ".jnl"
            } else {
                "db"
            };
            refused_then_repaired(engine, |d| garble(&journal(engine, d), 0.0), name).await;
        }
    }

    #[tokio::test]
    async fn a_deleted_journal_is_refused() {
        for engine in [Backend::Fjall, Backend::Sled] {
            let delete = |d: &Path| std::fs::remove_file(journal(engine, d)).unwrap();
            let name = if engine == Backend::Fjall {
                "no journal"
            } else {
                "gone"
            };
            refused_then_repaired(engine, delete, name).await;
        }
    }

    #[tokio::test]
    async fn deleted_engine_files_are_refused() {
        let delete_fjall = |d: &Path| std::fs::remove_dir_all(d.join("keyspaces")).unwrap();
        refused_then_repaired(Backend::Fjall, delete_fjall, "keyspaces/").await;
        let delete_sled = |d: &Path| {
            std::fs::remove_file(d.join("conf")).unwrap();
            std::fs::remove_file(d.join("db")).unwrap();
        };
        refused_then_repaired(Backend::Sled, delete_sled, "conf and db").await;
    }

    #[tokio::test]
    async fn a_clean_restart_is_not_damage() {
        for engine in [Backend::Fjall, Backend::Sled] {
            let dir = tempfile::tempdir().unwrap();
            filled(engine, dir.path()).await;
            let store = open(engine, dir.path(), 8 << 20).unwrap();
            assert_eq!(store.counts().await.unwrap().events, EVENTS as u64);
            store.close().await.unwrap();
            let m = Marker::read(dir.path()).unwrap().unwrap();
            assert_eq!(m.acknowledged, (EVENTS / 20) as u64, "one number per batch");
        }
    }
}
