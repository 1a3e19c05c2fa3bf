//! Names: project ids, graph ids, graph keys, job ids, request ids and
//! epochs.
//!
//! Project and graph ids are validated on construction: 1 to
//! [`MAX_ID_LEN`] bytes of ASCII letters, digits, `-` and `_`. Nothing else
//! is accepted, so an id can be put in a path, a log line or a file name
//! as it is. Job ids are UUIDs, time-ordered (v7) by default. Request ids
//! are the caller's own names for a command, for retries
//! ([`RequestId`]).

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::str::FromStr;
use std::sync::OnceLock;

use crate::error::Error;
use crate::sync::Arc;

/// Longest project or graph id accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Longest request id accepted, in bytes.
pub const MAX_REQUEST_ID_LEN: usize = 256;

/// What kind of name a validation error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum IdKind {
    /// A [`ProjectId`].
    Project,
    /// A [`GraphId`].
    Graph,
    /// A [`JobId`].
    Job,
    /// The name of a host task kind ([`crate::TaskKind::Host`]).
    TaskKind,
    /// A [`RequestId`].
    Request,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::Project => "project id",
            IdKind::Graph => "graph id",
            IdKind::Job => "job id",
            IdKind::TaskKind => "task kind",
            IdKind::Request => "request id",
        })
    }
}

/// Checks `s` against the id rules; on failure the error quotes a safe,
/// shortened rendering of the input.
pub(crate) fn validate_name(kind: IdKind, s: &str) -> Result<(), Error> {
    let reason = if s.is_empty() {
        "is empty"
    } else if s.len() > MAX_ID_LEN {
        "is longer than 64 bytes"
    } else if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        "may hold only ASCII letters, digits, '-' and '_'"
    } else {
        return Ok(());
    };
    Err(Error::InvalidId {
        kind,
        value: quote_input(s),
        reason: reason.into(),
    })
}

/// A printable, bounded rendering of untrusted input for error messages.
pub(crate) fn quote_input(s: &str) -> String {
    const SHOWN: usize = 32;
    let mut out: String = s
        .chars()
        .take(SHOWN)
        .flat_map(char::escape_default)
        .collect();
    if s.chars().nth(SHOWN).is_some() {
        out.push('…');
    }
    out
}

/// The hash of a project or graph id, computed once when the id is made:
/// SipHash-1-3 (std's `RandomState`) under a key drawn at random once per
/// process, so that ids a client chooses cannot be made to collide, and a
/// lookup by key hashes nothing (see [`GraphKey`]'s `Hash`).
fn id_hash(s: &str) -> u64 {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    KEY.get_or_init(RandomState::new).hash_one(s)
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone)]
        #[cfg_attr(
            feature = "serde",
            derive(serde::Deserialize),
            serde(try_from = "String")
        )]
        pub struct $name {
            s: Arc<str>,
            /// [`id_hash`] of `s`.
            hash: u64,
        }

        impl $name {
            fn from_checked(s: Arc<str>) -> Self {
                let hash = id_hash(&s);
                Self { s, hash }
            }
        }

        /// Equal ids have equal hashes: those are compared first, the
        /// strings only when the hashes agree.
        impl PartialEq for $name {
            #[inline]
            fn eq(&self, other: &Self) -> bool {
                self.hash == other.hash && (Arc::ptr_eq(&self.s, &other.s) || self.s == other.s)
            }
        }

        impl Eq for $name {}

        /// Writes the hash computed when the id was made.
        impl Hash for $name {
            #[inline]
            fn hash<H: Hasher>(&self, state: &mut H) {
                state.write_u64(self.hash);
            }
        }

        /// In string order.
        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.s.cmp(&other.s)
            }
        }

        impl $name {
            /// Validates `s` and makes an id of it.
            ///
            /// # Errors
            ///
            /// [`Error::InvalidId`] if `s` is empty, longer than
            /// [`MAX_ID_LEN`] bytes, or holds a character outside
            /// `[A-Za-z0-9_-]`.
            pub fn new(s: &str) -> Result<Self, Error> {
                validate_name($kind, s)?;
                Ok(Self::from_checked(Arc::from(s)))
            }

            /// The id as a string.
            #[inline]
            pub fn as_str(&self) -> &str {
                &self.s
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.s)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &*self.s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.s
            }
        }

        /// Validates like [`new`](Self::new), keeping the string.
        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self, Error> {
                validate_name($kind, &s)?;
                Ok(Self::from_checked(Arc::from(s)))
            }
        }

        /// A string; deserializing validates it like [`new`](Self::new).
        #[cfg(feature = "serde")]
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.s)
            }
        }
    };
}

name_type!(
    /// A project: the tenant that owns graphs. Nothing of one project is
    /// visible through another.
    ProjectId,
    IdKind::Project
);
name_type!(
    /// A graph's id, unique within its project.
    GraphId,
    IdKind::Graph
);

