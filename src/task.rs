//! Tasks: what the task table holds (`docs/CONTRACT.md`, section 5).

use std::fmt;

use crate::error::Error;
use crate::id::{Epoch, GraphKey, IdKind, JobId, validate_name};
use crate::state::LifecycleKind;
use crate::sync::{Arc, AtomicU8, AtomicU64, Ordering};
use crate::time::Timestamp;

/// The host's opaque request: bytes the crate stores and hands back but
/// never reads (an import's paths and format, an algorithm's parameters).
///
/// Cloning is cheap (a reference count).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Payload(Option<Arc<[u8]>>);

impl Payload {
    /// No payload.
    pub const EMPTY: Payload = Payload(None);

    /// A payload holding `bytes`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        let v: Vec<u8> = bytes.into();
        if v.is_empty() {
            Payload(None)
        } else {
            Payload(Some(Arc::from(v)))
        }
    }

    /// The bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_deref().unwrap_or(&[])
    }

    /// The number of bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether there are no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// At most the first `n` bytes: itself if it is no longer, else a copy
    /// of its prefix.
    pub fn prefix(&self, n: usize) -> Payload {
        if self.len() <= n {
            self.clone()
        } else {
            Payload::new(&self.as_bytes()[..n])
        }
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self.as_bytes()) {
            Ok(s) if s.len() <= 64 => write!(f, "Payload({s:?})"),
            _ => write!(f, "Payload({} bytes)", self.len()),
        }
    }
}

impl From<&str> for Payload {
    fn from(s: &str) -> Self {
        Payload::new(s.as_bytes())
    }
}

impl From<String> for Payload {
    fn from(s: String) -> Self {
        Payload::new(s.into_bytes())
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Payload::new(v)
    }
}

/// The bytes, as a byte string.
#[cfg(feature = "serde")]
impl serde::Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.as_bytes())
    }
}

/// From a byte string, or a sequence of bytes (what a self-describing
/// format such as JSON makes of a byte string).
#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl<'de> serde::de::Visitor<'de> for Bytes {
            type Value = Payload;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Payload, E> {
                Ok(Payload::new(v))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
                Ok(Payload::new(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Payload, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(Payload::new(v))
            }
        }
        d.deserialize_bytes(Bytes)
    }
}

/// The name of a host task kind ("pagerank", "async-query"): validated like
/// an id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(try_from = "String")
)]
pub struct HostKind(Arc<str>);

impl HostKind {
    /// Validates `name` (1 to 64 bytes of `[A-Za-z0-9_-]`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] for a malformed name.
    pub fn new(name: &str) -> Result<Self, Error> {
        validate_name(IdKind::TaskKind, name)?;
        Ok(Self(Arc::from(name)))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Validates like [`HostKind::new`], keeping the string.
impl TryFrom<String> for HostKind {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        validate_name(IdKind::TaskKind, &s)?;
        Ok(Self(Arc::from(s)))
    }
}

/// A string; deserializing validates it like [`HostKind::new`].
#[cfg(feature = "serde")]
impl serde::Serialize for HostKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Debug for HostKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl fmt::Display for HostKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a task does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum TaskKind {
    /// Load the graph.
    Start,
    /// Unload the graph.
    Stop,
    /// The forced restart's job.
    Restart,
    /// Import data (details in the payload).
    Import,
    /// Export data (details in the payload).
    Export,
    /// Clear the graph's data, and its schema too if `clear_metadata`.
    Clear {
        /// Whether the schema goes too.
        clear_metadata: bool,
    },
    /// A task of the host's own, registered with
    /// [`Engine::register_task`](crate::Engine::register_task).
    Host(HostKind),
}

impl TaskKind {
    /// The lifecycle kind, `None` for a host task.
    #[inline]
    pub fn lifecycle(&self) -> Option<LifecycleKind> {
        Some(match self {
            TaskKind::Start => LifecycleKind::Start,
            TaskKind::Stop => LifecycleKind::Stop,
            TaskKind::Restart => LifecycleKind::Restart,
            TaskKind::Import => LifecycleKind::Import,
            TaskKind::Export => LifecycleKind::Export,
            TaskKind::Clear { .. } => LifecycleKind::Clear,
            TaskKind::Host(_) => return None,
        })
    }

    /// A short name: the lifecycle kind's name or the host kind.
    pub fn name(&self) -> &str {
        match self {
            TaskKind::Host(h) => h.as_str(),
            other => other.lifecycle().map_or("", LifecycleKind::name),
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskKind::Clear {
                clear_metadata: true,
            } => f.write_str("clear(metadata)"),
            other => f.write_str(other.name()),
        }
    }
}

/// A task's status. Succeeded, Failed and Cancelled are terminal: a task
/// that reached one never changes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum TaskStatus {
    /// Created, not yet reported started.
    Pending,
    /// Reported started.
    Running,
    /// Ended well.
    Succeeded,
    /// Ended badly; the task's [`FailReason`] says why.
    Failed,
    /// Cancelled by a caller.
    Cancelled,
}

