//! Images: the whole state of an engine as a value, and as bytes.
//!
//! [`Engine::image`](crate::Engine::image) copies every graph (state,
//! epoch, tasks, request window) and the request windows of keys with no
//! graph; [`Image::encode`] turns the copy into bytes and
//! [`Image::decode`] back; [`Engine::restore`](crate::Engine::restore)
//! and [`EngineBuilder::restore`](crate::EngineBuilder::restore) make an
//! engine hold it. A journal stores images as its snapshots; a replicated
//! log ships them to a node that fell behind.
//!
//! Two engines that applied the same commands encode to the same bytes:
//! graphs in key order, tasks in creation order (live) and in the order
//! they ended (retained), request windows oldest first.
//!
//! # The format
//!
//! ```text
//! [magic "GLIMAGE\0"][version u32 LE][body length u64 LE][checksum u64 LE][body]
//! ```
//!
//! The checksum is FNV-1a (64 bits) over the version, the length and the
//! body. The body is the graphs and then the absent keys' windows, each a
//! count followed by its items; numbers are LEB128 varints, strings and
//! byte strings a varint length and the bytes. The crate may depend on no
//! codec or checksum crate, so both are written here, small, and tested
//! with every cut and every flipped bit (`tests/image.rs`).
//!
//! Decoding trusts nothing: any bytes give an [`ImageError`] or an image,
//! never a panic and never an allocation larger than the input. An image
//! that decodes is checked again before it is restored (statuses, unique
//! ids, the lifecycle job that matches the state, windows).
//!
//! ```
//! use graph_lifecycle::*;
//! let (engine, _jobs) = Engine::builder().build();
//! let key = GraphKey::parse("p", "g")?;
//! engine.create_graph(&key)?;
//! engine.start(&key)?;
//! let bytes = engine.image().encode();
//!
//! let image = Image::decode(&bytes).expect("an intact image");
//! let (copy, _jobs) = Engine::builder().restore(&image).expect("a valid image");
//! assert_eq!(copy.snapshot(), engine.snapshot());
//! assert_eq!(copy.image().encode(), bytes);
//! assert!(Image::decode(&bytes[..bytes.len() - 1]).is_err());
//! # Ok::<(), graph_lifecycle::Error>(())
//! ```

use std::borrow::Cow;
use std::fmt;

use crate::command::{Asked, Outcome, Restart};
use crate::config::Config;
use crate::error::{Error, LogError};
use crate::graph::{Answered, GraphData, Requests, Task};
use crate::id::{Epoch, GraphId, GraphKey, IdKind, JobId, ProjectId, RequestId};
use crate::registry::Absent;
use crate::state::{GraphState, Operation};
use crate::task::{FailReason, HostKind, Payload, TaskKind, TaskStatus};
use crate::time::Timestamp;

const MAGIC: &[u8; 8] = b"GLIMAGE\0";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 8;

/// The whole state of an engine (see the [module](self)).
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    pub(crate) graphs: Vec<GraphImage>,
    pub(crate) absent: Vec<(GraphKey, WindowImage)>,
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("graphs", &self.graphs.len())
            .field("absent_windows", &self.absent.len())
            .finish()
    }
}

/// Why bytes are not an image, or an image cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The bytes do not begin as an image does.
    #[error("not an image of this format")]
    NotAnImage,
    /// An image of a format version this build does not read.
    #[error("image format version {found} is not supported (this build reads version {VERSION})")]
    Version {
        /// The version the image says it has.
        found: u32,
    },
    /// Fewer bytes than the header says (a cut file), or more.
    #[error("the image holds {found} bytes of body where its header says {expected}")]
    Length {
        /// What the header says.
        expected: u64,
        /// What is there.
        found: u64,
    },
    /// The checksum does not match: the bytes were damaged.
    #[error("the image's checksum does not match: it is damaged")]
    Checksum,
    /// The body does not decode (a checksum that matches damaged bytes,
    /// or an image written wrong).
    #[error("the image is malformed at byte {at}: {what}")]
    Malformed {
        /// The byte offset in the image.
        at: usize,
        /// What is wrong there.
        what: Cow<'static, str>,
    },
    /// The image decodes but breaks a rule the engine relies on.
    #[error("the image cannot be restored: {what}")]
    Invalid {
        /// The rule and the graph or task that breaks it.
        what: String,
    },
}

