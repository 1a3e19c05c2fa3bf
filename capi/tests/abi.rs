//! The C ABI called from Rust, through the same `extern "C"` functions a C
//! host links: the main paths of the contract, and every kind of misuse
//! the ABI promises to turn into a status.

mod common;

use std::ffi::c_char;
use std::mem::MaybeUninit;
use std::ptr::{null, null_mut};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use common::*;
use graph_lifecycle_capi::*;

use glc_status::*;

fn s(x: &str) -> (*const c_char, usize) {
    (x.as_ptr().cast(), x.len())
}

/// A start job travels from the channel to a worker, whose reports bring
/// the graph to running; the graph handle reads it without the engine, and
/// still reads it once the engine is gone.
#[test]
fn a_start_job_reaches_a_worker_whose_reports_make_the_graph_run() {
    let e = engine(None);
    let key = Key::new("tenant-a", "movies");
    let k = key.c();
    let mut graph = glc_graph::default();
    let mut start = glc_job_id::default();
    let mut job = glc_job::default();
    let payload = b"backup-7";
    // SAFETY: every pointer is to a live local or a slice with its length.
    unsafe {
        ok(glc_create_graph(e, &k, null(), 0, &mut graph));
        ok(glc_start(
            e,
            &k,
            payload.as_ptr().cast(),
            payload.len(),
            null(),
            0,
            &mut start,
        ));
        ok(glc_recv_job(e, 1_000, &mut job));
    }
    let (info, job_key, kind, bytes) = job_info(job);
    assert_eq!(info.id, start);
    assert_eq!(job_key, "tenant-a/movies");
    assert_eq!(info.kind, glc_task_kind::GLC_TASK_START);
    assert_eq!(kind, "start");
    assert_eq!(info.epoch, 0);
    assert_eq!(bytes, payload);

    let mut st = glc_graph_state::GLC_STATE_ABNORMAL;
    let mut epoch = 99;
    let mut serves = true;
    // SAFETY: live locals.
    unsafe {
        ok(glc_graph_get_state(graph, &mut st, &mut epoch));
        assert_eq!((st, epoch), (glc_graph_state::GLC_STATE_STARTING, 0));
        ok(glc_graph_serves_queries(graph, &mut serves));
        assert!(!serves);
    }
    ok(report(job, GLC_REPORT_STARTED, 0));
    ok(report(job, GLC_REPORT_PROGRESS, 50));
    ok(report(job, GLC_REPORT_SUCCEEDED, 0));
    // SAFETY: live locals; the epoch may be left out (NULL).
    unsafe {
        ok(glc_graph_get_state(graph, &mut st, null_mut()));
        assert_eq!(st, glc_graph_state::GLC_STATE_RUNNING);
        ok(glc_graph_serves_queries(graph, &mut serves));
        assert!(serves);
    }
    let (t, _) = task(e, &key, start);
    assert_eq!(t.status, glc_task_status::GLC_TASK_SUCCEEDED);
    assert_eq!(t.progress, 100);
    assert_ne!(t.started_at_ms, GLC_NO_TIME);
    assert_ne!(t.ended_at_ms, GLC_NO_TIME);
    assert_eq!(t.reason, glc_fail_reason::GLC_REASON_NONE);
    assert!(t.reason_text.is_null());

    let mut gi = MaybeUninit::<glc_graph_info>::uninit();
    // SAFETY: live locals.
    let gi = unsafe {
        ok(glc_get_graph_info(e, &k, gi.as_mut_ptr()));
        gi.assume_init()
    };
    assert_eq!(gi.state, glc_graph_state::GLC_STATE_RUNNING);
    assert_eq!(
        (gi.live_tasks, gi.retained_tasks, gi.has_job),
        (0, 1, false)
    );
    ok(glc_job_free(job));
    ok(glc_engine_free(e));
    // The graph handle outlives the engine, reading the last state.
    // SAFETY: a live local.
    unsafe { ok(glc_graph_get_state(graph, &mut st, null_mut())) };
    assert_eq!(st, glc_graph_state::GLC_STATE_RUNNING);
    ok(glc_graph_free(graph));
}

