//! What an import makes of its files, pinned down exactly: every refusal
//! with its file, line and reason (and which one wins when a row or a
//! file has several faults), the graph an accepted import builds (seen
//! through an export and the id lookups), the caps, and how often the
//! host's control is asked.

use std::cell::Cell;
use std::path::Path;

use graph_lifecycle_store::export::{ExportNames, export};
use graph_lifecycle_store::import::{
    CHECK_EVERY, ImportSpec, ImportStats, MAX_ID_BYTES, MAX_RECORD_BYTES, ParallelEdges, Source,
    import,
};
use graph_lifecycle_store::{Caps, Control, GraphData, NoControl, StoreError, format};

const SCHEMA: &str = r#"<PMML><labels>
  <label name="person"><properties>
    <property name="name" cardinality="single" dataType="string"/>
    <property name="tags" cardinality="list" dataType="string"/>
  </properties></label>
  <label name="typed"><properties>
    <property name="i" cardinality="single" dataType="int"/>
    <property name="l" cardinality="list" dataType="long"/>
    <property name="f" cardinality="single" dataType="float"/>
    <property name="b" cardinality="single" dataType="bool"/>
    <property name="t" cardinality="single" dataType="date"/>
    <property name="e" cardinality="set" dataType="enum" typeNameCount="2" typeName1="F" typeName2="M"/>
    <property name="c" cardinality="single" dataType="char array" maxDataSize="3"/>
  </properties></label>
  <label name="knows"><properties>
    <property name="w" cardinality="single" dataType="double"/>
  </properties></label>
  <label name="plain"/>
</labels></PMML>"#;

/// The spec of the files written into `dir`: the schema always, the
/// vertex and edge files when given.
fn write(dir: &Path, vertices: Option<&[u8]>, edges: Option<&[u8]>) -> ImportSpec {
    std::fs::write(dir.join("s.xml"), SCHEMA).unwrap();
    let src = |n: &str| Source {
        name: format!("in/{n}"),
        path: dir.join(n),
    };
    let mut spec = ImportSpec {
        schema: Some(src("s.xml")),
        ..ImportSpec::default()
    };
    if let Some(v) = vertices {
        std::fs::write(dir.join("v.csv"), v).unwrap();
        spec.vertices = Some(src("v.csv"));
    }
    if let Some(e) = edges {
        std::fs::write(dir.join("e.csv"), e).unwrap();
        spec.edges = Some(src("e.csv"));
    }
    spec
}

fn run(vertices: &[u8], edges: &[u8]) -> Result<(GraphData, ImportStats), StoreError> {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), Some(vertices), Some(edges));
    import(&GraphData::new(), &spec, &Caps::default(), &NoControl)
}

fn fails(vertices: &[u8], edges: &[u8]) -> String {
    match run(vertices, edges) {
        Ok(_) => panic!(
            "accepted: {} / {}",
            String::from_utf8_lossy(&vertices[..vertices.len().min(200)]),
            String::from_utf8_lossy(&edges[..edges.len().min(200)])
        ),
        Err(e) => e.to_string(),
    }
}

const V: &[u8] = b"a,person,Ann,x\nb,person,Bob,\nc,plain\n";

