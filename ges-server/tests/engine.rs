//! The real engine behind the server, driven over HTTP: graphs imported
//! from GES's files, queried on the service plane, their algorithms
//! checked against computations of the test's own, forced restarts
//! cutting an import and a PageRank with the previous data served after,
//! hostile paths and files refused, caps named, and data that outlives a
//! SIGKILL.
//!
//! The generated graph has `GEN_EDGES` edges (default 1,000,000, a tenth as
//! many vertices); `GEN_EDGES=5000000` tries a larger one.

mod common;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use common::{Client, TOKEN, wait_long};
use ges_server::{Config, Server, ServerHandle};
use serde_json::{Value, json};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sample");

/// A server on the real engine, in a directory of its own: `data/` (the
/// journal and graph data), `import/` (with the sample dataset under
/// `import/sample/`), `export/`.
struct Rig {
    dir: tempfile::TempDir,
    server: Option<ServerHandle>,
    c: Client,
}

impl Rig {
    fn new(tweak: impl FnOnce(&mut Config)) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let (data, import, export) = Rig::dirs(dir.path());
        std::fs::create_dir_all(import.join("sample")).unwrap();
        std::fs::create_dir_all(&export).unwrap();
        for f in ["schema.xml", "vertices.csv", "edges.csv"] {
            std::fs::copy(Path::new(SAMPLE).join(f), import.join("sample").join(f)).unwrap();
        }
        let mut cfg = common::config_real(&data, &import, &export);
        tweak(&mut cfg);
        let server = Server::new(cfg).bind().unwrap().spawn().unwrap();
        let c = Client::new(&server, TOKEN);
        Rig {
            dir,
            server: Some(server),
            c,
        }
    }

    fn dirs(root: &Path) -> (PathBuf, PathBuf, PathBuf) {
        (root.join("data"), root.join("import"), root.join("export"))
    }

    fn import_dir(&self) -> PathBuf {
        self.dir.path().join("import")
    }

    fn graph(&self, name: &str) {
        self.c.running_graph("demo", name);
    }

    /// Starts an import and returns its job id.
    fn import(&self, graph: &str, body: Value) -> String {
        let r = self
            .c
            .post(&format!("/v2/demo/graphs/{graph}/import-graph"), body)
            .ok();
        r["job_id"].as_str().unwrap().to_owned()
    }

    fn sample_import(&self, graph: &str) -> String {
        self.import(
            graph,
            json!({
                "schema_path": "obs://sample/schema.xml",
                "vertexset_path": "obs://sample/vertices.csv",
                "edgeset_path": "obs://sample/edges.csv",
            }),
        )
    }

    /// A management-plane job, once it has ended.
    fn ended(&self, graph: &str, job: &str, secs: u64) -> Value {
        let path = format!("/v2/demo/graphs/{graph}/jobs/{job}/status");
        wait_long(secs, || {
            let j = self.c.get(&path).ok();
            (j["status"] == "success" || j["status"] == "failed").then_some(j)
        })
    }

    #[track_caller]
    fn succeeds(&self, graph: &str, job: &str, secs: u64) {
        let j = self.ended(graph, job, secs);
        assert_eq!(j["status"], "success", "{j}");
    }

    /// The job's `fail_reason`, asserting it failed.
    #[track_caller]
    fn fails(&self, graph: &str, job: &str) -> String {
        let j = self.ended(graph, job, 120);
        assert_eq!(j["status"], "failed", "{j}");
        j["fail_reason"].as_str().unwrap().to_owned()
    }

    fn svc(graph: &str, rest: &str) -> String {
        format!("/ges/v1.0/demo/graphs/{graph}{rest}")
    }

    fn vertex(&self, graph: &str, id: &str) -> Option<Value> {
        let r = self
            .c
            .get(&Rig::svc(
                graph,
                &format!("/vertices/detail?vertexIds={id}"),
            ))
            .ok();
        r["data"]["vertices"].as_array().unwrap().first().cloned()
    }

    fn algorithm(&self, graph: &str, body: Value) -> common::Reply {
        self.c.post(
            &Rig::svc(graph, "/action?action_id=execute-algorithm"),
            body,
        )
    }

    /// A service-plane job's status, once it has ended.
    fn algo_ended(&self, graph: &str, job: &str, secs: u64) -> Value {
        let path = Rig::svc(graph, &format!("/jobs/{job}/status?limit=1"));
        wait_long(secs, || {
            let j = self.c.get(&path).ok();
            (j["status"] == "success" || j["status"] == "failed").then_some(j)
        })
    }

    /// Every row of a result list, paged `limit` at a time.
    fn all_rows(&self, graph: &str, job: &str, field: &str) -> Vec<Value> {
        let mut rows = Vec::new();
        loop {
            let path = Rig::svc(
                graph,
                &format!("/jobs/{job}/status?offset={}&limit=10000", rows.len()),
            );
            let j = self.c.get(&path).ok();
            let data = &j["data"];
            let page = data["outputs"][field].as_array().unwrap().clone();
            assert_eq!(data["data_offset"], rows.len());
            assert_eq!(data["data_return_size"], page.len());
            let total = data["data_total_size"].as_u64().unwrap() as usize;
            rows.extend(page);
            if rows.len() >= total {
                assert_eq!(rows.len(), total);
                return rows;
            }
        }
    }

    fn state(&self, graph: &str) -> String {
        self.c.get(&format!("/v2/demo/graphs/{graph}")).ok()["graph"]["status"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn wait_state(&self, graph: &str, code: &str) {
        wait_long(60, || (self.state(graph) == code).then_some(()));
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = s.shutdown();
        }
    }
}