/// The forced restart in the middle of an import: in one step the import
/// fails as force-restarted, its token goes void and its worker's next
/// report is refused as STALE_EPOCH (409); the epoch grows; one restart
/// job is handed over, and a retry with the same request id gets the same
/// restart back instead of a second one.
#[test]
fn force_restart_mid_import_voids_it_and_a_retry_gets_the_same_restart() {
    let e = engine(None);
    let key = Key::new("tenant-a", "movies");
    running(e, &key);
    let k = key.c();
    let (src, src_len) = s("s3://bucket/edges.csv");
    let (ticket, ticket_len) = s("ticket-4711");
    let mut import = glc_job_id::default();
    let mut job = glc_job::default();
    let mut first = MaybeUninit::<glc_restart>::uninit();
    let mut again = MaybeUninit::<glc_restart>::uninit();
    let mut void = true;
    // SAFETY: every pointer is to a live local or a string with its length.
    let (first, again) = unsafe {
        ok(glc_import(
            e,
            &k,
            src.cast(),
            src_len,
            null(),
            0,
            &mut import,
        ));
        ok(glc_recv_job(e, 1_000, &mut job));
        ok(glc_job_is_void(job, &mut void));
        assert!(!void);
        ok(report(job, GLC_REPORT_PROGRESS, 40));
        ok(glc_force_restart(
            e,
            &k,
            ticket,
            ticket_len,
            first.as_mut_ptr(),
        ));
        ok(glc_force_restart(
            e,
            &k,
            ticket,
            ticket_len,
            again.as_mut_ptr(),
        ));
        (first.assume_init(), again.assume_init())
    };
    assert_eq!((first.epoch, first.failed), (1, 1));
    assert_eq!(again, first, "a retry is answered, not applied again");

    // SAFETY: a live local.
    unsafe { ok(glc_job_is_void(job, &mut void)) };
    assert!(void, "the import's token goes void at the restart");
    let refused = fails(
        report(job, GLC_REPORT_PROGRESS, 60),
        GLC_ENGINE_ERROR,
        "STALE_EPOCH",
    );
    assert_eq!(refused.http_status, 409);
    assert!(refused.message.contains("epoch 0"), "{refused:?}");
    ok(glc_job_free(job));

    // Exactly one restart job, the one the restart named.
    let mut restart = glc_job::default();
    // SAFETY: live locals.
    unsafe {
        ok(glc_recv_job(e, 1_000, &mut restart));
        fails(glc_try_recv_job(e, &mut job), GLC_EMPTY, "EMPTY");
    }
    let (info, _, kind, _) = job_info(restart);
    assert_eq!(
        (info.id, info.epoch, kind.as_str()),
        (first.job, 1, "restart")
    );
    ok(report(restart, GLC_REPORT_SUCCEEDED, 0));
    ok(glc_job_free(restart));
    assert_eq!(state(e, &key), glc_graph_state::GLC_STATE_RUNNING);

    let (t, reason) = task(e, &key, import);
    assert_eq!(t.status, glc_task_status::GLC_TASK_FAILED);
    assert_eq!(t.reason, glc_fail_reason::GLC_REASON_FORCE_RESTARTED);
    assert_eq!(t.reason_job, first.job);
    assert!(reason.starts_with("force-restarted by job"), "{reason}");
    ok(glc_engine_free(e));
}

/// A command carrying a request id is answered again on retry, success or
/// refusal, and the id cannot be reused for another operation.
#[test]
fn every_mutating_call_answers_a_retry_with_its_first_answer() {
    let e = engine(None);
    let key = Key::new("p", "g");
    let k = key.c();
    let (c, c_len) = s("create-once");
    let (st, st_len) = s("start-once");
    let (j1, j2) = (&mut glc_job_id::default(), &mut glc_job_id::default());
    // SAFETY: every pointer is to a live local or a string with its length.
    unsafe {
        ok(glc_create_graph(e, &k, c, c_len, null_mut()));
        ok(glc_create_graph(e, &k, c, c_len, null_mut()));
        fails(
            glc_create_graph(e, &k, null(), 0, null_mut()),
            GLC_ENGINE_ERROR,
            "GRAPH_EXISTS",
        );
        ok(glc_start(e, &k, null(), 0, st, st_len, j1));
        ok(glc_start(e, &k, null(), 0, st, st_len, j2));
        assert_eq!(j1, j2);
        fails(
            glc_stop(e, &k, st, st_len, null_mut()),
            GLC_ENGINE_ERROR,
            "REQUEST_ID_REUSED",
        );
        // A refusal with a request id is an answer too.
        let (r, r_len) = s("remove-1");
        let first = fails(
            glc_remove_graph(e, &k, r, r_len),
            GLC_ENGINE_ERROR,
            "TRANSITION_REFUSED",
        );
        let second = fails(
            glc_remove_graph(e, &k, r, r_len),
            GLC_ENGINE_ERROR,
            "TRANSITION_REFUSED",
        );
        assert_eq!(first.message, second.message);
        // One job for the two starts.
        let mut job = glc_job::default();
        ok(glc_recv_job(e, 1_000, &mut job));
        ok(glc_job_free(job));
        fails(glc_try_recv_job(e, &mut job), GLC_EMPTY, "EMPTY");
        // A request id the engine's rules refuse.
        let (bad, bad_len) = s("tab\there");
        fails(
            glc_stop(e, &k, bad, bad_len, null_mut()),
            GLC_ENGINE_ERROR,
            "INVALID_ID",
        );
    }
    ok(glc_engine_free(e));
}