impl TaskStatus {
    /// Every status.
    pub const ALL: [TaskStatus; 5] = [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    /// Whether the status is final.
    #[inline]
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }

    /// A stable lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a task did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum FailReason {
    /// Failed by the forced restart whose job is this.
    ForceRestarted(JobId),
    /// A restart job replaced by a newer forced restart, whose job is this.
    Superseded(JobId),
    /// Cancelled by a caller.
    Cancelled,
    /// Its deadline passed.
    TimedOut,
    /// Live when the engine crashed; set by recovery.
    Interrupted,
    /// The host's own message.
    Host(Arc<str>),
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::ForceRestarted(j) => write!(f, "force-restarted by job {j}"),
            FailReason::Superseded(j) => write!(f, "superseded by job {j}"),
            FailReason::Cancelled => f.write_str("cancelled"),
            FailReason::TimedOut => f.write_str("timed out"),
            FailReason::Interrupted => f.write_str("interrupted"),
            FailReason::Host(m) => f.write_str(m),
        }
    }
}

/// A cheap, shareable flag that goes up when its task ends in any way but
/// success: a forced restart, a cancel, a timeout, the graph's removal, or
/// a failure report. A worker polls it between units of work and stops
/// early.
///
/// It reads the task's own state (void after a cancel, a timeout or a
/// failure report; settled after success) and, while the task is live,
/// its graph's fence: the graph's current epoch, which a forced restart or
/// a removal moves for every live token of the graph at once, with one
/// store. A token goes void only after the graph's new state is visible
/// to the lock-free readers ([`GraphHandle`](crate::GraphHandle)).
///
/// ```
/// # use graph_lifecycle::*;
/// let (engine, jobs) = Engine::builder().build();
/// let key = GraphKey::parse("p", "g").unwrap();
/// engine.create_graph(&key).unwrap();
/// engine.start(&key).unwrap();
/// let job = jobs.try_recv().unwrap();
/// assert!(!job.token.is_void());
/// engine.force_restart(&key).unwrap();
/// assert!(job.token.is_void());
/// ```
#[derive(Clone)]
pub struct CancelToken {
    chunk: Arc<TokenChunk>,
    slot: u8,
}

/// How many tokens share one allocation: a chunk's states fill one cache
/// line. Small under loom, whose atomics are costly to model.
#[cfg(not(loom))]
const CHUNK: usize = 64;
#[cfg(loom)]
const CHUNK: usize = 2;

/// Tokens of one graph and one epoch, allocated together: one allocation,
/// and one free, for up to [`CHUNK`] tasks. A slot is used by one task and
/// never reused; the chunk is freed when its last token is dropped.
struct TokenChunk {
    /// `LIVE`, `VOID` (fired) or `SUCCEEDED` (settled: never void), per
    /// slot.
    states: [AtomicU8; CHUNK],
    fence: Arc<Fence>,
    /// The epoch every token of the chunk was made in.
    epoch: u64,
}

impl TokenChunk {
    fn new(fence: &Arc<Fence>, epoch: Epoch) -> Arc<Self> {
        Arc::new(Self {
            states: std::array::from_fn(|_| AtomicU8::new(LIVE)),
            fence: fence.clone(),
            epoch: epoch.0,
        })
    }
}

/// A graph's token allocator: hands out the slots of its current chunk,
/// and starts a new chunk when that one is full or the epoch moved on.
#[derive(Default)]
pub(crate) struct TokenPool {
    chunk: Option<Arc<TokenChunk>>,
    used: usize,
}

impl TokenPool {
    /// A pool with no chunk yet.
    pub(crate) const fn new() -> Self {
        Self {
            chunk: None,
            used: 0,
        }
    }

    /// A live token of `epoch` under `fence`.
    pub(crate) fn token(&mut self, fence: &Arc<Fence>, epoch: Epoch) -> CancelToken {
        let chunk = match &self.chunk {
            Some(c) if self.used < CHUNK && c.epoch == epoch.0 => c.clone(),
            _ => {
                let c = TokenChunk::new(fence, epoch);
                self.chunk = Some(c.clone());
                self.used = 0;
                c
            }
        };
        let slot = self.used as u8;
        self.used += 1;
        CancelToken { chunk, slot }
    }

    /// Lets go of the current chunk (a graph that is removed, or whose
    /// tasks all ended, need not keep it).
    pub(crate) fn release(&mut self) {
        self.chunk = None;
    }
}

impl fmt::Debug for TokenPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPool")
            .field("used", &self.used)
            .finish_non_exhaustive()
    }
}

const LIVE: u8 = 0;
const VOID: u8 = 1;
const SUCCEEDED: u8 = 2;

/// A graph's fence: the epoch whose tokens are still valid, or
/// [`Fence::REMOVED`]. Its reference count changes once per chunk of
/// tokens, not per token, so it needs no cache line of its own.
#[derive(Debug)]
pub(crate) struct Fence(AtomicU64);

