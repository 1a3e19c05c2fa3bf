//! The event stream: the core's events ([`graph_lifecycle::events`]) of
//! one project, as server-sent events, at `GET /v2/{project_id}/events`
//! (an extension beside GES's paths; `docs/REST.md`, section 16).
//!
//! The request passes the same gate as every other call (a token or a
//! signature, and a credential that covers the project), so a reader sees
//! only the events of a project it may read.
//!
//! # One hub, many streams
//!
//! The server's [`EventHub`] subscribes to the engine once, when the first
//! stream opens, and from then on one thread of its own reads the core's
//! bus: it renders each event once, keeps the last
//! [`EventLimits::history`] of them for resuming, and offers each to the
//! streams of its project without waiting: a stream that already has
//! [`EventLimits::queue`] events waiting is cut off, not waited for. So
//! neither the engine nor the hub ever waits on a reader, and a stream
//! holds at most its queue (events shared with the other streams, not
//! copied) and what its connection buffers.
//!
//! # What a stream carries
//!
//! Each event is an SSE event `change` whose `id` is the core's sequence
//! number and whose `data` is one line of JSON ([`render`] says which
//! fields). A stream that was cut off gets an event `resync`, then goes on
//! with the events from that point: what it missed in between is lost,
//! and its reader re-reads the current state (the graph list, the task
//! center). A request with `Last-Event-ID` first gets the events of its
//! project that the hub received after that one, if the hub still holds
//! it; if not (too old, or from before the hub's time), `resync` first.
//! A comment line is sent every [`EventLimits::keep_alive`], so that
//! proxies and clients see a live connection. At shutdown every stream
//! ends, and its request with it, so the drain does not wait for them.
//!
//! Streams are bounded: at most [`EventLimits::max_streams`] on the
//! server (503 `GES.9015` past it) and
//! [`EventLimits::max_streams_per_project`] per project (429 `GES.9013`).

use std::collections::{HashMap, VecDeque};
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use graph_lifecycle::{Change, Engine, Event, EventError, ProjectId, TaskStatus};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::api::{ApiState, ProjectPath};
use crate::error::{ApiError, codes};
use crate::wire;

/// What the event streams may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLimits {
    /// Events waiting for one stream before it is cut off and told to
    /// resync.
    pub queue: usize,
    /// Events the hub keeps for resuming with `Last-Event-ID`.
    pub history: usize,
    /// Most streams open on the server.
    pub max_streams: usize,
    /// Most streams open per project.
    pub max_streams_per_project: usize,
    /// How often a stream with nothing to say sends a comment.
    pub keep_alive: Duration,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            queue: 256,
            history: 4_096,
            max_streams: 64,
            max_streams_per_project: 8,
            keep_alive: Duration::from_secs(15),
        }
    }
}

/// How often the hub's thread looks whether it should stop.
const HUB_POLL: Duration = Duration::from_millis(100);

/// One rendered event, shared by the history and every stream.
#[derive(Debug)]
struct Item {
    seq: u64,
    project: ProjectId,
    frame: Bytes,
}

/// A registered stream: its receiver, its cut-off mark, and the events to
/// send first (`None`: the stream must resync).
struct Registration {
    rx: mpsc::Receiver<Arc<Item>>,
    cut: Arc<AtomicU64>,
    replay: Option<Vec<Bytes>>,
}

/// A stream's place in the hub.
#[derive(Debug)]
struct Slot {
    project: ProjectId,
    tx: mpsc::Sender<Arc<Item>>,
    /// Set, to the first event not delivered, when the hub cuts it off.
    cut: Arc<AtomicU64>,
}

const NOT_CUT: u64 = u64::MAX;

#[derive(Debug, Default)]
struct HubState {
    /// Whether the hub's thread runs (it starts with the first stream).
    started: bool,
    closed: bool,
    history: VecDeque<Arc<Item>>,
    slots: Vec<Slot>,
    /// Open streams per project, and in all.
    seats: HashMap<ProjectId, usize>,
    open: usize,
}

#[derive(Debug)]
struct Shared {
    engine: Engine,
    limits: EventLimits,
    state: Mutex<HubState>,
    closing: AtomicBool,
}