/// Every lifecycle operation and the host task calls: stop, export,
/// clear with its metadata flag, remove; a host task registered, reported
/// by address, cancelled; a restart job refuses to be cancelled.
#[test]
fn every_operation_runs_through_the_abi() {
    let e = engine(None);
    let key = Key::new("p", "ops");
    running(e, &key);
    let k = key.c();
    let (dump, dump_len) = s("dump/");
    let (kind, kind_len) = s("pagerank");
    let params = b"{\"iterations\": 5}";
    let mut id = glc_job_id::default();
    let mut job = glc_job::default();
    let mut ticket = glc_job::default();
    let mut other = glc_job::default();
    // SAFETY: every pointer is to a live local or a slice with its length.
    unsafe {
        ok(glc_export(e, &k, dump.cast(), dump_len, null(), 0, &mut id));
        ok(glc_recv_job(e, 1_000, &mut job));
        let (info, _, _, payload) = job_info(job);
        assert_eq!(info.kind, glc_task_kind::GLC_TASK_EXPORT);
        assert_eq!(payload, b"dump/");
        ok(report(job, GLC_REPORT_SUCCEEDED, 0));
        ok(glc_job_free(job));

        ok(glc_register_task(
            e,
            &k,
            kind,
            kind_len,
            true,
            0,
            params.as_ptr().cast(),
            params.len(),
            null(),
            0,
            &mut ticket,
        ));
        let (info, _, name, payload) = job_info(ticket);
        assert_eq!(info.kind, glc_task_kind::GLC_TASK_HOST);
        assert_eq!(
            (name.as_str(), payload.as_slice()),
            ("pagerank", &params[..])
        );
        // A report by address, as a host that keeps (key, id, epoch).
        let addr = glc_task_ref {
            key: k,
            id: info.id,
            epoch: info.epoch,
        };
        ok(glc_report(
            e,
            &addr,
            GLC_REPORT_STARTED,
            0,
            null(),
            0,
            null(),
            0,
        ));
        let (msg, msg_len) = s("out of memory");
        ok(glc_report(
            e,
            &addr,
            GLC_REPORT_FAILED,
            0,
            msg,
            msg_len,
            null(),
            0,
        ));
        let (t, reason) = task(e, &key, info.id);
        assert_eq!(t.reason, glc_fail_reason::GLC_REASON_HOST);
        assert_eq!(reason, "out of memory");
        let mut void = false;
        ok(glc_job_is_void(ticket, &mut void));
        assert!(void, "a failure report voids the token");

        // Cancel a second one.
        ok(glc_register_task(
            e,
            &k,
            kind,
            kind_len,
            true,
            0,
            null(),
            0,
            null(),
            0,
            &mut other,
        ));
        let (info, _, _, _) = job_info(other);
        ok(glc_cancel(e, &k, info.id, null(), 0));
        ok(glc_job_is_void(other, &mut void));
        assert!(void, "a cancel voids the token");
        fails(
            glc_cancel(e, &k, info.id, null(), 0),
            GLC_ENGINE_ERROR,
            "TASK_TERMINAL",
        );

        ok(glc_clear(e, &k, true, null(), 0, &mut id));
        ok(glc_recv_job(e, 1_000, &mut job));
        let (info, _, _, _) = job_info(job);
        assert_eq!(info.kind, glc_task_kind::GLC_TASK_CLEAR);
        assert!(info.clear_metadata);
        ok(report(job, GLC_REPORT_SUCCEEDED, 0));
        ok(glc_job_free(job));

        // A restart job cannot be cancelled.
        let mut r = MaybeUninit::<glc_restart>::uninit();
        ok(glc_force_restart(e, &k, null(), 0, r.as_mut_ptr()));
        let r = r.assume_init();
        fails(
            glc_cancel(e, &k, r.job, null(), 0),
            GLC_ENGINE_ERROR,
            "NOT_STOPPABLE",
        );
        ok(glc_recv_job(e, 1_000, &mut job));
        ok(report(job, GLC_REPORT_SUCCEEDED, 0));
        ok(glc_job_free(job));

        ok(glc_stop(e, &k, null(), 0, &mut id));
        ok(glc_recv_job(e, 1_000, &mut job));
        ok(report(job, GLC_REPORT_SUCCEEDED, 0));
        ok(glc_job_free(job));
        assert_eq!(state(e, &key), glc_graph_state::GLC_STATE_STOPPED);
        ok(glc_remove_graph(e, &k, null(), 0));
        let mut st = glc_graph_state::GLC_STATE_STOPPED;
        fails(
            glc_get_state(e, &k, &mut st),
            GLC_ENGINE_ERROR,
            "GRAPH_NOT_FOUND",
        );
    }
    for h in [ticket, other] {
        ok(glc_job_free(h));
    }
    ok(glc_engine_free(e));
}

