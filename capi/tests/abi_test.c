/*
 * The C ABI as a C program sees it, under AddressSanitizer,
 * UndefinedBehaviorSanitizer and LeakSanitizer: every exported function on
 * its main path, then with every misuse the ABI promises to catch (NULL
 * pointers, text that is not UTF-8, NULL with a length, lengths no object
 * can have, zero lengths, values out of range, zero, freed, made-up and
 * mistyped handles), and from several threads at once. Every handle it
 * makes is freed, so LeakSanitizer has nothing to report.
 *
 * Built and run by capi/build-examples.sh. Exits non-zero if any check
 * fails; the sanitizers abort it on any report.
 */
#define _POSIX_C_SOURCE 200809L

#include "graph_lifecycle.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static atomic_int passed;
static atomic_int failed;

/* Text as pointer and length: S("x") expands to two arguments. */
#define S(x) (x), strlen(x)

static void show_last_error(void) {
    glc_error e;
    if (glc_last_error(&e) == GLC_OK) {
        fprintf(stderr, "    last error: %.*s: %.*s\n", (int)e.code_len, e.code,
                (int)e.message_len, e.message);
    }
}

static void check(int ok, const char *what, int line) {
    if (ok) {
        atomic_fetch_add(&passed, 1);
    } else {
        atomic_fetch_add(&failed, 1);
        fprintf(stderr, "abi_test.c:%d: check failed: %s\n", line, what);
    }
}

#define CHECK(cond) check((cond) ? 1 : 0, #cond, __LINE__)

/* The call returned `want`, and for a failure the last error carries
 * `want` and, if `code` is not NULL, that code, both NUL-terminated. */
static void expect(glc_status got, glc_status want, const char *code, const char *what, int line) {
    if (got != want) {
        atomic_fetch_add(&failed, 1);
        fprintf(stderr, "abi_test.c:%d: %s returned %u, expected %u\n", line, what, (unsigned)got,
                (unsigned)want);
        show_last_error();
        return;
    }
    if (want != GLC_OK) {
        glc_error e;
        if (glc_last_error(&e) != GLC_OK || e.status != want || e.code[e.code_len] != '\0' ||
            e.message[e.message_len] != '\0' || e.message_len == 0 ||
            (code != NULL && (e.code_len != strlen(code) || memcmp(e.code, code, e.code_len)))) {
            atomic_fetch_add(&failed, 1);
            fprintf(stderr, "abi_test.c:%d: %s: wrong last error (wanted %s)\n", line, what,
                    code ? code : "any code");
            show_last_error();
            return;
        }
    }
    atomic_fetch_add(&passed, 1);
}

#define EXPECT(call, want) expect((call), (want), NULL, #call, __LINE__)
#define EXPECT_CODE(call, want, code) expect((call), (want), (code), #call, __LINE__)
#define OK(call) expect((call), GLC_OK, NULL, #call, __LINE__)
#define INVALID(call) expect((call), GLC_INVALID_ARGUMENT, "INVALID_ARGUMENT", #call, __LINE__)
#define BAD_HANDLE(call) expect((call), GLC_INVALID_HANDLE, "INVALID_HANDLE", #call, __LINE__)
#define ENGINE(call, code) expect((call), GLC_ENGINE_ERROR, (code), #call, __LINE__)

static glc_key key(const char *project, const char *graph) {
    glc_key k = {project, strlen(project), graph, strlen(graph)};
    return k;
}

static int eq(const char *p, size_t len, const char *want) {
    return len == strlen(want) && (len == 0 || memcmp(p, want, len) == 0);
}

