//! A graph's directory on disk, and the protocol that replaces its data
//! only when the job that made the new data is known to have succeeded.
//!
//! The directory holds `data.gls` (the graph, in the [`format`]). A job
//! that changes the data (an import, a clear):
//!
//! 1. [`GraphDir::stage`] writes the new data to `tmp-<job>.gls` and
//!    syncs it; nothing visible has changed.
//! 2. [`Staged::commit`] moves `data.gls` aside to `prev-<job>.gls` (or
//!    leaves a `prev-<job>.none` marker if there was none), renames the new
//!    file to `data.gls` and syncs the directory.
//! 3. The host reports the job to the lifecycle core. If the core accepts
//!    the success, [`Committed::confirm`] deletes the previous data; if it
//!    refuses it (a forced restart failed the job meanwhile),
//!    [`Committed::roll_back`] puts the previous data back.
//!
//! A crash between 2 and 3 leaves `prev-<job>.*` behind:
//! [`GraphDir::recover`], at the next start, asks whether the job
//! succeeded (the core's journal knows) and confirms or rolls back
//! accordingly. So the data on disk is always the data of the last job the
//! core saw succeed.
//!
//! [`format`]: crate::format

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::format;
use crate::graph::GraphData;

/// The data file's name.
pub const DATA: &str = "data.gls";

/// One graph's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphDir {
    dir: PathBuf,
    shown: String,
}

/// What [`GraphDir::recover`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovered {
    /// Commits confirmed (their job had succeeded).
    pub confirmed: usize,
    /// Commits rolled back (their job had not).
    pub rolled_back: usize,
    /// Temporary files removed.
    pub removed: usize,
}

fn sync_dir(dir: &Path, shown: &str) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("sync", shown.to_owned()))
}

impl GraphDir {
    /// The graph directory `dir`; `shown` names it in errors (a path
    /// relative to the data directory).
    pub fn new(dir: PathBuf, shown: String) -> GraphDir {
        GraphDir { dir, shown }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn shown(&self, name: &str) -> String {
        format!("{}/{name}", self.shown)
    }

    /// The stored graph and its stamp, `None` if there is none.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`], [`StoreError::Corrupt`].
    pub fn load(&self) -> Result<Option<(u64, GraphData)>, StoreError> {
        let bytes = match fs::read(self.file(DATA)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("read", self.shown(DATA))(e)),
        };
        format::read(&bytes, &self.shown(DATA)).map(Some)
    }

    /// Writes `g` with `stamp` beside the data, for the job `job` (a name
    /// made of letters, digits and `-`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`]; [`StoreError::Request`] for a malformed job
    /// name.
    pub fn stage(&self, g: &GraphData, stamp: u64, job: &str) -> Result<Staged<'_>, StoreError> {
        if job.is_empty() || !job.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(StoreError::Request(format!(
                "job name {job:?} is not a file name"
            )));
        }
        fs::create_dir_all(&self.dir).map_err(StoreError::io("create", self.shown.clone()))?;
        let name = format!("tmp-{job}.gls");
        let staged = Staged {
            dir: self,
            tmp: self.file(&name),
            job: job.to_owned(),
            done: false,
        };
        let f = File::create(&staged.tmp).map_err(StoreError::io("create", self.shown(&name)))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        format::write(g, stamp, &mut w).map_err(StoreError::io("write", self.shown(&name)))?;
        let f = w
            .into_inner()
            .map_err(|e| StoreError::io("write", self.shown(&name))(e.into_error()))?;
        f.sync_all()
            .map_err(StoreError::io("sync", self.shown(&name)))?;
        Ok(staged)
    }

    /// Settles what a crash left: temporary files go; a commit whose job
    /// `succeeded` is confirmed, any other rolled back.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`].
    pub fn recover(&self, succeeded: impl Fn(&str) -> bool) -> Result<Recovered, StoreError> {
        let mut done = Recovered::default();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(done),
            Err(e) => return Err(StoreError::io("read", self.shown.clone())(e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in names {
            if name.starts_with("tmp-") {
                fs::remove_file(self.file(&name))
                    .map_err(StoreError::io("remove", self.shown(&name)))?;
                done.removed += 1;
            } else if let Some(rest) = name.strip_prefix("prev-") {
                let (job, had_prev) = match (rest.strip_suffix(".gls"), rest.strip_suffix(".none"))
                {
                    (Some(job), _) => (job, true),
                    (_, Some(job)) => (job, false),
                    _ => continue,
                };
                let c = Committed {
                    dir: self,
                    prev: self.file(&name),
                    had_prev,
                };
                if succeeded(job) {
                    c.confirm()?;
                    done.confirmed += 1;
                } else {
                    c.roll_back()?;
                    done.rolled_back += 1;
                }
            }
        }
        if done != Recovered::default() {
            sync_dir(&self.dir, &self.shown)?;
        }
        Ok(done)
    }

    /// Removes the directory and everything in it (the graph was removed).
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`].
    pub fn remove(&self) -> Result<(), StoreError> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("remove", self.shown.clone())(e)),
        }
    }
}

/// New data written beside the graph's, not yet in place. Dropped without
/// a commit, it is deleted.
#[derive(Debug)]
pub struct Staged<'a> {
    dir: &'a GraphDir,
    tmp: PathBuf,
    job: String,
    done: bool,
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl<'a> Staged<'a> {
    /// Puts the new data in place, keeping the previous data aside.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`]; the previous data is then in place again.
    pub fn commit(mut self) -> Result<Committed<'a>, StoreError> {
        let d = self.dir;
        let data = d.file(DATA);
        let had_prev = data.exists();
        let prev_name = format!(
            "prev-{}.{}",
            self.job,
            if had_prev { "gls" } else { "none" }
        );
        let prev = d.file(&prev_name);
        if had_prev {
            fs::rename(&data, &prev).map_err(StoreError::io("rename", d.shown(DATA)))?;
        } else {
            File::create(&prev)
                .and_then(|f| f.sync_all())
                .map_err(StoreError::io("create", d.shown(&prev_name)))?;
        }
        if let Err(e) = fs::rename(&self.tmp, &data) {
            let c = Committed {
                dir: d,
                prev,
                had_prev,
            };
            let _ = c.roll_back();
            return Err(StoreError::io("rename", d.shown(DATA))(e));
        }
        self.done = true;
        sync_dir(&d.dir, &d.shown)?;
        Ok(Committed {
            dir: d,
            prev,
            had_prev,
        })
    }
}

/// New data in place, the previous data kept aside until the job's
/// outcome is known.
#[derive(Debug)]
#[must_use = "confirm or roll back: left alone, the next recovery decides"]
pub struct Committed<'a> {
    dir: &'a GraphDir,
    prev: PathBuf,
    had_prev: bool,
}

impl Committed<'_> {
    /// The job succeeded: the previous data goes.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`].
    pub fn confirm(self) -> Result<(), StoreError> {
        fs::remove_file(&self.prev).map_err(StoreError::io("remove", self.dir.shown("prev")))
    }

    /// The job did not succeed: the previous data (or its absence) comes
    /// back.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`].
    pub fn roll_back(self) -> Result<(), StoreError> {
        let d = self.dir;
        let data = d.file(DATA);
        if self.had_prev {
            fs::rename(&self.prev, &data).map_err(StoreError::io("rename", d.shown("prev")))?;
        } else {
            match fs::remove_file(&data) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", d.shown(DATA))(e)),
            }
            fs::remove_file(&self.prev).map_err(StoreError::io("remove", d.shown("prev")))?;
        }
        sync_dir(&d.dir, &d.shown)
    }
}
