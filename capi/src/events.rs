//! Event subscriptions and events.
#![allow(non_camel_case_types)]

use std::time::Duration;

use graph_lifecycle::{Change, Event, EventError, Subscription};

use crate::args::{Out, out_text};
use crate::engine::{EngineObj, glc_engine};
use crate::handles::{self, Kind};
use crate::status::{Fail, boundary, glc_status};
use crate::types::{
    GLC_WAIT_FOREVER, fail_reason, glc_change_kind, glc_event_info, glc_fail_reason,
    glc_graph_state, glc_job_id, glc_task_kind, glc_task_status, opt_text, reason_text, task_kind,
};

/// A stream of the engine's events: every committed change, numbered. Made
/// by `glc_subscribe`, freed by `glc_subscription_free`. A subscriber that
/// falls more than the configured `event_buffer` events behind is cut off
/// (`GLC_LAGGED`); it never slows the engine down. Usable from several
/// threads at once (each event goes to one of them).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct glc_subscription {
    /// The handle's value; 0 is no subscription.
    pub id: u64,
}

/// One event, received from a subscription. Freed by `glc_event_free`.
/// Read-only: usable from any number of threads at once.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct glc_event {
    /// The handle's value; 0 is no event.
    pub id: u64,
}

impl Kind for Subscription {
    const KIND: u8 = 6;
    const NAME: &'static str = "glc_subscription";
}

/// An event with its reason text, so that C can borrow both.
pub(crate) struct EventObj {
    event: Event,
    reason: Option<Box<str>>,
}

impl Kind for EventObj {
    const KIND: u8 = 7;
    const NAME: &'static str = "glc_event";
}

/// Subscribes to the engine's events from now on, and writes the
/// subscription's handle to `*out`.
///
/// Returns `GLC_OK`, `GLC_INVALID_ARGUMENT`, `GLC_INVALID_HANDLE` or
/// `GLC_HANDLE_LIMIT`.
///
/// Ownership: the caller owns the handle and frees it with
/// `glc_subscription_free`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// `out` must be NULL or valid for writing one `glc_subscription`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_subscribe(
    engine: glc_engine,
    out: *mut glc_subscription,
) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        let sub = handles::get::<EngineObj>(engine.id)?.engine.subscribe();
        let id = handles::insert(sub)?;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out.put(glc_subscription { id }) };
        Ok(())
    })
}

fn event_error(e: EventError, out_missed: &Out<u64>, timeout_ms: Option<u64>) -> Fail {
    match e {
        EventError::Lagged { missed } => {
            // SAFETY: `out_missed` is NULL or writable by the caller's
            // promise, as the exported functions document.
            unsafe { out_missed.put(missed) };
            Fail::new(
                glc_status::GLC_LAGGED,
                format!(
                    "the subscriber fell behind and was cut off at event {missed}: resubscribe"
                ),
            )
        }
        EventError::Empty => match timeout_ms {
            Some(ms) => Fail::new(
                glc_status::GLC_TIMEOUT,
                format!("no event arrived within {ms} ms"),
            ),
            None => Fail::new(glc_status::GLC_EMPTY, "no event is waiting"),
        },
        EventError::Closed => Fail::new(
            glc_status::GLC_CLOSED,
            "the engine is gone and every event was read",
        ),
    }
}

/// Registers a received event and writes its handle.
///
/// # Safety
///
/// As [`Out::put`].
unsafe fn put_event(out: &Out<glc_event>, event: Event) -> Result<(), Fail> {
    let reason = match &event.change {
        Change::Task { reason, .. } => reason_text(reason.as_ref()),
        _ => None,
    };
    let id = handles::insert(EventObj { event, reason })?;
    // SAFETY: forwarded from the caller.
    unsafe { out.put(glc_event { id }) };
    Ok(())
}

/// Receives the next event, waiting at most `timeout_ms` milliseconds
/// (`GLC_WAIT_FOREVER`: no limit; 0: do not wait), and writes its handle to
/// `*out`.
///
/// Returns `GLC_OK`; `GLC_TIMEOUT` if none arrived in time; `GLC_LAGGED`
/// once a subscriber that was cut off has read every event it had, writing
/// the sequence number of the first event it missed to `*out_missed` if
/// that is not NULL (resubscribe, and re-read the state); `GLC_CLOSED` once
/// the engine is gone and every event read; `GLC_INVALID_ARGUMENT`;
/// `GLC_INVALID_HANDLE`; `GLC_HANDLE_LIMIT`.
///
/// Ownership: the caller owns the event handle and frees it with
/// `glc_event_free`.
///
/// Thread safety: any thread; several threads may receive on one
/// subscription at once. Freeing the subscription does not wake a thread
/// waiting on it: wait with a finite timeout if another thread may free
/// it.
///
/// # Safety
///
/// `out` must be NULL or valid for writing one `glc_event`; `out_missed`
/// NULL or valid for writing one `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_subscription_recv(
    sub: glc_subscription,
    timeout_ms: u64,
    out: *mut glc_event,
    out_missed: *mut u64,
) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        let out_missed = Out::optional(out_missed);
        let s = handles::get::<Subscription>(sub.id)?;
        let event = if timeout_ms == GLC_WAIT_FOREVER {
            s.recv()
        } else {
            s.recv_timeout(Duration::from_millis(timeout_ms))
        }
        .map_err(|e| event_error(e, &out_missed, Some(timeout_ms)))?;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { put_event(&out, event) }
    })
}

