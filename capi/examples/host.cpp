// A C++ host in miniature, through the C ABI: the Rust demo
// (examples/demo.rs) made small. An engine, three worker threads that run
// the jobs it hands out, a host task on a thread of its own, an event
// printer, and a forced restart in the middle of an import: the import's
// worker has its next report refused as STALE_EPOCH, the restart job
// succeeds, and every graph ends up running.
//
// Built and run by capi/build-examples.sh. It prints a timeline (elapsed
// milliseconds, graph, who, what), then the task table of the restarted
// graph, and exits non-zero if the outcome is not the expected one.
// Timings vary from run to run; the outcome does not.

#include "graph_lifecycle.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// One unit of simulated work, and units per lifecycle job.
constexpr milliseconds kStep{80};
constexpr int kJobSteps = 5;
// The longest the host waits for anything before it gives up.
constexpr milliseconds kPatience{5000};

std::mutex print_lock;
const Clock::time_point t0 = Clock::now();

std::string text(const char *p, size_t len) { return len ? std::string(p, len) : std::string(); }

// A job id by its last 8 hex digits (the first ones of a time-ordered id
// are alike for every job of the run).
std::string short_id(const glc_job_id &id) {
    char buf[37];
    glc_job_id_format(id, buf, sizeof buf);
    return std::string(buf + 28);
}

void say(const std::string &graph, const std::string &who, const std::string &what) {
    long ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
    std::lock_guard<std::mutex> g(print_lock);
    std::printf("%7ld  %-16s %-10s %s\n", ms, graph.c_str(), who.c_str(), what.c_str());
    std::fflush(stdout);
}

// The calling thread's last error: code and message.
std::string last_error() {
    glc_error e;
    if (glc_last_error(&e) != GLC_OK) return "no error";
    return text(e.code, e.code_len) + " (HTTP " + std::to_string(e.http_status) +
           "): " + text(e.message, e.message_len);
}

std::string last_code() {
    glc_error e;
    return glc_last_error(&e) == GLC_OK ? text(e.code, e.code_len) : std::string();
}

// Throws with the last error unless the call succeeded.
void must(glc_status s, const char *what) {
    if (s != GLC_OK) throw std::runtime_error(std::string(what) + ": " + last_error());
}

// A graph key whose strings live as long as it does.
struct Key {
    std::string project, graph;
    glc_key c() const { return {project.data(), project.size(), graph.data(), graph.size()}; }
    std::string name() const { return project + "/" + graph; }
};

std::string state_name(glc_graph_state s) {
    const char *n = nullptr;
    size_t len = 0;
    return glc_state_name(s, &n, &len) == GLC_OK ? text(n, len) : "?";
}

template <typename F>
void wait_until(const std::string &what, F done) {
    auto give_up = Clock::now() + kPatience;
    while (!done()) {
        if (Clock::now() > give_up) throw std::runtime_error("waited too long for " + what);
        std::this_thread::sleep_for(milliseconds(2));
    }
}

// A worker of the host's pool: runs jobs until the engine shuts down and
// the channel is drained. Each unit of work is reported when done; a
// refused report means the work is void (a forced restart, a cancel or a
// timeout ended the job), and the worker drops it.
void worker(glc_engine engine, std::string name, std::atomic<int> &refused,
            std::atomic<int> &stale) {
    glc_job job{};
    while (glc_recv_job(engine, GLC_WAIT_FOREVER, &job) == GLC_OK) {
        glc_job_info info;
        must(glc_job_get_info(job, &info), "job info");
        std::string graph = text(info.project, info.project_len) + "/" +
                            text(info.graph, info.graph_len);
        std::string kind = text(info.kind_name, info.kind_name_len);
        std::string id = short_id(info.id);
        say(graph, name, "picked up " + kind + " " + id);
        bool is_void = false;
        must(glc_job_is_void(job, &is_void), "token");
        if (is_void) {
            say(graph, name, id + ": token void before it began, skipped");
        } else if (glc_job_report(job, GLC_REPORT_STARTED, 0, nullptr, 0, nullptr, 0) == GLC_OK) {
            for (int step = 1; step <= kJobSteps; step++) {
                std::this_thread::sleep_for(kStep);  // one unit of the real work
                bool last = step == kJobSteps;
                uint8_t pct = static_cast<uint8_t>(step * (100 / kJobSteps));
                glc_status s = glc_job_report(job, last ? GLC_REPORT_SUCCEEDED : GLC_REPORT_PROGRESS,
                                              pct, nullptr, 0, nullptr, 0);
                if (s != GLC_OK) {
                    std::string code = last_code();
                    if (code == "STALE_EPOCH" || code == "TASK_TERMINAL") refused++;
                    if (code == "STALE_EPOCH") stale++;
                    say(graph, name, id + ": report refused: " + last_error());
                    say(graph, name, id + ": the work is void, dropping it");
                    break;
                }
            }
        }
        must(glc_job_free(job), "free job");
    }
}