/// The server's event hub (see the [module docs](self)); cheap to clone.
#[derive(Debug, Clone)]
pub struct EventHub(Arc<Shared>);

impl EventHub {
    /// A hub over `engine`'s events; it subscribes when the first stream
    /// opens.
    pub fn new(engine: Engine, limits: EventLimits) -> Self {
        let limits = EventLimits {
            queue: limits.queue.max(1),
            history: limits.history.max(1),
            max_streams: limits.max_streams.max(1),
            max_streams_per_project: limits.max_streams_per_project.max(1),
            keep_alive: limits.keep_alive.max(Duration::from_millis(10)),
        };
        Self(Arc::new(Shared {
            engine,
            limits,
            state: Mutex::new(HubState::default()),
            closing: AtomicBool::new(false),
        }))
    }

    /// The limits in force.
    pub fn limits(&self) -> EventLimits {
        self.0.limits
    }

    /// Ends every stream and refuses new ones; the hub's thread stops.
    /// Called at shutdown.
    pub fn close(&self) {
        self.0.closing.store(true, Ordering::Release);
        let mut st = self.0.lock();
        st.closed = true;
        // Dropping the senders ends the streams.
        st.slots.clear();
        st.history.clear();
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.0.lock().open
    }

    /// Takes a seat for a stream of `project`, or says why not.
    fn seat(&self, project: &ProjectId) -> Result<Seat, ApiError> {
        let mut st = self.0.lock();
        if st.closed {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::SHUTTING_DOWN,
                "the server is shutting down; retry",
            ));
        }
        let limits = self.0.limits;
        if st.open >= limits.max_streams {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::SERVER_BUSY,
                format!(
                    "the server has {} event streams open, its limit; retry later",
                    st.open
                ),
            ));
        }
        let here = st.seats.get(project).copied().unwrap_or(0);
        if here >= limits.max_streams_per_project {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                codes::PROJECT_QUOTA,
                format!(
                    "project {project} has {here} event streams open, its limit: close one first"
                ),
            ));
        }
        st.open += 1;
        *st.seats.entry(project.clone()).or_insert(0) += 1;
        Ok(Seat {
            hub: Arc::downgrade(&self.0),
            project: project.clone(),
        })
    }

    /// Registers a stream of `project`: its receiver, and the events to
    /// send first (those after `last`, if the hub holds `last`; `None` if
    /// `last` was given and is not held: the stream must resync).
    fn register(&self, project: &ProjectId, last: Option<u64>) -> Option<Registration> {
        let mut st = self.0.lock();
        if st.closed {
            return None;
        }
        if !st.started {
            // Subscribed under the lock: no event is committed between
            // the subscription and the first stream's registration that
            // this stream would not get.
            let sub = self.0.engine.subscribe();
            let weak = Arc::downgrade(&self.0);
            let spawned = std::thread::Builder::new()
                .name("ges-events".into())
                .spawn(move || hub_loop(weak, sub));
            if spawned.is_err() {
                return None;
            }
            st.started = true;
        }
        let replay = match last {
            None => Some(Vec::new()),
            Some(seq) => st
                .history
                .iter()
                .position(|i| i.seq == seq && i.project == *project)
                .map(|at| {
                    st.history
                        .iter()
                        .skip(at + 1)
                        .filter(|i| i.project == *project)
                        .map(|i| i.frame.clone())
                        .collect()
                }),
        };
        let (tx, rx) = mpsc::channel(self.0.limits.queue);
        let cut = Arc::new(AtomicU64::new(NOT_CUT));
        st.slots.push(Slot {
            project: project.clone(),
            tx,
            cut: cut.clone(),
        });
        Some(Registration { rx, cut, replay })
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panic elsewhere while the lock was held leaves plain data:
        // go on with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `item` and offers it to the streams of its project; cuts off
    /// the ones whose queue is full.
    fn publish(&self, item: Item) {
        let item = Arc::new(item);
        let mut st = self.lock();
        if st.closed {
            return;
        }
        if st.history.len() >= self.limits.history {
            st.history.pop_front();
        }
        st.history.push_back(item.clone());
        st.slots.retain(|s| {
            if s.project != item.project {
                return !s.tx.is_closed();
            }
            match s.tx.try_send(item.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.cut.store(item.seq, Ordering::Release);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// The hub missed events (its own subscription was cut off at
    /// `missed`): every stream resyncs, and nothing before the gap can be
    /// resumed from.
    fn gap(&self, missed: u64) {
        let mut st = self.lock();
        st.history.clear();
        for s in st.slots.drain(..) {
            s.cut.store(missed, Ordering::Release);
        }
    }
}

/// The hub's thread: reads the core's bus until the hub closes, is
/// dropped, or the engine is gone.
fn hub_loop(hub: Weak<Shared>, mut sub: graph_lifecycle::Subscription) {
    loop {
        let Some(shared) = hub.upgrade() else { return };
        if shared.closing.load(Ordering::Acquire) {
            return;
        }
        match sub.recv_timeout(HUB_POLL) {
            Ok(event) => {
                let frame = render(&event);
                shared.publish(Item {
                    seq: event.seq,
                    project: event.key.project.clone(),
                    frame,
                });
            }
            Err(EventError::Empty) => {}
            Err(EventError::Lagged { missed }) => {
                sub = shared.engine.subscribe();
                shared.gap(missed);
            }
            Err(EventError::Closed) => {
                let mut st = shared.lock();
                st.closed = true;
                st.slots.clear();
                return;
            }
        }
    }
}

/// An event as its SSE frame: `id` the sequence number, `event: change`,
/// and `data` one line of JSON with `seq`, `at` (UTC,
/// `yyyy-MM-ddTHH:mm:ss`), `graph` and `change`, which is one of:
///
/// - `graph_created`, `graph_removed`;
/// - `state`, with `from` and `to` (the core's state names), `status` (the
///   GES status code of `to`) and `epoch`;
/// - `task`, with `job_id`, `job_type`, `job_name`, `status` (GES's job
///   status), `progress` and, for a failed job, `fail_reason`;
/// - `evicted`, with `count` (terminal jobs dropped by retention).
pub fn render(event: &Event) -> Bytes {
    let mut data = Map::new();
    data.insert("seq".into(), json!(event.seq));
    data.insert("at".into(), json!(wire::format_time(event.at)));
    data.insert("graph".into(), json!(event.key.graph.to_string()));
    match &event.change {
        Change::GraphCreated => {
            data.insert("change".into(), json!("graph_created"));
        }
        Change::GraphRemoved => {
            data.insert("change".into(), json!("graph_removed"));
        }
        Change::State { from, to, epoch } => {
            data.insert("change".into(), json!("state"));
            data.insert("from".into(), json!(from.name()));
            data.insert("to".into(), json!(to.name()));
            data.insert("status".into(), json!(wire::graph_status_code(*to)));
            data.insert("epoch".into(), json!(epoch.0));
        }
        Change::Task {
            job,
            kind,
            status,
            progress,
            reason,
        } => {
            data.insert("change".into(), json!("task"));
            data.insert("job_id".into(), json!(job.to_string()));
            data.insert("job_type".into(), json!(wire::job_type(kind)));
            data.insert("job_name".into(), json!(kind.to_string()));
            data.insert("status".into(), json!(wire::job_status(*status)));
            data.insert("progress".into(), json!(progress));
            if matches!(status, TaskStatus::Failed | TaskStatus::Cancelled) {
                let why = reason
                    .as_ref()
                    .map_or_else(|| status.name().to_owned(), ToString::to_string);
                data.insert("fail_reason".into(), json!(why));
            }
        }
        Change::Evicted { count } => {
            data.insert("change".into(), json!("evicted"));
            data.insert("count".into(), json!(count));
        }
    }
    // serde_json writes no raw line break inside a string, so the data
    // is one line.
    let data = Value::Object(data).to_string();
    Bytes::from(format!(
        "id: {}\nevent: change\ndata: {data}\n\n",
        event.seq
    ))
}

/// The `resync` event: `data` holds `missed`, the first event the stream
/// did not get, when known.
fn resync_frame(missed: Option<u64>) -> Bytes {
    let data = match missed {
        Some(seq) => json!({ "missed": seq }),
        None => json!({ "missed": null }),
    };
    Bytes::from(format!("event: resync\ndata: {data}\n\n"))
}

/// The `Last-Event-ID` header as a sequence number: `Ok(None)` if absent;
/// `Err` if present and not one (the stream then resyncs).
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ()> {
    let mut values = headers.get_all("last-event-id").iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(());
    }
    let text = v.to_str().map_err(drop)?.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<u64>().map(Some).map_err(drop)
}

/// `GET /v2/{project_id}/events`: the project's event stream.
pub(crate) async fn stream(
    State(st): State<Arc<ApiState>>,
    ProjectPath(project): ProjectPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let hub = &st.events;
    let seat = hub.seat(&project)?;
    let last = last_event_id(&headers);
    let Some(Registration { rx, cut, replay }) = hub.register(&project, last.unwrap_or(None))
    else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::SHUTTING_DOWN,
            "the server is shutting down; retry",
        ));
    };
    let mut pending = VecDeque::new();
    // The reconnection delay a client should use, and a first line so
    // that the client sees the stream open.
    pending.push_back(Bytes::from_static(b"retry: 2000\n: stream open\n\n"));
    match (last, replay) {
        (Ok(_), Some(events)) => pending.extend(events),
        _ => pending.push_back(resync_frame(None)),
    }
    let keep_alive = hub.limits().keep_alive;
    let body = EventBody {
        hub: hub.clone(),
        project,
        rx: Some(rx),
        cut,
        pending,
        tick: Box::pin(tokio::time::sleep(keep_alive)),
        keep_alive,
        _seat: seat,
    };
    let mut r = (StatusCode::OK, Body::new(body)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok(r)
}

/// A stream's seat in the hub's counts, given back when the stream ends.
#[derive(Debug)]
struct Seat {
    hub: Weak<Shared>,
    project: ProjectId,
}

impl Drop for Seat {
    fn drop(&mut self) {
        let Some(shared) = self.hub.upgrade() else {
            return;
        };
        let mut st = shared.lock();
        st.open = st.open.saturating_sub(1);
        if let Some(n) = st.seats.get_mut(&self.project) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.seats.remove(&self.project);
            }
        }
    }
}