/// Listings filter by status and creation time, page with offset and
/// limit, count every match, and span a project's graphs; a bad filter
/// and an index past the page are refused.
#[test]
fn task_listings_filter_page_and_count() {
    let e = engine(None);
    let (a, b) = (Key::new("proj", "a"), Key::new("proj", "b"));
    running(e, &a);
    running(e, &b);
    let (ka, kb) = (a.c(), b.c());
    let (kind, kind_len) = s("algo");
    let mut tickets = Vec::new();
    // SAFETY: every pointer is to a live local or a string with its length.
    unsafe {
        for k in [&ka, &ka, &ka, &kb] {
            let mut t = glc_job::default();
            ok(glc_register_task(
                e,
                k,
                kind,
                kind_len,
                true,
                0,
                null(),
                0,
                null(),
                0,
                &mut t,
            ));
            tickets.push(t);
        }
    }
    ok(report(tickets[0], GLC_REPORT_SUCCEEDED, 0));
    let mut q = MaybeUninit::<glc_task_query>::uninit();
    let mut page = glc_page::default();
    let (mut total, mut len) = (0usize, 0usize);
    let mut item = MaybeUninit::<glc_task_info>::uninit();
    // SAFETY: every pointer is to a live local or a string with its length.
    unsafe {
        ok(glc_task_query_default(q.as_mut_ptr()));
        let mut q = q.assume_init();
        // Graph a: its start job and the first ticket succeeded, two live.
        q.statuses = GLC_FILTER_LIVE;
        q.limit = 1;
        ok(glc_list_tasks(e, &ka, &q, &mut page));
        ok(glc_page_get_counts(page, &mut total, &mut len));
        assert_eq!((total, len), (2, 1));
        ok(glc_page_get_item(page, 0, item.as_mut_ptr()));
        let newest = item.assume_init();
        assert_eq!(newest.status, glc_task_status::GLC_TASK_PENDING);
        assert_eq!(text(newest.kind_name, newest.kind_name_len), "algo");
        fails(
            glc_page_get_item(page, 1, item.as_mut_ptr()),
            GLC_INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
        );
        ok(glc_page_free(page));

        q.statuses = GLC_FILTER_SUCCEEDED;
        q.limit = GLC_NO_LIMIT;
        q.offset = 1;
        ok(glc_list_tasks(e, &ka, &q, &mut page));
        ok(glc_page_get_counts(page, &mut total, &mut len));
        assert_eq!((total, len), (2, 1), "the start job and the first ticket");
        ok(glc_page_free(page));

        // NULL query: everything. A project: both graphs.
        let (p, p_len) = s("proj");
        ok(glc_list_project_tasks(e, p, p_len, null(), &mut page));
        ok(glc_page_get_counts(page, &mut total, null_mut()));
        assert_eq!(total, 6, "two start jobs and four tickets");
        ok(glc_page_free(page));

        // A window on the creation time that holds nothing.
        q = glc_task_query {
            statuses: 0,
            since_ms: 1,
            until_ms: 2,
            offset: 0,
            limit: 0,
        };
        ok(glc_list_project_tasks(e, p, p_len, &q, &mut page));
        ok(glc_page_get_counts(page, &mut total, &mut len));
        assert_eq!((total, len), (0, 0));
        ok(glc_page_free(page));

        q.statuses = 1 << 7;
        fails(
            glc_list_tasks(e, &ka, &q, &mut page),
            GLC_INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
        );
    }
    for t in tickets {
        ok(glc_job_free(t));
    }
    ok(glc_engine_free(e));
}

/// Events report every change with its fields; an empty subscription
/// times out, a subscriber past its buffer is told where it was cut off,
/// and the stream closes when the engine is gone.
#[test]
fn events_carry_each_change_and_a_lagging_subscriber_learns_where_it_was_cut() {
    let mut config = MaybeUninit::<glc_config>::uninit();
    // SAFETY: a live local.
    let mut config = unsafe {
        ok(glc_config_default(config.as_mut_ptr()));
        config.assume_init()
    };
    config.event_buffer = 1;
    let e = engine(Some(config));
    let mut sub = glc_subscription::default();
    let mut ev = glc_event::default();
    let mut missed = 0u64;
    let key = Key::new("p", "events");
    let k = key.c();
    // SAFETY: every pointer is to a live local.
    unsafe {
        ok(glc_subscribe(e, &mut sub));
        fails(
            glc_subscription_recv(sub, 5, &mut ev, &mut missed),
            GLC_TIMEOUT,
            "TIMEOUT",
        );
        fails(
            glc_subscription_try_recv(sub, &mut ev, &mut missed),
            GLC_EMPTY,
            "EMPTY",
        );
        ok(glc_create_graph(e, &k, null(), 0, null_mut()));
        ok(glc_subscription_recv(sub, 1_000, &mut ev, null_mut()));
        let mut info = MaybeUninit::<glc_event_info>::uninit();
        ok(glc_event_get_info(ev, info.as_mut_ptr()));
        let created = info.assume_init();
        assert_eq!(created.change, glc_change_kind::GLC_CHANGE_GRAPH_CREATED);
        assert_eq!(text(created.graph, created.graph_len), "events");
        ok(glc_event_free(ev));

        // The start commits a task and a state change, together: read
        // both (the second is waiting already).
        ok(glc_start(e, &k, null(), 0, null(), 0, null_mut()));
        ok(glc_subscription_recv(sub, 1_000, &mut ev, null_mut()));
        ok(glc_event_get_info(ev, info.as_mut_ptr()));
        let one = info.assume_init();
        ok(glc_event_free(ev));
        ok(glc_subscription_try_recv(sub, &mut ev, null_mut()));
        ok(glc_event_get_info(ev, info.as_mut_ptr()));
        let two = info.assume_init();
        ok(glc_event_free(ev));
        assert_eq!(two.seq, one.seq + 1);
        assert!(one.seq > created.seq);
        let (moved, task) = if one.change == glc_change_kind::GLC_CHANGE_STATE {
            (one, two)
        } else {
            (two, one)
        };
        assert_eq!(moved.change, glc_change_kind::GLC_CHANGE_STATE);
        assert_eq!(
            (moved.from, moved.to, moved.epoch),
            (
                glc_graph_state::GLC_STATE_STOPPED,
                glc_graph_state::GLC_STATE_STARTING,
                0
            )
        );
        assert_eq!(task.change, glc_change_kind::GLC_CHANGE_TASK);
        assert_eq!(task.task_kind, glc_task_kind::GLC_TASK_START);
        assert_eq!(task.status, glc_task_status::GLC_TASK_PENDING);
        let last_read = two.seq;

        // Two commits unread: the second does not fit a buffer of one.
        let mut r = MaybeUninit::<glc_restart>::uninit();
        ok(glc_force_restart(e, &k, null(), 0, r.as_mut_ptr()));
        ok(glc_force_restart(e, &k, null(), 0, r.as_mut_ptr()));
        let mut got = 0;
        let status = loop {
            match glc_subscription_try_recv(sub, &mut ev, &mut missed) {
                GLC_OK => {
                    got += 1;
                    ok(glc_event_free(ev));
                }
                other => break other,
            }
        };
        fails(status, GLC_LAGGED, "LAGGED");
        assert!(got >= 1, "what was buffered is read first");
        assert!(missed > last_read, "cut at event {missed}");
    }
    ok(glc_subscription_free(sub));

    // A fresh subscriber sees the stream close once the engine is gone.
    // SAFETY: live locals.
    unsafe { ok(glc_subscribe(e, &mut sub)) };
    ok(glc_engine_free(e));
    // SAFETY: live locals.
    unsafe {
        fails(
            glc_subscription_recv(sub, 1_000, &mut ev, null_mut()),
            GLC_CLOSED,
            "CLOSED",
        );
    }
    ok(glc_subscription_free(sub));
}