/// The address of a graph: its project and its id.
///
/// ```
/// use graph_lifecycle::GraphKey;
/// let key = GraphKey::parse("tenant-a", "movies").unwrap();
/// assert_eq!(key.to_string(), "tenant-a/movies");
/// assert!(GraphKey::parse("tenant-a", "../etc").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GraphKey {
    /// The owning project.
    pub project: ProjectId,
    /// The graph within it.
    pub graph: GraphId,
}

impl GraphKey {
    /// A key from already validated ids.
    pub fn new(project: ProjectId, graph: GraphId) -> Self {
        Self { project, graph }
    }

    /// Validates both parts and makes a key.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] naming the part that is malformed.
    pub fn parse(project: &str, graph: &str) -> Result<Self, Error> {
        Ok(Self::new(ProjectId::new(project)?, GraphId::new(graph)?))
    }

    /// One 64-bit hash of the key, from the hashes its ids got when they
    /// were made: no byte of either id is read.
    #[inline]
    pub(crate) fn hash64(&self) -> u64 {
        self.project.hash.rotate_left(32) ^ self.graph.hash
    }
}

/// Writes the key's `hash64`: one `u64`, whatever the ids' lengths.
impl Hash for GraphKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash64());
    }
}

impl fmt::Display for GraphKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.project, self.graph)
    }
}

impl fmt::Debug for GraphKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GraphKey({self})")
    }
}

/// The id of a task or job: a UUID, shown hyphenated.
///
/// ```
/// use graph_lifecycle::JobId;
/// let id: JobId = "0190b6d8-4f1e-7c3a-9d2b-5e6f7a8b9c0d".parse().unwrap();
/// assert_eq!(id.to_string(), "0190b6d8-4f1e-7c3a-9d2b-5e6f7a8b9c0d");
/// assert!("not-a-uuid".parse::<JobId>().is_err());
/// ```
// `Hash` is written by hand next to the task table's hasher.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(transparent)
)]
pub struct JobId(uuid::Uuid);

impl JobId {
    /// Wraps a UUID.
    #[inline]
    pub const fn from_uuid(u: uuid::Uuid) -> Self {
        Self(u)
    }

    /// The UUID.
    #[inline]
    pub const fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }

    /// The id as a `u128`, as used by the engine's internal hashing.
    #[inline]
    pub(crate) const fn as_u128(&self) -> u128 {
        self.0.as_u128()
    }

    /// Parses the hyphenated (or simple, braced or URN) form.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] for anything that is not a UUID.
    pub fn parse(s: &str) -> Result<Self, Error> {
        uuid::Uuid::try_parse(s)
            .map(Self)
            .map_err(|_| Error::InvalidId {
                kind: IdKind::Job,
                value: quote_input(s),
                reason: "is not a UUID".into(),
            })
    }
}

impl FromStr for JobId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.0.hyphenated())
    }
}

/// A graph's epoch: grows by one at every forced restart. Every task records
/// the epoch it was created in, and a report whose task belongs to an older
/// epoch is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(transparent)
)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The epoch of a new graph.
    pub const ZERO: Epoch = Epoch(0);

    /// The epoch after this one.
    #[inline]
    pub const fn next(self) -> Epoch {
        Epoch(self.0.saturating_add(1))
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A caller's name for one command, so that a retry of the command is
/// answered rather than applied again (`docs/CONTRACT.md`, "Retries").
///
/// 1 to [`MAX_REQUEST_ID_LEN`] bytes of printable ASCII (space to `~`):
/// an HTTP `Idempotency-Key` header or a UUID fits as it is. A command
/// that carries one and whose request id the graph already answered
/// within its window gets that first answer again and changes nothing.
///
/// ```
/// use graph_lifecycle::RequestId;
/// let id = RequestId::new("8e0c2bbd-retry-me").unwrap();
/// assert_eq!(id.as_str(), "8e0c2bbd-retry-me");
/// assert!(RequestId::new("").is_err());
/// assert!(RequestId::new("tab\there").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(try_from = "String")
)]
pub struct RequestId(Arc<str>);

fn validate_request(s: &str) -> Result<(), Error> {
    let reason = if s.is_empty() {
        "is empty"
    } else if s.len() > MAX_REQUEST_ID_LEN {
        "is longer than 256 bytes"
    } else if !s.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        "may hold only printable ASCII characters"
    } else {
        return Ok(());
    };
    Err(Error::InvalidId {
        kind: IdKind::Request,
        value: quote_input(s),
        reason: reason.into(),
    })
}

impl RequestId {
    /// Validates `s` and makes a request id of it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] if `s` is empty, longer than
    /// [`MAX_REQUEST_ID_LEN`] bytes, or holds a byte outside printable
    /// ASCII.
    pub fn new(s: &str) -> Result<Self, Error> {
        validate_request(s)?;
        Ok(Self(Arc::from(s)))
    }

    /// The id as a string.
    #[inline]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RequestId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

/// Validates like [`RequestId::new`], keeping the string.
impl TryFrom<String> for RequestId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        validate_request(&s)?;
        Ok(Self(Arc::from(s)))
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({:?})", &*self.0)
    }
}

/// A string; deserializing validates it like [`RequestId::new`].
#[cfg(feature = "serde")]
impl serde::Serialize for RequestId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}