/// A deterministic pseudo-random generator (64-bit LCG, high bits).
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

/// A generated graph: its files under `dir` and its edges.
struct Generated {
    vertices: u32,
    edges: Vec<(u32, u32)>,
}

/// Writes `gen/schema.xml`, `gen/vertices.csv` (`v<i>,node,<i>`) and
/// `gen/edges.csv` (`v<a>,v<b>,link`): `edges` edges among a tenth as many
/// vertices, endpoints skewed towards low numbers so that PageRank has
/// something to find, and some isolated pieces for the components.
fn generate(import: &Path, edges: usize, seed: u64) -> Generated {
    let dir = import.join("gen");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("schema.xml"),
        r#"<PMML><labels>
          <label name="node"><properties>
            <property name="n" cardinality="single" dataType="long"/>
          </properties></label>
          <label name="link"/>
        </labels></PMML>"#,
    )
    .unwrap();
    let n = (edges / 10).max(10) as u32;
    let mut v = std::io::BufWriter::new(std::fs::File::create(dir.join("vertices.csv")).unwrap());
    for i in 0..n {
        writeln!(v, "v{i},node,{i}").unwrap();
    }
    v.flush().unwrap();
    let mut rng = Lcg(seed);
    let mut list = Vec::with_capacity(edges);
    let mut e = std::io::BufWriter::new(std::fs::File::create(dir.join("edges.csv")).unwrap());
    // The last tenth of the vertices only link among themselves in pairs,
    // so there are many components.
    let main = n - n / 10;
    for i in 0..edges {
        let (a, b) = if i % 50 == 0 {
            let a = main + rng.below(n - main);
            (a, if a.is_multiple_of(2) { a } else { a - 1 })
        } else {
            let a = rng.below(main);
            // Skewed: the minimum of two draws.
            let b = rng.below(main).min(rng.below(main));
            (a, b)
        };
        writeln!(e, "v{a},v{b},link").unwrap();
        list.push((a, b));
    }
    e.flush().unwrap();
    Generated {
        vertices: n,
        edges: list,
    }
}

fn gen_import() -> Value {
    json!({
        "schema_path": "obs://gen/schema.xml",
        "vertexset_path": "obs://gen/vertices.csv",
        "edgeset_path": "obs://gen/edges.csv",
    })
}