/// The body of one event stream.
struct EventBody {
    hub: EventHub,
    project: ProjectId,
    rx: Option<mpsc::Receiver<Arc<Item>>>,
    cut: Arc<AtomicU64>,
    /// Frames to send before the next event: the opening, the replay, a
    /// resync.
    pending: VecDeque<Bytes>,
    tick: Pin<Box<tokio::time::Sleep>>,
    keep_alive: Duration,
    _seat: Seat,
}

impl HttpBody for EventBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(frame) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(hyper::body::Frame::data(frame))));
            }
            let Some(rx) = this.rx.as_mut() else {
                return Poll::Ready(None);
            };
            match rx.poll_recv(cx) {
                Poll::Ready(Some(item)) => {
                    return Poll::Ready(Some(Ok(hyper::body::Frame::data(item.frame.clone()))));
                }
                Poll::Ready(None) => {
                    let cut = this.cut.load(Ordering::Acquire);
                    if cut == NOT_CUT {
                        // The hub closed: the stream ends.
                        this.rx = None;
                        return Poll::Ready(None);
                    }
                    // Cut off: say so, and go on from here.
                    this.pending.push_back(resync_frame(Some(cut)));
                    match this.hub.register(&this.project, None) {
                        Some(Registration { rx, cut, .. }) => {
                            this.rx = Some(rx);
                            this.cut = cut;
                        }
                        None => this.rx = None,
                    }
                    continue;
                }
                Poll::Pending => {}
            }
            match this.tick.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let next = tokio::time::Instant::now() + this.keep_alive;
                    this.tick.as_mut().reset(next);
                    return Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(
                        b": keep-alive\n\n",
                    )))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.rx.is_none()
    }
}