#[test]
fn each_malformed_vertex_row_is_refused_with_file_line_and_reason() {
    let long_id = "x".repeat(MAX_ID_BYTES + 1);
    let longest_id = "x".repeat(MAX_ID_BYTES);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"a,person\nb\n".to_vec(),
            "in/v.csv line 2: a vertex line needs an id and a label: id,label,property...",
        ),
        (
            b"a,person\n,person\n".to_vec(),
            "in/v.csv line 2: a vertex id must be 1 to 512 bytes",
        ),
        (
            format!("{long_id},plain\n").into_bytes(),
            "in/v.csv line 1: a vertex id must be 1 to 512 bytes",
        ),
        (
            format!("{longest_id},plain\n{longest_id},plain\n").into_bytes(),
            "in/v.csv line 2: vertex \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…\" is already in the graph",
        ),
        // Blank lines are skipped but counted.
        (
            b"a,plain\n\n\nb,plain\na,plain\n".to_vec(),
            "in/v.csv line 5: vertex \"a\" is already in the graph",
        ),
        (
            b"a,plain\n\n\na,plain\n".to_vec(),
            "in/v.csv line 4: vertex \"a\" is already in the graph",
        ),
        (
            b"\r\n\na,plain\r\n\r\nb,alien\r\n".to_vec(),
            "in/v.csv line 5: label \"alien\" is not in the schema",
        ),
        // A quoted field over two lines: the next record starts a line
        // later.
        (
            b"a,person,\"two\nlines\",\nb,plain\nb,plain\n".to_vec(),
            "in/v.csv line 4: vertex \"b\" is already in the graph",
        ),
        (
            b"a,plain\nb,alien,x\n".to_vec(),
            "in/v.csv line 2: label \"alien\" is not in the schema",
        ),
        (
            b"a,plain,x,y\n".to_vec(),
            "in/v.csv line 1: 2 property fields, label \"plain\" has none",
        ),
        (
            b"a,person,x,y,z\n".to_vec(),
            "in/v.csv line 1: 3 property fields, label \"person\" has 2 properties",
        ),
        (
            b"a,typed,1.5\n".to_vec(),
            "in/v.csv line 1: property \"i\" (single int): \"1.5\" is not a int",
        ),
        (
            b"a,typed,1,2;x\n".to_vec(),
            "in/v.csv line 1: property \"l\" (list long): \"x\" is not a long",
        ),
        (
            b"a,typed,,,1e99999x\n".to_vec(),
            "in/v.csv line 1: property \"f\" (single float): \"1e99999x\" is not a float",
        ),
        (
            b"a,typed,,,,yes\n".to_vec(),
            "in/v.csv line 1: property \"b\" (single bool): \"yes\" is not a bool",
        ),
        (
            b"a,typed,,,,,2024-13-01\n".to_vec(),
            "in/v.csv line 1: property \"t\" (single date): \"2024-13-01\" is not a date (yyyy-MM-dd HH:mm:ss or yyyy-MM-dd)",
        ),
        (
            b"a,typed,,,,,,F;X\n".to_vec(),
            "in/v.csv line 1: property \"e\" (set enum): \"X\" is not one of the enum's names",
        ),
        (
            b"a,typed,,,,,,,abcd\n".to_vec(),
            "in/v.csv line 1: property \"c\" (single char array): \"abcd\" is longer than 3 bytes",
        ),
        // A row's first fault wins: the id before the label, the label
        // before the properties.
        (
            b"a,plain\na,alien,x\n".to_vec(),
            "in/v.csv line 2: vertex \"a\" is already in the graph",
        ),
        (
            b"b,alien,x,y,z\n".to_vec(),
            "in/v.csv line 1: label \"alien\" is not in the schema",
        ),
        (
            b"a,typed,x,y\n".to_vec(),
            "in/v.csv line 1: property \"i\" (single int): \"x\" is not a int",
        ),
        // Not UTF-8: wins over the row's other faults, and loses to those
        // of the rows before.
        (
            b"a,plain\nb,alien,\xff\n".to_vec(),
            "in/v.csv line 2: a field is not UTF-8",
        ),
        (
            b"a,plain\nb,alien\nc,plain,\xff\n".to_vec(),
            "in/v.csv line 2: label \"alien\" is not in the schema",
        ),
        (
            b"a,pl\xc3\n".to_vec(),
            "in/v.csv line 1: a field is not UTF-8",
        ),
        // Whitespace is trimmed from numbers, not from ids or text.
        (
            b"a,typed, 7 \n a,typed\na,plain\n".to_vec(),
            "in/v.csv line 3: vertex \"a\" is already in the graph",
        ),
    ];
    for (vertices, want) in cases {
        let got = fails(&vertices, b"");
        assert_eq!(got, want, "{}", String::from_utf8_lossy(&vertices));
    }
}

