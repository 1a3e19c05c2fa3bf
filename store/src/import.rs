//! Importing GES's formats into a graph: an XML metadata file, a
//! headerless CSV vertex file (`id,label,property...`) and a headerless
//! CSV edge file (`source,target,label,property...`), each optional.
//!
//! The import works on a copy of the graph and returns the new graph; the
//! caller swaps it in only if the import succeeded, so a failed or
//! cancelled import leaves the old data as it was. Files are streamed:
//! the CSV reader holds one record at a time. Progress is the share of
//! the files' bytes read; [`Control::is_cancelled`] is asked every
//! [`CHECK_EVERY`] rows.
//!
//! Each row is checked: a label the schema does not define, a property
//! value that is not of its type, more fields than the label has
//! properties, an empty or repeated vertex id, an edge whose end is not a
//! vertex, a record over [`MAX_RECORD_BYTES`], a field that is not UTF-8:
//! each fails the import with the file, the line and why. Going past a
//! [`Caps`] value fails it naming the cap.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::rc::Rc;

use petgraph::graph::NodeIndex;

use crate::Control;
use crate::error::{StoreError, quote};
use crate::graph::{Caps, Element, GraphData};
use crate::schema::{MAX_SCHEMA_BYTES, Schema};
use crate::value;

/// Rows read between two cancel checks and progress reports.
pub const CHECK_EVERY: u64 = 4_096;
/// Longest CSV record, in bytes.
pub const MAX_RECORD_BYTES: u64 = 1 << 20;
/// Longest vertex id, in bytes.
pub const MAX_ID_BYTES: usize = 512;
/// The CSV reader's buffer.
const CSV_BUFFER: usize = 64 << 10;

/// A file to import: where it is, and how the request named it (for
/// messages, which never show the server's own paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// How the request named it.
    pub name: String,
    /// Its resolved path.
    pub path: PathBuf,
}

/// What to do with an edge whose source, target and label an edge of
/// the graph already has (GES's `parallel_edge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParallelEdges {
    /// Keep both (GES's default, `allow`).
    #[default]
    Allow,
    /// Keep the first, skip the new one (`ignore`).
    Ignore,
}

/// One import: its files and how to read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSpec {
    /// The metadata file; its labels are added to the graph's.
    pub schema: Option<Source>,
    /// The vertex file.
    pub vertices: Option<Source>,
    /// The edge file.
    pub edges: Option<Source>,
    /// The field separator (default `,`).
    pub delimiter: u8,
    /// The quote character (default `"`); `None` reads quotes as data.
    pub quote: Option<u8>,
    /// Parallel edges.
    pub parallel_edges: ParallelEdges,
}

impl Default for ImportSpec {
    fn default() -> Self {
        ImportSpec {
            schema: None,
            vertices: None,
            edges: None,
            delimiter: b',',
            quote: Some(b'"'),
            parallel_edges: ParallelEdges::Allow,
        }
    }
}

/// What an import added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportStats {
    /// Labels added to the schema.
    pub labels: usize,
    /// Vertices added.
    pub vertices: u64,
    /// Edges added.
    pub edges: u64,
    /// Edges skipped as parallel ([`ParallelEdges::Ignore`]).
    pub skipped_edges: u64,
    /// Bytes of the files read.
    pub bytes: u64,
}

/// A reader that counts the bytes it hands out and refuses to hand out
/// more than `limit` past the mark the importer sets after each record,
/// so that one record (the CSV reader buffers a whole one) cannot grow
/// past the limit.
struct Counting<R> {
    inner: R,
    read: Rc<Cell<u64>>,
    mark: Rc<Cell<u64>>,
    limit: u64,
}

/// The error a [`Counting`] reader gives for an overlong record.
#[derive(Debug)]
struct RecordTooLong;

impl std::fmt::Display for RecordTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a record longer than {MAX_RECORD_BYTES} bytes")
    }
}

impl std::error::Error for RecordTooLong {}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read.get().saturating_sub(self.mark.get()) > self.limit {
            return Err(io::Error::other(RecordTooLong));
        }
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

struct Progress<'a> {
    control: &'a dyn Control,
    total: u64,
    done_before: u64,
    last: u8,
}

impl Progress<'_> {
    fn at(&mut self, read: u64) -> Result<(), StoreError> {
        if self.control.is_cancelled() {
            return Err(StoreError::Cancelled);
        }
        let pct = ((self.done_before + read) * 100)
            .checked_div(self.total)
            .unwrap_or(0)
            .min(99) as u8;
        if pct > self.last {
            self.last = pct;
            self.control.progress(pct);
        }
        Ok(())
    }
}

