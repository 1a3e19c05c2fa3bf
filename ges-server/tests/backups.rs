//! Backups, schemas (metadata) and quotas on the real engine, driven over
//! HTTP: a backup restored after the graph was cleared serves the same
//! vertices and edges; a backup cut by a forced restart is failed and
//! never listed; a damaged backup is refused at start and the graph stays
//! stopped; backups outlive the process, and `keep_backup` decides
//! whether they outlive their graph; the official SDK's request shapes
//! are answered in its response shapes; hostile ids, names, schemas and
//! pages are refused in GES's error body.

mod common;

use std::path::{Path, PathBuf};

use common::{Client, TOKEN, wait_long};
use ges_server::{Config, Server, ServerHandle};
use serde_json::{Value, json};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sample");

/// The graph status codes of a stopped and a running graph.
const STOPPED: &str = "700";
const RUNNING: &str = "200";

/// A server on the real engine in a directory of its own (`data/`,
/// `import/` with the sample under `import/sample/`, `export/`), which can
/// be stopped and started again on the same directories.
struct Rig {
    dir: tempfile::TempDir,
    tweak: fn(&mut Config),
    server: Option<ServerHandle>,
    c: Client,
}

impl Rig {
    fn new(tweak: fn(&mut Config)) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let import = dir.path().join("import");
        std::fs::create_dir_all(import.join("sample")).unwrap();
        std::fs::create_dir_all(dir.path().join("export")).unwrap();
        for f in ["schema.xml", "vertices.csv", "edges.csv"] {
            std::fs::copy(Path::new(SAMPLE).join(f), import.join("sample").join(f)).unwrap();
        }
        let server = Rig::serve(dir.path(), tweak);
        let c = Client::new(&server, TOKEN);
        Rig {
            dir,
            tweak,
            server: Some(server),
            c,
        }
    }

    fn serve(root: &Path, tweak: fn(&mut Config)) -> ServerHandle {
        let mut cfg = common::config_real(
            &root.join("data"),
            &root.join("import"),
            &root.join("export"),
        );
        tweak(&mut cfg);
        Server::new(cfg).bind().unwrap().spawn().unwrap()
    }

    /// Stops the server and starts another on the same directories.
    fn restart_process(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().unwrap();
        }
        let server = Rig::serve(self.dir.path(), self.tweak);
        self.c = Client::new(&server, TOKEN);
        self.server = Some(server);
    }

    fn backup_dir(&self) -> PathBuf {
        self.dir.path().join("data").join("backups").join("demo")
    }

    /// A running graph holding the sample dataset.
    fn sample_graph(&self, graph: &str) {
        self.c.running_graph("demo", graph);
        let job = self
            .c
            .post(
                &format!("/v2/demo/graphs/{graph}/import-graph"),
                json!({
                    "schema_path": "obs://sample/schema.xml",
                    "vertexset_path": "obs://sample/vertices.csv",
                    "edgeset_path": "obs://sample/edges.csv",
                }),
            )
            .ok();
        self.succeeds(graph, job["job_id"].as_str().unwrap());
    }

    /// A management-plane job, once it has ended.
    fn ended(&self, graph: &str, job: &str) -> Value {
        let path = format!("/v2/demo/graphs/{graph}/jobs/{job}/status");
        wait_long(120, || {
            let j = self.c.get(&path).ok();
            (j["status"] == "success" || j["status"] == "failed").then_some(j)
        })
    }

    #[track_caller]
    fn succeeds(&self, graph: &str, job: &str) {
        let j = self.ended(graph, job);
        assert_eq!(j["status"], "success", "{j}");
    }

    /// Takes a backup and waits for it; returns its id.
    fn backup(&self, graph: &str) -> String {
        let r = self
            .c
            .post_empty(&format!("/v2/demo/graphs/{graph}/backups"))
            .ok();
        let id = r["job_id"].as_str().unwrap().to_owned();
        self.succeeds(graph, &id);
        id
    }

    fn backup_ids(&self, path: &str) -> Vec<String> {
        let r = self.c.get(path).ok();
        let list = r["backup_list"].as_array().unwrap();
        assert_eq!(r["backup_count"].as_u64(), Some(list.len() as u64), "{r}");
        list.iter()
            .map(|b| b["id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn stop(&self, graph: &str) {
        let job = self
            .c
            .post_empty(&format!("/v2/demo/graphs/{graph}/stop"))
            .ok();
        self.succeeds(graph, job["job_id"].as_str().unwrap());
        self.c.wait_graph("demo", graph, STOPPED);
    }

    /// Every sample vertex as the service plane shows it (in id order).
    fn vertices(&self, graph: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(Path::new(SAMPLE).join("vertices.csv")).unwrap();
        let ids: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split(',').next())
            .filter(|s| !s.is_empty())
            .collect();
        let r = self
            .c
            .get(&format!(
                "/ges/v1.0/demo/graphs/{graph}/vertices/detail?vertexIds={}",
                ids.join(",")
            ))
            .ok();
        let mut out = r["data"]["vertices"].as_array().unwrap().clone();
        out.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        out
    }

    /// Every edge, as `source,target,label,...` lines, sorted: one hop
    /// from each vertex on the service plane would take a request per
    /// vertex, so the edges are read from an export.
    fn edges(&self, graph: &str, dir: &str) -> Vec<String> {
        let job = self
            .c
            .post(
                &format!("/v2/demo/graphs/{graph}/export-graph"),
                json!({"graph_export_path": dir}),
            )
            .ok();
        self.succeeds(graph, job["job_id"].as_str().unwrap());
        let out = self.dir.path().join("export").join(dir);
        let edge_file = std::fs::read_dir(&out)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.file_name().unwrap().to_string_lossy().contains("edge"))
            .expect("an edge file");
        let mut lines: Vec<String> = std::fs::read_to_string(edge_file)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    }

    /// A two-hop neighbourhood on the service plane (edges followed).
    fn k_hop(&self, graph: &str, source: &str) -> Value {
        let r = self
            .c
            .post(
                &format!("/ges/v1.0/demo/graphs/{graph}/action?action_id=execute-algorithm"),
                json!({
                    "algorithmName": "k_hop",
                    "executionMode": "sync",
                    "parameters": {"k": 2, "sources": [source]},
                }),
            )
            .ok();
        r["data"].clone()
    }

    fn start_from(&self, graph: &str, backup: &str) -> common::Reply {
        self.c.post(
            &format!("/v2/demo/graphs/{graph}/start"),
            json!({"graph_backup_id": backup}),
        )
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = s.shutdown();
        }
    }
}