/// One graph, copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GraphImage {
    key: GraphKey,
    state: GraphState,
    epoch: Epoch,
    created_at: Timestamp,
    updated_at: Timestamp,
    next_seq: u64,
    lifecycle: Option<JobId>,
    /// In creation order.
    live: Vec<TaskImage>,
    /// In the order they ended.
    done: Vec<TaskImage>,
    window: WindowImage,
}

/// A request window, copied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct WindowImage {
    next: u64,
    entries: Vec<Answered>,
}

/// A task without its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskImage {
    id: JobId,
    kind: TaskKind,
    epoch: Epoch,
    seq: u64,
    status: TaskStatus,
    progress: u8,
    stoppable: bool,
    created_at: Timestamp,
    started_at: Option<Timestamp>,
    ended_at: Option<Timestamp>,
    deadline: Option<Timestamp>,
    reason: Option<FailReason>,
    payload: Payload,
}

impl TaskImage {
    fn of(t: &Task) -> Self {
        Self {
            id: t.id,
            kind: t.kind.clone(),
            epoch: t.epoch,
            seq: t.seq,
            status: t.status,
            progress: t.progress,
            stoppable: t.stoppable,
            created_at: t.created_at,
            started_at: t.started_at,
            ended_at: t.ended_at,
            deadline: t.deadline,
            reason: t.reason.clone(),
            payload: t.payload.clone(),
        }
    }

    fn task(&self) -> Task {
        Task {
            id: self.id,
            kind: self.kind.clone(),
            epoch: self.epoch,
            seq: self.seq,
            status: self.status,
            progress: self.progress,
            stoppable: self.stoppable,
            created_at: self.created_at,
            started_at: self.started_at,
            ended_at: self.ended_at,
            deadline: self.deadline,
            reason: self.reason.clone(),
            payload: self.payload.clone(),
            token: None,
        }
    }
}

impl WindowImage {
    fn of(w: &Requests) -> Self {
        Self {
            next: w.next_n(),
            entries: w.iter().cloned().collect(),
        }
    }
}

impl GraphImage {
    pub(crate) fn of(d: &GraphData) -> Self {
        let mut live: Vec<&Task> = d.t.live.values().collect();
        live.sort_unstable_by_key(|t| t.seq);
        Self {
            key: d.key.clone(),
            state: d.state,
            epoch: d.epoch,
            created_at: d.created_at,
            updated_at: d.updated_at,
            next_seq: d.next_seq,
            lifecycle: d.lifecycle,
            live: live.into_iter().map(TaskImage::of).collect(),
            done: d.t.done.iter().map(TaskImage::of).collect(),
            window: WindowImage::of(&d.requests),
        }
    }

    /// The graph, checked: what the pure step relies on holds.
    fn rebuild(&self, cfg: &Config) -> Result<GraphData, String> {
        let key = &self.key;
        let bad = |what: String| Err(format!("graph {key}: {what}"));
        if self.next_seq > 1 << 62 {
            return bad(format!("a task counter of {}", self.next_seq));
        }
        let window = match Requests::rebuild(self.window.next, self.window.entries.clone()) {
            Ok(w) => w,
            Err(e) => return bad(e),
        };
        if window.len() > cfg.request_window.max(1) * 2 {
            return bad(format!("a request window of {} answers", window.len()));
        }
        let mut g = GraphData::new(key.clone(), self.created_at, window);
        g.state = self.state;
        g.epoch = self.epoch;
        g.updated_at = self.updated_at;
        g.next_seq = self.next_seq;
        g.lifecycle = self.lifecycle;
        for t in &self.live {
            if t.status.is_terminal() || t.seq >= g.next_seq || g.task(t.id).is_some() {
                return bad(format!("live task {} is not a valid live task", t.id));
            }
            let mut task = t.task();
            if let Some(d) = task.deadline {
                g.t.deadlines.insert((d, task.id));
            }
            task.token = Some(g.t.tokens.token(&g.fence, g.epoch));
            g.t.live.insert(task.id, task);
        }
        for t in &self.done {
            if !t.status.is_terminal()
                || t.ended_at.is_none()
                || t.seq >= g.next_seq
                || g.task(t.id).is_some()
            {
                return bad(format!("retained task {} is not a valid ended task", t.id));
            }
            g.t.done.push(t.task(), usize::MAX);
        }
        let job_kind = g
            .lifecycle
            .and_then(|id| g.t.live.get(&id))
            .and_then(|t| t.kind.lifecycle());
        if job_kind != g.state.job_kind() || (g.lifecycle.is_some() && job_kind.is_none()) {
            return bad(format!(
                "state {} does not match its lifecycle job",
                g.state
            ));
        }
        Ok(g)
    }
}

