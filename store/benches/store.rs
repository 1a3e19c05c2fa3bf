//! The store's figures, measured in one run and printed as a table:
//!
//! - import throughput (edges per second) against parsing the same CSV
//!   with the same reader and building nothing;
//! - PageRank against petgraph's `page_rank` on the same graph and the
//!   same number of iterations (petgraph's visits every pair of vertices
//!   each iteration, so the comparison runs on a graph it can finish);
//! - k-hop query latency, p50 and p99;
//! - memory per edge, counted from the containers and seen in the
//!   process's resident set, and stored bytes per edge.
//!
//! `cargo bench -p graph-lifecycle-store --bench store`; `BENCH_EDGES`
//! sets the large graph's size (default 1,000,000 edges, a tenth as many
//! vertices).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use graph_lifecycle_store::import::{ImportSpec, Source, import};
use graph_lifecycle_store::{Caps, GraphData, NoControl, algo, format};

struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % u64::from(n)) as u32
    }
}

/// Writes a graph of `edges` edges among `edges / 10` vertices, each
/// edge with a `double` property; returns the spec to import it.
fn generate(dir: &Path, edges: usize, seed: u64) -> ImportSpec {
    std::fs::write(
        dir.join("schema.xml"),
        r#"<PMML><labels>
          <label name="node"><properties>
            <property name="n" cardinality="single" dataType="long"/>
          </properties></label>
          <label name="link"><properties>
            <property name="w" cardinality="single" dataType="double"/>
          </properties></label>
        </labels></PMML>"#,
    )
    .unwrap();
    let n = (edges / 10).max(10) as u32;
    let mut v = std::io::BufWriter::new(std::fs::File::create(dir.join("vertices.csv")).unwrap());
    for i in 0..n {
        writeln!(v, "v{i},node,{i}").unwrap();
    }
    v.flush().unwrap();
    let mut e = std::io::BufWriter::new(std::fs::File::create(dir.join("edges.csv")).unwrap());
    let mut rng = Lcg(seed);
    for _ in 0..edges {
        let a = rng.below(n);
        let b = rng.below(n).min(rng.below(n));
        writeln!(e, "v{a},v{b},link,{}.{}", rng.below(10), rng.below(100)).unwrap();
    }
    e.flush().unwrap();
    let src = |name: &str| {
        Some(Source {
            name: name.into(),
            path: dir.join(name),
        })
    };
    ImportSpec {
        schema: src("schema.xml"),
        vertices: src("vertices.csv"),
        edges: src("edges.csv"),
        ..ImportSpec::default()
    }
}

/// Reads every record of the vertex and edge files as the importer's
/// reader does, building nothing; returns the records read.
fn parse_only(spec: &ImportSpec) -> u64 {
    let mut n = 0;
    for src in [&spec.vertices, &spec.edges].into_iter().flatten() {
        let f = std::fs::File::open(&src.path).unwrap();
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(64 << 10)
            .from_reader(std::io::BufReader::with_capacity(64 << 10, f));
        let mut rec = csv::StringRecord::new();
        while r.read_record(&mut rec).unwrap() {
            n += rec.len() as u64;
        }
    }
    n
}

/// Resident memory of this process, in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The best of `runs` timings of `f`.
fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut out = None;
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        out = Some(v);
    }
    (best, out.unwrap())
}