#[test]
fn each_malformed_edge_row_is_refused_with_file_line_and_reason() {
    let cases: [(&[u8], &str); 12] = [
        (
            b"a,b,knows\na,b\n",
            "in/e.csv line 2: an edge line needs a source, a target and a label: source,target,label,property...",
        ),
        (
            b"a,b,knows,1\nzz,b,knows,1\n",
            "in/e.csv line 2: vertex \"zz\" is not in the graph",
        ),
        (
            b"a,zz,knows\n",
            "in/e.csv line 1: vertex \"zz\" is not in the graph",
        ),
        // The source before the target, the ends before the label.
        (
            b"yy,zz,knows\n",
            "in/e.csv line 1: vertex \"yy\" is not in the graph",
        ),
        (
            b"a,zz,alien\n",
            "in/e.csv line 1: vertex \"zz\" is not in the graph",
        ),
        (
            b"a,\"\",knows\n",
            "in/e.csv line 1: vertex \"\" is not in the graph",
        ),
        (
            b"a,b,alien\n",
            "in/e.csv line 1: label \"alien\" is not in the schema",
        ),
        (
            b"a,b,knows,1,2\n",
            "in/e.csv line 1: 2 property fields, label \"knows\" has 1 properties",
        ),
        (
            b"a,b,knows,x\n",
            "in/e.csv line 1: property \"w\" (single double): \"x\" is not a double",
        ),
        (
            b"a,b,plain,\n",
            "in/e.csv line 1: 1 property fields, label \"plain\" has none",
        ),
        (
            b"a,b,plain\na,\xff,plain\n",
            "in/e.csv line 2: a field is not UTF-8",
        ),
        // Ids are matched exactly: no trimming, no case folding.
        (
            b"a,b,plain\n a,b,plain\n",
            "in/e.csv line 2: vertex \" a\" is not in the graph",
        ),
    ];
    for (edges, want) in cases {
        let got = fails(V, edges);
        assert_eq!(got, want, "{}", String::from_utf8_lossy(edges));
    }
}

#[test]
fn a_record_over_max_record_bytes_is_refused_at_its_line() {
    // Line 3 (after a blank line): `b,person,` and `n` bytes of name and
    // a comma, `9 + n + 1` bytes before the line end.
    let file = |n: usize, end: &[u8]| {
        let mut v = b"a,plain\n\nb,person,".to_vec();
        v.extend(std::iter::repeat_n(b'x', n));
        v.push(b',');
        v.extend_from_slice(end);
        v
    };
    let max = MAX_RECORD_BYTES as usize;
    for end in [&b"\nc,plain\n"[..], b"\r\nc,plain\n", b""] {
        let (g, _) = run(&file(max - 10, end), b"a,b,plain\n").unwrap();
        assert_eq!(g.vertex("b").unwrap().properties[0].1.len(), 1);
        let got = fails(&file(max - 9, end), b"");
        assert_eq!(
            got,
            format!("in/v.csv line 3: a record longer than {MAX_RECORD_BYTES} bytes")
        );
    }
    // Far longer: refused without reading it whole.
    let got = fails(&file(4 * max, b"\n"), b"");
    assert_eq!(
        got,
        format!("in/v.csv line 3: a record longer than {MAX_RECORD_BYTES} bytes")
    );
}

/// Everything an export writes of `g`.
fn exported(g: &GraphData) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    export(g, dir.path(), &ExportNames::default(), &NoControl).unwrap();
    let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
    (read("vertices.csv"), read("edges.csv"))
}

#[test]
fn an_accepted_import_builds_exactly_its_rows() {
    let vertices = "a,person,Ann,x;y;x\n\
                    b,person,\"B, \"\"Bob\"\"\",\n\
                    c,person\n\
                    ünï,typed, -7 ,1;-2;3,1.5,TRUE,2024-05-01 12:00:00,M;F;M,ab\n\
                    e,typed,,,,0,2024-05-01,,\n\
                    f,plain\n";
    let edges = "a,b,knows,0.5\n\
                 b,a,knows,\n\
                 ünï,a,knows, 2.25 \n\
                 f,f,plain\n\
                 a,b,knows,0.5\n";
    let (g, stats) = run(vertices.as_bytes(), edges.as_bytes()).unwrap();
    assert_eq!(
        stats,
        ImportStats {
            labels: 4,
            vertices: 6,
            edges: 5,
            skipped_edges: 0,
            bytes: (SCHEMA.len() + vertices.len() + edges.len()) as u64,
        }
    );
    let (v, e) = exported(&g);
    assert_eq!(
        v,
        "a,person,Ann,x;y;x\n\
         b,person,\"B, \"\"Bob\"\"\",\n\
         c,person,,\n\
         ünï,typed,-7,1;-2;3,1.5,true,2024-05-01 12:00:00,M;F,ab\n\
         e,typed,,,,false,2024-05-01 00:00:00,,\n\
         f,plain\n"
    );
    assert_eq!(
        e,
        "a,b,knows,0.5\n\
         b,a,knows,\n\
         ünï,a,knows,2.25\n\
         f,f,plain\n\
         a,b,knows,0.5\n"
    );
    for (i, id) in ["a", "b", "c", "ünï", "e", "f"].into_iter().enumerate() {
        assert_eq!(g.index_of(id), Some(i as u32), "{id}");
        assert_eq!(g.vertex_id(i as u32), Some(id));
    }
    for missing in ["", "A", "ü", "ünï ", "g"] {
        assert_eq!(g.index_of(missing), None, "{missing:?}");
    }
    assert_eq!(g.vertex_id(6), None);
    assert_eq!(g.vertex_id(u32::MAX), None);

    // Ignoring parallel edges: same ends and label only.
    let dir = tempfile::tempdir().unwrap();
    let spec = ImportSpec {
        parallel_edges: ParallelEdges::Ignore,
        ..write(
            dir.path(),
            Some(vertices.as_bytes()),
            Some(b"a,b,knows,1\na,b,knows,2\nb,a,knows,3\na,b,plain\na,b,plain\na,b,knows,\n"),
        )
    };
    let (g, stats) = import(&GraphData::new(), &spec, &Caps::default(), &NoControl).unwrap();
    assert_eq!((stats.edges, stats.skipped_edges), (3, 3));
    assert_eq!(exported(&g).1, "a,b,knows,1\nb,a,knows,3\na,b,plain\n");
}

