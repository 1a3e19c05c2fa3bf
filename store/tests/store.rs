//! The store on its own: the stored format against damage, the commit
//! protocol against crashes, imports against caps and cancellation, and
//! the algorithms against petgraph's.

use std::cell::Cell;
use std::path::Path;

use graph_lifecycle_store::disk::{DATA, GraphDir};
use graph_lifecycle_store::import::{ImportSpec, ParallelEdges, Source, import};
use graph_lifecycle_store::{Caps, Control, GraphData, NoControl, StoreError, algo, format};

const SCHEMA: &str = r#"<PMML><labels>
  <label name="person"><properties>
    <property name="name" cardinality="single" dataType="string"/>
    <property name="tags" cardinality="list" dataType="string"/>
  </properties></label>
  <label name="knows"><properties>
    <property name="w" cardinality="single" dataType="double"/>
  </properties></label>
  <label name="plain"/>
</labels></PMML>"#;

fn files(dir: &Path, vertices: &str, edges: &str) -> ImportSpec {
    std::fs::write(dir.join("s.xml"), SCHEMA).unwrap();
    std::fs::write(dir.join("v.csv"), vertices).unwrap();
    std::fs::write(dir.join("e.csv"), edges).unwrap();
    let src = |n: &str| {
        Some(Source {
            name: n.into(),
            path: dir.join(n),
        })
    };
    ImportSpec {
        schema: src("s.xml"),
        vertices: src("v.csv"),
        edges: src("e.csv"),
        ..ImportSpec::default()
    }
}

fn small(dir: &Path) -> GraphData {
    let spec = files(
        dir,
        "a,person,Ann,x;y\nb,person,\"B, Bob\",\nc,person,,z\nd,plain\n",
        "a,b,knows,0.5\nb,c,knows,\nc,a,knows,1.5\nd,a,plain\na,b,knows,2\n",
    );
    import(&GraphData::new(), &spec, &Caps::default(), &NoControl)
        .unwrap()
        .0
}

#[test]
fn a_graph_is_stored_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let g = small(dir.path());
    let mut bytes = Vec::new();
    format::write(&g, 42, &mut bytes).unwrap();
    let (stamp, back) = format::read(&bytes, "g").unwrap();
    assert_eq!(stamp, 42);
    assert_eq!(back.schema(), g.schema());
    assert_eq!((back.vertex_count(), back.edge_count()), (4, 5));
    for id in ["a", "b", "c", "d"] {
        assert_eq!(back.vertex(id), g.vertex(id));
    }
    let mut again = Vec::new();
    format::write(&back, 42, &mut again).unwrap();
    assert_eq!(again, bytes, "writing what was read gives the same bytes");
}