fn main() {
    let edges: usize = std::env::var("BENCH_EDGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let spec = generate(dir.path(), edges, 1);
    let bytes: u64 = ["vertices.csv", "edges.csv"]
        .iter()
        .map(|f| std::fs::metadata(dir.path().join(f)).unwrap().len())
        .sum();
    println!(
        "graph: {} vertices, {edges} edges, {:.1} MiB of CSV",
        edges / 10,
        bytes as f64 / (1 << 20) as f64
    );

    // Import against parsing alone.
    let (parse, fields) = best(3, || parse_only(&spec));
    assert!(fields > 0);
    let rss_before = rss();
    let (imp, (g, stats)) = best(3, || {
        import(&GraphData::new(), &spec, &Caps::default(), &NoControl).unwrap()
    });
    assert_eq!(stats.edges as usize, edges);
    let rss_after = rss();
    let parse_eps = edges as f64 / parse.as_secs_f64();
    let import_eps = edges as f64 / imp.as_secs_f64();
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| parse only (vertex + edge files, csv crate, no graph) | {:.0} ms, {:.2} M edges/s |",
        parse.as_secs_f64() * 1e3,
        parse_eps / 1e6
    );
    println!(
        "| import (parse, check, type, build the graph) | {:.0} ms, {:.2} M edges/s |",
        imp.as_secs_f64() * 1e3,
        import_eps / 1e6
    );
    println!(
        "| import / parse throughput | {:.2} (target at least 0.5) |",
        import_eps / parse_eps
    );

    // Memory.
    let heap = g.heap_bytes();
    let mut stored = Vec::new();
    format::write(&g, 1, &mut stored).unwrap();
    println!(
        "| memory, counted from the containers | {} MiB, {:.1} bytes per edge (vertices, ids and properties included) |",
        heap >> 20,
        heap as f64 / edges as f64
    );
    println!(
        "| memory, resident set growth over the import | {} MiB, {:.1} bytes per edge |",
        rss_after.saturating_sub(rss_before) >> 20,
        rss_after.saturating_sub(rss_before) as f64 / edges as f64
    );
    println!(
        "| stored file | {} MiB, {:.1} bytes per edge |",
        stored.len() >> 20,
        stored.len() as f64 / edges as f64
    );
    let (save, _) = best(3, || {
        let mut out = Vec::with_capacity(stored.len());
        format::write(&g, 1, &mut out).unwrap();
        out
    });
    let (load, _) = best(3, || format::read(&stored, "bench").unwrap());
    println!(
        "| encode / decode the stored form (in memory) | {:.0} ms / {:.0} ms |",
        save.as_secs_f64() * 1e3,
        load.as_secs_f64() * 1e3
    );

    // PageRank on the large graph, 20 iterations.
    let fixed = algo::PageRankParams {
        convergence: 0.0,
        max_iterations: 20,
        ..algo::PageRankParams::default()
    };
    let (pr, r) = best(3, || algo::pagerank(&g, &fixed, &NoControl).unwrap());
    assert_eq!(r.iterations, 20);
    println!(
        "| PageRank, 20 iterations, large graph | {:.0} ms ({:.1} ns per edge and iteration) |",
        pr.as_secs_f64() * 1e3,
        pr.as_secs_f64() * 1e9 / (edges as f64 * 20.0)
    );

    // PageRank against petgraph's, on a graph petgraph's can finish.
    let small_dir = tempfile::tempdir().unwrap();
    let small_spec = generate(small_dir.path(), 20_000, 2);
    let (small, _) = import(&GraphData::new(), &small_spec, &Caps::default(), &NoControl).unwrap();
    let (ours, _) = best(3, || algo::pagerank(&small, &fixed, &NoControl).unwrap());
    let (theirs, _) = best(1, || {
        petgraph::algo::page_rank(small.petgraph(), 0.85_f64, 20)
    });
    println!(
        "| PageRank, 20 iterations, 2,000 vertices / 20,000 edges: ours / petgraph's `page_rank` | {:.2} ms / {:.0} ms: {:.4} times (target at most 1.2) |",
        ours.as_secs_f64() * 1e3,
        theirs.as_secs_f64() * 1e3,
        ours.as_secs_f64() / theirs.as_secs_f64()
    );

    // k-hop latency.
    let mut rng = Lcg(3);
    let n = g.vertex_count() as u32;
    let mut times: Vec<Duration> = (0..1_000)
        .map(|_| {
            let s = rng.below(n);
            let t = Instant::now();
            let out = algo::k_hop(&g, &[s], 2, true, &NoControl).unwrap();
            std::hint::black_box(out);
            t.elapsed()
        })
        .collect();
    times.sort();
    let p = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "| k-hop, k = 2, out-edges, 1,000 random sources: p50 / p99 | {:.0} µs / {:.0} µs |",
        p(0.50).as_secs_f64() * 1e6,
        p(0.99).as_secs_f64() * 1e6
    );
}