fn open(src: &Source) -> Result<(File, u64), StoreError> {
    let f = File::open(&src.path).map_err(StoreError::io("open", src.name.clone()))?;
    let len = f
        .metadata()
        .map_err(StoreError::io("read", src.name.clone()))?
        .len();
    Ok((f, len))
}

/// Imports `spec` into a copy of `base`, within `caps`, and returns the
/// new graph and what was added.
///
/// # Errors
///
/// [`StoreError::Csv`] and [`StoreError::Xml`] with the file and line,
/// [`StoreError::Cap`], [`StoreError::Schema`], [`StoreError::Io`],
/// [`StoreError::Cancelled`].
pub fn import(
    base: &GraphData,
    spec: &ImportSpec,
    caps: &Caps,
    control: &dyn Control,
) -> Result<(GraphData, ImportStats), StoreError> {
    if spec.schema.is_none() && spec.vertices.is_none() && spec.edges.is_none() {
        return Err(StoreError::Request(
            "an import needs a schema_path, a vertexset_path or an edgeset_path".into(),
        ));
    }
    let files: Vec<(&Source, File, u64)> = [&spec.schema, &spec.vertices, &spec.edges]
        .into_iter()
        .flatten()
        .map(|s| open(s).map(|(f, n)| (s, f, n)))
        .collect::<Result<_, _>>()?;
    let mut files = files.into_iter();
    let total: u64 = [&spec.schema, &spec.vertices, &spec.edges]
        .into_iter()
        .flatten()
        .filter_map(|s| std::fs::metadata(&s.path).ok())
        .map(|m| m.len())
        .sum();
    let mut progress = Progress {
        control,
        total,
        done_before: 0,
        last: 0,
    };
    let mut stats = ImportStats::default();
    let mut g = base.clone();
    if spec.schema.is_some()
        && let Some((src, f, len)) = files.next()
    {
        if len > MAX_SCHEMA_BYTES as u64 {
            return Err(StoreError::Xml {
                file: src.name.clone(),
                line: 1,
                reason: format!("the file is larger than {MAX_SCHEMA_BYTES} bytes"),
            });
        }
        let mut bytes = Vec::new();
        f.take(MAX_SCHEMA_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(StoreError::io("read", src.name.clone()))?;
        let schema = Schema::from_xml(&bytes, &src.name)?;
        let before = g.schema.len();
        g.schema.merge(&schema).map_err(|e| match e {
            StoreError::Schema(why) => StoreError::Schema(format!("{}: {why}", src.name)),
            other => other,
        })?;
        stats.labels = g.schema.len() - before;
        progress.done_before += len;
        stats.bytes += len;
        progress.at(0)?;
    }
    if spec.vertices.is_some()
        && let Some((src, f, len)) = files.next()
    {
        read_csv(src, f, spec, &mut progress, |line, rec| {
            add_vertex(&mut g, caps, src, line, rec)?;
            stats.vertices += 1;
            Ok(())
        })?;
        progress.done_before += len;
        stats.bytes += len;
    }
    if spec.edges.is_some()
        && let Some((src, f, len)) = files.next()
    {
        read_csv(src, f, spec, &mut progress, |line, rec| {
            if add_edge(&mut g, caps, spec.parallel_edges, src, line, rec)? {
                stats.edges += 1;
            } else {
                stats.skipped_edges += 1;
            }
            Ok(())
        })?;
        stats.bytes += len;
    }
    g.shrink_to_fit();
    Ok((g, stats))
}

/// Streams the records of one CSV file to `row`, with its line number.
fn read_csv(
    src: &Source,
    file: File,
    spec: &ImportSpec,
    progress: &mut Progress<'_>,
    mut row: impl FnMut(u64, &csv::StringRecord) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let read = Rc::new(Cell::new(0u64));
    let mark = Rc::new(Cell::new(0u64));
    let counting = Counting {
        inner: BufReader::with_capacity(CSV_BUFFER, file),
        read: read.clone(),
        mark: mark.clone(),
        limit: MAX_RECORD_BYTES + CSV_BUFFER as u64,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(spec.delimiter)
        .quote(spec.quote.unwrap_or(b'"'))
        .quoting(spec.quote.is_some())
        .buffer_capacity(CSV_BUFFER)
        .from_reader(counting);
    let mut rec = csv::StringRecord::new();
    let mut rows = 0u64;
    let mut last_line = 0u64;
    loop {
        match reader.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map_or(last_line + 1, csv::Position::line);
                let reason = match e.kind() {
                    csv::ErrorKind::Utf8 { .. } => "a field is not UTF-8".to_owned(),
                    csv::ErrorKind::Io(io)
                        if io.get_ref().is_some_and(|i| i.is::<RecordTooLong>()) =>
                    {
                        RecordTooLong.to_string()
                    }
                    csv::ErrorKind::Io(io) => {
                        return Err(StoreError::Io {
                            op: "read",
                            file: src.name.clone(),
                            source: io::Error::new(io.kind(), io.to_string()),
                        });
                    }
                    _ => e.to_string(),
                };
                return Err(StoreError::Csv {
                    file: src.name.clone(),
                    line,
                    reason,
                });
            }
        }
        let line = rec.position().map_or(last_line + 1, csv::Position::line);
        last_line = line;
        mark.set(read.get());
        row(line, &rec)?;
        rows += 1;
        if rows.is_multiple_of(CHECK_EVERY) {
            progress.at(read.get())?;
        }
    }
    progress.at(read.get())
}