fn none(_: &mut Config) {}

#[test]
fn a_backup_restores_what_a_clear_removed() {
    let rig = Rig::new(none);
    rig.sample_graph("movies");
    let vertices = rig.vertices("movies");
    assert_eq!(vertices.len(), 300);
    let edges = rig.edges("movies", "before");
    assert!(edges.len() > 1_000, "{}", edges.len());
    let hop = rig.k_hop("movies", "p1");
    assert!(hop.to_string().matches("depth").count() > 1, "{hop}");

    let backup = rig.backup("movies");
    assert_eq!(
        rig.backup_ids("/v2/demo/graphs/movies/backups"),
        [backup.as_str()]
    );

    let job = rig
        .c
        .post_empty("/v2/demo/graphs/movies/clear-graph?clear_metadata=true")
        .ok();
    rig.succeeds("movies", job["job_id"].as_str().unwrap());
    assert!(rig.vertices("movies").is_empty());

    // A running graph does not start from a backup.
    rig.start_from("movies", &backup)
        .assert_error(400, "GES.7016");
    rig.stop("movies");
    let job = rig.start_from("movies", &backup).ok();
    rig.succeeds("movies", job["job_id"].as_str().unwrap());
    rig.c.wait_graph("demo", "movies", RUNNING);
    assert_eq!(rig.vertices("movies"), vertices);
    assert_eq!(rig.edges("movies", "after"), edges);
    assert_eq!(rig.k_hop("movies", "p1"), hop);

    // The restored data is the graph's own now: a stop and a plain start
    // load it again.
    rig.stop("movies");
    let job = rig.c.post_empty("/v2/demo/graphs/movies/start").ok();
    rig.succeeds("movies", job["job_id"].as_str().unwrap());
    assert_eq!(rig.vertices("movies"), vertices);
}