/// NULL pointers, text that is not UTF-8, NULL with a length, lengths no
/// object can have, values out of range: each is GLC_INVALID_ARGUMENT,
/// and none changes anything.
#[test]
fn bad_pointers_text_and_lengths_are_invalid_arguments_that_change_nothing() {
    let e = engine(None);
    let key = Key::new("p", "g");
    let k = key.c();
    let bad_utf8 = [b'p', 0xff, b'q'];
    let mut job = glc_job::default();
    let mut st = glc_graph_state::GLC_STATE_STOPPED;
    // SAFETY: every non-NULL pointer is to a live local or a slice at
    // least as long as its length; the huge length goes with a NULL
    // pointer or with a pointer the library must refuse before reading.
    unsafe {
        let inv = |status| fails(status, GLC_INVALID_ARGUMENT, "INVALID_ARGUMENT");
        inv(glc_create_graph(e, null(), null(), 0, null_mut()));
        let utf = glc_key {
            project: bad_utf8.as_ptr().cast(),
            project_len: 3,
            ..k
        };
        let msg = inv(glc_create_graph(e, &utf, null(), 0, null_mut())).message;
        assert!(msg.contains("not UTF-8"), "{msg}");
        let dangling = glc_key {
            project: null(),
            project_len: 3,
            ..k
        };
        inv(glc_create_graph(e, &dangling, null(), 0, null_mut()));
        inv(glc_create_graph(e, &k, null(), 5, null_mut()));
        let huge = glc_key {
            project_len: usize::MAX,
            ..k
        };
        inv(glc_create_graph(e, &huge, null(), 0, null_mut()));
        // Empty ids are the engine's to refuse.
        let empty = glc_key {
            project: null(),
            project_len: 0,
            ..k
        };
        fails(
            glc_create_graph(e, &empty, null(), 0, null_mut()),
            GLC_ENGINE_ERROR,
            "INVALID_ID",
        );
        inv(glc_engine_new(null(), null_mut()));
        inv(glc_get_state(e, &k, null_mut()));
        inv(glc_recv_job(e, 0, null_mut()));
        inv(glc_register_task(
            e,
            &k,
            bad_utf8.as_ptr().cast(),
            3,
            true,
            0,
            null(),
            0,
            null(),
            0,
            &mut job,
        ));
        inv(glc_report(e, null(), 0, 0, null(), 0, null(), 0));
        let mut buf = [0 as c_char; 36];
        inv(glc_job_id_format(
            glc_job_id::default(),
            buf.as_mut_ptr(),
            buf.len(),
        ));
        inv(glc_job_id_format(glc_job_id::default(), null_mut(), 64));
        let (mut name, mut len) = (null::<c_char>(), 0usize);
        inv(glc_state_name(9, &mut name, &mut len));
        inv(glc_task_status_name(5, &mut name, &mut len));
        inv(glc_status_name(10, &mut name, &mut len));
        inv(glc_status_name(0, null_mut(), &mut len));
    }
    // Nothing was created on the way.
    // SAFETY: live locals.
    unsafe {
        fails(
            glc_get_state(e, &k, &mut st),
            GLC_ENGINE_ERROR,
            "GRAPH_NOT_FOUND",
        );
    }
    // An unknown report kind on a live job.
    running(e, &key);
    let mut ticket = glc_job::default();
    let (kind, kind_len) = s("algo");
    // SAFETY: live locals and strings with their lengths.
    unsafe {
        ok(glc_register_task(
            e,
            &k,
            kind,
            kind_len,
            true,
            0,
            null(),
            0,
            null(),
            0,
            &mut ticket,
        ));
        fails(
            report(ticket, 4, 0),
            GLC_INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
        );
        fails(
            glc_job_report(
                ticket,
                GLC_REPORT_FAILED,
                0,
                bad_utf8.as_ptr().cast(),
                3,
                null(),
                0,
            ),
            GLC_INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
        );
    }
    let (t, _) = task(e, &key, job_info(ticket).0.id);
    assert_eq!(t.status, glc_task_status::GLC_TASK_PENDING, "unchanged");
    ok(glc_job_free(ticket));
    ok(glc_engine_free(e));
}