/// The absent keys' windows, copied in key order.
pub(crate) struct AbsentImage;

impl AbsentImage {
    pub(crate) fn of(a: &Absent) -> Vec<(GraphKey, WindowImage)> {
        a.sorted()
            .into_iter()
            .map(|(k, w)| (k.clone(), WindowImage::of(w)))
            .collect()
    }
}

impl Image {
    /// How many graphs it holds.
    pub fn graph_count(&self) -> usize {
        self.graphs.len()
    }

    /// The graphs and the absent windows, checked, for a restore.
    pub(crate) fn rebuild(&self, cfg: &Config) -> Result<(Vec<GraphData>, Absent), ImageError> {
        let invalid = |what: String| ImageError::Invalid { what };
        if self.graphs.len() > cfg.max_graphs {
            return Err(invalid(format!(
                "{} graphs, more than the configuration's limit of {}",
                self.graphs.len(),
                cfg.max_graphs
            )));
        }
        let mut graphs = Vec::with_capacity(self.graphs.len());
        for (i, g) in self.graphs.iter().enumerate() {
            if i > 0 && self.graphs[i - 1].key >= g.key {
                return Err(invalid(format!("graph {} is out of key order", g.key)));
            }
            graphs.push(g.rebuild(cfg).map_err(invalid)?);
        }
        let mut absent = Absent::default();
        for (i, (key, w)) in self.absent.iter().enumerate() {
            if i > 0 && self.absent[i - 1].0 >= *key {
                return Err(invalid(format!("the window of {key} is out of key order")));
            }
            if self.graphs.binary_search_by(|g| g.key.cmp(key)).is_ok() {
                return Err(invalid(format!("{key} has a graph and an absent window")));
            }
            let window = Requests::rebuild(w.next, w.entries.clone())
                .map_err(|e| invalid(format!("the window of {key}: {e}")))?;
            if window.is_empty() {
                return Err(invalid(format!("the window of {key} is empty")));
            }
            absent.put(key, window, usize::MAX);
        }
        if absent.len() > cfg.max_absent_windows {
            return Err(invalid(format!(
                "{} absent windows, more than the configuration's limit of {}",
                absent.len(),
                cfg.max_absent_windows
            )));
        }
        Ok((graphs, absent))
    }

    /// The image as bytes (see the [module](self) for the format).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(vec![0; HEADER_LEN]);
        w.len(self.graphs.len());
        for g in &self.graphs {
            w.graph(g);
        }
        w.len(self.absent.len());
        for (key, win) in &self.absent {
            w.key(key);
            w.window(win);
        }
        let mut out = w.0;
        let body = (out.len() - HEADER_LEN) as u64;
        out[..8].copy_from_slice(MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[12..20].copy_from_slice(&body.to_le_bytes());
        let sum = fnv1a(&out[8..20], &out[HEADER_LEN..]);
        out[20..28].copy_from_slice(&sum.to_le_bytes());
        out
    }