// A host task on a thread of its own: iterations, each followed by a token
// check before its progress is published.
void host_task(glc_job ticket, int iterations) {
    glc_job_info info;
    must(glc_job_get_info(ticket, &info), "ticket info");
    std::string graph = text(info.project, info.project_len) + "/" +
                        text(info.graph, info.graph_len);
    std::string who = text(info.kind_name, info.kind_name_len);
    std::string id = short_id(info.id);
    if (glc_job_report(ticket, GLC_REPORT_STARTED, 0, nullptr, 0, nullptr, 0) != GLC_OK) return;
    for (int i = 1; i <= iterations; i++) {
        std::this_thread::sleep_for(kStep);  // one iteration
        bool is_void = false;
        must(glc_job_is_void(ticket, &is_void), "token");
        if (is_void) {
            say(graph, who, id + ": token void after iteration " + std::to_string(i) +
                                ", stopping early");
            return;
        }
        bool last = i == iterations;
        uint8_t pct = static_cast<uint8_t>(i * 100 / iterations);
        if (glc_job_report(ticket, last ? GLC_REPORT_SUCCEEDED : GLC_REPORT_PROGRESS, pct, nullptr,
                           0, nullptr, 0) != GLC_OK) {
            say(graph, who, id + ": " + last_error());
            return;
        }
    }
}

// Prints every event as it comes, until told to stop or the stream ends.
void print_events(glc_subscription sub, uint64_t t0_ms, std::atomic<bool> &stop) {
    for (;;) {
        glc_event ev{};
        uint64_t missed = 0;
        glc_status s = glc_subscription_recv(sub, 50, &ev, &missed);
        if (s == GLC_TIMEOUT) {
            if (stop) return;
            continue;
        }
        if (s == GLC_LAGGED) {
            say("", "event", "stream cut off at #" + std::to_string(missed));
            return;
        }
        if (s != GLC_OK) return;
        glc_event_info e;
        must(glc_event_get_info(ev, &e), "event info");
        std::string what;
        switch (e.change) {
            case GLC_CHANGE_GRAPH_CREATED: what = "graph created, stopped"; break;
            case GLC_CHANGE_GRAPH_REMOVED: what = "graph removed"; break;
            case GLC_CHANGE_STATE:
                what = "state " + state_name(e.from) + " -> " + state_name(e.to) + " (epoch " +
                       std::to_string(e.epoch) + ")";
                break;
            case GLC_CHANGE_TASK: {
                const char *st = nullptr;
                size_t st_len = 0;
                glc_task_status_name(e.status, &st, &st_len);
                what = "task " + short_id(e.job) + " " + text(e.kind_name, e.kind_name_len) +
                       ": " + text(st, st_len) + " " + std::to_string(e.progress) + "%";
                if (e.reason == GLC_REASON_FORCE_RESTARTED) {
                    what += ", force-restarted by job " + short_id(e.reason_job);
                } else if (e.reason != GLC_REASON_NONE) {
                    what += ", " + text(e.reason_text, e.reason_text_len);
                }
                break;
            }
            case GLC_CHANGE_EVICTED: what = std::to_string(e.evicted) + " ended tasks evicted"; break;
        }
        long ms = static_cast<long>(e.at_ms > t0_ms ? e.at_ms - t0_ms : 0);
        {
            std::lock_guard<std::mutex> g(print_lock);
            std::printf("%7ld  %-16s %-10s #%-4llu %s\n", ms,
                        (text(e.project, e.project_len) + "/" + text(e.graph, e.graph_len)).c_str(),
                        "event", static_cast<unsigned long long>(e.seq), what.c_str());
            std::fflush(stdout);
        }
        must(glc_event_free(ev), "free event");
    }
}

