//! Paths a request names, resolved under a root the operator configured.
//!
//! A request names a file or a directory as `obs://bucket/key` (GES's
//! object storage paths), which maps to `<root>/bucket/key`, or as a path
//! relative to the root. Refused, before anything is opened:
//!
//! - an empty path, a NUL byte, a backslash, another scheme (`s3://`,
//!   `file://`), an absolute path;
//! - any `..` component (even one that would stay inside the root);
//! - a path whose canonical form (every symbolic link followed) is not
//!   under the root's canonical form: a link out of the root;
//! - for an input, anything but a regular file (a directory, a FIFO that
//!   would block a worker, a device).
//!
//! The file is then opened by its canonical path. A link swapped in by
//! someone with write access to the root between the check and the open
//! is not caught; the root is the operator's, and clients only name
//! paths.

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::error::{StoreError, quote};

/// The scheme of GES's object storage paths.
pub const OBS_SCHEME: &str = "obs://";

/// A configured root directory, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    canonical: PathBuf,
}

fn refused(path: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Path {
        path: quote(path),
        reason: reason.into(),
    }
}

/// The relative path a request's path names, or why it is refused.
fn relative(path: &str) -> Result<PathBuf, StoreError> {
    if path.is_empty() {
        return Err(refused(path, "it is empty"));
    }
    if path.contains('\0') || path.contains('\\') {
        return Err(refused(path, "it holds a NUL byte or a backslash"));
    }
    let rest = if let Some(rest) = path.strip_prefix(OBS_SCHEME) {
        if rest.split('/').next().is_none_or(str::is_empty) {
            return Err(refused(path, "an obs:// path needs a bucket"));
        }
        rest
    } else if path.contains("://") {
        return Err(refused(
            path,
            "only obs://bucket/key paths and paths relative to the root are accepted",
        ));
    } else {
        path
    };
    if rest.starts_with('/') {
        return Err(refused(path, "it is absolute"));
    }
    let mut out = PathBuf::new();
    for c in Path::new(rest).components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir => return Err(refused(path, "it holds a '..' component")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refused(path, "it is absolute"));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(refused(path, "it names the root itself"));
    }
    Ok(out)
}

impl Root {
    /// The root at `dir`, which must exist and be a directory.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] if it cannot be resolved; [`StoreError::Path`]
    /// if it is not a directory.
    pub fn open(dir: &Path) -> Result<Root, StoreError> {
        let canonical = fs::canonicalize(dir).map_err(StoreError::io(
            "resolve the root",
            dir.display().to_string(),
        ))?;
        if !canonical.is_dir() {
            return Err(refused(
                &dir.display().to_string(),
                "the root is not a directory",
            ));
        }
        Ok(Root { canonical })
    }

    /// The root's canonical path.
    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// Checks that `p`, resolved, lies under the root.
    fn inside(&self, client: &str, p: &Path) -> Result<PathBuf, StoreError> {
        let real = fs::canonicalize(p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => refused(client, "it does not exist"),
            _ => refused(client, format!("it cannot be resolved: {e}")),
        })?;
        if !real.starts_with(&self.canonical) || real == self.canonical {
            return Err(refused(
                client,
                "it leads outside the root (through a symbolic link)",
            ));
        }
        Ok(real)
    }

    /// The canonical path of an existing regular file a request names.
    ///
    /// # Errors
    ///
    /// [`StoreError::Path`] for every refusal of the [module docs](self).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # std::fs::create_dir(dir.path().join("bucket")).unwrap();
    /// # std::fs::write(dir.path().join("bucket/v.csv"), "1,a\n").unwrap();
    /// use graph_lifecycle_store::paths::Root;
    /// let root = Root::open(dir.path()).unwrap();
    /// assert!(root.file("obs://bucket/v.csv").is_ok());
    /// assert!(root.file("bucket/v.csv").is_ok());
    /// assert!(root.file("obs://bucket/../bucket/v.csv").is_err());
    /// assert!(root.file("/etc/passwd").is_err());
    /// ```
    pub fn file(&self, client: &str) -> Result<PathBuf, StoreError> {
        let rel = relative(client)?;
        let real = self.inside(client, &self.canonical.join(rel))?;
        let meta = fs::metadata(&real).map_err(|e| refused(client, e.to_string()))?;
        if !meta.is_file() {
            return Err(refused(client, "it is not a regular file"));
        }
        Ok(real)
    }

    /// The canonical path of a directory a request names for output,
    /// created (with its missing parents, each checked) if need be.
    ///
    /// # Errors
    ///
    /// [`StoreError::Path`] for a refused path or a component that is a
    /// file; [`StoreError::Io`] if a directory cannot be created.
    pub fn directory(&self, client: &str) -> Result<PathBuf, StoreError> {
        let rel = relative(client)?;
        let mut at = self.canonical.clone();
        for c in rel.components() {
            at.push(c);
            match fs::symlink_metadata(&at) {
                Ok(_) => {
                    // Follows a link, if it is one, and checks where it
                    // leads.
                    at = self.inside(client, &at)?;
                    if !at.is_dir() {
                        return Err(refused(client, "a component is not a directory"));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    fs::create_dir(&at)
                        .map_err(StoreError::io("create the directory", quote(client)))?;
                }
                Err(e) => return Err(refused(client, e.to_string())),
            }
        }
        self.inside(client, &at)
    }
}

/// A file name a request gives for output: one plain component, no
/// separator, no `..`, at most 255 bytes.
///
/// # Errors
///
/// [`StoreError::Path`].
pub fn file_name(client: &str) -> Result<&str, StoreError> {
    if client.is_empty()
        || client.len() > 255
        || client == "."
        || client == ".."
        || client.starts_with('.')
        || client.contains(['/', '\\', '\0'])
    {
        return Err(refused(
            client,
            "a file name must be one plain component, 1 to 255 bytes, not starting with '.'",
        ));
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_mapped_or_refused() {
        assert_eq!(relative("obs://b/k/x.csv").unwrap(), Path::new("b/k/x.csv"));
        assert_eq!(relative("b/./x.csv").unwrap(), Path::new("b/x.csv"));
        for bad in [
            "",
            "/etc/passwd",
            "obs:///etc/passwd",
            "obs://",
            "../x",
            "b/../../x",
            "obs://b/../x",
            "s3://b/x",
            "file:///etc/passwd",
            "b\\..\\x",
            "b/x\0",
            ".",
        ] {
            assert!(relative(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn output_names_are_single_components() {
        assert!(file_name("edges.csv").is_ok());
        for bad in ["", "..", "a/b", ".hidden", "a\\b"] {
            assert!(file_name(bad).is_err(), "{bad:?}");
        }
    }
}