/// Zero, freed, made-up and mistyped handles are GLC_INVALID_HANDLE,
/// double frees included; freeing the zero handle does nothing.
#[test]
fn zero_freed_made_up_and_mistyped_handles_are_invalid_handles() {
    let e = engine(None);
    let key = Key::new("p", "g");
    let k = key.c();
    let mut graph = glc_graph::default();
    let mut st = glc_graph_state::GLC_STATE_STOPPED;
    let mut void = false;
    // SAFETY: live locals.
    unsafe { ok(glc_create_graph(e, &k, null(), 0, &mut graph)) };
    let bad = |status| fails(status, GLC_INVALID_HANDLE, "INVALID_HANDLE");
    // Mistyped: a graph handle's value used as an engine or a job.
    // SAFETY: live locals.
    unsafe {
        bad(glc_get_state(glc_engine { id: graph.id }, &k, &mut st));
        bad(glc_job_is_void(glc_job { id: graph.id }, &mut void));
        bad(glc_graph_get_state(
            glc_graph { id: e.id },
            &mut st,
            null_mut(),
        ));
        // Zero and made up.
        bad(glc_graph_get_state(
            glc_graph::default(),
            &mut st,
            null_mut(),
        ));
        for made_up in [1, 0xdead_beef, u64::MAX, graph.id ^ (1 << 40)] {
            bad(glc_graph_get_state(
                glc_graph { id: made_up },
                &mut st,
                null_mut(),
            ));
        }
    }
    ok(glc_graph_free(glc_graph::default()));
    ok(glc_graph_free(graph));
    bad(glc_graph_free(graph));
    // SAFETY: live locals.
    unsafe { bad(glc_graph_get_state(graph, &mut st, null_mut())) };
    ok(glc_engine_free(e));
    bad(glc_engine_free(e));
    bad(glc_engine_shutdown(e));
    // SAFETY: live locals.
    unsafe { bad(glc_create_graph(e, &k, null(), 0, null_mut())) };
    for status in [
        glc_job_free(glc_job { id: 7 }),
        glc_task_free(glc_task { id: 7 }),
        glc_page_free(glc_page { id: 7 }),
        glc_event_free(glc_event { id: 7 }),
        glc_subscription_free(glc_subscription { id: 7 }),
    ] {
        bad(status);
    }
}

/// A receive with a timeout times out; after shutdown, operations that
/// need a worker are refused and the channel closes once drained; reports
/// and queries keep working.
#[test]
fn the_job_channel_times_out_then_closes_after_shutdown() {
    let e = engine(None);
    let key = Key::new("p", "g");
    let k = key.c();
    let mut job = glc_job::default();
    // SAFETY: live locals.
    unsafe {
        fails(glc_recv_job(e, 10, &mut job), GLC_TIMEOUT, "TIMEOUT");
        fails(glc_recv_job(e, 0, &mut job), GLC_TIMEOUT, "TIMEOUT");
        fails(glc_try_recv_job(e, &mut job), GLC_EMPTY, "EMPTY");
        ok(glc_create_graph(e, &k, null(), 0, null_mut()));
        ok(glc_start(e, &k, null(), 0, null(), 0, null_mut()));
    }
    ok(glc_engine_shutdown(e));
    ok(glc_engine_shutdown(e));
    // SAFETY: live locals.
    unsafe {
        let e2 = fails(
            glc_force_restart(e, &k, null(), 0, null_mut()),
            GLC_ENGINE_ERROR,
            "SHUT_DOWN",
        );
        assert_eq!(e2.http_status, 503);
        ok(glc_recv_job(e, GLC_WAIT_FOREVER, &mut job));
        ok(report(job, GLC_REPORT_SUCCEEDED, 0));
        ok(glc_job_free(job));
        fails(
            glc_recv_job(e, GLC_WAIT_FOREVER, &mut job),
            GLC_CLOSED,
            "CLOSED",
        );
        fails(glc_try_recv_job(e, &mut job), GLC_CLOSED, "CLOSED");
    }
    assert_eq!(state(e, &key), glc_graph_state::GLC_STATE_RUNNING);
    ok(glc_engine_free(e));
}