    /// Reads an image (see the [module](self) for the format).
    ///
    /// # Errors
    ///
    /// [`ImageError`] for bytes that are not a whole, intact image.
    pub fn decode(bytes: &[u8]) -> Result<Image, ImageError> {
        if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
            return Err(ImageError::NotAnImage);
        }
        let word = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b[..r.len()].copy_from_slice(&bytes[r]);
            u64::from_le_bytes(b)
        };
        let version = word(8..12) as u32;
        if version != VERSION {
            return Err(ImageError::Version { found: version });
        }
        let expected = word(12..20);
        let body = &bytes[HEADER_LEN..];
        if body.len() as u64 != expected {
            return Err(ImageError::Length {
                expected,
                found: body.len() as u64,
            });
        }
        if fnv1a(&bytes[8..20], body) != word(20..28) {
            return Err(ImageError::Checksum);
        }
        let mut r = Reader { buf: body, at: 0 };
        let image = r.image()?;
        if r.at != body.len() {
            return Err(r.malformed("bytes after the end of the image"));
        }
        Ok(image)
    }
}

/// FNV-1a, 64 bits, over `head` then `body`. Each byte goes through a
/// bijection of the state, so any change confined to one byte changes the
/// sum: every single flipped bit is caught.
fn fnv1a(head: &[u8], body: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in head.iter().chain(body) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

// ---- writing ------------------------------------------------------------

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    fn u64(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }

    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn time(&mut self, t: Timestamp) {
        self.u64(t.as_millis());
    }

    fn opt_time(&mut self, t: Option<Timestamp>) {
        match t {
            None => self.u8(0),
            Some(t) => {
                self.u8(1);
                self.time(t);
            }
        }
    }

    fn job(&mut self, j: JobId) {
        self.0.extend_from_slice(j.as_uuid().as_bytes());
    }

    fn key(&mut self, k: &GraphKey) {
        self.str(k.project.as_str());
        self.str(k.graph.as_str());
    }

    fn graph(&mut self, g: &GraphImage) {
        self.key(&g.key);
        self.u8(g.state.code());
        self.u64(g.epoch.0);
        self.time(g.created_at);
        self.time(g.updated_at);
        self.u64(g.next_seq);
        match g.lifecycle {
            None => self.u8(0),
            Some(j) => {
                self.u8(1);
                self.job(j);
            }
        }
        for tasks in [&g.live, &g.done] {
            self.len(tasks.len());
            for t in tasks {
                self.task(t);
            }
        }
        self.window(&g.window);
    }

    fn task(&mut self, t: &TaskImage) {
        self.job(t.id);
        self.kind(&t.kind);
        self.u64(t.epoch.0);
        self.u64(t.seq);
        self.u8(t.status as u8);
        self.u8(t.progress);
        self.bool(t.stoppable);
        self.time(t.created_at);
        self.opt_time(t.started_at);
        self.opt_time(t.ended_at);
        self.opt_time(t.deadline);
        match &t.reason {
            None => self.u8(0),
            Some(r) => {
                self.u8(1);
                self.reason(r);
            }
        }
        self.bytes(t.payload.as_bytes());
    }

    fn kind(&mut self, k: &TaskKind) {
        match k {
            TaskKind::Start => self.u8(0),
            TaskKind::Stop => self.u8(1),
            TaskKind::Restart => self.u8(2),
            TaskKind::Import => self.u8(3),
            TaskKind::Export => self.u8(4),
            TaskKind::Clear { clear_metadata } => {
                self.u8(5);
                self.bool(*clear_metadata);
            }
            TaskKind::Host(h) => {
                self.u8(6);
                self.str(h.as_str());
            }
        }
    }

    fn reason(&mut self, r: &FailReason) {
        match r {
            FailReason::ForceRestarted(j) => {
                self.u8(0);
                self.job(*j);
            }
            FailReason::Superseded(j) => {
                self.u8(1);
                self.job(*j);
            }
            FailReason::Cancelled => self.u8(2),
            FailReason::TimedOut => self.u8(3),
            FailReason::Interrupted => self.u8(4),
            FailReason::Host(m) => {
                self.u8(5);
                self.str(m);
            }
        }
    }

    fn window(&mut self, w: &WindowImage) {
        self.u64(w.next);
        self.len(w.entries.len());
        for e in &w.entries {
            self.str(e.id.as_str());
            self.time(e.at);
            self.u64(e.n);
            self.u8(e.asked.op);
            match e.asked.job {
                None => self.u8(0),
                Some(j) => {
                    self.u8(1);
                    self.job(j);
                }
            }
            match &e.answer {
                Ok(o) => {
                    self.u8(0);
                    self.outcome(o);
                }
                Err(err) => {
                    self.u8(1);
                    self.error(err);
                }
            }
        }
    }

    fn outcome(&mut self, o: &Outcome) {
        match o {
            Outcome::Created => self.u8(0),
            Outcome::Removed { voided } => {
                self.u8(1);
                self.len(*voided);
            }
            Outcome::Job { job, epoch } => {
                self.u8(2);
                self.job(*job);
                self.u64(epoch.0);
            }
            Outcome::Restarted(r) => {
                self.u8(3);
                self.job(r.job);
                self.u64(r.epoch.0);
                self.len(r.failed);
            }
            Outcome::Updated => self.u8(4),
            Outcome::Expired { timed_out, evicted } => {
                self.u8(5);
                self.len(*timed_out);
                self.len(*evicted);
            }
            Outcome::Recovered {
                interrupted,
                abnormal,
            } => {
                self.u8(6);
                self.len(*interrupted);
                self.bool(*abnormal);
            }
        }
    }

    fn error(&mut self, e: &Error) {
        match e {
            Error::InvalidId {
                kind,
                value,
                reason,
            } => {
                self.u8(0);
                self.u8(*kind as u8);
                self.str(value);
                self.str(reason);
            }
            Error::InvalidArgument { what, reason } => {
                self.u8(1);
                self.str(what);
                self.str(reason);
            }
            Error::GraphNotFound { key } => {
                self.u8(2);
                self.key(key);
            }
            Error::GraphExists { key } => {
                self.u8(3);
                self.key(key);
            }
            Error::TaskNotFound { key, job } => {
                self.u8(4);
                self.key(key);
                self.job(*job);
            }
            Error::TransitionRefused { key, state, op } => {
                self.u8(5);
                self.key(key);
                self.u8(state.code());
                self.u8(*op as u8);
            }
            Error::TaskTerminal { key, job, status } => {
                self.u8(6);
                self.key(key);
                self.job(*job);
                self.u8(*status as u8);
            }
            Error::StaleEpoch {
                key,
                job,
                reported,
                current,
            } => {
                self.u8(7);
                self.key(key);
                self.job(*job);
                self.u64(reported.0);
                self.u64(current.0);
            }
            Error::ReportRefused {
                key,
                job,
                status,
                report,
            } => {
                self.u8(8);
                self.key(key);
                self.job(*job);
                self.u8(*status as u8);
                self.str(report);
            }
            Error::BadProgress {
                key,
                job,
                current,
                reported,
            } => {
                self.u8(9);
                self.key(key);
                self.job(*job);
                self.u8(*current);
                self.u8(*reported);
            }
            Error::NotStoppable { key, job, kind } => {
                self.u8(10);
                self.key(key);
                self.job(*job);
                self.str(kind);
            }
            Error::TooManyGraphs { key, limit } => {
                self.u8(11);
                self.key(key);
                self.len(*limit);
            }
            Error::TooManyTasks { key, limit } => {
                self.u8(12);
                self.key(key);
                self.len(*limit);
            }
            Error::ProjectFull { key, limit } => {
                self.u8(18);
                self.key(key);
                self.len(*limit);
            }
            Error::NoJobReceiver { key, op } => {
                self.u8(13);
                self.key(key);
                self.u8(*op as u8);
            }
            Error::ShutDown { key, op } => {
                self.u8(14);
                self.key(key);
                self.u8(*op as u8);
            }
            Error::DuplicateJobId { key, job } => {
                self.u8(15);
                self.key(key);
                self.job(*job);
            }
            Error::RequestReused {
                key,
                request,
                first,
                op,
            } => {
                self.u8(17);
                self.key(key);
                self.str(request.as_str());
                self.str(first);
                self.str(op);
            }
            Error::CommitLog { key, source } => {
                self.u8(16);
                self.key(key);
                self.str(&source.to_string());
            }
        }
    }
}