int run() {
    glc_engine engine{};
    must(glc_engine_new(nullptr, &engine), "engine");
    uint64_t t0_ms = 0;
    must(glc_now(engine, &t0_ms), "now");

    std::printf("graph-lifecycle C++ host: 3 graphs in 2 projects, 3 workers, one forced restart\n");
    std::printf("(job ids are shown by their last 8 hex digits)\n\n");
    std::printf("%7s  %-16s %-10s what\n", "elapsed", "graph", "who");

    glc_subscription sub{};
    must(glc_subscribe(engine, &sub), "subscribe");
    std::atomic<bool> printer_stop{false};
    std::thread printer(print_events, sub, t0_ms, std::ref(printer_stop));

    std::atomic<int> refused{0}, stale{0};
    std::vector<std::thread> workers;
    for (int n = 1; n <= 3; n++) {
        workers.emplace_back(worker, engine, "worker-" + std::to_string(n), std::ref(refused),
                             std::ref(stale));
    }

    // ---- three graphs, created and started ----------------------------------
    const Key movies{"tenant-a", "movies"}, social{"tenant-a", "social"}, roads{"tenant-b", "roads"};
    const Key *all[] = {&movies, &social, &roads};
    std::vector<glc_graph> handles;
    for (const Key *k : all) {
        glc_key c = k->c();
        glc_graph g{};
        glc_job_id job;
        must(glc_create_graph(engine, &c, nullptr, 0, &g), "create");
        must(glc_start(engine, &c, nullptr, 0, nullptr, 0, &job), "start");
        handles.push_back(g);
        say(k->name(), "main", "create, then start: job " + short_id(job));
    }
    // The query path: one atomic load per read, no lock.
    for (glc_graph g : handles) {
        wait_until("every graph to run", [&] {
            bool serves = false;
            return glc_graph_serves_queries(g, &serves) == GLC_OK && serves;
        });
    }

    // Graphs of one project are invisible from another.
    const Key elsewhere{"tenant-b", "movies"};
    glc_key ce = elsewhere.c();
    glc_graph_info gi;
    if (glc_get_graph_info(engine, &ce, &gi) != GLC_OK) say(elsewhere.name(), "main", "refused: " + last_error());

    // ---- maintenance --------------------------------------------------------
    glc_key cm = movies.c(), cs = social.c();
    glc_job_id import_id, export_id;
    const std::string src = "s3://bucket/movies/edges.csv", dst = "s3://bucket/social/dump/";
    must(glc_import(engine, &cm, src.data(), src.size(), nullptr, 0, &import_id), "import");
    say(movies.name(), "main", "import: job " + short_id(import_id));
    must(glc_export(engine, &cs, dst.data(), dst.size(), nullptr, 0, &export_id), "export");
    say(social.name(), "main", "export: job " + short_id(export_id));

    const std::string kind = "pagerank", params = "{\"iterations\": 10}";
    glc_job ticket{};
    must(glc_register_task(engine, &cm, kind.data(), kind.size(), true, 0, params.data(),
                           params.size(), nullptr, 0, &ticket),
         "register pagerank");
    glc_job_info ti;
    must(glc_job_get_info(ticket, &ti), "ticket info");
    say(movies.name(), "main", "register host task pagerank: " + short_id(ti.id));
    std::thread pagerank(host_task, ticket, 10);

    // The transition table refuses what does not fit the state.
    if (glc_clear(engine, &cm, false, nullptr, 0, nullptr) != GLC_OK) {
        say(movies.name(), "main", "refused: " + last_error());
    }

    // ---- the forced restart, in the middle of the import ---------------------
    wait_until("the import to reach 40%", [&] {
        glc_task t{};
        glc_task_info info;
        bool far = false;
        if (glc_get_task(engine, &cm, import_id, &t) == GLC_OK) {
            far = glc_task_get_info(t, &info) == GLC_OK && info.progress >= 40;
            glc_task_free(t);
        }
        return far;
    });
    // The operator's console names the request, so that a retry after a
    // lost answer is recognised.
    const std::string request = "ticket-4711";
    glc_restart restart, retry;
    must(glc_force_restart(engine, &cm, request.data(), request.size(), &restart), "force_restart");
    say(movies.name(), "main",
        "force_restart: job " + short_id(restart.job) + " (epoch " + std::to_string(restart.epoch) +
            ", " + std::to_string(restart.failed) + " live tasks failed)");
    must(glc_force_restart(engine, &cm, request.data(), request.size(), &retry), "retry");
    bool same = std::memcmp(&retry.job, &restart.job, sizeof restart.job) == 0 &&
                retry.epoch == restart.epoch;
    say(movies.name(), "main",
        "force_restart retried with the same request id: job " + short_id(retry.job) +
            ", the same restart: " + (same ? "true" : "false"));
    glc_graph_state st;
    uint64_t epoch = 0;
    bool serves = true;
    must(glc_graph_get_state(handles[0], &st, &epoch), "state");
    must(glc_graph_serves_queries(handles[0], &serves), "serves");
    say(movies.name(), "main",
        "query path reads " + state_name(st) + " at epoch " + std::to_string(epoch) +
            " without a lock: serves queries: " + (serves ? "true" : "false"));

    // ---- wind down ----------------------------------------------------------
    for (const Key *k : all) {
        glc_key c = k->c();
        wait_until("every graph to settle", [&] {
            glc_graph_info info;
            return glc_get_graph_info(engine, &c, &info) == GLC_OK &&
                   info.state == GLC_STATE_RUNNING && info.live_tasks == 0;
        });
    }
    pagerank.join();
    must(glc_engine_shutdown(engine), "shutdown");
    for (auto &w : workers) w.join();

    // ---- the restarted graph's task table, and the check ------------------------
    glc_page page{};
    size_t total = 0;
    must(glc_list_tasks(engine, &cm, nullptr, &page), "list");
    must(glc_page_get_counts(page, &total, nullptr), "counts");
    std::printf("\ntask table of %s, newest first\n", movies.name().c_str());
    std::printf("%-8s %-10s %5s  %-10s %4s  reason\n", "id", "kind", "epoch", "status", "prog");
    int failed_by_restart = 0;
    bool import_failed = false, restart_ok = false;
    for (size_t i = 0; i < total; i++) {
        glc_task_info t;
        must(glc_page_get_item(page, i, &t), "item");
        const char *status = nullptr;
        size_t status_len = 0;
        glc_task_status_name(t.status, &status, &status_len);
        std::string reason = t.reason == GLC_REASON_FORCE_RESTARTED
                                 ? "force-restarted by job " + short_id(t.reason_job)
                                 : text(t.reason_text, t.reason_text_len);
        std::printf("%-8s %-10s %5llu  %-10s %3u%%  %s\n", short_id(t.id).c_str(),
                    text(t.kind_name, t.kind_name_len).c_str(),
                    static_cast<unsigned long long>(t.epoch), text(status, status_len).c_str(),
                    static_cast<unsigned>(t.progress), reason.c_str());
        bool by_restart = t.reason == GLC_REASON_FORCE_RESTARTED &&
                          std::memcmp(&t.reason_job, &restart.job, sizeof restart.job) == 0;
        failed_by_restart += by_restart;
        if (std::memcmp(&t.id, &import_id, sizeof import_id) == 0) {
            import_failed = t.status == GLC_TASK_FAILED && by_restart;
        }
        if (std::memcmp(&t.id, &restart.job, sizeof restart.job) == 0) {
            restart_ok = t.kind == GLC_TASK_RESTART && t.status == GLC_TASK_SUCCEEDED;
        }
    }
    must(glc_page_free(page), "free page");

    std::printf("\n");
    bool all_running = true;
    for (std::size_t i = 0; i < handles.size(); i++) {
        glc_key c = all[i]->c();
        glc_graph_info info;
        must(glc_get_graph_info(engine, &c, &info), "info");
        all_running = all_running && info.state == GLC_STATE_RUNNING && info.live_tasks == 0;
        std::printf("%-16s %s at epoch %llu, %zu live tasks, %zu ended tasks kept\n",
                    all[i]->name().c_str(), state_name(info.state).c_str(),
                    static_cast<unsigned long long>(info.epoch), info.live_tasks,
                    info.retained_tasks);
        if (i == 0) all_running = all_running && info.epoch == 1;
    }

    for (glc_graph g : handles) must(glc_graph_free(g), "free graph");
    must(glc_job_free(ticket), "free ticket");
    must(glc_engine_free(engine), "free engine");
    printer_stop = true;
    printer.join();
    must(glc_subscription_free(sub), "free subscription");

    bool ok = same && import_failed && restart_ok && failed_by_restart == 2 && refused == 1 &&
              stale == 1 &&
              all_running;
    std::printf("\n");
    if (!ok) {
        std::printf("unexpected outcome: %d tasks force-restarted, %d reports refused, import "
                    "failed by the restart: %d, restart succeeded: %d, every graph running: %d\n",
                    failed_by_restart, refused.load(), import_failed, restart_ok, all_running);
        return 1;
    }
    std::printf("outcome as expected: 2 tasks force-restarted by job %s, 1 stale report refused "
                "(STALE_EPOCH), the restart succeeded, every graph running\n",
                short_id(restart.job).c_str());
    return 0;
}

}  // namespace

int main() {
    try {
        return run();
    } catch (const std::exception &e) {
        std::fprintf(stderr, "host failed: %s\n", e.what());
        return 1;
    }
}