/// Takes the next event if one is waiting, without waiting, and writes its
/// handle to `*out`.
///
/// Returns `GLC_OK`; `GLC_EMPTY` if none is waiting; `GLC_LAGGED`,
/// `GLC_CLOSED` and the rest as `glc_subscription_recv`.
///
/// Ownership: as `glc_subscription_recv`.
///
/// Thread safety: any thread, concurrently with any call on the handle.
///
/// # Safety
///
/// As `glc_subscription_recv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_subscription_try_recv(
    sub: glc_subscription,
    out: *mut glc_event,
    out_missed: *mut u64,
) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        let out_missed = Out::optional(out_missed);
        let event = handles::get::<Subscription>(sub.id)?
            .try_recv()
            .map_err(|e| event_error(e, &out_missed, None))?;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { put_event(&out, event) }
    })
}

/// Frees a subscription handle: the engine forgets the subscriber at its
/// next event.
///
/// Returns `GLC_OK` (also for the zero handle), or `GLC_INVALID_HANDLE` for
/// a handle already freed or never handed out.
///
/// Thread safety: any thread, also while other threads use the handle.
#[unsafe(no_mangle)]
pub extern "C" fn glc_subscription_free(sub: glc_subscription) -> glc_status {
    boundary(|| {
        handles::remove::<Subscription>(sub.id)?;
        Ok(())
    })
}

/// Fills `*out` with the event: its sequence number, time, graph, and what
/// changed (`out->change` tells which of the other fields mean something;
/// the others are zero).
///
/// Returns `GLC_OK`, `GLC_INVALID_ARGUMENT` or `GLC_INVALID_HANDLE`.
///
/// Ownership: the strings `*out` points to belong to the event handle:
/// valid, unchanged, until `glc_event_free` on it.
///
/// Thread safety: any thread, concurrently with any call on the handle.
///
/// # Safety
///
/// `out` must be NULL or valid for writing one `glc_event_info`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_event_get_info(
    event: glc_event,
    out: *mut glc_event_info,
) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        let info = handles::with::<EventObj, _>(event.id, |e| {
            let ev = &e.event;
            let (project, project_len) = out_text(ev.key.project.as_str());
            let (graph, graph_len) = out_text(ev.key.graph.as_str());
            let mut info = glc_event_info {
                seq: ev.seq,
                at_ms: ev.at.as_millis(),
                project,
                project_len,
                graph,
                graph_len,
                change: glc_change_kind::GLC_CHANGE_GRAPH_CREATED,
                from: glc_graph_state::GLC_STATE_STOPPED,
                to: glc_graph_state::GLC_STATE_STOPPED,
                epoch: 0,
                job: glc_job_id::default(),
                task_kind: glc_task_kind::GLC_TASK_START,
                kind_name: std::ptr::null(),
                kind_name_len: 0,
                clear_metadata: false,
                status: glc_task_status::GLC_TASK_PENDING,
                progress: 0,
                reason: glc_fail_reason::GLC_REASON_NONE,
                reason_job: glc_job_id::default(),
                reason_text: std::ptr::null(),
                reason_text_len: 0,
                evicted: 0,
            };
            match &ev.change {
                Change::GraphCreated => {}
                Change::GraphRemoved => info.change = glc_change_kind::GLC_CHANGE_GRAPH_REMOVED,
                Change::State { from, to, epoch } => {
                    info.change = glc_change_kind::GLC_CHANGE_STATE;
                    info.from = (*from).into();
                    info.to = (*to).into();
                    info.epoch = epoch.0;
                }
                Change::Task {
                    job,
                    kind,
                    status,
                    progress,
                    reason,
                } => {
                    info.change = glc_change_kind::GLC_CHANGE_TASK;
                    info.job = (*job).into();
                    (
                        info.task_kind,
                        info.clear_metadata,
                        info.kind_name,
                        info.kind_name_len,
                    ) = task_kind(kind);
                    info.status = (*status).into();
                    info.progress = *progress;
                    (info.reason, info.reason_job) = fail_reason(reason.as_ref());
                    (info.reason_text, info.reason_text_len) = opt_text(e.reason.as_deref());
                }
                Change::Evicted { count } => {
                    info.change = glc_change_kind::GLC_CHANGE_EVICTED;
                    info.evicted = *count;
                }
            }
            info
        })?;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out.put(info) };
        Ok(())
    })
}

/// Frees an event handle.
///
/// Returns `GLC_OK` (also for the zero handle), or `GLC_INVALID_HANDLE` for
/// a handle already freed or never handed out.
///
/// Ownership: what `glc_event_get_info` borrowed from the handle is invalid
/// from this call on.
///
/// Thread safety: any thread, also while other threads use the handle.
#[unsafe(no_mangle)]
pub extern "C" fn glc_event_free(event: glc_event) -> glc_status {
    boundary(|| {
        handles::remove::<EventObj>(event.id)?;
        Ok(())
    })
}