#[test]
fn every_flipped_bit_and_every_cut_is_refused_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let g = small(dir.path());
    let mut bytes = Vec::new();
    format::write(&g, 1, &mut bytes).unwrap();
    for i in 0..bytes.len() {
        for bit in [0, 3, 7] {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            assert!(
                matches!(format::read(&b, "g"), Err(StoreError::Corrupt { .. })),
                "byte {i} bit {bit}"
            );
        }
    }
    for len in 0..bytes.len() {
        assert!(format::read(&bytes[..len], "g").is_err(), "cut at {len}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(format::read(&longer, "g").is_err());
}

#[test]
fn a_commit_is_confirmed_or_rolled_back_and_recovery_settles_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let g = small(dir.path());
    let gd = GraphDir::new(dir.path().join("graph"), "graph".into());
    assert!(gd.load().unwrap().is_none());

    // First data, confirmed.
    gd.stage(&g, 7, "job-1")
        .unwrap()
        .commit()
        .unwrap()
        .confirm()
        .unwrap();
    assert_eq!(gd.load().unwrap().unwrap().1.vertex_count(), 4);

    // New data, rolled back: the old data is back.
    let empty = g.cleared(false);
    let c = gd.stage(&empty, 7, "job-2").unwrap().commit().unwrap();
    assert_eq!(gd.load().unwrap().unwrap().1.vertex_count(), 0);
    c.roll_back().unwrap();
    assert_eq!(gd.load().unwrap().unwrap().1.vertex_count(), 4);

    // A staged file dropped uncommitted leaves nothing.
    drop(gd.stage(&empty, 7, "job-3").unwrap());
    let names = |d: &GraphDir| {
        let mut v: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&gd), [DATA]);

    // A crash after the commit, before the outcome: recovery asks.
    let c = gd.stage(&empty, 7, "job-4").unwrap().commit().unwrap();
    std::mem::forget(c);
    let r = gd.recover(|job| job == "job-4").unwrap();
    assert_eq!((r.confirmed, r.rolled_back), (1, 0));
    assert_eq!(gd.load().unwrap().unwrap().1.vertex_count(), 0);
    let c = gd.stage(&g, 7, "job-5").unwrap().commit().unwrap();
    std::mem::forget(c);
    let r = gd.recover(|_| false).unwrap();
    assert_eq!((r.confirmed, r.rolled_back), (0, 1));
    assert_eq!(gd.load().unwrap().unwrap().1.vertex_count(), 0);
    assert_eq!(names(&gd), [DATA]);

    // The very first commit rolled back: no data at all.
    let fresh = GraphDir::new(dir.path().join("fresh"), "fresh".into());
    let c = fresh.stage(&g, 1, "job-6").unwrap().commit().unwrap();
    std::mem::forget(c);
    fresh.recover(|_| false).unwrap();
    assert!(fresh.load().unwrap().is_none());
    assert!(gd.stage(&g, 1, "../escape").is_err());
}

/// Cancels at the `n`th check.
struct CancelAt {
    n: u32,
    seen: Cell<u32>,
    progress: Cell<u8>,
}

impl Control for CancelAt {
    fn is_cancelled(&self) -> bool {
        self.seen.set(self.seen.get() + 1);
        self.seen.get() >= self.n
    }

    fn progress(&self, p: u8) {
        assert!(p > self.progress.get() && p < 100);
        self.progress.set(p);
    }
}

fn chain(dir: &Path, n: usize) -> ImportSpec {
    let v: String = (0..n).map(|i| format!("v{i},plain\n")).collect();
    let e: String = (1..n).map(|i| format!("v{},v{i},plain\n", i - 1)).collect();
    files(dir, &v, &e)
}

#[test]
fn an_import_stops_at_a_cancel_check_and_reports_progress_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = chain(dir.path(), 50_000);
    let c = CancelAt {
        n: 5,
        seen: Cell::new(0),
        progress: Cell::new(0),
    };
    let other = tempfile::tempdir().unwrap();
    let base = small(other.path());
    let base_copy = base.clone();
    assert!(matches!(
        import(&base, &spec, &Caps::default(), &c),
        Err(StoreError::Cancelled)
    ));
    assert!(c.progress.get() > 0);
    assert_eq!(base.vertex_count(), base_copy.vertex_count());
    let c = CancelAt {
        n: u32::MAX,
        seen: Cell::new(0),
        progress: Cell::new(0),
    };
    let (g, stats) = import(&GraphData::new(), &spec, &Caps::default(), &c).unwrap();
    assert_eq!((stats.vertices, stats.edges), (50_000, 49_999));
    assert!(c.progress.get() >= 90);
    assert_eq!(g.edge_count(), 49_999);
}