/// A job's timeout fires when the host expires at its deadline: the job
/// fails as timed out and the graph goes abnormal.
#[test]
fn a_job_times_out_when_the_host_expires_at_its_deadline() {
    let mut config = MaybeUninit::<glc_config>::uninit();
    // SAFETY: a live local.
    let mut config = unsafe {
        ok(glc_config_default(config.as_mut_ptr()));
        config.assume_init()
    };
    config.job_timeout_ms[glc_task_kind::GLC_TASK_START as usize] = 60_000;
    let e = engine(Some(config));
    let key = Key::new("p", "slow");
    let k = key.c();
    let (mut id, mut now, mut deadline) = (glc_job_id::default(), 0u64, 0u64);
    let (mut timed_out, mut evicted) = (0usize, 0usize);
    // SAFETY: live locals.
    unsafe {
        ok(glc_next_deadline(e, &mut deadline));
        assert_eq!(deadline, GLC_NO_TIME);
        ok(glc_create_graph(e, &k, null(), 0, null_mut()));
        ok(glc_start(e, &k, null(), 0, null(), 0, &mut id));
        ok(glc_now(e, &mut now));
        ok(glc_next_deadline(e, &mut deadline));
        assert!(
            deadline >= now && deadline <= now + 60_000,
            "{deadline} vs {now}"
        );
        ok(glc_expire(e, deadline - 1, &mut timed_out, &mut evicted));
        assert_eq!(timed_out, 0);
        ok(glc_expire(e, deadline, &mut timed_out, null_mut()));
        assert_eq!(timed_out, 1);
    }
    assert_eq!(state(e, &key), glc_graph_state::GLC_STATE_ABNORMAL);
    let (t, _) = task(e, &key, id);
    assert_eq!(t.reason, glc_fail_reason::GLC_REASON_TIMED_OUT);
    assert_eq!(t.deadline_ms, deadline);
    ok(glc_engine_free(e));
}

/// The C configuration's defaults are the engine's, and its limits apply.
#[test]
fn the_configuration_defaults_are_the_engines_and_its_limits_apply() {
    let mut c = MaybeUninit::<glc_config>::uninit();
    // SAFETY: a live local.
    let mut c = unsafe {
        ok(glc_config_default(c.as_mut_ptr()));
        c.assume_init()
    };
    let d = graph_lifecycle::Config::default();
    assert_eq!(c.max_graphs, d.max_graphs);
    assert_eq!(c.max_retained_per_graph, d.max_retained_per_graph);
    assert_eq!(c.retention_age_ms, 24 * 3600 * 1000);
    assert_eq!(c.job_timeout_ms, [0; 6]);
    assert_eq!(c.request_window_age_ms, 15 * 60 * 1000);
    assert_eq!((c.event_buffer, c.shards), (d.event_buffer, d.shards));
    assert_eq!(c.max_graphs_per_project, d.max_graphs_per_project);
    assert_eq!(c.retained_payload_bytes, d.retained_payload_bytes);
    c.max_graphs = 2;
    c.max_graphs_per_project = 1;
    c.retained_payload_bytes = 4;
    c.shards = 0; // taken as 1
    let e = engine(Some(c));
    let (a, b, other, third) = (
        Key::new("p", "a"),
        Key::new("p", "b"),
        Key::new("q", "a"),
        Key::new("r", "a"),
    );
    // SAFETY: live locals.
    unsafe {
        ok(glc_create_graph(e, &a.c(), null(), 0, null_mut()));
        let quota = fails(
            glc_create_graph(e, &b.c(), null(), 0, null_mut()),
            GLC_ENGINE_ERROR,
            "PROJECT_QUOTA",
        );
        assert_eq!(quota.http_status, 429);
        ok(glc_create_graph(e, &other.c(), null(), 0, null_mut()));
        fails(
            glc_create_graph(e, &third.c(), null(), 0, null_mut()),
            GLC_ENGINE_ERROR,
            "TOO_MANY_GRAPHS",
        );
    }
    // An ended task keeps the first 4 bytes of its payload.
    let k = a.c();
    let payload = b"0123456789";
    let mut id = glc_job_id::default();
    // SAFETY: live locals and a slice with its length.
    unsafe {
        ok(glc_start(
            e,
            &k,
            payload.as_ptr().cast(),
            payload.len(),
            null(),
            0,
            &mut id,
        ))
    };
    let mut job = glc_job::default();
    // SAFETY: a live local.
    unsafe { ok(glc_recv_job(e, 1_000, &mut job)) };
    assert_eq!(job_info(job).3, payload, "a live job has all of it");
    ok(report(job, GLC_REPORT_SUCCEEDED, 0));
    ok(glc_job_free(job));
    let (t, _) = task(e, &a, id);
    assert_eq!(t.payload_len, 4);
    ok(glc_engine_free(e));
}