#[test]
fn an_import_adds_to_a_copy_of_its_base() {
    let (base, _) = run(V, b"a,b,knows,1\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        Some(b"d,plain\ne,person,Eve,\n"),
        Some(b"d,a,plain\ne,b,knows,2\n"),
    );
    let (g, stats) = import(&base, &spec, &Caps::default(), &NoControl).unwrap();
    assert_eq!((stats.labels, stats.vertices, stats.edges), (0, 2, 2));
    assert_eq!((base.vertex_count(), base.edge_count()), (3, 1));
    assert_eq!((g.vertex_count(), g.edge_count()), (5, 3));
    assert_eq!(g.index_of("d"), Some(3));
    assert_eq!(base.index_of("d"), None);
    assert_eq!(g.vertex("a"), base.vertex("a"));
    let (v, e) = exported(&g);
    assert_eq!(
        v,
        "a,person,Ann,x\nb,person,Bob,\nc,plain\nd,plain\ne,person,Eve,\n"
    );
    assert_eq!(e, "a,b,knows,1\nd,a,plain\ne,b,knows,2\n");

    // A vertex of the base cannot come again; an edge file alone
    // reaches the base's vertices.
    let spec = write(dir.path(), Some(b"z,plain\nb,plain\n"), None);
    let e = import(&base, &spec, &Caps::default(), &NoControl).unwrap_err();
    assert_eq!(
        e.to_string(),
        "in/v.csv line 2: vertex \"b\" is already in the graph"
    );
    let spec = write(dir.path(), None, Some(b"c,a,plain\nc,q,plain\n"));
    let e = import(&base, &spec, &Caps::default(), &NoControl).unwrap_err();
    assert_eq!(
        e.to_string(),
        "in/e.csv line 2: vertex \"q\" is not in the graph"
    );

    // The stored form of an imported graph reads back to the same graph.
    let mut bytes = Vec::new();
    format::write(&g, 9, &mut bytes).unwrap();
    let (_, back) = format::read(&bytes, "g").unwrap();
    assert_eq!(exported(&back), exported(&g));
    for id in ["a", "b", "c", "d", "e"] {
        assert_eq!(back.index_of(id), g.index_of(id));
        assert_eq!(back.vertex(id), g.vertex(id));
    }
}

#[test]
fn many_vertices_are_found_by_id_after_the_table_grows() {
    let n = 30_000;
    let v: String = (0..n).map(|i| format!("id-{i},plain\n")).collect();
    let e: String = (0..n)
        .map(|i| format!("id-{},id-{},plain\n", (i * 7919) % n, (i * 104_729 + 3) % n))
        .collect();
    let (g, stats) = run(v.as_bytes(), e.as_bytes()).unwrap();
    assert_eq!((stats.vertices, stats.edges), (n as u64, n as u64));
    for i in 0..n {
        let id = format!("id-{i}");
        assert_eq!(g.index_of(&id), Some(i as u32));
        assert_eq!(g.vertex_id(i as u32), Some(id.as_str()));
    }
    let pg = g.petgraph();
    for (k, edge) in pg.raw_edges().iter().enumerate() {
        assert_eq!(edge.source().index(), (k * 7919) % n);
        assert_eq!(edge.target().index(), (k * 104_729 + 3) % n);
    }
    assert_eq!(g.index_of("id-30000"), None);
    assert!(g.heap_bytes() > 0);
}