fn slow_backups(cfg: &mut Config) {
    // The sample's stored form is tens of kilobytes: minutes at this rate.
    cfg.store.backup_bytes_per_sec = Some(100);
}

#[test]
fn a_forced_restart_fails_a_backup_and_it_is_never_listed() {
    let rig = Rig::new(slow_backups);
    rig.sample_graph("movies");
    let r = rig.c.post_empty("/v2/demo/graphs/movies/backups").ok();
    let backup = r["job_id"].as_str().unwrap().to_owned();
    rig.c.wait_job("demo", "movies", &backup, "running");
    // The graph keeps serving while it is backed up.
    assert_eq!(rig.vertices("movies").len(), 300);
    // The task center shows the backup among the graph's jobs.
    let jobs = rig.c.get("/v2/demo/graphs/jobs?graph_name=movies").ok();
    assert!(
        jobs["job_list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["job_id"] == backup.as_str()),
        "{jobs}"
    );

    let restart = rig.c.post_empty("/v2/demo/graphs/movies/restart").ok();
    let j = rig.ended("movies", &backup);
    assert_eq!(j["status"], "failed", "{j}");
    assert!(
        j["fail_reason"]
            .as_str()
            .unwrap()
            .contains("force-restarted"),
        "{j}"
    );
    rig.succeeds("movies", restart["job_id"].as_str().unwrap());
    assert!(rig.backup_ids("/v2/demo/graphs/backups").is_empty());
    assert!(rig.backup_ids("/v2/demo/graphs/movies/backups").is_empty());
    // Its temporary file goes too.
    let dir = rig.backup_dir();
    wait_long(30, || {
        let left = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        (left == 0).then_some(())
    });
    // And it cannot be started from.
    rig.stop("movies");
    rig.start_from("movies", &backup)
        .assert_error(404, "GES.0016");
}

#[test]
fn a_damaged_backup_is_refused_and_the_graph_stays_stopped() {
    let rig = Rig::new(none);
    rig.sample_graph("movies");
    let backup = rig.backup("movies");
    rig.stop("movies");
    let file = rig.backup_dir().join(format!("{backup}.gls"));
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();

    let r = rig.start_from("movies", &backup);
    r.assert_error(400, "GES.7016");
    let msg = r.body["error_msg"].as_str().unwrap();
    assert!(
        msg.contains(&backup) && msg.contains("cannot be loaded"),
        "{msg}"
    );
    assert!(msg.contains("checksum") || msg.contains("damaged"), "{msg}");
    let g = rig.c.get("/v2/demo/graphs/movies").ok();
    assert_eq!(g["graph"]["status"], STOPPED, "{g}");

    // The graph's own data is untouched: a plain start serves it.
    let job = rig.c.post_empty("/v2/demo/graphs/movies/start").ok();
    rig.succeeds("movies", job["job_id"].as_str().unwrap());
    assert_eq!(rig.vertices("movies").len(), 300);
}

#[test]
fn backups_outlive_the_process_and_keep_backup_decides_if_they_outlive_the_graph() {
    let mut rig = Rig::new(none);
    rig.sample_graph("kept");
    rig.sample_graph("dropped");
    let kept = rig.backup("kept");
    let dropped = rig.backup("dropped");
    let before = rig.c.get("/v2/demo/graphs/backups").ok();

    rig.restart_process();
    let after = rig.c.get("/v2/demo/graphs/backups").ok();
    assert_eq!(after, before);
    assert_eq!(after["backup_count"], 2, "{after}");
    let ids = rig.backup_ids("/v2/demo/graphs/backups");
    assert!(ids.contains(&kept) && ids.contains(&dropped), "{ids:?}");

    rig.stop("kept");
    rig.stop("dropped");
    rig.c.delete("/v2/demo/graphs/kept?keep_backup=true").ok();
    rig.c.delete("/v2/demo/graphs/dropped").ok();
    assert_eq!(rig.backup_ids("/v2/demo/graphs/backups"), [kept.as_str()]);
    assert_eq!(
        rig.backup_ids("/v2/demo/graphs/kept/backups"),
        [kept.as_str()]
    );
    assert!(rig.backup_ids("/v2/demo/graphs/dropped/backups").is_empty());

    // A graph created again under the name starts from the kept backup.
    rig.c
        .post("/v2/demo/graphs", json!({"graph": {"name": "kept"}}))
        .ok();
    let job = rig.start_from("kept", &kept).ok();
    rig.succeeds("kept", job["job_id"].as_str().unwrap());
    assert_eq!(rig.vertices("kept").len(), 300);

    // Another project sees none of them.
    let other = Client::new(rig.server.as_ref().unwrap(), common::OTHER_TOKEN);
    let r = other.get("/v2/other/graphs/backups").ok();
    assert_eq!(r["backup_count"], 0, "{r}");

    rig.c
        .delete(&format!("/v2/demo/graphs/kept/backups/{kept}"))
        .ok();
    assert!(rig.backup_ids("/v2/demo/graphs/backups").is_empty());
    rig.c
        .delete(&format!("/v2/demo/graphs/kept/backups/{kept}"))
        .assert_error(404, "GES.0016");
}

/// The sample's schema as the SDK's `ges_metadata`.
fn sample_labels() -> Value {
    json!({"labels": [
        {"name": "person", "properties": [
            {"name": "name", "cardinality": "single", "dataType": "string"},
            {"name": "age", "cardinality": "single", "dataType": "int"},
            {"name": "city", "cardinality": "single", "dataType": "enum", "typeNameCount": "5",
             "typeName1": "Lisbon", "typeName2": "Oslo", "typeName3": "Porto",
             "typeName4": "Riga", "typeName5": "Turin"},
        ]},
        {"name": "movie", "properties": [
            {"name": "title", "cardinality": "single", "dataType": "string"},
            {"name": "year", "cardinality": "single", "dataType": "int"},
            {"name": "genres", "cardinality": "set", "dataType": "char array", "maxDataSize": "16"},
        ]},
        {"name": "knows", "properties": [
            {"name": "since", "cardinality": "single", "dataType": "date"},
        ]},
        {"name": "rated", "properties": [
            {"name": "score", "cardinality": "single", "dataType": "int"},
        ]},
    ]})
}

/// The calls of the official Python SDK (`huaweicloudsdkges`, v2
/// `GesClient`), each with the method, path, query and body it sends:
/// `create_backup2` POSTs no body with `Content-Type: application/json`;
/// the list calls send `offset` and `limit` when set; the deletes send no
/// body.
#[test]
fn the_sdk_request_shapes_are_answered_in_its_response_shapes() {
    let rig = Rig::new(none);
    let c = &rig.c;

    // list_quotas2: GET /v2/{project_id}/graphs/quotas
    let q = c.get("/v2/demo/graphs/quotas").ok();
    let resources = q["quotas"]["resources"].as_array().unwrap();
    let quota = |q: &Value, ty: &str| -> i64 {
        q["quotas"]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == ty)
            .unwrap_or_else(|| panic!("no {ty} quota in {q}"))["available"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(resources.len(), 3, "{q}");
    assert!(resources[0]["edge_volume"].is_u64(), "{q}");
    let (graphs0, backups0, metas0) = (
        quota(&q, "graph"),
        quota(&q, "backup"),
        quota(&q, "metadata"),
    );
    assert_eq!((backups0, metas0), (100, 100));

    // create_metadata2: POST /v2/{project_id}/graphs/metadatas
    let created = c
        .post(
            "/v2/demo/graphs/metadatas",
            json!({
                "metadata_path": "obs://schemas/movies.xml",
                "name": "movies_schema",
                "description": "people and films",
                "is_overwrite": false,
                "ges_metadata": sample_labels(),
            }),
        )
        .ok();
    let meta_id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "movies_schema");

    // list_metadatas2: GET /v2/{project_id}/graphs/metadatas?offset&limit
    let list = c.get("/v2/demo/graphs/metadatas?offset=0&limit=10").ok();
    assert_eq!(list["schema_count"], 1, "{list}");
    let s = &list["schema_list"][0];
    for field in [
        "id",
        "name",
        "start_time",
        "last_update_time",
        "description",
        "metadata_path",
        "status",
    ] {
        assert!(s[field].is_string(), "{field} in {s}");
    }
    assert_eq!(s["id"], meta_id.as_str());
    assert_eq!(s["metadata_path"], "obs://schemas/movies.xml");

    // show_metadata2: GET /v2/{project_id}/graphs/metadatas/{metadata_id}
    let shown = c.get(&format!("/v2/demo/graphs/metadatas/{meta_id}")).ok();
    assert_eq!(shown["ges_metadata"], sample_labels(), "{shown}");

    // An import names the stored schema by its metadata_path.
    c.running_graph("demo", "movies");
    let job = c
        .post(
            "/v2/demo/graphs/movies/import-graph",
            json!({
                "schema_path": "obs://schemas/movies.xml",
                "vertexset_path": "obs://sample/vertices.csv",
                "edgeset_path": "obs://sample/edges.csv",
            }),
        )
        .ok();
    rig.succeeds("movies", job["job_id"].as_str().unwrap());
    assert_eq!(rig.vertices("movies").len(), 300);

    // create_backup2: POST /v2/{project_id}/graphs/{graph_id}/backups, no body
    let r = c.post_raw("/v2/demo/graphs/movies/backups", b"").ok();
    let backup = r["job_id"].as_str().unwrap().to_owned();
    rig.succeeds("movies", &backup);

    // list_backups2 and list_graph_backups2, with offset and limit.
    for path in [
        "/v2/demo/graphs/backups?offset=0&limit=10",
        "/v2/demo/graphs/movies/backups?offset=0&limit=10",
    ] {
        let l = c.get(path).ok();
        assert_eq!(l["backup_count"], 1, "{l}");
        let b = &l["backup_list"][0];
        for field in [
            "id",
            "name",
            "backup_method",
            "graph_id",
            "graph_name",
            "graph_status",
            "status",
            "start_time",
            "end_time",
        ] {
            assert!(b[field].is_string(), "{field} in {b}");
        }
        for field in ["start_timestamp", "end_timestamp", "size", "duration"] {
            assert!(b[field].is_u64(), "{field} in {b}");
        }
        assert_eq!(b["id"], backup.as_str());
        assert_eq!(b["graph_id"], "movies");
        assert_eq!(b["graph_name"], "movies");
        assert_eq!(b["status"], "success");
        assert_eq!(b["graph_status"], RUNNING);
        assert!(b["name"].as_str().unwrap().starts_with("movies_"), "{b}");
    }
    let empty_page = c.get("/v2/demo/graphs/backups?offset=1&limit=10").ok();
    assert_eq!(empty_page["backup_count"], 1);
    assert_eq!(empty_page["backup_list"], json!([]));

    let q = c.get("/v2/demo/graphs/quotas").ok();
    assert_eq!(quota(&q, "graph"), graphs0 - 1);
    assert_eq!(quota(&q, "backup"), backups0 - 1);
    assert_eq!(quota(&q, "metadata"), metas0 - 1);

    // start_graph2 with {"graph_backup_id"} on a stopped graph.
    rig.stop("movies");
    let job = rig.start_from("movies", &backup).ok();
    rig.succeeds("movies", job["job_id"].as_str().unwrap());

    // delete_backup2 and delete_metadata2: DELETE, no body.
    let d = c.delete(&format!("/v2/demo/graphs/movies/backups/{backup}"));
    assert_eq!(d.status, 200, "{:?}", d.body);
    let d = c.delete(&format!("/v2/demo/graphs/metadatas/{meta_id}"));
    assert_eq!(d.status, 200, "{:?}", d.body);
    c.get(&format!("/v2/demo/graphs/metadatas/{meta_id}"))
        .assert_error(404, "GES.0016");
    let list = c.get("/v2/demo/graphs/metadatas").ok();
    assert_eq!(list["schema_count"], 0, "{list}");
}

fn two_schemas(cfg: &mut Config) {
    cfg.store.max_schemas_per_project = 2;
    cfg.server.max_body_bytes = 64 << 10;
}

#[test]
fn hostile_ids_names_schemas_and_pages_are_refused_in_ges_error_bodies() {
    let rig = Rig::new(two_schemas);
    let c = &rig.c;
    c.running_graph("demo", "g");
    let schema = |name: &str, labels: Value| {
        c.post(
            "/v2/demo/graphs/metadatas",
            json!({"name": name, "ges_metadata": labels}),
        )
    };
    let one = json!({"labels": [{"name": "a", "properties": [
        {"name": "x", "cardinality": "single", "dataType": "int"}]}]});

    // Ids that try to leave their directory.
    for id in ["..%2F..%2Fetc%2Fpasswd", "...", "x.json", "a%00b", "%2Fetc"] {
        c.delete(&format!("/v2/demo/graphs/g/backups/{id}"))
            .assert_error(400, "GES.0001");
        c.get(&format!("/v2/demo/graphs/metadatas/{id}"))
            .assert_error(400, "GES.0001");
        c.delete(&format!("/v2/demo/graphs/metadatas/{id}"))
            .assert_error(400, "GES.0001");
    }
    rig.stop("g");
    c.post(
        "/v2/demo/graphs/g/start",
        json!({"graph_backup_id": "../../graphs/demo/g/data"}),
    )
    .assert_error(400, "GES.0001");
    c.post(
        "/v2/demo/graphs/g/start",
        json!({"graph_backup_id": "0190b3c4-0000-7000-8000-000000000000"}),
    )
    .assert_error(404, "GES.0016");
    let g = c.get("/v2/demo/graphs/g").ok();
    assert_eq!(g["graph"]["status"], STOPPED, "{g}");

    // Hostile names.
    let long = "n".repeat(65);
    for name in ["../evil", "", "a/b", "x\"><y", long.as_str(), "1abc"] {
        schema(name, one.clone()).assert_error(400, "GES.0001");
    }
    // Bad schemas: the store's reader refuses them, naming why.
    let bad_type = json!({"labels": [{"name": "a", "properties": [
        {"name": "x", "cardinality": "single", "dataType": "nonsense"}]}]});
    let r = schema("bad", bad_type);
    r.assert_error(400, "GES.7016");
    assert!(
        r.body["error_msg"].as_str().unwrap().contains("nonsense"),
        "{:?}",
        r.body
    );
    let bad_key = json!({"labels": [{"name": "a", "properties": [
        {"name": "x", "cardinality": "single", "dataType": "int", "a b": "c"}]}]});
    schema("bad", bad_key).assert_error(400, "GES.7016");
    let nested = json!({"labels": [{"name": "a", "properties": [
        {"name": {"x": 1}, "cardinality": "single", "dataType": "int"}]}]});
    schema("bad", nested).assert_error(400, "GES.7016");
    schema("bad", json!({"labels": []})).assert_error(400, "GES.7016");
    c.post_raw("/v2/demo/graphs/metadatas", b"<PMML/>")
        .assert_error(400, "GES.7016");
    c.post("/v2/demo/graphs/metadatas", json!({"name": "x"}))
        .assert_error(400, "GES.7016");
    // Injected markup stays a value: the reader sees one label.
    let sneaky = json!({"labels": [{"name": "a\"/><label name=\"b", "properties": []}]});
    let r = schema("sneaky", sneaky);
    if r.status == 200 {
        let id = r.body["id"].as_str().unwrap();
        let shown = c.get(&format!("/v2/demo/graphs/metadatas/{id}")).ok();
        assert_eq!(shown["ges_metadata"]["labels"].as_array().unwrap().len(), 1);
        c.delete(&format!("/v2/demo/graphs/metadatas/{id}")).ok();
    } else {
        r.assert_error(400, "GES.7016");
    }
    // An oversized schema: over the body limit.
    let labels: Vec<Value> = (0..2_000)
        .map(|i| {
            json!({"name": format!("label{i}"), "properties": [
            {"name": "x", "cardinality": "single", "dataType": "int"}]})
        })
        .collect();
    schema("big", json!({"labels": labels})).assert_error(413, "GES.9008");

    // The count quota, and a name taken.
    schema("first", one.clone()).ok();
    schema("first", one.clone()).assert_error(400, "GES.7016");
    let again = c
        .post(
            "/v2/demo/graphs/metadatas",
            json!({"name": "first", "is_overwrite": true, "ges_metadata": one}),
        )
        .ok();
    schema("second", one.clone()).ok();
    schema("third", one.clone()).assert_error(429, "GES.9013");
    let list = c.get("/v2/demo/graphs/metadatas").ok();
    assert_eq!(list["schema_count"], 2, "{list}");
    assert!(
        list["schema_list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == again["id"]),
        "{list}"
    );

    // Pages out of range.
    for q in [
        "limit=1001",
        "limit=-1",
        "offset=-1",
        "limit=abc",
        "offset=1e3",
        "limit=1&limit=2",
    ] {
        for path in [
            "/v2/demo/graphs/backups",
            "/v2/demo/graphs/g/backups",
            "/v2/demo/graphs/metadatas",
        ] {
            c.get(&format!("{path}?{q}")).assert_error(400, "GES.0001");
        }
    }
    // A backup of a graph that does not serve, or does not exist.
    c.post_empty("/v2/demo/graphs/g/backups")
        .assert_error(400, "GES.7016");
    c.post_empty("/v2/demo/graphs/nope/backups")
        .assert_error(404, "GES.8011");
    // Another project's credential.
    let other = Client::new(rig.server.as_ref().unwrap(), common::OTHER_TOKEN);
    other
        .get("/v2/demo/graphs/backups")
        .assert_error(403, "GES.8006");
}

/// A backup or an algorithm run sent again with the same
/// `Idempotency-Key` (a client that lost the first answer) gets the first
/// one's job back, and runs once.
#[test]
fn a_retried_backup_or_algorithm_run_gets_the_first_job_back() {
    let rig = Rig::new(none);
    rig.sample_graph("movies");
    let retrying = rig.c.with_header("Idempotency-Key", "backup-once");
    let first = retrying.post_empty("/v2/demo/graphs/movies/backups").ok()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = retrying.post_empty("/v2/demo/graphs/movies/backups").ok()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(again, first);
    rig.succeeds("movies", &first);
    // And after it ended, still the same job, not a second backup.
    let late = retrying.post_empty("/v2/demo/graphs/movies/backups").ok()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(late, first);
    assert_eq!(
        rig.backup_ids("/v2/demo/graphs/movies/backups"),
        [first.as_str()]
    );

    let run = rig.c.with_header("Idempotency-Key", "pagerank-once");
    let path = "/ges/v1.0/demo/graphs/movies/action?action_id=execute-algorithm";
    let body = json!({"algorithmName": "pagerank", "parameters": {"alpha": 0.85, "convergence": 0.00001, "max_iterations": 20}});
    let a = run.post(path, body.clone()).ok();
    let b = run.post(path, body).ok();
    let job = |v: &Value| {
        v["jobId"]
            .as_str()
            .or(v["job_id"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no job id in {v}"))
    };
    assert_eq!(job(&a), job(&b));
    let tasks = rig
        .c
        .get("/v2/demo/graphs/jobs?graph_name=movies&limit=100")
        .ok();
    let runs = tasks["job_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["job_name"] == "pagerank")
        .count();
    assert_eq!(runs, 1, "{tasks}");
}
