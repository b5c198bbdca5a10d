//! Checkpoints: the handled position, stored now and then, so that a
//! process that is restarted — after a crash or `kill -9` too — continues
//! from where its handlers stopped.
//!
//! The transport takes the handled position
//! ([`WebSocketTransport::position`](crate::WebSocketTransport::position))
//! at most every checkpoint interval, and once more at `shutdown` after the
//! subscriptions have stopped, and stores it when it moved. At start, a
//! stored position is presented to the hub like
//! [`resume_from`](crate::TransportBuilder::resume_from). Saving runs on
//! tokio's blocking pool, never on the connection's task.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use watchtower_core::{BoxError, Position, WatchtowerError};

use crate::shared::Shared;
use crate::stats::bump;

/// How often the handled position is stored at most, by default: 1 s. A
/// process killed without a shutdown gets again at most the events its
/// handlers finished in the last interval before the kill.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Where a transport stores its handled position. [`FileCheckpoint`] is a
/// file; implement this for other stores (a database row, a key in a
/// shared store).
///
/// Both methods are called on tokio's blocking pool (`spawn_blocking`), so
/// they may block; never two at once for one transport.
pub trait CheckpointStore: Send + Sync + 'static {
    /// The stored position; `Ok(None)` when nothing is stored yet (the
    /// first run). An error fails the transport's `connect`: continuing
    /// from nowhere would skip what the stored position still owes.
    fn load(&self) -> Result<Option<Position>, BoxError>;

    /// Stores `position` in place of the one before. It must be atomic:
    /// after a crash at any moment, `load` returns this position or the
    /// one before, never a mix or nothing. An error is logged and counted
    /// in `checkpoint_failures`; the next interval tries again.
    fn save(&self, position: &Position) -> Result<(), BoxError>;
}

/// A [`CheckpointStore`] in one file, holding the position's text form.
///
/// `save` writes a temporary file beside it (`<name>.tmp`), flushes it to
/// disk (`fsync`), renames it over the file and flushes the directory, so
/// the file always holds a whole position: the old one or the new one.
#[derive(Debug, Clone)]
pub struct FileCheckpoint {
    path: PathBuf,
}

impl FileCheckpoint {
    /// The checkpoint in the file at `path` (it need not exist yet; its
    /// directory must).
    pub fn new(path: impl Into<PathBuf>) -> FileCheckpoint {
        FileCheckpoint { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn temporary(&self) -> PathBuf {
        let mut name = self
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(".tmp");
        self.path.with_file_name(name)
    }
}

impl CheckpointStore for FileCheckpoint {
    fn load(&self) -> Result<Option<Position>, BoxError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("could not read {}: {e}", self.path.display()).into()),
        };
        if text.trim().is_empty() {
            return Ok(None);
        }
        text.trim()
            .parse()
            .map(Some)
            .map_err(|e| format!("{} does not hold a position: {e}", self.path.display()).into())
    }

    fn save(&self, position: &Position) -> Result<(), BoxError> {
        let temporary = self.temporary();
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(format!("{position}\n").as_bytes())?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&temporary, &self.path)?;
            // The rename is durable once the directory is flushed too.
            #[cfg(unix)]
            if let Some(dir) = self.path.parent() {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| format!("could not write {}: {e}", self.path.display()).into())
    }
}

/// A checkpoint's store and interval, as the builder validated them.
#[derive(Clone)]
pub(crate) struct CheckpointSettings {
    pub(crate) store: Arc<dyn CheckpointStore>,
    pub(crate) interval: Duration,
}

impl fmt::Debug for CheckpointSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSettings")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl CheckpointSettings {
    /// The stored position, read on the blocking pool.
    pub(crate) async fn load(&self) -> Result<Option<Position>, WatchtowerError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.load())
            .await
            .map_err(|e| format!("the checkpoint store's load panicked: {e}").into())
            .and_then(|loaded| loaded)
            .map_err(|e: BoxError| {
                WatchtowerError::Config(format!("could not load the checkpoint: {e}"))
            })
    }
}

/// Saves the handled position of one transport.
pub(crate) struct Checkpointer {
    settings: CheckpointSettings,
    /// The newest position taken to be saved, and its number.
    taken: Mutex<Taken>,
    /// Held while a save runs: the number of the position written last, so
    /// that an older save that runs late never overwrites a newer one.
    written: Arc<Mutex<u64>>,
    pub(crate) saved: AtomicU64,
    pub(crate) failures: AtomicU64,
}

#[derive(Default)]
struct Taken {
    number: u64,
    position: Option<Position>,
}

impl Checkpointer {
    pub(crate) fn new(settings: CheckpointSettings) -> Checkpointer {
        Checkpointer {
            settings,
            taken: Mutex::new(Taken::default()),
            written: Arc::new(Mutex::new(0)),
            saved: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    pub(crate) fn interval(&self) -> Duration {
        self.settings.interval
    }

    /// Stores the handled position if it moved since the last one taken
    /// (`force`: even if not, as at shutdown). False if saving failed.
    pub(crate) async fn save(&self, shared: &Shared, force: bool) -> bool {
        let (number, position) = {
            let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
            // Taken under the lock: numbers follow the positions' order.
            let Some(position) = shared.handled_position() else {
                return true;
            };
            if taken.position == Some(position) && !force {
                return true;
            }
            taken.number += 1;
            taken.position = Some(position);
            (taken.number, position)
        };
        let store = Arc::clone(&self.settings.store);
        let written = Arc::clone(&self.written);
        let outcome = tokio::task::spawn_blocking(move || {
            let mut written = written.lock().unwrap_or_else(PoisonError::into_inner);
            if *written >= number {
                return Ok(false);
            }
            store.save(&position)?;
            *written = number;
            Ok(true)
        })
        .await
        .map_err(|e| format!("the checkpoint store's save panicked: {e}").into())
        .and_then(|saved: Result<bool, BoxError>| saved);
        match outcome {
            Ok(wrote) => {
                if wrote {
                    bump(&self.saved);
                    tracing::trace!(%position, "checkpoint saved");
                }
                true
            }
            Err(error) => {
                bump(&self.failures);
                // Try again next time, even if the position stays.
                let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
                if taken.number == number {
                    taken.position = None;
                }
                tracing::warn!(%error, %position, "checkpoint not saved");
                false
            }
        }
    }
}

/// The task that saves the handled position every interval, for as long
/// as the transport lives (`shutdown` and drop abort it; `shutdown` then
/// saves once more).
pub(crate) async fn run(shared: Arc<Shared>) {
    let Some(checkpoint) = shared.checkpoint.as_deref() else {
        return;
    };
    loop {
        tokio::time::sleep(checkpoint.interval()).await;
        checkpoint.save(&shared, false).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_checkpoint_round_trips_and_replaces_atomically() {
        let dir = std::env::temp_dir().join(format!(
            "watchtower-checkpoint-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let store = FileCheckpoint::new(dir.join("position"));
        assert_eq!(store.load().unwrap(), None, "nothing stored yet");
        let first = Position::new(0xab, 7).after(Some(0x1234));
        store.save(&first).unwrap();
        assert_eq!(store.load().unwrap(), Some(first));
        let second = Position::new(0xab, 9);
        store.save(&second).unwrap();
        assert_eq!(store.load().unwrap(), Some(second));
        assert!(!store.temporary().exists(), "the temporary file is renamed");
        std::fs::write(store.path(), "not a position").unwrap();
        let error = store.load().unwrap_err().to_string();
        assert!(error.contains("does not hold a position"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