#[test]
fn caps_are_checked_in_row_order() {
    let caps = |v: u64, e: u64, p: u64| Caps {
        max_vertices: v,
        max_edges: e,
        max_property_bytes: p,
    };
    let cases: [(&[u8], &[u8], Caps, &str); 6] = [
        // A repeated id is refused before the cap, the cap before the
        // label.
        (
            b"a,plain\nb,plain\na,plain\n",
            b"",
            caps(2, 10, 1 << 20),
            "in/v.csv line 3: vertex \"a\" is already in the graph",
        ),
        (
            b"a,plain\nb,plain\nc,alien\n",
            b"",
            caps(2, 10, 1 << 20),
            "the graph would pass its cap of 2 vertices (store.max_vertices)",
        ),
        // A missing end before the cap, the cap before the label.
        (
            V,
            b"a,b,plain\na,zz,plain\n",
            caps(10, 1, 1 << 20),
            "in/e.csv line 2: vertex \"zz\" is not in the graph",
        ),
        (
            V,
            b"a,b,plain\na,b,alien\n",
            caps(10, 1, 1 << 20),
            "the graph would pass its cap of 1 edges (store.max_edges)",
        ),
        // The row's properties past the cap, counted with the earlier
        // rows'.
        (
            V,
            b"",
            caps(10, 10, 8),
            "the graph would pass its cap of 8 property bytes (store.max_property_bytes)",
        ),
        (
            V,
            b"a,b,knows,1\n",
            caps(10, 10, 16),
            "the graph would pass its cap of 16 property bytes (store.max_property_bytes)",
        ),
    ];
    for (v, e, caps, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let spec = write(dir.path(), Some(v), Some(e));
        let got = import(&GraphData::new(), &spec, &caps, &NoControl).unwrap_err();
        assert_eq!(got.to_string(), want);
    }
    // Exactly at the caps is accepted.
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), Some(V), Some(b"a,b,knows,1\n"));
    let (g, _) = import(&GraphData::new(), &spec, &caps(3, 1, 23), &NoControl).unwrap();
    assert_eq!(
        (g.vertex_count(), g.edge_count(), g.property_bytes()),
        (3, 1, 23)
    );
}

#[test]
fn other_delimiters_and_quotes_are_read_as_asked() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ImportSpec {
        delimiter: b'|',
        quote: None,
        ..write(
            dir.path(),
            Some(b"\"a\"|person|say \"hi\", Ann|\nb|plain\n"),
            Some(b"\"a\"|b|knows|1\n"),
        )
    };
    let (g, _) = import(&GraphData::new(), &spec, &Caps::default(), &NoControl).unwrap();
    assert_eq!(g.index_of("\"a\""), Some(0));
    assert_eq!(
        exported(&g),
        (
            "\"\"\"a\"\"\",person,\"say \"\"hi\"\", Ann\",\nb,plain\n".to_owned(),
            "\"\"\"a\"\"\",b,knows,1\n".to_owned()
        )
    );
}

/// Counts the checks and keeps the progress reports.
#[derive(Default)]
struct Record {
    checks: Cell<u32>,
    reports: std::cell::RefCell<Vec<u8>>,
}

impl Control for Record {
    fn is_cancelled(&self) -> bool {
        self.checks.set(self.checks.get() + 1);
        false
    }

    fn progress(&self, p: u8) {
        self.reports.borrow_mut().push(p);
    }
}

#[test]
fn the_control_is_asked_every_check_every_rows_and_hears_progress_by_bytes() {
    let n = 3 * CHECK_EVERY as usize + 5;
    let v: String = (0..n).map(|i| format!("v{i},plain\n")).collect();
    let e: String = (1..n).map(|i| format!("v{},v{i},plain\n", i - 1)).collect();
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), Some(v.as_bytes()), Some(e.as_bytes()));
    let c = Record::default();
    import(&GraphData::new(), &spec, &Caps::default(), &c).unwrap();
    // Once after the schema, every CHECK_EVERY rows and at the end of each
    // file.
    assert_eq!(c.checks.get(), 1 + (3 + 1) + (3 + 1));
    let reports = c.reports.borrow();
    assert!(reports.windows(2).all(|w| w[0] < w[1]), "{reports:?}");
    assert!(
        reports.len() >= 4 && *reports.last().unwrap() == 99,
        "{reports:?}"
    );
    // The edge file is most of the bytes: the reports during the vertex
    // file stay below its share.
    let total = SCHEMA.len() + v.len() + e.len();
    let after_vertices = ((SCHEMA.len() + v.len()) * 100 / total) as u8;
    assert!(reports.contains(&after_vertices), "{reports:?}");

    // Cancelled at the third check: in the vertex file, nothing returned.
    struct CancelAt(Cell<u32>);
    impl Control for CancelAt {
        fn is_cancelled(&self) -> bool {
            self.0.set(self.0.get() + 1);
            self.0.get() >= 3
        }
        fn progress(&self, _: u8) {}
    }
    let c = CancelAt(Cell::new(0));
    let got = import(&GraphData::new(), &spec, &Caps::default(), &c);
    assert!(matches!(got, Err(StoreError::Cancelled)));
    assert_eq!(c.0.get(), 3);
}