fn csv_error(src: &Source, line: u64, reason: impl Into<String>) -> StoreError {
    StoreError::Csv {
        file: src.name.clone(),
        line,
        reason: reason.into(),
    }
}

/// The label and property record of an element whose label is field
/// `at` of `rec`, its properties the fields after it.
fn element(
    g: &mut GraphData,
    caps: &Caps,
    src: &Source,
    line: u64,
    rec: &csv::StringRecord,
    at: usize,
) -> Result<Element, StoreError> {
    let label = &rec[at];
    let count = rec.len() - at - 1;
    let Some((id, def)) = g.schema.find(label) else {
        return Err(csv_error(
            src,
            line,
            format!("label {} is not in the schema", quote(label)),
        ));
    };
    if def.properties.is_empty() {
        if count > 0 {
            return Err(csv_error(
                src,
                line,
                format!("{count} property fields, label {} has none", quote(label)),
            ));
        }
        return Ok(Element {
            label: id,
            props: Element::NO_PROPERTIES,
        });
    }
    let start = g.props.len();
    value::encode(def, count, rec.iter().skip(at + 1), &mut g.props)
        .map_err(|why| csv_error(src, line, why))?;
    let limit = caps.max_property_bytes.min(u64::from(u32::MAX));
    if g.props.len() as u64 > limit {
        return Err(StoreError::Cap {
            cap: "store.max_property_bytes",
            what: "property bytes",
            limit,
        });
    }
    Ok(Element {
        label: id,
        props: u32::try_from(start).map_err(|_| StoreError::Cap {
            cap: "store.max_property_bytes",
            what: "property bytes",
            limit,
        })?,
    })
}

fn add_vertex(
    g: &mut GraphData,
    caps: &Caps,
    src: &Source,
    line: u64,
    rec: &csv::StringRecord,
) -> Result<(), StoreError> {
    if rec.len() < 2 {
        return Err(csv_error(
            src,
            line,
            "a vertex line needs an id and a label: id,label,property...",
        ));
    }
    let id = &rec[0];
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(csv_error(
            src,
            line,
            format!("a vertex id must be 1 to {MAX_ID_BYTES} bytes"),
        ));
    }
    if g.ids.contains(id) {
        return Err(csv_error(
            src,
            line,
            format!("vertex {} is already in the graph", quote(id)),
        ));
    }
    let limit = caps.max_vertices.min(u64::from(u32::MAX - 1));
    if g.graph.node_count() as u64 >= limit {
        return Err(StoreError::Cap {
            cap: "store.max_vertices",
            what: "vertices",
            limit,
        });
    }
    let e = element(g, caps, src, line, rec, 1)?;
    g.ids.insert(id.into());
    g.graph.add_node(e);
    Ok(())
}

/// Adds one edge; `false` if it was skipped as parallel.
fn add_edge(
    g: &mut GraphData,
    caps: &Caps,
    parallel: ParallelEdges,
    src: &Source,
    line: u64,
    rec: &csv::StringRecord,
) -> Result<bool, StoreError> {
    if rec.len() < 3 {
        return Err(csv_error(
            src,
            line,
            "an edge line needs a source, a target and a label: source,target,label,property...",
        ));
    }
    let end = |id: &str| {
        g.ids.get_index_of(id).map(NodeIndex::new).ok_or_else(|| {
            csv_error(
                src,
                line,
                format!("vertex {} is not in the graph", quote(id)),
            )
        })
    };
    let (s, t) = (end(&rec[0])?, end(&rec[1])?);
    let limit = caps.max_edges.min(u64::from(u32::MAX - 1));
    if g.graph.edge_count() as u64 >= limit {
        return Err(StoreError::Cap {
            cap: "store.max_edges",
            what: "edges",
            limit,
        });
    }
    if parallel == ParallelEdges::Ignore
        && let Some((label, _)) = g.schema.find(&rec[2])
        && g.graph
            .edges_connecting(s, t)
            .any(|e| e.weight().label == label)
    {
        return Ok(false);
    }
    let e = element(g, caps, src, line, rec, 2)?;
    g.graph.add_edge(s, t, e);
    Ok(true)
}
