//! The store's one error type.

use std::io;

/// Everything an import, an export, a load, a save or an algorithm can
/// meet. Messages name the file (as the client named it, never the
/// server's own path), the line, the cap or the vertex involved, and quote
/// client input escaped and shortened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A CSV line that cannot be read: the file, the line number (1-based)
    /// and why.
    #[error("{file} line {line}: {reason}")]
    Csv {
        /// The file, as the request named it.
        file: String,
        /// The line where the record starts.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A metadata (schema) file that cannot be read: the file, the line
    /// and why.
    #[error("{file} line {line}: {reason}")]
    Xml {
        /// The file, as the request named it.
        file: String,
        /// The line of the offending markup.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A path the request gave that is refused: outside the root, absolute,
    /// through `..` or a symbolic link out of the root, not a regular file.
    #[error("path {path} is refused: {reason}")]
    Path {
        /// The path as the request gave it (escaped, shortened).
        path: String,
        /// Why.
        reason: String,
    },
    /// The data would pass one of the graph's caps.
    #[error("the graph would pass its cap of {limit} {what} ({cap})")]
    Cap {
        /// The configuration setting that holds the cap.
        cap: &'static str,
        /// What is counted: `vertices`, `edges`, `property bytes`.
        what: &'static str,
        /// The cap.
        limit: u64,
    },
    /// The work was cancelled (its token went void) at a check.
    #[error("cancelled")]
    Cancelled,
    /// A request field or algorithm parameter that is malformed or out of
    /// range.
    #[error("invalid request: {0}")]
    Request(String),
    /// A schema that does not fit the graph's (a label redefined with
    /// other properties), or data that does not fit the schema.
    #[error("schema: {0}")]
    Schema(String),
    /// A stored graph file that is damaged: a checksum that does not
    /// match, a section cut short, values out of range.
    #[error("stored graph {file} is damaged: {reason}")]
    Corrupt {
        /// The file, relative to the data directory.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An I/O error, with what was being done and on which file.
    #[error("cannot {op} {file}: {source}")]
    Io {
        /// What was being done (`open`, `read`, `write`, ...).
        op: &'static str,
        /// The file (as the request named it, or relative to the data
        /// directory).
        file: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl StoreError {
    /// An [`Io`](StoreError::Io) error maker for `op` on `file`.
    pub(crate) fn io(op: &'static str, file: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let file = file.into();
        move |source| StoreError::Io { op, file, source }
    }
}

/// Client input, escaped and cut to 48 characters, quoted: for messages.
pub fn quote(s: &str) -> String {
    let mut out: String = s.chars().take(48).flat_map(char::escape_default).collect();
    if s.chars().nth(48).is_some() {
        out.push('…');
    }
    format!("\"{out}\"")
}

/// Bytes from a client, shown as [`quote`] shows text (invalid UTF-8
/// replaced).
pub fn quote_bytes(b: &[u8]) -> String {
    quote(&String::from_utf8_lossy(&b[..b.len().min(256)]))
}