/// The last error belongs to the thread that failed; a success leaves it,
/// clearing forgets it.
#[test]
fn the_last_error_is_per_thread_and_kept_until_the_next_failure() {
    ok(glc_last_error_clear());
    assert_eq!(last(), None);
    bad_handle_call();
    let mine = last().expect("recorded");
    assert_eq!(mine.status, GLC_INVALID_HANDLE);
    thread::spawn(|| assert_eq!(last(), None, "another thread's error is not mine"))
        .join()
        .unwrap();
    let mut v = 0;
    // SAFETY: a live local.
    ok(unsafe { glc_abi_version(&mut v) });
    assert_eq!(v, GLC_ABI_VERSION);
    assert_eq!(last(), Some(mine), "a success leaves it");
    ok(glc_last_error_clear());
    assert_eq!(last(), None);
    // SAFETY: a NULL out-pointer is refused, not written.
    assert_eq!(unsafe { glc_last_error(null_mut()) }, GLC_INVALID_ARGUMENT);
}

fn bad_handle_call() {
    assert_eq!(
        glc_engine_shutdown(glc_engine { id: 3 }),
        GLC_INVALID_HANDLE
    );
}

/// Names are the stable ones, NUL-terminated; job ids go to text and
/// back; text that is no UUID is the engine's INVALID_ID.
#[test]
fn names_and_job_id_text_round_trip() {
    let (mut name, mut len) = (null::<c_char>(), 0usize);
    // SAFETY: live locals; the names are static.
    unsafe {
        for (i, st) in STATUS_NAMES.iter().enumerate() {
            ok(glc_status_name(i as u32, &mut name, &mut len));
            assert_eq!(text(name, len), *st);
        }
        ok(glc_state_name(8, &mut name, &mut len));
        assert_eq!((text(name, len).as_str(), *name.add(len)), ("abnormal", 0));
        ok(glc_task_status_name(4, &mut name, &mut len));
        assert_eq!(text(name, len), "cancelled");

        let uuid = "0190b6d8-4f1e-7c3a-9d2b-5e6f7a8b9c0d";
        let mut id = glc_job_id::default();
        ok(glc_job_id_parse(uuid.as_ptr().cast(), uuid.len(), &mut id));
        assert_eq!(id.bytes[0], 0x01);
        let mut buf = [0 as c_char; 37];
        ok(glc_job_id_format(id, buf.as_mut_ptr(), buf.len()));
        assert_eq!(text(buf.as_ptr(), 36), uuid);
        assert_eq!(buf[36], 0);
        let (bad, bad_len) = s("not-a-uuid");
        fails(
            glc_job_id_parse(bad, bad_len, &mut id),
            GLC_ENGINE_ERROR,
            "INVALID_ID",
        );
        fails(
            glc_job_id_parse(null(), 0, &mut id),
            GLC_ENGINE_ERROR,
            "INVALID_ID",
        );
    }
}

const STATUS_NAMES: [&str; 10] = [
    "OK",
    "INVALID_ARGUMENT",
    "INVALID_HANDLE",
    "ENGINE_ERROR",
    "TIMEOUT",
    "EMPTY",
    "LAGGED",
    "CLOSED",
    "HANDLE_LIMIT",
    "PANIC",
];

/// Handles are shared by threads: workers receive and report on one
/// engine handle while other threads read graph handles and free them
/// under their feet; every call answers OK or GLC_INVALID_HANDLE, and the
/// work all lands.
#[test]
fn threads_share_handles_and_free_them_under_each_others_feet() {
    let e = engine(None);
    let keys: Vec<Key> = (0..8).map(|i| Key::new("p", &format!("g{i}"))).collect();
    let mut graphs = Vec::new();
    for key in &keys {
        let mut g = glc_graph::default();
        // SAFETY: live locals.
        unsafe { ok(glc_create_graph(e, &key.c(), null(), 0, &mut g)) };
        graphs.push(g);
    }
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let done = done.clone();
            thread::spawn(move || {
                let mut job = glc_job::default();
                // SAFETY: a live local.
                while unsafe { glc_recv_job(e, GLC_WAIT_FOREVER, &mut job) } == GLC_OK {
                    ok(report(job, GLC_REPORT_SUCCEEDED, 0));
                    ok(glc_job_free(job));
                    done.fetch_add(1, Ordering::AcqRel);
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let graphs = graphs.clone();
            thread::spawn(move || {
                let mut st = glc_graph_state::GLC_STATE_STOPPED;
                let mut seen_freed = false;
                for _ in 0..2_000 {
                    for g in &graphs {
                        // SAFETY: a live local.
                        match unsafe { glc_graph_get_state(*g, &mut st, null_mut()) } {
                            GLC_OK => {}
                            GLC_INVALID_HANDLE => seen_freed = true,
                            other => panic!("{other:?}: {:?}", last()),
                        }
                    }
                }
                seen_freed
            })
        })
        .collect();
    for key in &keys {
        // SAFETY: live locals.
        unsafe { ok(glc_start(e, &key.c(), null(), 0, null(), 0, null_mut())) };
    }
    for g in &graphs {
        match glc_graph_free(*g) {
            GLC_OK => {}
            other => panic!("{other:?}"),
        }
    }
    for r in readers {
        r.join().expect("reader");
    }
    while done.load(Ordering::Acquire) < keys.len() {
        thread::yield_now();
    }
    ok(glc_engine_free(e));
    for w in workers {
        w.join().expect("worker");
    }
}