static int same_id(glc_job_id a, glc_job_id b) {
    return memcmp(a.bytes, b.bytes, sizeof a.bytes) == 0;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Receives the next job and reports it succeeded; returns its info's kind. */
static glc_task_kind run_next_job(glc_engine e) {
    glc_job job = {0};
    glc_job_info info;
    memset(&info, 0, sizeof info);
    OK(glc_recv_job(e, 2000, &job));
    OK(glc_job_get_info(job, &info));
    OK(glc_job_report(job, GLC_REPORT_SUCCEEDED, 0, NULL, 0, NULL, 0));
    OK(glc_job_free(job));
    return info.kind;
}

/* ---- the main path ------------------------------------------------------ */

static void test_main_path(void) {
    uint32_t version = 0;
    OK(glc_abi_version(&version));
    CHECK(version == GLC_ABI_VERSION);

    glc_config cfg;
    OK(glc_config_default(&cfg));
    CHECK(cfg.max_graphs == 100000 && cfg.event_buffer == 4096 && cfg.job_timeout_ms[0] == 0);
    CHECK(cfg.max_graphs_per_project == SIZE_MAX && cfg.retained_payload_bytes == SIZE_MAX);
    cfg.job_timeout_ms[GLC_TASK_IMPORT] = 3600 * 1000;
    glc_engine e = {0};
    OK(glc_engine_new(&cfg, &e));

    glc_key movies = key("tenant-a", "movies");
    glc_graph g = {0};
    OK(glc_create_graph(e, &movies, S("create-movies"), &g));
    OK(glc_create_graph(e, &movies, S("create-movies"), NULL)); /* a retry: answered */
    ENGINE(glc_create_graph(e, &movies, NULL, 0, NULL), "GRAPH_EXISTS");

    /* Start: the job, its fields, its reports. */
    glc_job_id start_id;
    OK(glc_start(e, &movies, S("backup-1"), NULL, 0, &start_id));
    glc_job job = {0};
    OK(glc_recv_job(e, 2000, &job));
    glc_job_info ji;
    OK(glc_job_get_info(job, &ji));
    CHECK(same_id(ji.id, start_id));
    CHECK(ji.kind == GLC_TASK_START && eq(ji.kind_name, ji.kind_name_len, "start"));
    CHECK(eq(ji.project, ji.project_len, "tenant-a") && eq(ji.graph, ji.graph_len, "movies"));
    CHECK(ji.epoch == 0 && ji.payload_len == 8 && memcmp(ji.payload, "backup-1", 8) == 0);
    bool is_void = true;
    OK(glc_job_is_void(job, &is_void));
    CHECK(!is_void);
    OK(glc_job_report(job, GLC_REPORT_STARTED, 0, NULL, 0, NULL, 0));
    OK(glc_job_report(job, GLC_REPORT_PROGRESS, 50, NULL, 0, S("progress-50")));
    OK(glc_job_report(job, GLC_REPORT_PROGRESS, 50, NULL, 0, S("progress-50"))); /* retry */
    ENGINE(glc_job_report(job, GLC_REPORT_PROGRESS, 101, NULL, 0, NULL, 0), "BAD_PROGRESS");
    OK(glc_job_report(job, GLC_REPORT_SUCCEEDED, 0, NULL, 0, NULL, 0));
    ENGINE(glc_job_report(job, GLC_REPORT_SUCCEEDED, 0, NULL, 0, NULL, 0), "TASK_TERMINAL");
    OK(glc_job_free(job));

    /* State: the handle and the key. */
    glc_graph_state st = GLC_STATE_ABNORMAL;
    uint64_t epoch = 99;
    OK(glc_graph_get_state(g, &st, &epoch));
    CHECK(st == GLC_STATE_RUNNING && epoch == 0);
    bool serves = false;
    OK(glc_graph_serves_queries(g, &serves));
    CHECK(serves);
    OK(glc_get_state(e, &movies, &st));
    CHECK(st == GLC_STATE_RUNNING);
    glc_graph g2 = {0};
    OK(glc_open_graph(e, &movies, &g2));
    CHECK(g2.id != 0 && g2.id != g.id);
    OK(glc_graph_get_state(g2, &st, NULL));
    CHECK(st == GLC_STATE_RUNNING);
    OK(glc_graph_free(g2));

    /* The forced restart in the middle of an import, retried. */
    glc_job_id import_id;
    OK(glc_import(e, &movies, S("s3://bucket/edges.csv"), NULL, 0, &import_id));
    OK(glc_recv_job(e, 2000, &job));
    OK(glc_job_report(job, GLC_REPORT_PROGRESS, 40, NULL, 0, NULL, 0));
    glc_restart r1, r2;
    OK(glc_force_restart(e, &movies, S("ticket-4711"), &r1));
    OK(glc_force_restart(e, &movies, S("ticket-4711"), &r2));
    CHECK(r1.epoch == 1 && r1.failed == 1);
    CHECK(same_id(r1.job, r2.job) && r2.epoch == r1.epoch && r2.failed == r1.failed);
    OK(glc_job_is_void(job, &is_void));
    CHECK(is_void);
    ENGINE(glc_job_report(job, GLC_REPORT_PROGRESS, 60, NULL, 0, NULL, 0), "STALE_EPOCH");
    glc_error err;
    OK(glc_last_error(&err));
    CHECK(err.http_status == 409 && strstr(err.message, "epoch") != NULL);
    OK(glc_job_free(job));
    glc_job restart = {0};
    OK(glc_try_recv_job(e, &restart));
    OK(glc_job_get_info(restart, &ji));
    CHECK(ji.kind == GLC_TASK_RESTART && same_id(ji.id, r1.job) && ji.epoch == 1);
    EXPECT_CODE(glc_try_recv_job(e, &job), GLC_EMPTY, "EMPTY"); /* one restart job, not two */
    OK(glc_job_report(restart, GLC_REPORT_SUCCEEDED, 0, NULL, 0, NULL, 0));
    OK(glc_job_free(restart));

    glc_task t = {0};
    glc_task_info ti;
    OK(glc_get_task(e, &movies, import_id, &t));
    OK(glc_task_get_info(t, &ti));
    CHECK(ti.status == GLC_TASK_FAILED && ti.reason == GLC_REASON_FORCE_RESTARTED);
    CHECK(same_id(ti.reason_job, r1.job) && ti.epoch == 0 && ti.progress == 40);
    CHECK(ti.reason_text_len > 22 && memcmp(ti.reason_text, "force-restarted by job", 22) == 0);
    CHECK(ti.ended_at_ms != GLC_NO_TIME && ti.created_at_ms <= ti.ended_at_ms);
    CHECK(eq((const char *)ti.payload, ti.payload_len, "s3://bucket/edges.csv"));
    OK(glc_task_free(t));

    glc_graph_info gi;
    OK(glc_get_graph_info(e, &movies, &gi));
    CHECK(gi.state == GLC_STATE_RUNNING && gi.epoch == 1 && !gi.has_job && gi.live_tasks == 0);
    CHECK(gi.retained_tasks == 3 && gi.created_at_ms <= gi.updated_at_ms);

    /* Host tasks: a report by address, a failure message, a cancel. */
    glc_job ticket = {0}, other = {0};
    OK(glc_register_task(e, &movies, S("pagerank"), true, 0, S("{\"iterations\": 5}"), NULL, 0,
                         &ticket));
    glc_job_info ti1;
    OK(glc_job_get_info(ticket, &ti1));
    CHECK(ti1.kind == GLC_TASK_HOST && eq(ti1.kind_name, ti1.kind_name_len, "pagerank"));
    glc_task_ref ref = {movies, ti1.id, ti1.epoch};
    OK(glc_report(e, &ref, GLC_REPORT_STARTED, 0, NULL, 0, NULL, 0));
    OK(glc_report(e, &ref, GLC_REPORT_FAILED, 0, S("out of memory"), S("fail-pagerank")));
    OK(glc_job_is_void(ticket, &is_void));
    CHECK(is_void);
    OK(glc_register_task(e, &movies, S("algo"), true, 60000, NULL, 0, NULL, 0, &other));
    glc_job_info ti2;
    OK(glc_job_get_info(other, &ti2));
    OK(glc_cancel(e, &movies, ti2.id, S("cancel-algo")));
    OK(glc_cancel(e, &movies, ti2.id, S("cancel-algo"))); /* retry: answered */
    ENGINE(glc_cancel(e, &movies, ti2.id, NULL, 0), "TASK_TERMINAL");
    OK(glc_job_is_void(other, &is_void));
    CHECK(is_void);


    /* Export, then clear with its schema. */
    glc_job_id id;
    OK(glc_export(e, &movies, S("dump/"), NULL, 0, &id));
    ENGINE(glc_clear(e, &movies, true, NULL, 0, NULL), "TRANSITION_REFUSED"); /* exporting */
    CHECK(run_next_job(e) == GLC_TASK_EXPORT);
    OK(glc_clear(e, &movies, true, NULL, 0, &id));
    OK(glc_recv_job(e, 2000, &job));
    OK(glc_job_get_info(job, &ji));
    CHECK(ji.kind == GLC_TASK_CLEAR && ji.clear_metadata && same_id(ji.id, id));
    CHECK(ji.payload == NULL && ji.payload_len == 0);
    OK(glc_job_report(job, GLC_REPORT_SUCCEEDED, 0, NULL, 0, NULL, 0));
    OK(glc_job_free(job));

    /* Listings: a graph's failed and cancelled tasks, paged; a project's. */
    glc_task_query q;
    OK(glc_task_query_default(&q));
    CHECK(q.statuses == 0 && q.since_ms == 0 && q.until_ms == GLC_NO_TIME && q.offset == 0 &&
          q.limit == GLC_NO_LIMIT);
    q.statuses = GLC_FILTER_FAILED | GLC_FILTER_CANCELLED;
    q.limit = 2;
    glc_page page = {0};
    size_t total = 0, len = 0;
    OK(glc_list_tasks(e, &movies, &q, &page));
    OK(glc_page_get_counts(page, &total, &len));
    CHECK(total == 3 && len == 2); /* the import and pagerank failed, algo was cancelled */
    for (size_t i = 0; i < len; i++) {
        OK(glc_page_get_item(page, i, &ti));
        CHECK(ti.status == GLC_TASK_FAILED || ti.status == GLC_TASK_CANCELLED);
    }
    OK(glc_page_get_item(page, 0, &ti));
    CHECK(ti.status == GLC_TASK_CANCELLED && ti.reason == GLC_REASON_CANCELLED);
    CHECK(ti.deadline_ms != GLC_NO_TIME && same_id(ti.id, ti2.id)); /* newest first */
    OK(glc_page_get_item(page, 1, &ti));
    CHECK(ti.reason == GLC_REASON_HOST && eq(ti.reason_text, ti.reason_text_len, "out of memory"));
    OK(glc_page_free(page));
    glc_key social = key("tenant-a", "social");
    OK(glc_create_graph(e, &social, NULL, 0, NULL));
    OK(glc_start(e, &social, NULL, 0, NULL, 0, NULL));
    CHECK(run_next_job(e) == GLC_TASK_START);
    OK(glc_list_project_tasks(e, S("tenant-a"), NULL, &page));
    OK(glc_page_get_counts(page, &total, NULL));
    CHECK(total == 8); /* movies: start, import, restart, pagerank, algo, export, clear; social: start */
    OK(glc_page_free(page));
    OK(glc_list_project_tasks(e, S("tenant-b"), NULL, &page));
    OK(glc_page_get_counts(page, &total, &len));
    CHECK(total == 0 && len == 0);
    OK(glc_page_free(page));

    /* Deadlines: nothing is due now; an ended task's retention is. */
    uint64_t now = 0, next = 0;
    size_t timed_out = 9, evicted = 9;
    OK(glc_now(e, &now));
    OK(glc_next_deadline(e, &next));
    CHECK(now > 0 && next != GLC_NO_TIME && next > now);
    OK(glc_expire(e, now, &timed_out, &evicted));
    CHECK(timed_out == 0 && evicted == 0);
    OK(glc_expire(e, next + 1, NULL, &evicted)); /* a day on: ended tasks evicted */
    CHECK(evicted > 0);

    /* Stop and remove; the handle then reads "not found". */
    OK(glc_stop(e, &movies, NULL, 0, NULL));
    CHECK(run_next_job(e) == GLC_TASK_STOP);
    OK(glc_remove_graph(e, &movies, S("remove-movies")));
    OK(glc_remove_graph(e, &movies, S("remove-movies"))); /* retry: answered */
    ENGINE(glc_graph_get_state(g, &st, NULL), "GRAPH_NOT_FOUND");
    OK(glc_graph_serves_queries(g, &serves));
    CHECK(!serves);
    ENGINE(glc_get_graph_info(e, &movies, &gi), "GRAPH_NOT_FOUND");

    /* Job ids as text and back. */
    char buf[40];
    memset(buf, 'x', sizeof buf);
    OK(glc_job_id_format(r1.job, buf, sizeof buf));
    CHECK(strlen(buf) == 36 && buf[8] == '-');
    glc_job_id back;
    OK(glc_job_id_parse(buf, 36, &back));
    CHECK(same_id(back, r1.job));

    /* Names. */
    const char *name = NULL;
    size_t name_len = 0;
    OK(glc_status_name(GLC_LAGGED, &name, &name_len));
    CHECK(eq(name, name_len, "LAGGED") && name[name_len] == '\0');
    OK(glc_state_name(GLC_STATE_RESTARTING, &name, &name_len));
    CHECK(eq(name, name_len, "restarting") && name[name_len] == '\0');
    OK(glc_task_status_name(GLC_TASK_SUCCEEDED, &name, &name_len));
    CHECK(eq(name, name_len, "succeeded"));

    OK(glc_job_free(ticket));
    OK(glc_job_free(other));
    OK(glc_graph_free(g));
    OK(glc_engine_free(e));
}

/* ---- events ------------------------------------------------------------- */

static void test_events(void) {
    glc_config cfg;
    OK(glc_config_default(&cfg));
    cfg.event_buffer = 1;
    glc_engine e = {0};
    OK(glc_engine_new(&cfg, &e));
    glc_subscription sub = {0};
    OK(glc_subscribe(e, &sub));
    glc_event ev = {0};
    uint64_t missed = 0;
    EXPECT_CODE(glc_subscription_recv(sub, 5, &ev, &missed), GLC_TIMEOUT, "TIMEOUT");
    EXPECT_CODE(glc_subscription_try_recv(sub, &ev, &missed), GLC_EMPTY, "EMPTY");

    glc_key k = key("p", "events");
    OK(glc_create_graph(e, &k, NULL, 0, NULL));
    glc_event_info info;
    OK(glc_subscription_recv(sub, 1000, &ev, NULL));
    OK(glc_event_get_info(ev, &info));
    CHECK(info.change == GLC_CHANGE_GRAPH_CREATED && eq(info.graph, info.graph_len, "events"));
    CHECK(eq(info.project, info.project_len, "p") && info.at_ms > 0);
    uint64_t first = info.seq;
    OK(glc_event_free(ev));

    /* A start commits a task and a state change together. */
    OK(glc_start(e, &k, NULL, 0, NULL, 0, NULL));
    int states = 0, tasks = 0;
    for (int i = 0; i < 2; i++) {
        OK(glc_subscription_recv(sub, 1000, &ev, NULL));
        OK(glc_event_get_info(ev, &info));
        CHECK(info.seq == first + 1 + (uint64_t)i);
        if (info.change == GLC_CHANGE_STATE) {
            states++;
            CHECK(info.from == GLC_STATE_STOPPED && info.to == GLC_STATE_STARTING);
        } else if (info.change == GLC_CHANGE_TASK) {
            tasks++;
            CHECK(info.task_kind == GLC_TASK_START && info.status == GLC_TASK_PENDING);
            CHECK(eq(info.kind_name, info.kind_name_len, "start") && info.reason_text == NULL);
        }
        OK(glc_event_free(ev));
    }
    CHECK(states == 1 && tasks == 1);

    /* Two commits unread: the second does not fit a buffer of one. */
    OK(glc_force_restart(e, &k, NULL, 0, NULL));
    OK(glc_force_restart(e, &k, NULL, 0, NULL));
    glc_status s;
    int got = 0;
    while ((s = glc_subscription_try_recv(sub, &ev, &missed)) == GLC_OK) {
        OK(glc_event_get_info(ev, &info));
        if (info.change == GLC_CHANGE_TASK && info.reason == GLC_REASON_FORCE_RESTARTED) {
            CHECK(eq(info.reason_text, info.reason_text_len - 36, "force-restarted by job "));
        }
        OK(glc_event_free(ev));
        got++;
    }
    EXPECT_CODE(s, GLC_LAGGED, "LAGGED");
    CHECK(got >= 1 && missed > first + 2);
    EXPECT_CODE(glc_subscription_recv(sub, 5, &ev, NULL), GLC_LAGGED, "LAGGED");
    OK(glc_subscription_free(sub));

    /* The stream closes once the engine is gone. */
    OK(glc_subscribe(e, &sub));
    OK(glc_engine_free(e));
    EXPECT_CODE(glc_subscription_recv(sub, 1000, &ev, NULL), GLC_CLOSED, "CLOSED");
    EXPECT_CODE(glc_subscription_try_recv(sub, &ev, NULL), GLC_CLOSED, "CLOSED");
    OK(glc_subscription_free(sub));
}

/* ---- the job channel: timeouts, shutdown, close ---------------------------- */

static void test_shutdown(void) {
    glc_engine e = {0};
    OK(glc_engine_new(NULL, &e));
    glc_key k = key("p", "g");
    glc_job job = {0};
    EXPECT_CODE(glc_recv_job(e, 10, &job), GLC_TIMEOUT, "TIMEOUT");
    EXPECT_CODE(glc_recv_job(e, 0, &job), GLC_TIMEOUT, "TIMEOUT");
    EXPECT_CODE(glc_try_recv_job(e, &job), GLC_EMPTY, "EMPTY");
    OK(glc_create_graph(e, &k, NULL, 0, NULL));
    OK(glc_start(e, &k, NULL, 0, NULL, 0, NULL));
    OK(glc_engine_shutdown(e));
    OK(glc_engine_shutdown(e));
    ENGINE(glc_force_restart(e, &k, NULL, 0, NULL), "SHUT_DOWN");
    glc_error err;
    OK(glc_last_error(&err));
    CHECK(err.http_status == 503);
    /* The job committed before the shutdown is still handed over. */
    OK(glc_recv_job(e, GLC_WAIT_FOREVER, &job));
    OK(glc_job_report(job, GLC_REPORT_SUCCEEDED, 0, NULL, 0, NULL, 0));
    EXPECT_CODE(glc_recv_job(e, GLC_WAIT_FOREVER, &job), GLC_CLOSED, "CLOSED");
    EXPECT_CODE(glc_try_recv_job(e, &job), GLC_CLOSED, "CLOSED");
    /* A job handle keeps the engine: reports work after the engine's free. */
    glc_job ticket = {0};
    OK(glc_register_task(e, &k, S("algo"), true, 0, NULL, 0, NULL, 0, &ticket));
    OK(glc_engine_free(e));
    OK(glc_job_report(ticket, GLC_REPORT_STARTED, 0, NULL, 0, NULL, 0));
    OK(glc_job_report(ticket, GLC_REPORT_SUCCEEDED, 0, NULL, 0, NULL, 0));
    OK(glc_job_free(ticket));
    OK(glc_job_free(job));
}

/* ---- misuse: pointers, text, lengths, values --------------------------------- */

static void test_bad_arguments(void) {
    glc_engine e = {0};
    OK(glc_engine_new(NULL, &e));
    glc_key k = key("p", "g");
    OK(glc_create_graph(e, &k, NULL, 0, NULL));
    OK(glc_start(e, &k, NULL, 0, NULL, 0, NULL));
    CHECK(run_next_job(e) == GLC_TASK_START);
    glc_graph g = {0};
    OK(glc_open_graph(e, &k, &g));
    glc_job ticket = {0};
    OK(glc_register_task(e, &k, S("algo"), true, 0, NULL, 0, NULL, 0, &ticket));
    glc_job_info ji;
    OK(glc_job_get_info(ticket, &ji));
    glc_task t = {0};
    OK(glc_get_task(e, &k, ji.id, &t));
    glc_page page = {0};
    OK(glc_list_tasks(e, &k, NULL, &page));
    glc_subscription sub = {0};
    OK(glc_subscribe(e, &sub));
    OK(glc_cancel(e, &k, ji.id, NULL, 0)); /* one event to read */
    glc_event ev = {0};
    OK(glc_subscription_recv(sub, 1000, &ev, NULL));
    OK(glc_job_free(ticket));
    OK(glc_register_task(e, &k, S("algo"), true, 0, NULL, 0, NULL, 0, &ticket));
    OK(glc_job_get_info(ticket, &ji));

    /* NULL where a pointer is required: every function that takes one. */
    const char *name;
    size_t n;
    glc_job_id id;
    INVALID(glc_abi_version(NULL));
    INVALID(glc_config_default(NULL));
    INVALID(glc_task_query_default(NULL));
    INVALID(glc_engine_new(NULL, NULL));
    INVALID(glc_create_graph(e, NULL, NULL, 0, NULL));
    INVALID(glc_remove_graph(e, NULL, NULL, 0));
    INVALID(glc_start(e, NULL, NULL, 0, NULL, 0, NULL));
    INVALID(glc_stop(e, NULL, NULL, 0, NULL));
    INVALID(glc_import(e, NULL, NULL, 0, NULL, 0, NULL));
    INVALID(glc_export(e, NULL, NULL, 0, NULL, 0, NULL));
    INVALID(glc_clear(e, NULL, false, NULL, 0, NULL));
    INVALID(glc_force_restart(e, NULL, NULL, 0, NULL));
    INVALID(glc_register_task(e, NULL, S("algo"), true, 0, NULL, 0, NULL, 0, &ticket));
    INVALID(glc_register_task(e, &k, S("algo"), true, 0, NULL, 0, NULL, 0, NULL));
    INVALID(glc_report(e, NULL, GLC_REPORT_STARTED, 0, NULL, 0, NULL, 0));
    INVALID(glc_cancel(e, NULL, ji.id, NULL, 0));
    INVALID(glc_open_graph(e, &k, NULL));
    INVALID(glc_open_graph(e, NULL, &g));
    INVALID(glc_graph_get_state(g, NULL, NULL));
    INVALID(glc_graph_serves_queries(g, NULL));
    INVALID(glc_get_state(e, &k, NULL));
    INVALID(glc_get_graph_info(e, &k, NULL));
    INVALID(glc_recv_job(e, 0, NULL));
    INVALID(glc_try_recv_job(e, NULL));
    INVALID(glc_now(e, NULL));
    INVALID(glc_next_deadline(e, NULL));
    INVALID(glc_job_get_info(ticket, NULL));
    INVALID(glc_job_is_void(ticket, NULL));
    INVALID(glc_job_id_format(ji.id, NULL, 64));
    INVALID(glc_job_id_parse(S("0190b6d8-4f1e-7c3a-9d2b-5e6f7a8b9c0d"), NULL));
    INVALID(glc_get_task(e, &k, ji.id, NULL));
    INVALID(glc_task_get_info(t, NULL));
    INVALID(glc_list_tasks(e, &k, NULL, NULL));
    INVALID(glc_list_project_tasks(e, S("p"), NULL, NULL));
    INVALID(glc_page_get_item(page, 0, NULL));
    INVALID(glc_subscribe(e, NULL));
    INVALID(glc_subscription_recv(sub, 0, NULL, NULL));
    INVALID(glc_subscription_try_recv(sub, NULL, NULL));
    INVALID(glc_event_get_info(ev, NULL));
    INVALID(glc_status_name(GLC_OK, NULL, &n));
    INVALID(glc_status_name(GLC_OK, &name, NULL));
    INVALID(glc_state_name(0, NULL, &n));
    INVALID(glc_task_status_name(0, &name, NULL));
    CHECK(glc_last_error(NULL) == GLC_INVALID_ARGUMENT); /* and records nothing */
    /* Optional out-pointers may be NULL. */
    OK(glc_page_get_counts(page, NULL, NULL));
    OK(glc_expire(e, 0, NULL, NULL));

    /* NULL with a length. */
    glc_key nul = {NULL, 1, "g", 1};
    INVALID(glc_create_graph(e, &nul, NULL, 0, NULL));
    INVALID(glc_start(e, &k, NULL, 4, NULL, 0, NULL));
    INVALID(glc_stop(e, &k, NULL, 4, NULL));
    INVALID(glc_register_task(e, &k, NULL, 4, true, 0, NULL, 0, NULL, 0, &ticket));
    INVALID(glc_job_report(ticket, GLC_REPORT_FAILED, 0, NULL, 4, NULL, 0));
    INVALID(glc_list_project_tasks(e, NULL, 4, NULL, &page));
    INVALID(glc_job_id_parse(NULL, 36, &id));

    /* Lengths no object can have: refused before anything is read. */
    glc_key huge = {"p", SIZE_MAX, "g", 1};
    INVALID(glc_get_state(e, &huge, &(glc_graph_state){0}));
    INVALID(glc_import(e, &k, "x", SIZE_MAX, NULL, 0, NULL));
    INVALID(glc_force_restart(e, &k, "x", SIZE_MAX, NULL));

    /* Text that is not UTF-8. */
    glc_key latin1 = {"caf\xe9", 4, "g", 1};
    INVALID(glc_create_graph(e, &latin1, NULL, 0, NULL));
    INVALID(glc_open_graph(e, &(glc_key){"p", 1, "\xff", 1}, &g));
    INVALID(glc_stop(e, &k, "\xc3\x28", 2, NULL));
    INVALID(glc_register_task(e, &k, "\x80", 1, true, 0, NULL, 0, NULL, 0, &ticket));
    INVALID(glc_job_report(ticket, GLC_REPORT_FAILED, 0, "bad \xfe", 5, NULL, 0));
    INVALID(glc_list_project_tasks(e, "\xff", 1, NULL, &page));
    INVALID(glc_job_id_parse("\xff", 1, &id));

    /* Zero lengths: empty, whatever the pointer. */
    OK(glc_job_report(ticket, GLC_REPORT_STARTED, 0, NULL, 0, "ignored", 0)); /* no request id */
    OK(glc_job_report(ticket, GLC_REPORT_FAILED, 0, "ignored", 0, NULL, 0)); /* empty message */
    glc_key empty = {"ignored", 0, "g", 1};
    ENGINE(glc_create_graph(e, &empty, NULL, 0, NULL), "INVALID_ID");
    ENGINE(glc_register_task(e, &k, "algo", 0, true, 0, NULL, 0, NULL, 0, &ticket), "INVALID_ID");
    ENGINE(glc_job_id_parse(NULL, 0, &id), "INVALID_ID");
    glc_key fresh = key("p", "fresh");
    OK(glc_create_graph(e, &fresh, NULL, 0, NULL));
    OK(glc_start(e, &fresh, "ignored", 0, "ignored", 0, NULL));
    glc_job job = {0};
    OK(glc_recv_job(e, 2000, &job));
    glc_job_info fi;
    OK(glc_job_get_info(job, &fi));
    CHECK(fi.payload == NULL && fi.payload_len == 0);
    OK(glc_job_report(job, GLC_REPORT_SUCCEEDED, 0, NULL, 0, NULL, 0));
    OK(glc_job_free(job));

    /* Values out of range, and the engine's own refusals. */
    INVALID(glc_job_report(ticket, 4, 0, NULL, 0, NULL, 0));
    INVALID(glc_report(e, &(glc_task_ref){k, ji.id, ji.epoch}, 99, 0, NULL, 0, NULL, 0));
    glc_task_query q;
    OK(glc_task_query_default(&q));
    q.statuses = 1u << 5;
    INVALID(glc_list_tasks(e, &k, &q, &page));
    INVALID(glc_list_project_tasks(e, S("p"), &q, &page));
    size_t len = 0;
    OK(glc_page_get_counts(page, NULL, &len));
    glc_task_info ti;
    INVALID(glc_page_get_item(page, len, &ti));
    INVALID(glc_page_get_item(page, SIZE_MAX, &ti));
    char small[36];
    INVALID(glc_job_id_format(ji.id, small, sizeof small));
    INVALID(glc_status_name(10, &name, &n));
    INVALID(glc_state_name(9, &name, &n));
    INVALID(glc_task_status_name(5, &name, &n));
    ENGINE(glc_job_id_parse(S("not-a-uuid"), &id), "INVALID_ID");
    ENGINE(glc_get_state(e, &(glc_key){"../etc", 6, "g", 1}, &(glc_graph_state){0}), "INVALID_ID");
    char long_id[300];
    memset(long_id, 'r', sizeof long_id);
    ENGINE(glc_stop(e, &k, long_id, 257, NULL), "INVALID_ID");
    ENGINE(glc_stop(e, &k, "tab\there", 8, NULL), "INVALID_ID");
    ENGINE(glc_cancel(e, &k, (glc_job_id){{0}}, NULL, 0), "TASK_NOT_FOUND");
    ENGINE(glc_report(e, &(glc_task_ref){k, ji.id, ji.epoch}, GLC_REPORT_STARTED, 0, NULL, 0, NULL,
                      0),
           "TASK_TERMINAL");

    OK(glc_event_free(ev));
    OK(glc_subscription_free(sub));
    OK(glc_page_free(page));
    OK(glc_task_free(t));
    OK(glc_job_free(ticket));
    OK(glc_graph_free(g));
    OK(glc_engine_free(e));
}

/* ---- misuse: handles ---------------------------------------------------- */

static void test_bad_handles(void) {
    glc_engine e = {0};
    OK(glc_engine_new(NULL, &e));
    glc_key k = key("p", "g");
    glc_graph g = {0};
    OK(glc_create_graph(e, &k, NULL, 0, &g));
    OK(glc_start(e, &k, NULL, 0, NULL, 0, NULL));
    CHECK(run_next_job(e) == GLC_TASK_START);
    glc_job j = {0};
    OK(glc_register_task(e, &k, S("algo"), true, 0, NULL, 0, NULL, 0, &j));
    glc_job_info ji;
    OK(glc_job_get_info(j, &ji));
    glc_task t = {0};
    OK(glc_get_task(e, &k, ji.id, &t));
    glc_page p = {0};
    OK(glc_list_tasks(e, &k, NULL, &p));
    glc_subscription s = {0};
    OK(glc_subscribe(e, &s));
    OK(glc_job_report(j, GLC_REPORT_STARTED, 0, NULL, 0, NULL, 0));
    glc_event ev = {0};
    OK(glc_subscription_recv(s, 1000, &ev, NULL));

    bool b;
    glc_graph_state st;
    glc_task_info ti;
    glc_event_info ei;
    glc_event ev2;
    glc_job j2;

    /* Mistyped: each handle's value passed as another type. */
    BAD_HANDLE(glc_engine_shutdown((glc_engine){g.id}));
    BAD_HANDLE(glc_graph_serves_queries((glc_graph){e.id}, &b));
    BAD_HANDLE(glc_job_is_void((glc_job){t.id}, &b));
    BAD_HANDLE(glc_task_get_info((glc_task){p.id}, &ti));
    BAD_HANDLE(glc_page_get_counts((glc_page){j.id}, NULL, NULL));
    BAD_HANDLE(glc_subscription_try_recv((glc_subscription){ev.id}, &ev2, NULL));
    BAD_HANDLE(glc_event_get_info((glc_event){s.id}, &ei));
    BAD_HANDLE(glc_job_free((glc_job){e.id}));

    /* Zero: no handle. Using it fails; freeing it does nothing. */
    glc_engine e0 = {0};
    BAD_HANDLE(glc_create_graph(e0, &k, NULL, 0, NULL));
    BAD_HANDLE(glc_remove_graph(e0, &k, NULL, 0));
    BAD_HANDLE(glc_start(e0, &k, NULL, 0, NULL, 0, NULL));
    BAD_HANDLE(glc_stop(e0, &k, NULL, 0, NULL));
    BAD_HANDLE(glc_import(e0, &k, NULL, 0, NULL, 0, NULL));
    BAD_HANDLE(glc_export(e0, &k, NULL, 0, NULL, 0, NULL));
    BAD_HANDLE(glc_clear(e0, &k, false, NULL, 0, NULL));
    BAD_HANDLE(glc_force_restart(e0, &k, NULL, 0, NULL));
    BAD_HANDLE(glc_register_task(e0, &k, S("algo"), true, 0, NULL, 0, NULL, 0, &j2));
    BAD_HANDLE(glc_report(e0, &(glc_task_ref){k, ji.id, ji.epoch}, 0, 0, NULL, 0, NULL, 0));
    BAD_HANDLE(glc_cancel(e0, &k, ji.id, NULL, 0));
    BAD_HANDLE(glc_open_graph(e0, &k, &g));
    BAD_HANDLE(glc_get_state(e0, &k, &st));
    BAD_HANDLE(glc_get_graph_info(e0, &k, &(glc_graph_info){0}));
    BAD_HANDLE(glc_recv_job(e0, 0, &j2));
    BAD_HANDLE(glc_try_recv_job(e0, &j2));
    BAD_HANDLE(glc_now(e0, &(uint64_t){0}));
    BAD_HANDLE(glc_next_deadline(e0, &(uint64_t){0}));
    BAD_HANDLE(glc_expire(e0, 0, NULL, NULL));
    BAD_HANDLE(glc_subscribe(e0, &s));
    BAD_HANDLE(glc_get_task(e0, &k, ji.id, &t));
    BAD_HANDLE(glc_list_tasks(e0, &k, NULL, &p));
    BAD_HANDLE(glc_list_project_tasks(e0, S("p"), NULL, &p));
    BAD_HANDLE(glc_engine_shutdown(e0));
    BAD_HANDLE(glc_graph_get_state((glc_graph){0}, &st, NULL));
    BAD_HANDLE(glc_job_report((glc_job){0}, GLC_REPORT_STARTED, 0, NULL, 0, NULL, 0));
    BAD_HANDLE(glc_job_get_info((glc_job){0}, &ji));
    BAD_HANDLE(glc_page_get_item((glc_page){0}, 0, &ti));
    BAD_HANDLE(glc_subscription_recv((glc_subscription){0}, 0, &ev2, NULL));
    OK(glc_engine_free(e0));
    OK(glc_graph_free((glc_graph){0}));
    OK(glc_job_free((glc_job){0}));
    OK(glc_task_free((glc_task){0}));
    OK(glc_page_free((glc_page){0}));
    OK(glc_subscription_free((glc_subscription){0}));
    OK(glc_event_free((glc_event){0}));

    /* Made up: values this library never handed out. */
    const uint64_t made_up[] = {1, 7, 0xdeadbeef, UINT64_MAX, 0x0100000000000000ull,
                                g.id ^ (1ull << 40), e.id ^ (1ull << 33)};
    for (size_t i = 0; i < sizeof made_up / sizeof made_up[0]; i++) {
        uint64_t v = made_up[i];
        BAD_HANDLE(glc_get_state((glc_engine){v}, &k, &st));
        BAD_HANDLE(glc_graph_get_state((glc_graph){v}, &st, NULL));
        BAD_HANDLE(glc_job_is_void((glc_job){v}, &b));
        BAD_HANDLE(glc_task_get_info((glc_task){v}, &ti));
        BAD_HANDLE(glc_page_get_counts((glc_page){v}, NULL, NULL));
        BAD_HANDLE(glc_subscription_try_recv((glc_subscription){v}, &ev2, NULL));
        BAD_HANDLE(glc_event_get_info((glc_event){v}, &ei));
        BAD_HANDLE(glc_graph_free((glc_graph){v}));
    }

    /* Freed: every type, used after its free and freed twice. What was
     * borrowed from a live handle stays valid while that handle lives. */
    OK(glc_event_get_info(ev, &ei));
    OK(glc_event_free(ev));
    BAD_HANDLE(glc_event_get_info(ev, &ei));
    BAD_HANDLE(glc_event_free(ev));
    OK(glc_subscription_free(s));
    BAD_HANDLE(glc_subscription_recv(s, 0, &ev2, NULL));
    BAD_HANDLE(glc_subscription_free(s));
    OK(glc_page_free(p));
    BAD_HANDLE(glc_page_get_item(p, 0, &ti));
    BAD_HANDLE(glc_page_free(p));
    OK(glc_task_free(t));
    BAD_HANDLE(glc_task_get_info(t, &ti));
    BAD_HANDLE(glc_task_free(t));
    CHECK(eq(ji.kind_name, ji.kind_name_len, "algo")); /* j is live: its strings are too */
    OK(glc_job_free(j));
    BAD_HANDLE(glc_job_report(j, GLC_REPORT_SUCCEEDED, 0, NULL, 0, NULL, 0));
    BAD_HANDLE(glc_job_get_info(j, &ji));
    BAD_HANDLE(glc_job_free(j));
    OK(glc_graph_free(g));
    BAD_HANDLE(glc_graph_serves_queries(g, &b));
    BAD_HANDLE(glc_graph_free(g));
    OK(glc_engine_free(e));
    BAD_HANDLE(glc_recv_job(e, 0, &j2));
    BAD_HANDLE(glc_engine_shutdown(e));
    BAD_HANDLE(glc_engine_free(e));
    /* A new handle in a freed one's slot does not revive the old one. */
    glc_engine e2 = {0};
    OK(glc_engine_new(NULL, &e2));
    CHECK(e2.id != e.id);
    BAD_HANDLE(glc_engine_shutdown(e));
    OK(glc_engine_free(e2));
}

/* ---- the last error ------------------------------------------------------ */

static void test_last_error(void) {
    glc_error err;
    OK(glc_last_error_clear());
    CHECK(glc_last_error(&err) == GLC_EMPTY); /* reading records nothing */
    BAD_HANDLE(glc_engine_shutdown((glc_engine){42}));
    OK(glc_last_error(&err));
    CHECK(err.status == GLC_INVALID_HANDLE && err.http_status == 0);
    uint32_t v;
    OK(glc_abi_version(&v)); /* a success leaves the last error */
    OK(glc_last_error(&err));
    CHECK(err.status == GLC_INVALID_HANDLE);
    OK(glc_last_error_clear());
    CHECK(glc_last_error(&err) == GLC_EMPTY); /* reading records nothing */
}

/* ---- threads --------------------------------------------------------------- */

enum { GRAPHS = 8, HOSTS = 4, CYCLES = 40 };

struct shared {
    glc_engine e;
    glc_graph graphs[GRAPHS];
    atomic_int stop_reading;
};

/* A worker: runs jobs until the channel closes. Reports on jobs a forced
 * restart voided are refused; that is the contract, not a failure. */
static void *worker(void *arg) {
    struct shared *sh = arg;
    glc_job job;
    glc_status s;
    while ((s = glc_recv_job(sh->e, GLC_WAIT_FOREVER, &job)) == GLC_OK) {
        glc_job_info info;
        OK(glc_job_get_info(job, &info));
        glc_status r = glc_job_report(job, GLC_REPORT_STARTED, 0, NULL, 0, NULL, 0);
        if (r == GLC_OK) {
            r = glc_job_report(job, GLC_REPORT_SUCCEEDED, 0, NULL, 0, NULL, 0);
        }
        CHECK(r == GLC_OK || r == GLC_ENGINE_ERROR);
        if (r == GLC_ENGINE_ERROR) {
            glc_error err;
            OK(glc_last_error(&err));
            CHECK(eq(err.code, err.code_len, "STALE_EPOCH") ||
                  eq(err.code, err.code_len, "TASK_TERMINAL"));
        }
        OK(glc_job_free(job));
    }
    EXPECT_CODE(s, GLC_CLOSED, "CLOSED");
    return NULL;
}

struct host_arg {
    struct shared *sh;
    int n;
};

/* A host thread: task cycles on its own graph, and a failure of its own
 * whose last error no other thread's failure replaces. */
static void *host(void *arg) {
    struct host_arg *h = arg;
    char graph[16], missing[24];
    snprintf(graph, sizeof graph, "g%d", h->n);
    snprintf(missing, sizeof missing, "missing-%d", h->n);
    glc_key k = key("p", graph);
    glc_key gone = key("p", missing);
    for (int i = 0; i < CYCLES; i++) {
        glc_job t;
        OK(glc_register_task(h->sh->e, &k, S("cycle"), true, 0, NULL, 0, NULL, 0, &t));
        OK(glc_job_report(t, GLC_REPORT_STARTED, 0, NULL, 0, NULL, 0));
        OK(glc_job_report(t, GLC_REPORT_PROGRESS, 50, NULL, 0, NULL, 0));
        OK(glc_job_report(t, GLC_REPORT_SUCCEEDED, 0, NULL, 0, NULL, 0));
        OK(glc_job_free(t));
        glc_graph_state st;
        ENGINE(glc_get_state(h->sh->e, &gone, &st), "GRAPH_NOT_FOUND");
        glc_error err;
        OK(glc_last_error(&err));
        CHECK(strstr(err.message, missing) != NULL);
    }
    return NULL;
}

/* A reader: reads graph handles while the main thread frees them. */
static void *reader(void *arg) {
    struct shared *sh = arg;
    while (!atomic_load(&sh->stop_reading)) {
        for (int i = 0; i < GRAPHS; i++) {
            glc_graph_state st;
            glc_status s = glc_graph_get_state(sh->graphs[i], &st, NULL);
            CHECK(s == GLC_OK || s == GLC_INVALID_HANDLE);
        }
    }
    return NULL;
}

/* Waits until every graph runs with no live task. */
static int all_settled(glc_engine e) {
    for (int tries = 0; tries < 2500; tries++) {
        int settled = 1;
        for (int i = 0; i < GRAPHS && settled; i++) {
            char graph[16];
            snprintf(graph, sizeof graph, "g%d", i);
            glc_key k = key("p", graph);
            glc_graph_info gi;
            OK(glc_get_graph_info(e, &k, &gi));
            settled = gi.state == GLC_STATE_RUNNING && gi.live_tasks == 0;
        }
        if (settled) {
            return 1;
        }
        sleep_ms(2);
    }
    return 0;
}

static void test_threads(void) {
    struct shared sh;
    memset(&sh, 0, sizeof sh);
    OK(glc_engine_new(NULL, &sh.e));
    for (int i = 0; i < GRAPHS; i++) {
        char graph[16];
        snprintf(graph, sizeof graph, "g%d", i);
        glc_key k = key("p", graph);
        OK(glc_create_graph(sh.e, &k, NULL, 0, &sh.graphs[i]));
    }
    pthread_t workers[2], readers[2], hosts[HOSTS];
    for (int i = 0; i < 2; i++) {
        CHECK(pthread_create(&workers[i], NULL, worker, &sh) == 0);
        CHECK(pthread_create(&readers[i], NULL, reader, &sh) == 0);
    }
    for (int i = 0; i < GRAPHS; i++) {
        char graph[16];
        snprintf(graph, sizeof graph, "g%d", i);
        glc_key k = key("p", graph);
        OK(glc_start(sh.e, &k, NULL, 0, NULL, 0, NULL));
    }
    CHECK(all_settled(sh.e));
    struct host_arg args[HOSTS];
    for (int i = 0; i < HOSTS; i++) {
        args[i].sh = &sh;
        args[i].n = i;
        CHECK(pthread_create(&hosts[i], NULL, host, &args[i]) == 0);
    }
    /* Forced restarts of the other graphs while the hosts and workers run. */
    for (int round = 0; round < 10; round++) {
        for (int i = HOSTS; i < GRAPHS; i++) {
            char graph[16];
            snprintf(graph, sizeof graph, "g%d", i);
            glc_key k = key("p", graph);
            OK(glc_force_restart(sh.e, &k, NULL, 0, NULL));
        }
    }
    /* Graph handles freed under the readers' feet. */
    for (int i = 0; i < GRAPHS; i++) {
        OK(glc_graph_free(sh.graphs[i]));
    }
    for (int i = 0; i < HOSTS; i++) {
        CHECK(pthread_join(hosts[i], NULL) == 0);
    }
    CHECK(all_settled(sh.e));
    atomic_store(&sh.stop_reading, 1);
    for (int i = 0; i < 2; i++) {
        CHECK(pthread_join(readers[i], NULL) == 0);
    }
    OK(glc_engine_free(sh.e)); /* wakes the workers: their channel closes */
    for (int i = 0; i < 2; i++) {
        CHECK(pthread_join(workers[i], NULL) == 0);
    }
}

int main(void) {
    test_main_path();
    test_events();
    test_shutdown();
    test_bad_arguments();
    test_bad_handles();
    test_last_error();
    test_threads();
    /* Every handle made was freed (LeakSanitizer cannot tell: the
     * registry holds what a handle stands for until its free). */
    size_t live = 99;
    OK(glc_live_handles(&live));
    CHECK(live == 0);
    INVALID(glc_live_handles(NULL));
    OK(glc_last_error_clear());
    int p = atomic_load(&passed), f = atomic_load(&failed);
    printf("abi_test: %d passed, %d failed\n", p, f);
    return f == 0 ? 0 : 1;
}
