//! Memory per retained terminal task (without a host payload), per idle
//! graph and per running graph, measured with a counting global
//! allocator.
//!
//! Run with `cargo bench --bench memory`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use graph_lifecycle::{Config, Engine, GraphId, GraphKey, HostKind, ProjectId, Report, TaskSpec};

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Live bytes per retained terminal task when one graph retains `n`.
fn per_task(n: usize) -> f64 {
    let config = Config::default()
        .max_retained_per_graph(n)
        .retention_age(None);
    let (engine, jobs) = Engine::builder().config(config).build();
    let key = GraphKey::parse("bench", "tasks").expect("key");
    engine.create_graph(&key).expect("create");
    engine.start(&key).expect("start");
    let job = jobs.try_recv().expect("job");
    engine.report(&job.task, Report::Succeeded).expect("report");
    let kind = HostKind::new("algo").expect("kind");
    // Counted: the tasks and the table's growth to hold them.
    let before = live();
    for _ in 0..n {
        let t = engine
            .register_task(&key, TaskSpec::new(kind.clone()))
            .expect("register");
        engine.report(&t.task, Report::Succeeded).expect("report");
    }
    let info = engine.graph_info(&key).expect("info");
    assert_eq!(info.retained_tasks, n);
    (live() - before) as f64 / n as f64
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes: &[usize] = if full {
        &[1_000, 10_000, 60_000, 100_000]
    } else {
        &[1_000]
    };
    for &n in sizes {
        println!(
            "bytes per retained terminal task: {:.1} ({n} tasks retained)",
            per_task(n)
        );
    }

    // Per graph: Stopped graphs with empty tables, their graph ids'
    // strings counted (the engine keeps them; the project's is shared).
    let n_graphs: usize = if full { 10_000 } else { 100 };
    let (engine, jobs) = Engine::builder().build();
    let project = ProjectId::new("bench").expect("project");
    let mut keys = Vec::with_capacity(n_graphs);
    let before = live();
    keys.extend((0..n_graphs).map(|i| {
        let graph = GraphId::new(&format!("graph-{i:06}")).expect("graph id");
        GraphKey::new(project.clone(), graph)
    }));
    for k in &keys {
        engine.create_graph(k).expect("create");
    }
    let per_graph = (live() - before) as f64 / n_graphs as f64;
    println!(
        "bytes per idle graph (Stopped, empty task table, key included): {per_graph:.1} ({n_graphs} graphs)"
    );
    // The same graphs started: each now retains its start job.
    let before = live();
    for k in &keys {
        engine.start(k).expect("start");
        let job = jobs.try_recv().expect("job");
        engine.report(&job.task, Report::Succeeded).expect("report");
    }
    let started = (live() - before) as f64 / n_graphs as f64;
    println!(
        "bytes per running graph (its start job retained): {:.1} ({n_graphs} graphs)",
        per_graph + started
    );
}