impl Fence {
    /// The fence of a removed graph: no token is valid.
    const REMOVED: u64 = u64::MAX;

    pub(crate) fn new(epoch: Epoch) -> Arc<Fence> {
        Arc::new(Fence(AtomicU64::new(epoch.0)))
    }

    /// Moves the fence to `epoch`, or to "removed"; tokens of every other
    /// epoch go void. A store only when it changes, so the tokens' cache
    /// line stays clean between restarts.
    pub(crate) fn set(&self, epoch: Epoch, removed: bool) {
        let v = if removed { Self::REMOVED } else { epoch.0 };
        if self.0.load(Ordering::Relaxed) != v {
            self.0.store(v, Ordering::Release);
        }
    }
}

impl CancelToken {
    /// A token of its own chunk: for the rare token made outside a
    /// graph's pool (a retried registration of a task that ended).
    pub(crate) fn single(fence: &Arc<Fence>, epoch: Epoch) -> Self {
        TokenPool::default().token(fence, epoch)
    }

    #[inline]
    fn state(&self) -> &AtomicU8 {
        &self.chunk.states[usize::from(self.slot)]
    }

    /// Whether the task is over and its work void. One or two atomic
    /// loads. The token of a task that succeeded never goes void.
    #[inline]
    pub fn is_void(&self) -> bool {
        match self.state().load(Ordering::Acquire) {
            LIVE => self.chunk.fence.0.load(Ordering::Acquire) != self.chunk.epoch,
            s => s == VOID,
        }
    }

    /// A token that is void already, for a task that is gone.
    pub(crate) fn voided() -> Self {
        let token = Self::single(&Fence::new(Epoch::ZERO), Epoch::ZERO);
        token.fire();
        token
    }

    /// The task failed, was cancelled or timed out.
    pub(crate) fn fire(&self) {
        self.state().store(VOID, Ordering::Release);
    }

    /// The task succeeded: the token stays valid whatever the graph does
    /// next.
    pub(crate) fn settle(&self) {
        self.state().store(SUCCEEDED, Ordering::Release);
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CancelToken").field(&self.is_void()).finish()
    }
}

/// A task as the table shows it (a copy; it does not change under you).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// Its id.
    pub id: JobId,
    /// Its graph.
    pub key: GraphKey,
    /// What it does.
    pub kind: TaskKind,
    /// The graph's epoch when it was created.
    pub epoch: Epoch,
    /// Its status.
    pub status: TaskStatus,
    /// 0 to 100.
    pub progress: u8,
    /// Whether a caller may cancel it.
    pub stoppable: bool,
    /// When it was created.
    pub created_at: Timestamp,
    /// When the host reported it started.
    pub started_at: Option<Timestamp>,
    /// When it reached a terminal status.
    pub ended_at: Option<Timestamp>,
    /// When it times out, if its kind has a timeout.
    pub deadline: Option<Timestamp>,
    /// Why it failed or was cancelled.
    pub reason: Option<FailReason>,
    /// The host's request.
    pub payload: Payload,
}

/// What the host registers for a task of its own.
///
/// ```
/// use graph_lifecycle::{TaskSpec, HostKind};
/// let spec = TaskSpec::new(HostKind::new("pagerank").unwrap())
///     .stoppable(true)
///     .payload("{\"iterations\": 20}");
/// # let _ = spec;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TaskSpec {
    /// Its kind.
    pub kind: HostKind,
    /// Whether callers may cancel it (default: yes).
    pub stoppable: bool,
    /// Its timeout, if any, from its creation.
    pub timeout: Option<std::time::Duration>,
    /// The host's request.
    pub payload: Payload,
}

impl TaskSpec {
    /// A stoppable task of kind `kind`, no timeout, no payload.
    pub fn new(kind: HostKind) -> Self {
        Self {
            kind,
            stoppable: true,
            timeout: None,
            payload: Payload::EMPTY,
        }
    }

    /// Sets whether callers may cancel it.
    pub fn stoppable(mut self, yes: bool) -> Self {
        self.stoppable = yes;
        self
    }

    /// Sets a timeout.
    pub fn timeout(mut self, d: std::time::Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, p: impl Into<Payload>) -> Self {
        self.payload = p.into();
        self
    }
}

/// A report from the host about one of its tasks or jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Report {
    /// The work began (Pending to Running).
    Started,
    /// The work is this far, in percent; never backwards, never past 100.
    /// A progress report on a Pending task also marks it started.
    Progress(u8),
    /// The work is done.
    Succeeded,
    /// The work failed, with the host's message.
    Failed(String),
}

impl Report {
    /// A stable lower-case name.
    pub fn name(&self) -> &'static str {
        match self {
            Report::Started => "started",
            Report::Progress(_) => "progress",
            Report::Succeeded => "succeeded",
            Report::Failed(_) => "failed",
        }
    }
}