#[test]
fn caps_are_checked_and_parallel_edges_can_be_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let spec = chain(dir.path(), 100);
    for (caps, want) in [
        (
            Caps {
                max_vertices: 99,
                ..Caps::default()
            },
            "store.max_vertices",
        ),
        (
            Caps {
                max_edges: 98,
                ..Caps::default()
            },
            "store.max_edges",
        ),
    ] {
        let e = import(&GraphData::new(), &spec, &caps, &NoControl).unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
    }
    let spec = files(
        dir.path(),
        "a,person,Ann,\nb,person,Bob,\n",
        "a,b,knows,1\na,b,knows,2\nb,a,knows,3\n",
    );
    let caps = Caps {
        max_property_bytes: 20,
        ..Caps::default()
    };
    let e = import(&GraphData::new(), &spec, &caps, &NoControl).unwrap_err();
    assert!(e.to_string().contains("store.max_property_bytes"), "{e}");
    let ignore = ImportSpec {
        parallel_edges: ParallelEdges::Ignore,
        ..spec.clone()
    };
    let (g, stats) = import(&GraphData::new(), &ignore, &Caps::default(), &NoControl).unwrap();
    assert_eq!((g.edge_count(), stats.skipped_edges), (2, 1));
    let (g, _) = import(&GraphData::new(), &spec, &Caps::default(), &NoControl).unwrap();
    assert_eq!(g.edge_count(), 3);
}

#[test]
fn algorithms_agree_with_petgraph() {
    use petgraph::algo::{connected_components, dijkstra, page_rank};
    let dir = tempfile::tempdir().unwrap();
    // A small graph with dangling vertices and several components.
    let mut v = String::new();
    for i in 0..60 {
        v.push_str(&format!("v{i},plain\n"));
    }
    let mut e = String::new();
    let mut x = 17u32;
    for _ in 0..150 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let a = (x >> 8) % 45;
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let b = (x >> 8) % 45;
        e.push_str(&format!("v{a},v{b},plain\n"));
    }
    e.push_str("v50,v51,plain\nv52,v53,plain\n");
    let spec = files(dir.path(), &v, &e);
    let (g, _) = import(&GraphData::new(), &spec, &Caps::default(), &NoControl).unwrap();
    let pg = g.petgraph();

    let comps = algo::connected_components(&g, &NoControl).unwrap();
    let distinct: std::collections::HashSet<u32> = comps.iter().copied().collect();
    assert_eq!(distinct.len(), connected_components(pg));

    let src = g.index_of("v0").unwrap();
    let dist = dijkstra(
        pg,
        petgraph::graph::NodeIndex::new(src as usize),
        None,
        |_| 1u32,
    );
    for t in 0..60u32 {
        let got = algo::shortest_path(&g, src, t, true, &NoControl).unwrap();
        let want = dist.get(&petgraph::graph::NodeIndex::new(t as usize));
        assert_eq!(got.map(|p| p.len() as u32 - 1), want.copied(), "v{t}");
    }
    let hops = algo::k_hop(&g, &[src], 2, true, &NoControl).unwrap();
    let want: Vec<u32> = (0..60u32)
        .filter(|t| {
            dist.get(&petgraph::graph::NodeIndex::new(*t as usize))
                .is_some_and(|d| (1..=2).contains(d))
        })
        .collect();
    let mut got: Vec<u32> = hops.iter().map(|h| h.0).collect();
    got.sort_unstable();
    assert_eq!(got, want);

    // petgraph's page_rank gives the random jump only through vertices
    // that do not link to the target and renormalises each iteration; on
    // a graph where every vertex links to every other (no choice), both
    // give the uniform rank, and ours sums to 1 on any graph.
    let ours = algo::pagerank(&g, &algo::PageRankParams::default(), &NoControl).unwrap();
    assert!(ours.converged);
    assert!((ours.ranks.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    let theirs: Vec<f64> = page_rank(pg, 0.85, 50);
    assert_eq!(theirs.len(), ours.ranks.len());
    // Both put the same vertex first.
    let top = |r: &[f64]| (0..r.len()).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap();
    assert_eq!(top(&ours.ranks), top(&theirs));
    let cancel = CancelAt {
        n: 1,
        seen: Cell::new(0),
        progress: Cell::new(0),
    };
    assert!(matches!(
        algo::pagerank(&g, &algo::PageRankParams::default(), &cancel),
        Err(StoreError::Cancelled)
    ));
}