fn gen_edges() -> usize {
    std::env::var("GEN_EDGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

/// PageRank as the test computes it: power iteration over the edge list,
/// dangling rank spread evenly, until the L1 change is below `eps`.
fn reference_pagerank(n: usize, edges: &[(u32, u32)], alpha: f64, eps: f64) -> Vec<f64> {
    let mut out = vec![0u32; n];
    for &(a, _) in edges {
        out[a as usize] += 1;
    }
    let mut rank = vec![1.0 / n as f64; n];
    for _ in 0..1000 {
        let dangling: f64 = (0..n).filter(|&u| out[u] == 0).map(|u| rank[u]).sum();
        let mut next = vec![(1.0 - alpha) / n as f64 + alpha * dangling / n as f64; n];
        for &(a, b) in edges {
            next[b as usize] += alpha * rank[a as usize] / f64::from(out[a as usize]);
        }
        let delta: f64 = next.iter().zip(&rank).map(|(x, y)| (x - y).abs()).sum();
        rank = next;
        if delta < eps {
            break;
        }
    }
    rank
}

/// Weakly connected components by breadth-first search: a component
/// number per vertex.
fn reference_components(n: usize, edges: &[(u32, u32)]) -> Vec<usize> {
    let mut adj = vec![Vec::new(); n];
    for &(a, b) in edges {
        adj[a as usize].push(b as usize);
        adj[b as usize].push(a as usize);
    }
    let mut comp = vec![usize::MAX; n];
    let mut next = 0;
    for s in 0..n {
        if comp[s] != usize::MAX {
            continue;
        }
        comp[s] = next;
        let mut q = VecDeque::from([s]);
        while let Some(u) = q.pop_front() {
            for &v in &adj[u] {
                if comp[v] == usize::MAX {
                    comp[v] = next;
                    q.push_back(v);
                }
            }
        }
        next += 1;
    }
    comp
}

/// Distances from `s` along out-edges, up to `k` (`u32::MAX` for all).
fn reference_bfs(n: usize, edges: &[(u32, u32)], s: u32, k: u32) -> HashMap<u32, u32> {
    let mut adj = vec![Vec::new(); n];
    for &(a, b) in edges {
        adj[a as usize].push(b);
    }
    let mut dist = HashMap::from([(s, 0u32)]);
    let mut q = VecDeque::from([s]);
    while let Some(u) = q.pop_front() {
        let d = dist[&u];
        if d == k {
            continue;
        }
        for &v in &adj[u as usize] {
            dist.entry(v).or_insert_with(|| {
                q.push_back(v);
                d + 1
            });
        }
    }
    dist
}

fn index(id: &str) -> u32 {
    id.strip_prefix('v').unwrap().parse().unwrap()
}

#[test]
fn a_generated_graph_is_imported_and_its_algorithms_agree_with_independent_computations() {
    let rig = Rig::new(|_| {});
    let generated = generate(&rig.import_dir(), gen_edges(), 42);
    let n = generated.vertices as usize;
    let edges = &generated.edges;
    rig.graph("big");
    let job = rig.import("big", gen_import());
    rig.succeeds("big", &job, 600);

    // Vertex details, with a typed property.
    let v = rig.vertex("big", "v7").unwrap();
    assert_eq!(
        v,
        json!({"id": "v7", "label": "node", "properties": {"n": [7]}})
    );

    // PageRank, asynchronous, paged, against the test's own.
    let r = rig
        .algorithm(
            "big",
            json!({"algorithmName": "pagerank", "parameters": {"alpha": 0.85, "convergence": 1e-9, "max_iterations": 1000, "directed": true}}),
        )
        .ok();
    assert_eq!(r["jobType"], 1);
    let pr = r["jobId"].as_str().unwrap().to_owned();
    let status = rig.algo_ended("big", &pr, 600);
    assert_eq!(status["status"], "success", "{status}");
    assert_eq!(status["data"]["outputs"]["converged"], true);
    let rows = rig.all_rows("big", &pr, "pagerank");
    assert_eq!(rows.len(), n);
    let expected = reference_pagerank(n, edges, 0.85, 1e-9);
    let mut last = f64::INFINITY;
    for row in &rows {
        let (id, score) = (row["id"].as_str().unwrap(), row["score"].as_f64().unwrap());
        let want = expected[index(id) as usize];
        assert!((score - want).abs() < 1e-8, "{id}: {score} against {want}");
        assert!(score <= last, "ranks come highest first");
        last = score;
    }
    // The job is in the task center, as a host task of the graph.
    let listed = rig.c.get(&Rig::svc("big", "/jobs/status?limit=100")).ok();
    assert!(
        listed["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["job_id"] == pr.as_str() && j["job_type"] == "pagerank")
    );
    let center = rig
        .c
        .get("/v2/demo/graphs/jobs?graph_name=big&limit=100")
        .ok();
    assert!(
        center["job_list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["job_id"] == pr.as_str() && j["status"] == "success")
    );

    // Connected components: the same partition as the test's.
    let r = rig
        .algorithm("big", json!({"algorithmName": "connected_component"}))
        .ok();
    let cc = r["jobId"].as_str().unwrap().to_owned();
    assert_eq!(rig.algo_ended("big", &cc, 600)["status"], "success");
    let rows = rig.all_rows("big", &cc, "community");
    let expected = reference_components(n, edges);
    let mut theirs_to_ours: HashMap<usize, String> = HashMap::new();
    let mut ours = HashSet::new();
    for row in &rows {
        let id = index(row["id"].as_str().unwrap());
        let c = row["component"].as_str().unwrap().to_owned();
        ours.insert(c.clone());
        let seen = theirs_to_ours
            .entry(expected[id as usize])
            .or_insert_with(|| c.clone());
        assert_eq!(*seen, c, "v{id} is in another component");
    }
    assert_eq!(ours.len(), theirs_to_ours.len());
    let status = rig.algo_ended("big", &cc, 1);
    assert_eq!(
        status["data"]["outputs"]["component_count"],
        theirs_to_ours.len()
    );

    // k-hop, synchronous, against a breadth-first search of the test's.
    for (source, k) in [(0u32, 1u32), (5, 2), (n as u32 - 3, 3)] {
        let r = rig
            .algorithm(
                "big",
                json!({"algorithmName": "k_hop", "executionMode": "sync",
                       "parameters": {"k": k, "sources": [format!("v{source}")]}}),
            )
            .ok();
        let data = &r["data"];
        let expected = reference_bfs(n, edges, source, k);
        assert_eq!(data["data_total_size"], expected.len() - 1);
        let got: HashMap<u32, u32> = data["outputs"]["k_hop"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    index(r["id"].as_str().unwrap()),
                    r["depth"].as_u64().unwrap() as u32,
                )
            })
            .collect();
        if expected.len() - 1 <= 100 {
            let mut want = expected.clone();
            want.remove(&source);
            assert_eq!(got, want);
        } else {
            for (v, d) in &got {
                assert_eq!(expected.get(v), Some(d));
            }
        }
    }

    // Shortest paths: the test's distance, and a path along real edges.
    let edge_set: HashSet<(u32, u32)> = edges.iter().copied().collect();
    let far = reference_bfs(n, edges, 1, u32::MAX);
    let mut targets: Vec<u32> = far.keys().copied().filter(|&t| t != 1).take(5).collect();
    targets.push(n as u32 - 1);
    for t in targets {
        let r = rig
            .algorithm(
                "big",
                json!({"algorithmName": "shortest_path", "executionMode": "sync",
                       "parameters": {"source": "v1", "target": format!("v{t}")}}),
            )
            .ok();
        let out = &r["data"]["outputs"];
        match far.get(&t) {
            None => assert!(out["path"].is_null(), "{out}"),
            Some(&d) => {
                assert_eq!(out["length"], d, "{out}");
                let path: Vec<u32> = out["path"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| index(v.as_str().unwrap()))
                    .collect();
                assert_eq!((path[0], *path.last().unwrap()), (1, t));
                for w in path.windows(2) {
                    assert!(edge_set.contains(&(w[0], w[1])), "{w:?} is not an edge");
                }
            }
        }
    }
}

#[test]
fn the_sample_is_imported_queried_exported_and_imported_again() {
    let rig = Rig::new(|_| {});
    rig.graph("movies");
    let job = rig.sample_import("movies");
    rig.succeeds("movies", &job, 60);
    let p1 = rig.vertex("movies", "p1").unwrap();
    assert_eq!(p1["label"], "person");
    assert_eq!(p1["properties"]["city"], json!(["Lisbon"]));
    assert_eq!(p1["properties"]["age"], json!([43]));
    let m = rig.vertex("movies", "m1").unwrap();
    assert!(!m["properties"]["genres"].as_array().unwrap().is_empty());
    // Unknown ids are simply absent.
    let r = rig
        .c
        .get(&Rig::svc(
            "movies",
            "/vertices/detail?vertexIds=p1,nobody,p2",
        ))
        .ok();
    assert_eq!(r["data"]["vertices"].as_array().unwrap().len(), 2);

    // Export, then import the export into another graph: the same data.
    let r = rig
        .c
        .post(
            "/v2/demo/graphs/movies/export-graph",
            json!({"graph_export_path": "obs://out/movies", "edge_set_name": "e.csv",
                   "vertex_set_name": "v.csv", "schema_name": "s.xml"}),
        )
        .ok();
    rig.succeeds("movies", r["job_id"].as_str().unwrap(), 60);
    let out = rig.dir.path().join("export/out/movies");
    for f in ["e.csv", "v.csv", "s.xml"] {
        std::fs::copy(out.join(f), rig.import_dir().join("sample").join(f)).unwrap();
    }
    rig.graph("copy");
    let job = rig.import(
        "copy",
        json!({"schema_path": "sample/s.xml", "vertexset_path": "sample/v.csv", "edgeset_path": "sample/e.csv"}),
    );
    rig.succeeds("copy", &job, 60);
    for id in ["p1", "p200", "m1", "m100"] {
        assert_eq!(rig.vertex("copy", id), rig.vertex("movies", id), "{id}");
    }
    let hop = |g: &str| {
        rig.algorithm(
            g,
            json!({"algorithmName": "k_hop", "executionMode": "sync", "parameters": {"k": 2, "sources": "p1,p2"}}),
        )
        .ok()["data"]["data_total_size"]
            .clone()
    };
    assert_eq!(hop("copy"), hop("movies"));

    // Clear keeps the schema, and the graph serves, empty.
    let r = rig.c.post_empty("/v2/demo/graphs/copy/clear-graph").ok();
    rig.succeeds("copy", r["job_id"].as_str().unwrap(), 60);
    assert!(rig.vertex("copy", "p1").is_none());
    let job = rig.import("copy", json!({"vertexset_path": "sample/vertices.csv"}));
    rig.succeeds("copy", &job, 60);
    assert!(rig.vertex("copy", "p1").is_some());
    // Clear with the metadata: the labels go too.
    let r = rig
        .c
        .post_empty("/v2/demo/graphs/copy/clear-graph?clear_metadata=true")
        .ok();
    rig.succeeds("copy", r["job_id"].as_str().unwrap(), 60);
    let job = rig.import("copy", json!({"vertexset_path": "sample/vertices.csv"}));
    let why = rig.fails("copy", &job);
    assert!(
        why.contains("vertices.csv line 1") && why.contains("not in the schema"),
        "{why}"
    );

    // Stop frees the data; the service plane says why it does not serve.
    let r = rig.c.post_empty("/v2/demo/graphs/movies/stop").ok();
    rig.succeeds("movies", r["job_id"].as_str().unwrap(), 60);
    let r = rig
        .c
        .get(&Rig::svc("movies", "/vertices/detail?vertexIds=p1"));
    assert_eq!(r.status, 409);
    assert_eq!(r.body["errorCode"], "GES.9016");
    assert!(r.body["errorMessage"].as_str().unwrap().contains("stopped"));
    // Start loads it again.
    let r = rig.c.post_empty("/v2/demo/graphs/movies/start").ok();
    rig.succeeds("movies", r["job_id"].as_str().unwrap(), 60);
    assert_eq!(rig.vertex("movies", "p1"), Some(p1));
    // A removed graph's data goes with it: one created again is empty.
    let r = rig.c.post_empty("/v2/demo/graphs/movies/stop").ok();
    rig.succeeds("movies", r["job_id"].as_str().unwrap(), 60);
    rig.c.delete("/v2/demo/graphs/movies").ok();
    assert!(!rig.dir.path().join("data/graphs/demo/movies").exists());
    rig.graph("movies");
    assert!(rig.vertex("movies", "p1").is_none());
}

#[test]
fn forced_restarts_cut_an_import_and_a_pagerank_and_the_previous_data_is_served() {
    let rig = Rig::new(|_| {});
    generate(&rig.import_dir(), gen_edges().max(200_000), 7);
    rig.graph("g");
    let job = rig.sample_import("g");
    rig.succeeds("g", &job, 60);

    // A large import, restarted by force once it has made progress.
    let import = rig.import("g", gen_import());
    let path = format!("/v2/demo/graphs/g/jobs/{import}/status");
    wait_long(120, || {
        let j = rig.c.get(&path).ok();
        assert_ne!(
            j["status"], "success",
            "the import ended before the restart"
        );
        (j["job_progress"].as_u64().unwrap() >= 1).then_some(())
    });
    let restart = rig.c.post_empty("/v2/demo/graphs/g/restart").ok();
    let restart = restart["job_id"].as_str().unwrap().to_owned();
    let why = rig.fails("g", &import);
    assert_eq!(why, format!("force-restarted by job {restart}"));
    rig.succeeds("g", &restart, 60);
    rig.wait_state("g", "200");
    assert!(
        rig.vertex("g", "p1").is_some(),
        "the previous data is served"
    );
    assert!(rig.vertex("g", "v1").is_none(), "nothing of the cut import");
    let on_disk: Vec<String> = std::fs::read_dir(rig.dir.path().join("data/graphs/demo/g"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(on_disk, ["data.gls"], "no staged or previous file is left");

    // The import again, to the end; then a PageRank that would run for
    // long, restarted by force while it runs.
    let import = rig.import("g", gen_import());
    rig.succeeds("g", &import, 600);
    let r = rig
        .algorithm(
            "g",
            json!({"algorithmName": "pagerank", "parameters": {"convergence": 0, "max_iterations": 10000}}),
        )
        .ok();
    let pr = r["jobId"].as_str().unwrap().to_owned();
    let path = Rig::svc("g", &format!("/jobs/{pr}/status"));
    wait_long(120, || {
        (rig.c.get(&path).ok()["status"] == "running").then_some(())
    });
    let restart = rig.c.post_empty("/v2/demo/graphs/g/restart").ok();
    let restart = restart["job_id"].as_str().unwrap().to_owned();
    let status = rig.algo_ended("g", &pr, 60);
    assert_eq!(status["status"], "failed");
    assert_eq!(
        status["failReason"],
        format!("force-restarted by job {restart}")
    );
    assert!(status.get("data").is_none());
    rig.succeeds("g", &restart, 60);
    rig.wait_state("g", "200");
    assert!(rig.vertex("g", "p1").is_some());
    assert!(rig.vertex("g", "v1").is_some());
}

#[test]
fn import_and_export_paths_that_escape_their_root_are_refused() {
    let rig = Rig::new(|_| {});
    rig.graph("g");
    let outside = rig.dir.path().join("secret.csv");
    std::fs::write(&outside, "s1,person,Secret,1,Oslo\n").unwrap();
    let import = rig.import_dir();
    std::os::unix::fs::symlink(&outside, import.join("link.csv")).unwrap();
    std::os::unix::fs::symlink(rig.dir.path(), import.join("linkdir")).unwrap();
    let fifo = import.join("fifo.csv");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let schema = "obs://sample/schema.xml";
    let cases = [
        ("../secret.csv", "'..'"),
        ("obs://sample/../../secret.csv", "'..'"),
        (outside.to_str().unwrap(), "absolute"),
        ("obs:///etc/passwd", "needs a bucket"),
        ("link.csv", "outside the root"),
        ("linkdir/secret.csv", "outside the root"),
        ("s3://bucket/x.csv", "only obs://"),
        ("fifo.csv", "not a regular file"),
        ("sample", "not a regular file"),
        ("obs://sample/absent.csv", "does not exist"),
        ("sample/vertices.csv\u{0}", "NUL"),
    ];
    for (path, why) in cases {
        let job = rig.import("g", json!({"schema_path": schema, "vertexset_path": path}));
        let reason = rig.fails("g", &job);
        assert!(
            reason.contains("is refused") && reason.contains(why),
            "{path:?}: {reason}"
        );
        // The message quotes the client's path, never the server's.
        assert!(
            !reason.contains(rig.import_dir().to_str().unwrap()),
            "{reason}"
        );
    }
    assert!(rig.vertex("g", "s1").is_none());
    let linkout = rig.dir.path().join("export-escape");
    std::fs::create_dir(&linkout).unwrap();
    std::os::unix::fs::symlink(&linkout, rig.dir.path().join("export/out")).unwrap();
    for body in [
        json!({"graph_export_path": "../escaped"}),
        json!({"graph_export_path": "/tmp"}),
        json!({"graph_export_path": "out/x"}),
        json!({"graph_export_path": "ok", "edge_set_name": "../e.csv"}),
        json!({"graph_export_path": "ok", "vertex_set_name": ".hidden"}),
        json!({"edge_set_name": "e.csv"}),
    ] {
        let r = rig
            .c
            .post("/v2/demo/graphs/g/export-graph", body.clone())
            .ok();
        let reason = rig.fails("g", r["job_id"].as_str().unwrap());
        assert!(
            reason.contains("refused") || reason.contains("required"),
            "{body}: {reason}"
        );
    }
    assert!(!rig.dir.path().join("escaped").exists());
    assert_eq!(std::fs::read_dir(&linkout).unwrap().count(), 0);
}

#[test]
fn malformed_csv_and_xml_fail_with_file_and_line_and_keep_the_data() {
    let rig = Rig::new(|_| {});
    rig.graph("g");
    let job = rig.sample_import("g");
    rig.succeeds("g", &job, 60);
    let bad = rig.import_dir().join("bad");
    std::fs::create_dir(&bad).unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(bad.join(name), bytes).unwrap();
    write(
        "type.csv",
        b"x1,person,Xa,30,Oslo\nx2,person,Xb,thirty,Oslo\n",
    );
    write(
        "label.csv",
        b"x1,person,Xa,30,Oslo\nx2,person,Xb,31,Oslo\nx3,alien,Xc\n",
    );
    write("fields.csv", b"x1,person,Xa,30,Oslo,extra\n");
    write("enum.csv", b"x1,person,Xa,30,Paris\n");
    write(
        "repeat.csv",
        b"x1,person,Xa,30,Oslo\nx1,person,Xa,30,Oslo\n",
    );
    write(
        "missing.csv",
        b"p1,p2,knows,2020-01-01\np1,nobody,knows,2020-01-01\n",
    );
    write("date.csv", b"p1,p2,knows,yesterday\n");
    write(
        "utf8.csv",
        b"x1,person,Xa,30,Oslo\nx2,person,\xff\xfe,31,Oslo\n",
    );
    let mut long = b"x1,person,Xa,30,Oslo\nx2,person,".to_vec();
    long.extend(std::iter::repeat_n(b'a', 2 << 20));
    long.extend_from_slice(b",31,Oslo\n");
    write("long.csv", &long);
    write(
        "doctype.xml",
        b"<?xml version=\"1.0\"?>\n<!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]>\n<l/>",
    );
    write(
        "external.xml",
        b"<labels>\n<label name=\"&xxe;\"/>\n</labels>",
    );
    write("broken.xml", b"<labels>\n<label name=\"x\">\n</labels>\n");
    write(
        "changed.xml",
        b"<l><label name=\"person\"><property name=\"name\" dataType=\"int\"/></label></l>",
    );
    let cases: [(Value, &str); 13] = [
        (
            json!({"vertexset_path": "bad/type.csv"}),
            "bad/type.csv line 2: property \"age\" (single int): \"thirty\" is not a int",
        ),
        (
            json!({"vertexset_path": "bad/label.csv"}),
            "bad/label.csv line 3: label \"alien\" is not in the schema",
        ),
        (
            json!({"vertexset_path": "bad/fields.csv"}),
            "bad/fields.csv line 1: 4 property fields",
        ),
        (
            json!({"vertexset_path": "bad/enum.csv"}),
            "bad/enum.csv line 1: property \"city\"",
        ),
        (
            json!({"vertexset_path": "bad/repeat.csv"}),
            "bad/repeat.csv line 2: vertex \"x1\" is already in the graph",
        ),
        (
            json!({"edgeset_path": "bad/missing.csv"}),
            "bad/missing.csv line 2: vertex \"nobody\" is not in the graph",
        ),
        (
            json!({"edgeset_path": "bad/date.csv"}),
            "bad/date.csv line 1: property \"since\"",
        ),
        (
            json!({"vertexset_path": "bad/utf8.csv"}),
            "bad/utf8.csv line 2: a field is not UTF-8",
        ),
        (
            json!({"vertexset_path": "bad/long.csv"}),
            "bad/long.csv line 2: a record longer than",
        ),
        (
            json!({"schema_path": "bad/doctype.xml"}),
            "bad/doctype.xml line 2: a document type declaration is not allowed",
        ),
        (
            json!({"schema_path": "bad/external.xml"}),
            "bad/external.xml line 2",
        ),
        (
            json!({"schema_path": "bad/broken.xml"}),
            "bad/broken.xml line 3: malformed XML",
        ),
        (
            json!({"schema_path": "bad/changed.xml"}),
            "label \"person\" is already defined with other properties",
        ),
    ];
    for (body, want) in cases {
        let job = rig.import("g", body.clone());
        let why = rig.fails("g", &job);
        assert!(why.contains(want), "{body}: {why}");
        assert_eq!(rig.state("g"), "200");
    }
    assert!(
        rig.vertex("g", "x1").is_none(),
        "a failed import adds nothing"
    );
    assert!(rig.vertex("g", "p1").is_some());
    // Request fields that are not what GES defines.
    for (body, want) in [
        (json!({}), "needs a schema_path"),
        (
            json!({"vertexset_path": "bad/type.csv", "vertexset_format": "parquet"}),
            "must be csv",
        ),
        (
            json!({"vertexset_path": "bad/type.csv", "delimiter": ",,"}),
            "one ASCII character",
        ),
        (
            json!({"vertexset_path": "bad/type.csv", "delimiter": "\n"}),
            "one ASCII character",
        ),
        (
            json!({"edgeset_path": "bad/date.csv", "parallel_edge": {"edge_strategy": "override"}}),
            "not allow or ignore",
        ),
    ] {
        let job = rig.import("g", body.clone());
        let why = rig.fails("g", &job);
        assert!(why.contains(want), "{body}: {why}");
    }
}

#[test]
fn an_import_over_a_cap_fails_naming_the_cap() {
    for (tweak, cap) in [
        (
            (|c: &mut Config| c.store.max_vertices = 250) as fn(&mut Config),
            "cap of 250 vertices (store.max_vertices)",
        ),
        (
            |c| c.store.max_edges = 1_000,
            "cap of 1000 edges (store.max_edges)",
        ),
        (
            |c| c.store.max_property_bytes = 2_000,
            "cap of 2000 property bytes (store.max_property_bytes)",
        ),
    ] {
        let rig = Rig::new(tweak);
        rig.graph("g");
        let job = rig.sample_import("g");
        let why = rig.fails("g", &job);
        assert!(why.contains(cap), "{why}");
        assert!(rig.vertex("g", "p1").is_none());
    }
}

#[test]
fn the_service_plane_refuses_hostile_queries_in_its_own_error_form() {
    let rig = Rig::new(|_| {});
    rig.graph("g");
    let job = rig.sample_import("g");
    rig.succeeds("g", &job, 60);
    let many: Vec<String> = (0..=1000).map(|i| format!("p{i}")).collect();
    let long_id = "x".repeat(70);
    let gets = [
        (Rig::svc("g", "/vertices/detail"), 400, "GES.0001"),
        (
            Rig::svc("g", "/vertices/detail?vertexIds="),
            400,
            "GES.0001",
        ),
        (
            Rig::svc(
                "g",
                &format!("/vertices/detail?vertexIds={}", many.join(",")),
            ),
            400,
            "GES.0001",
        ),
        (
            Rig::svc("g", "/vertices/detail?vertexIds=p1&vertexIds=p2"),
            400,
            "GES.0001",
        ),
        (
            Rig::svc("nope", "/vertices/detail?vertexIds=p1"),
            404,
            "GES.8011",
        ),
        (
            Rig::svc(&long_id, "/vertices/detail?vertexIds=p1"),
            400,
            "GES.0001",
        ),
        (
            Rig::svc("..%2Fg", "/vertices/detail?vertexIds=p1"),
            400,
            "GES.0001",
        ),
        (Rig::svc("g", "/jobs/not-a-uuid/status"), 400, "GES.0001"),
        (
            Rig::svc("g", "/jobs/01a2295a-1be8-7b8a-85d7-70bcb50c8d7f/status"),
            404,
            "GES.7007",
        ),
        (Rig::svc("g", "/jobs/status?limit=1001"), 400, "GES.0001"),
        (Rig::svc("g", "/vertices"), 404, "GES.0016"),
        (
            "/ges/v1.0/other/graphs/g/vertices/detail?vertexIds=p1".to_owned(),
            403,
            "GES.8006",
        ),
    ];
    for (path, status, code) in gets {
        let r = rig.c.get(&path);
        assert_eq!(
            (r.status, r.body["errorCode"].as_str()),
            (status, Some(code)),
            "{path}: {r:?}"
        );
        assert!(
            r.body["errorMessage"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert!(r.body.get("error_code").is_none());
    }
    let action = Rig::svc("g", "/action?action_id=execute-algorithm");
    let sources: Vec<String> = (1..=101).map(|i| format!("p{i}")).collect();
    let posts = [
        (
            Rig::svc("g", "/action"),
            json!({"algorithmName": "pagerank"}),
            "GES.0001",
        ),
        (
            Rig::svc("g", "/action?action_id=drop-graph"),
            json!({"algorithmName": "pagerank"}),
            "GES.0001",
        ),
        (
            action.clone(),
            json!({"algorithmName": "louvain"}),
            "GES.7016",
        ),
        (
            action.clone(),
            json!({"algorithmName": "pagerank\r\nX-Injected: 1"}),
            "GES.7016",
        ),
        (
            action.clone(),
            json!({"algorithmName": "pagerank", "parameters": {"alpha": 2}}),
            "GES.7016",
        ),
        (
            action.clone(),
            json!({"algorithmName": "pagerank", "parameters": {"max_iterations": 10001}}),
            "GES.7016",
        ),
        (
            action.clone(),
            json!({"algorithmName": "pagerank", "parameters": {"convergence": "NaN"}}),
            "GES.7016",
        ),
        (
            action.clone(),
            json!({"algorithmName": "pagerank", "executionMode": "sync"}),
            "GES.7016",
        ),
        (
            action.clone(),
            json!({"algorithmName": "k_hop", "parameters": {"k": 11, "sources": "p1"}}),
            "GES.7016",
        ),
        (
            action.clone(),
            json!({"algorithmName": "k_hop", "parameters": {"k": 0, "sources": "p1"}}),
            "GES.7016",
        ),
        (
            action.clone(),
            json!({"algorithmName": "k_hop", "parameters": {"k": 2, "sources": sources}}),
            "GES.7016",
        ),
        (
            action.clone(),
            json!({"algorithmName": "k_hop", "parameters": {"k": 2, "sources": "nobody"}}),
            "GES.7016",
        ),
        (
            action.clone(),
            json!({"algorithmName": "shortest_path", "parameters": {"source": "p1"}}),
            "GES.7016",
        ),
        (
            action.clone(),
            json!({"algorithmName": "k_hop", "executionMode": "later", "parameters": {"sources": "p1"}}),
            "GES.7016",
        ),
        (action.clone(), json!(["not", "an", "object"]), "GES.7016"),
    ];
    for (path, body, code) in posts {
        let r = rig.c.post(&path, body.clone());
        assert_eq!(
            (r.status, r.body["errorCode"].as_str()),
            (400, Some(code)),
            "{body}: {r:?}"
        );
        assert!(
            !r.body["errorMessage"].as_str().unwrap().contains("\r\n"),
            "{r:?}"
        );
    }
    // Framing inside a body is data: a body that imitates a second
    // request is one malformed body, and the server answers the next.
    let r = rig.c.post_raw(
        &action,
        b"{}\r\n\r\nPOST /v2/demo/graphs/g/restart HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    assert_eq!(rig.state("g"), "200");
    // Unauthenticated: the same form.
    let anon = Client {
        token: None,
        ..rig.c.clone()
    };
    let r = anon.get(&Rig::svc("g", "/vertices/detail?vertexIds=p1"));
    assert_eq!(
        (r.status, r.body["errorCode"].as_str()),
        (401, Some("GES.8007"))
    );
    // Paging past the end is an empty page, not an error.
    let r = rig
        .algorithm(
            "g",
            json!({"algorithmName": "k_hop", "executionMode": "sync", "parameters": {"k": 1, "sources": ["p1"]}}),
        );
    let total = r.ok()["data"]["data_total_size"].as_u64().unwrap();
    let r = rig.c.post(
        &format!("{action}&offset=1000000&limit=5"),
        json!({"algorithmName": "k_hop", "executionMode": "sync", "parameters": {"k": 1, "sources": ["p1"]}}),
    );
    let data = r.ok()["data"].clone();
    assert_eq!(
        (
            data["data_return_size"].as_u64(),
            data["data_total_size"].as_u64()
        ),
        (Some(0), Some(total))
    );
}

/// The server binary on a data directory, with the real engine.
struct Process {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl Process {
    fn start(config: &Path) -> Process {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ges-server"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the server binary starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.parse::<std::net::SocketAddr>());
                }
            }
        });
        let addr = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(Ok(addr)) => addr,
            other => {
                let _ = child.kill();
                panic!("the server did not say where it listens: {other:?}");
            }
        };
        Process { child, addr }
    }

    fn rig_client(&self) -> Client {
        Client {
            agent: common::agent(),
            base: format!("http://{}", self.addr),
            token: Some(TOKEN.to_owned()),
            extra: Vec::new(),
        }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn data_survives_a_sigkill_and_a_start() {
    let dir = tempfile::tempdir().unwrap();
    let (data, import, export) = Rig::dirs(dir.path());
    std::fs::create_dir_all(import.join("sample")).unwrap();
    std::fs::create_dir_all(&export).unwrap();
    for f in ["schema.xml", "vertices.csv", "edges.csv"] {
        std::fs::copy(Path::new(SAMPLE).join(f), import.join("sample").join(f)).unwrap();
    }
    let path = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    let config = dir.path().join("ges.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\ndir = {}\n\
             [store]\nimport_root = {}\nexport_root = {}\n\
             [[auth.tokens]]\ntoken = \"{TOKEN}\"\nprojects = [\"demo\"]\n",
            path(&data),
            path(&import),
            path(&export)
        ),
    )
    .unwrap();
    let p = Process::start(&config);
    let mut rig = Rig {
        dir: tempfile::tempdir().unwrap(),
        server: None,
        c: p.rig_client(),
    };
    rig.graph("kept");
    let job = rig.sample_import("kept");
    rig.succeeds("kept", &job, 60);
    rig.graph("stopped");
    let job = rig.sample_import("stopped");
    rig.succeeds("stopped", &job, 60);
    let r = rig.c.post_empty("/v2/demo/graphs/stopped/stop").ok();
    rig.succeeds("stopped", r["job_id"].as_str().unwrap(), 60);
    let before = rig.vertex("kept", "m7").unwrap();
    p.kill();

    let p = Process::start(&config);
    rig.c = p.rig_client();
    // The running graph is running again, its data loaded at start.
    assert_eq!(rig.state("kept"), "200");
    assert_eq!(rig.vertex("kept", "m7"), Some(before.clone()));
    // The stopped one is stopped, and a start loads its data.
    assert_eq!(rig.state("stopped"), "700");
    let r = rig.c.post_empty("/v2/demo/graphs/stopped/start").ok();
    rig.succeeds("stopped", r["job_id"].as_str().unwrap(), 60);
    assert_eq!(rig.vertex("stopped", "m7"), Some(before));
    // A damaged data file fails the start, naming the file.
    let r = rig.c.post_empty("/v2/demo/graphs/stopped/stop").ok();
    rig.succeeds("stopped", r["job_id"].as_str().unwrap(), 60);
    let file = data.join("graphs/demo/stopped/data.gls");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&file, bytes).unwrap();
    let r = rig.c.post_empty("/v2/demo/graphs/stopped/start").ok();
    let why = rig.fails("stopped", r["job_id"].as_str().unwrap());
    assert!(
        why.contains("graphs/demo/stopped/data.gls is damaged"),
        "{why}"
    );
    assert_eq!(rig.state("stopped"), "300");
    p.kill();
}