#[test]
fn rows_are_imported_and_refused_in_file_order_far_into_a_file() {
    let n = 300;
    let v: String = (0..n).map(|i| format!("v{i},plain\n")).collect();
    let edge = |i: usize| format!("v{},v{},knows,{i}.5\n", i % n, (i * 7) % n);
    let edges = |fault: &dyn Fn(usize) -> Option<&'static [u8]>| -> Vec<u8> {
        (0..1_000)
            .flat_map(|i| fault(i).map_or_else(|| edge(i).into_bytes(), <[u8]>::to_vec))
            .collect()
    };
    let cases: Vec<(Vec<u8>, Caps, String)> = vec![
        // A row's fault before a later one's, whatever the kinds.
        (
            edges(&|i| match i {
                149 => Some(b"v1,v2,alien\n"),
                169 => Some(b"v1,\xff,knows\n"),
                _ => None,
            }),
            Caps::default(),
            "in/e.csv line 150: label \"alien\" is not in the schema".into(),
        ),
        (
            edges(&|i| match i {
                129 => Some(b"v1,v2,knows,\xc3\xa9\xff\n"),
                139 => Some(b"v1,v2,alien\n"),
                _ => None,
            }),
            Caps::default(),
            "in/e.csv line 130: a field is not UTF-8".into(),
        ),
        (
            edges(&|i| (i == 700).then_some(b"v1,nobody,knows\n")),
            Caps::default(),
            "in/e.csv line 701: vertex \"nobody\" is not in the graph".into(),
        ),
        // The edge cap counts the edges of the rows before, however they
        // were read.
        (
            edges(&|_| None),
            Caps {
                max_edges: 100,
                ..Caps::default()
            },
            "the graph would pass its cap of 100 edges (store.max_edges)".into(),
        ),
        (
            edges(&|i| (i == 100).then_some(b"v1,nobody,knows\n")),
            Caps {
                max_edges: 100,
                ..Caps::default()
            },
            "in/e.csv line 101: vertex \"nobody\" is not in the graph".into(),
        ),
    ];
    for (e, caps, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let spec = write(dir.path(), Some(v.as_bytes()), Some(&e));
        let got = import(&GraphData::new(), &spec, &caps, &NoControl).unwrap_err();
        assert_eq!(got.to_string(), want);
    }

    // Accepted: every edge in file order, with its own property.
    let e = edges(&|_| None);
    let (g, stats) = run(v.as_bytes(), &e).unwrap();
    assert_eq!(stats.edges, 1_000);
    assert_eq!(exported(&g).1, String::from_utf8(e.clone()).unwrap());

    // Parallel edges ignored across the whole file and the base graph: an
    // edge file that repeats itself adds nothing the second time.
    let dir = tempfile::tempdir().unwrap();
    let twice = [e.clone(), e.clone()].concat();
    let spec = ImportSpec {
        parallel_edges: ParallelEdges::Ignore,
        ..write(dir.path(), Some(v.as_bytes()), Some(&twice))
    };
    let (g, stats) = import(&GraphData::new(), &spec, &Caps::default(), &NoControl).unwrap();
    let distinct: std::collections::HashSet<(usize, usize)> =
        (0..1_000).map(|i| (i % n, (i * 7) % n)).collect();
    assert_eq!(stats.edges as usize, distinct.len());
    assert_eq!(stats.skipped_edges as usize, 2_000 - distinct.len());
    let spec = ImportSpec {
        parallel_edges: ParallelEdges::Ignore,
        ..write(dir.path(), None, Some(&e))
    };
    let (again, stats) = import(&g, &spec, &Caps::default(), &NoControl).unwrap();
    assert_eq!((stats.edges, stats.skipped_edges), (0, 1_000));
    assert_eq!(again.edge_count(), g.edge_count());
}