// ---- reading ------------------------------------------------------------

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

type Read<T> = Result<T, ImageError>;

impl Reader<'_> {
    fn malformed(&self, what: impl Into<Cow<'static, str>>) -> ImageError {
        ImageError::Malformed {
            at: HEADER_LEN + self.at,
            what: what.into(),
        }
    }

    fn take(&mut self, n: usize) -> Read<&[u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.malformed("the body ends inside a value"))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Read<u8> {
        Ok(self.take(1)?[0])
    }

    fn bool(&mut self) -> Read<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.malformed("a flag that is neither 0 nor 1")),
        }
    }

    fn u64(&mut self) -> Read<u64> {
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(self.malformed("a number past 64 bits"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.malformed("a number past 64 bits"))
    }

    fn usize(&mut self) -> Read<usize> {
        let v = self.u64()?;
        usize::try_from(v).map_err(|_| self.malformed("a number past this machine's usize"))
    }

    /// A count of items each at least one byte long: never more than the
    /// bytes left, so no allocation outgrows the input.
    fn count(&mut self) -> Read<usize> {
        let n = self.usize()?;
        if n > self.buf.len() - self.at {
            return Err(self.malformed("a count larger than the bytes left"));
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Read<&[u8]> {
        let n = self.count()?;
        self.take(n)
    }

    fn str(&mut self) -> Read<&str> {
        let at = self.at;
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|_| ImageError::Malformed {
            at: HEADER_LEN + at,
            what: "a string that is not UTF-8".into(),
        })
    }

    fn string(&mut self) -> Read<String> {
        self.str().map(str::to_owned)
    }

    fn time(&mut self) -> Read<Timestamp> {
        let ms = self.u64()?;
        if ms > Timestamp::MAX.as_millis() {
            return Err(self.malformed("a time past the end of time"));
        }
        Ok(Timestamp::from_millis(ms))
    }

    fn opt_time(&mut self) -> Read<Option<Timestamp>> {
        Ok(if self.bool()? {
            Some(self.time()?)
        } else {
            None
        })
    }

    fn job(&mut self) -> Read<JobId> {
        let b = self.take(16)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Ok(JobId::from_uuid(uuid::Uuid::from_bytes(a)))
    }

    fn id<T>(&mut self, make: impl FnOnce(&str) -> Result<T, Error>) -> Read<T> {
        let at = self.at;
        let s = self.str()?;
        make(s).map_err(|e| ImageError::Malformed {
            at: HEADER_LEN + at,
            what: e.to_string().into(),
        })
    }

    fn key(&mut self) -> Read<GraphKey> {
        let project = self.id(ProjectId::new)?;
        let graph = self.id(GraphId::new)?;
        Ok(GraphKey::new(project, graph))
    }

    fn state(&mut self) -> Read<GraphState> {
        let code = self.u8()?;
        GraphState::from_code(code).ok_or_else(|| self.malformed("an unknown graph state"))
    }

    fn status(&mut self) -> Read<TaskStatus> {
        let code = self.u8()?;
        TaskStatus::ALL
            .get(usize::from(code))
            .copied()
            .ok_or_else(|| self.malformed("an unknown task status"))
    }

    fn operation(&mut self) -> Read<Operation> {
        let code = self.u8()?;
        Operation::ALL
            .get(usize::from(code))
            .copied()
            .ok_or_else(|| self.malformed("an unknown operation"))
    }

    fn image(&mut self) -> Read<Image> {
        let n = self.count()?;
        let mut graphs = Vec::with_capacity(n);
        for _ in 0..n {
            graphs.push(self.graph()?);
        }
        let n = self.count()?;
        let mut absent = Vec::with_capacity(n);
        for _ in 0..n {
            let key = self.key()?;
            absent.push((key, self.window()?));
        }
        Ok(Image { graphs, absent })
    }

    fn graph(&mut self) -> Read<GraphImage> {
        let key = self.key()?;
        let state = self.state()?;
        let epoch = Epoch(self.u64()?);
        let created_at = self.time()?;
        let updated_at = self.time()?;
        let next_seq = self.u64()?;
        let lifecycle = if self.bool()? {
            Some(self.job()?)
        } else {
            None
        };
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let n = self.count()?;
            list.reserve(n);
            for _ in 0..n {
                list.push(self.task()?);
            }
        }
        let [live, done] = lists;
        let window = self.window()?;
        Ok(GraphImage {
            key,
            state,
            epoch,
            created_at,
            updated_at,
            next_seq,
            lifecycle,
            live,
            done,
            window,
        })
    }

    fn task(&mut self) -> Read<TaskImage> {
        let id = self.job()?;
        let kind = self.kind()?;
        let epoch = Epoch(self.u64()?);
        let seq = self.u64()?;
        let status = self.status()?;
        let progress = self.u8()?;
        if progress > 100 {
            return Err(self.malformed("a progress past 100"));
        }
        let stoppable = self.bool()?;
        let created_at = self.time()?;
        let started_at = self.opt_time()?;
        let ended_at = self.opt_time()?;
        let deadline = self.opt_time()?;
        let reason = if self.bool()? {
            Some(self.reason()?)
        } else {
            None
        };
        let payload = Payload::new(self.bytes()?);
        Ok(TaskImage {
            id,
            kind,
            epoch,
            seq,
            status,
            progress,
            stoppable,
            created_at,
            started_at,
            ended_at,
            deadline,
            reason,
            payload,
        })
    }

    fn kind(&mut self) -> Read<TaskKind> {
        Ok(match self.u8()? {
            0 => TaskKind::Start,
            1 => TaskKind::Stop,
            2 => TaskKind::Restart,
            3 => TaskKind::Import,
            4 => TaskKind::Export,
            5 => TaskKind::Clear {
                clear_metadata: self.bool()?,
            },
            6 => TaskKind::Host(self.id(HostKind::new)?),
            _ => return Err(self.malformed("an unknown task kind")),
        })
    }

    fn reason(&mut self) -> Read<FailReason> {
        Ok(match self.u8()? {
            0 => FailReason::ForceRestarted(self.job()?),
            1 => FailReason::Superseded(self.job()?),
            2 => FailReason::Cancelled,
            3 => FailReason::TimedOut,
            4 => FailReason::Interrupted,
            5 => FailReason::Host(self.str()?.into()),
            _ => return Err(self.malformed("an unknown failure reason")),
        })
    }

    fn window(&mut self) -> Read<WindowImage> {
        let next = self.u64()?;
        let n = self.count()?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let id = self.id(RequestId::new)?;
            let at = self.time()?;
            let n = self.u64()?;
            let op = self.u8()?;
            if op > 12 {
                return Err(self.malformed("an unknown operation"));
            }
            let job = if self.bool()? {
                Some(self.job()?)
            } else {
                None
            };
            let asked = Asked { op, job };
            let answer = match self.u8()? {
                0 => Ok(self.outcome()?),
                1 => Err(self.error()?),
                _ => return Err(self.malformed("an answer that is neither Ok nor Err")),
            };
            entries.push(Answered {
                id,
                at,
                n,
                asked,
                answer,
            });
        }
        Ok(WindowImage { next, entries })
    }

    fn outcome(&mut self) -> Read<Outcome> {
        Ok(match self.u8()? {
            0 => Outcome::Created,
            1 => Outcome::Removed {
                voided: self.usize()?,
            },
            2 => Outcome::Job {
                job: self.job()?,
                epoch: Epoch(self.u64()?),
            },
            3 => Outcome::Restarted(Restart {
                job: self.job()?,
                epoch: Epoch(self.u64()?),
                failed: self.usize()?,
            }),
            4 => Outcome::Updated,
            5 => Outcome::Expired {
                timed_out: self.usize()?,
                evicted: self.usize()?,
            },
            6 => Outcome::Recovered {
                interrupted: self.usize()?,
                abnormal: self.bool()?,
            },
            _ => return Err(self.malformed("an unknown outcome")),
        })
    }

    fn id_kind(&mut self) -> Read<IdKind> {
        Ok(match self.u8()? {
            0 => IdKind::Project,
            1 => IdKind::Graph,
            2 => IdKind::Job,
            3 => IdKind::TaskKind,
            4 => IdKind::Request,
            _ => return Err(self.malformed("an unknown id kind")),
        })
    }

    fn error(&mut self) -> Read<Error> {
        Ok(match self.u8()? {
            0 => Error::InvalidId {
                kind: self.id_kind()?,
                value: self.string()?,
                reason: self.string()?.into(),
            },
            1 => Error::InvalidArgument {
                what: self.string()?.into(),
                reason: self.string()?,
            },
            2 => Error::GraphNotFound { key: self.key()? },
            3 => Error::GraphExists { key: self.key()? },
            4 => Error::TaskNotFound {
                key: self.key()?,
                job: self.job()?,
            },
            5 => Error::TransitionRefused {
                key: self.key()?,
                state: self.state()?,
                op: self.operation()?,
            },
            6 => Error::TaskTerminal {
                key: self.key()?,
                job: self.job()?,
                status: self.status()?,
            },
            7 => Error::StaleEpoch {
                key: self.key()?,
                job: self.job()?,
                reported: Epoch(self.u64()?),
                current: Epoch(self.u64()?),
            },
            8 => Error::ReportRefused {
                key: self.key()?,
                job: self.job()?,
                status: self.status()?,
                report: self.string()?.into(),
            },
            9 => Error::BadProgress {
                key: self.key()?,
                job: self.job()?,
                current: self.u8()?,
                reported: self.u8()?,
            },
            10 => Error::NotStoppable {
                key: self.key()?,
                job: self.job()?,
                kind: self.string()?,
            },
            11 => Error::TooManyGraphs {
                key: self.key()?,
                limit: self.usize()?,
            },
            12 => Error::TooManyTasks {
                key: self.key()?,
                limit: self.usize()?,
            },
            13 => Error::NoJobReceiver {
                key: self.key()?,
                op: self.operation()?,
            },
            14 => Error::ShutDown {
                key: self.key()?,
                op: self.operation()?,
            },
            15 => Error::DuplicateJobId {
                key: self.key()?,
                job: self.job()?,
            },
            16 => Error::CommitLog {
                key: self.key()?,
                source: LogError::msg(self.string()?),
            },
            18 => Error::ProjectFull {
                key: self.key()?,
                limit: self.usize()?,
            },
            17 => Error::RequestReused {
                key: self.key()?,
                request: self.id(RequestId::new)?,
                first: self.string()?,
                op: self.string()?,
            },
            _ => return Err(self.malformed("an unknown error")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_their_edges_and_refuse_past_64_bits() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::MAX >> 1,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut w = Writer(Vec::new());
            w.u64(v);
            let mut r = Reader { buf: &w.0, at: 0 };
            assert_eq!(r.u64().unwrap(), v);
            assert_eq!(r.at, w.0.len());
        }
        let too_long = [0xff; 11];
        assert!(
            Reader {
                buf: &too_long,
                at: 0
            }
            .u64()
            .is_err()
        );
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(
            Reader {
                buf: &overflow,
                at: 0
            }
            .u64()
            .is_err()
        );
    }

    #[test]
    fn a_count_larger_than_the_bytes_left_is_refused_before_allocating() {
        let mut w = Writer(Vec::new());
        w.u64(u64::MAX >> 8);
        let mut r = Reader { buf: &w.0, at: 0 };
        assert!(matches!(r.count(), Err(ImageError::Malformed { .. })));
    }

    #[test]
    fn the_checksum_changes_with_any_single_byte() {
        let body = b"some body bytes".to_vec();
        let base = fnv1a(b"head", &body);
        for i in 0..body.len() {
            for bit in 0..8 {
                let mut b = body.clone();
                b[i] ^= 1 << bit;
                assert_ne!(fnv1a(b"head", &b), base);
            }
        }
    }
}
