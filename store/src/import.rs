//! Importing GES's formats into a graph: an XML metadata file, a
//! headerless CSV vertex file (`id,label,property...`) and a headerless
//! CSV edge file (`source,target,label,property...`), each optional.
//!
//! The import works on a copy of the graph and returns the new graph; the
//! caller swaps it in only if the import succeeded, so a failed or
//! cancelled import leaves the old data as it was. Progress is the share
//! of the files' bytes read; [`Control::is_cancelled`] is asked every
//! [`CHECK_EVERY`] rows.
//!
//! Each row is checked: a label the schema does not define, a property
//! value that is not of its type, more fields than the label has
//! properties, an empty or repeated vertex id, an edge whose end is not a
//! vertex, a record over [`MAX_RECORD_BYTES`], a field that is not UTF-8:
//! each fails the import with the file, the line where the record starts
//! (blank lines, which are skipped, counted) and why. Going past a
//! [`Caps`] value fails it naming the cap. Of several faults, the first
//! row's comes first, and within a row the order is: the record itself
//! (too long, not UTF-8), too few fields, the id (or the source, then the
//! target), the vertex (or edge) cap, the label, the properties in order,
//! the property-bytes cap.
//!
//! Files are streamed, a batch of rows at a time (at most 64 rows and
//! 64 KiB read ahead), into buffers reused from batch to batch: nothing
//! is allocated per row. Records are read as the `csv` crate reads them:
//! a line without quotes is split at its delimiters where it is read,
//! any other record goes through `csv-core`, the `csv` crate's parser.
//! Fields are typed from their bytes (numbers without a `String`, and
//! plain decimals without `str::parse`, to the same values). The ids of
//! a batch are looked up together, and the nodes its edges join loaded
//! ahead, so that the cache misses of the lookups (random ids over all
//! the vertices) overlap instead of coming one after another; the rows
//! are then checked and added one by one, in file order, so the checks,
//! their order and the caps are those of a row-by-row import.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use petgraph::graph::NodeIndex;

use crate::Control;
use crate::error::{StoreError, quote};
use crate::graph::{Caps, Element, GraphData};
use crate::ids::IdTable;
use crate::schema::{MAX_SCHEMA_BYTES, Schema};
use crate::value;

/// Rows read between two cancel checks and progress reports.
pub const CHECK_EVERY: u64 = 4_096;
/// Longest CSV record, in bytes: its bytes in the file from its first to
/// its last field, quotes and delimiters included, its line end not.
pub const MAX_RECORD_BYTES: u64 = 1 << 20;
/// Longest vertex id, in bytes.
pub const MAX_ID_BYTES: usize = 512;
/// The CSV reader's buffer.
const CSV_BUFFER: usize = 64 << 10;
/// The byte order mark `csv-core` skips at the start of a file.
const BOM: &[u8] = b"\xef\xbb\xbf";

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
    let mut batch = Batch::default();
    let mut labels = LabelCache::default();
    if spec.vertices.is_some()
        && let Some((src, f, len)) = files.next()
    {
        let mut file = FileImport::new(src, f, spec);
        file.run(&mut batch, &mut progress, |batch, file, progress| {
            // The slots of the batch's ids, loaded ahead of the rows so
            // that their cache misses overlap.
            batch.hash_ids(&g.ids, 1);
            g.ids.touch(&batch.hashes);
            for r in 0..batch.rows.len() {
                let row = batch.row(r);
                add_vertex(&mut g, caps, src, &row, batch.hashes[r], &mut labels)?;
                stats.vertices += 1;
                file.row_done(progress)?;
            }
            Ok(())
        })?;
        progress.done_before += len;
        stats.bytes += len;
    }
    if spec.edges.is_some()
        && let Some((src, f, len)) = files.next()
    {
        let mut file = FileImport::new(src, f, spec);
        let mut pending: Vec<(NodeIndex, NodeIndex, Element)> = Vec::with_capacity(BATCH_ROWS);
        let parallel = spec.parallel_edges;
        file.run(&mut batch, &mut progress, |batch, file, progress| {
            // Both ends of every edge of the batch looked up together, so
            // that their cache misses overlap.
            batch.hash_ids(&g.ids, 2);
            g.ids.find_many(
                &batch.bytes,
                &batch.keys,
                &batch.hashes,
                &mut batch.scratch,
                &mut batch.found,
            );
            // The nodes the edges link, loaded now: by the time the edges
            // go in, after the rows' checks, they are in the cache.
            let nodes = g.graph.raw_nodes();
            let mut any = 0u32;
            for &n in batch.found.iter().flatten() {
                any |= nodes.get(n as usize).map_or(0, |n| n.weight.props);
            }
            std::hint::black_box(any);
            for r in 0..batch.rows.len() {
                let row = batch.row(r);
                let ends = [batch.found[2 * r], batch.found[2 * r + 1]];
                let added = pending.len();
                match add_edge(&mut g, caps, parallel, added, src, &row, ends, &mut labels)? {
                    None => stats.skipped_edges += 1,
                    // Ignoring parallel edges looks at the graph's edges:
                    // each goes in at once.
                    Some((s, t, e)) if parallel == ParallelEdges::Ignore => {
                        g.graph.add_edge(s, t, e);
                        stats.edges += 1;
                    }
                    Some(edge) => {
                        pending.push(edge);
                        stats.edges += 1;
                    }
                }
                file.row_done(progress)?;
            }
            // The batch's edges into the graph in one tight loop, whose
            // cache misses (two random nodes each) overlap.
            for (s, t, e) in pending.drain(..) {
                g.graph.add_edge(s, t, e);
            }
            Ok(())
        })?;
        stats.bytes += len;
    }
    g.shrink_to_fit();
    Ok((g, stats))
}

/// An error on the way through a file's rows, boxed: the hot functions
/// return a pointer-sized error rather than copying a large one around.
type Fail = Box<StoreError>;

/// Most rows read ahead of the one being imported.
const BATCH_ROWS: usize = 64;
/// Most field bytes read ahead (a longer record is read alone).
const BATCH_BYTES: usize = 64 << 10;

/// One CSV file's import: its reader and its rows so far.
struct FileImport<'a> {
    reader: CsvReader<'a>,
    rows: u64,
}

impl<'a> FileImport<'a> {
    fn new(src: &'a Source, file: File, spec: &ImportSpec) -> Self {
        FileImport {
            reader: CsvReader::new(src, file, spec),
            rows: 0,
        }
    }

    /// Reads the file a batch of rows at a time and hands each batch to
    /// `rows`, in order; a read error comes after the rows before it.
    fn run(
        &mut self,
        batch: &mut Batch,
        progress: &mut Progress<'_>,
        mut rows: impl FnMut(&mut Batch, &mut Self, &mut Progress<'_>) -> Result<(), Fail>,
    ) -> Result<(), StoreError> {
        loop {
            batch.clear();
            let mut more = Ok(true);
            while batch.rows.len() < BATCH_ROWS && batch.used < BATCH_BYTES {
                more = self.reader.read(batch);
                if !matches!(more, Ok(true)) {
                    break;
                }
            }
            rows(batch, self, progress).map_err(|e| *e)?;
            if !more.map_err(|e| *e)? {
                return progress.at(self.reader.read_bytes);
            }
        }
    }

    /// Counts a row; every [`CHECK_EVERY`] rows asks the control.
    fn row_done(&mut self, progress: &mut Progress<'_>) -> Result<(), Fail> {
        self.rows += 1;
        if self.rows.is_multiple_of(CHECK_EVERY) {
            progress.at(self.reader.read_bytes)?;
        }
        Ok(())
    }
}

/// Where a record's fields are in its [`Batch`].
#[derive(Debug, Clone, Copy)]
struct RowAt {
    /// Its first field in the batch's `spans`.
    first: usize,
    /// How many fields.
    len: usize,
    /// The line where the record starts.
    line: u64,
}

/// Records read ahead, in buffers that are reused from batch to batch,
/// with the ids they name and their hashes.
#[derive(Debug, Default)]
struct Batch {
    /// The records' bytes (`used` of them in use).
    bytes: Vec<u8>,
    used: usize,
    /// Where each field is in `bytes`.
    spans: Vec<(usize, usize)>,
    rows: Vec<RowAt>,
    /// The id fields to look up (a fixed number per row), their hashes,
    /// what was found, and room for the lookups.
    keys: Vec<(usize, usize)>,
    hashes: Vec<u64>,
    found: Vec<Option<u32>>,
    scratch: Vec<[u64; 2]>,
}

impl Batch {
    fn clear(&mut self) {
        self.used = 0;
        self.spans.clear();
        self.rows.clear();
    }

    /// Room for `n` more bytes after those in use.
    fn room(&mut self, n: usize) {
        let want = self.used + n;
        if self.bytes.len() < want {
            self.bytes.resize(want.max(self.bytes.len() * 2), 0);
        }
    }

    fn row(&self, r: usize) -> Row<'_> {
        let at = self.rows[r];
        Row {
            bytes: &self.bytes,
            spans: &self.spans[at.first..at.first + at.len],
            line: at.line,
        }
    }

    /// Takes the first `per_row` fields of each row as ids, with their
    /// hashes in `ids` (an empty range for a field the row lacks).
    fn hash_ids(&mut self, ids: &IdTable, per_row: usize) {
        self.keys.clear();
        self.hashes.clear();
        for at in &self.rows {
            for k in 0..per_row {
                let (start, end) = if k < at.len {
                    self.spans[at.first + k]
                } else {
                    (0, 0)
                };
                self.keys.push((start, end));
                self.hashes.push(ids.hash(&self.bytes[start..end]));
            }
        }
    }
}

/// One CSV record of a [`Batch`].
#[derive(Debug, Clone, Copy)]
struct Row<'b> {
    bytes: &'b [u8],
    spans: &'b [(usize, usize)],
    /// The line where the record starts.
    line: u64,
}

impl<'b> Row<'b> {
    fn len(&self) -> usize {
        self.spans.len()
    }

    fn field(&self, i: usize) -> &'b [u8] {
        let (start, end) = self.spans[i];
        &self.bytes[start..end]
    }

    /// Field `i` as text; every field was checked to be UTF-8 when the
    /// record was read.
    fn text(&self, i: usize) -> &'b str {
        value::text(self.field(i))
    }

    /// The fields from `i` on.
    fn fields_from(&self, i: usize) -> impl Iterator<Item = &'b [u8]> + use<'b> {
        let row = *self;
        (i..row.len()).map(move |i| row.field(i))
    }
}

/// A CSV file read record by record as the `csv` crate reads it (its
/// parser, `csv-core`, configured as it configures it), keeping each
/// record's line and length.
///
/// A record on one line without a quote character (with quoting on),
/// whole in the read buffer, is split here at its delimiters, which is
/// what the parser makes of such a line (quotes are the only bytes it
/// treats specially within a line; no escape or comment character is
/// set); any other record is the parser's.
struct CsvReader<'a> {
    src: &'a Source,
    file: File,
    core: csv_core::Reader,
    delimiter: u8,
    /// The quote character, when quoting is on.
    quote: Option<u8>,
    /// Whether lines may be split here.
    split: bool,
    buf: Vec<u8>,
    /// The unread part of `buf`.
    at: usize,
    filled: usize,
    eof: bool,
    /// Whether `core` has been given input (it looks for a byte order
    /// mark only the first time).
    started: bool,
    /// The line of the next unread byte.
    line: u64,
    /// Bytes read from the file.
    read_bytes: u64,
}

impl<'a> CsvReader<'a> {
    fn new(src: &'a Source, file: File, spec: &ImportSpec) -> CsvReader<'a> {
        CsvReader::with_buffer(src, file, spec, CSV_BUFFER)
    }

    /// A reader with a buffer of `size` bytes (at least 4).
    fn with_buffer(src: &'a Source, file: File, spec: &ImportSpec, size: usize) -> CsvReader<'a> {
        let core = csv_core::ReaderBuilder::new()
            .delimiter(spec.delimiter)
            .quote(spec.quote.unwrap_or(b'"'))
            .quoting(spec.quote.is_some())
            .build();
        let line_end = |b: u8| b == b'\n' || b == b'\r';
        CsvReader {
            src,
            file,
            core,
            delimiter: spec.delimiter,
            quote: spec.quote,
            split: !line_end(spec.delimiter) && spec.quote != Some(spec.delimiter),
            buf: vec![0; size],
            at: 0,
            filled: 0,
            eof: false,
            started: false,
            line: 1,
            read_bytes: 0,
        }
    }

    fn fill(&mut self) -> Result<(), Fail> {
        loop {
            match self.file.read(&mut self.buf) {
                Ok(n) => {
                    self.at = 0;
                    self.filled = n;
                    self.eof = n == 0;
                    self.read_bytes += n as u64;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StoreError::io("read", self.src.name.clone())(e).into()),
            }
        }
    }

    /// Reads more after the unread bytes (moved to the front), until there
    /// are at least `n` (at most the buffer) or the file ends.
    fn fill_to(&mut self, n: usize) -> Result<(), Fail> {
        self.buf.copy_within(self.at..self.filled, 0);
        self.filled -= self.at;
        self.at = 0;
        while self.filled < n.min(self.buf.len()) && !self.eof {
            match self.file.read(&mut self.buf[self.filled..]) {
                Ok(got) => {
                    self.filled += got;
                    self.eof = got == 0;
                    self.read_bytes += got as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StoreError::io("read", self.src.name.clone())(e).into()),
            }
        }
        Ok(())
    }

    fn too_long(&self, line: u64) -> Fail {
        csv_error(
            self.src,
            line,
            format!("a record longer than {MAX_RECORD_BYTES} bytes"),
        )
    }

    /// Adds the record whose fields are the batch's `spans` from `first`
    /// on, and whose bytes start at `start`, to the batch (at `line`) once
    /// its fields are found to be UTF-8 (`ascii`: known to be ASCII).
    fn push(
        &self,
        batch: &mut Batch,
        first: usize,
        line: u64,
        start: usize,
        ascii: bool,
    ) -> Result<(), Fail> {
        let end = batch.spans[first..].last().map_or(start, |s| s.1);
        if !ascii
            && !batch.bytes[start..end].is_ascii()
            && batch.spans[first..]
                .iter()
                .any(|&(a, b)| std::str::from_utf8(&batch.bytes[a..b]).is_err())
        {
            batch.spans.truncate(first);
            return Err(csv_error(self.src, line, "a field is not UTF-8"));
        }
        batch.used = end;
        batch.rows.push(RowAt {
            first,
            len: batch.spans.len() - first,
            line,
        });
        Ok(())
    }

    /// Reads the next record onto the end of `batch`; `false` at the end
    /// of the file.
    fn read(&mut self, batch: &mut Batch) -> Result<bool, Fail> {
        if self.started && self.split {
            // Blank lines, which the parser skips too.
            loop {
                while self.at < self.filled && matches!(self.buf[self.at], b'\n' | b'\r') {
                    self.line += u64::from(self.buf[self.at] == b'\n');
                    self.at += 1;
                }
                if self.at < self.filled || self.eof {
                    break;
                }
                self.fill()?;
            }
            if self.split_line(batch)? {
                return Ok(true);
            }
        }
        self.parse(batch)
    }

    /// Splits the line at the read position, if it has no quote and ends
    /// in the buffer; `false` (nothing consumed) otherwise.
    fn split_line(&mut self, batch: &mut Batch) -> Result<bool, Fail> {
        let line = &self.buf[self.at..self.filled];
        let first = batch.spans.len();
        let base = batch.used;
        let delimiter = self.delimiter;
        let mut field = 0;
        // The high bits of every byte before the line end.
        let mut high = 0u64;
        // Eight bytes at a time: where the delimiters, line ends and
        // quotes are in each word.
        let mut i = 0;
        let end = loop {
            if i >= line.len() {
                // The line does not end in the buffer: the parser's.
                batch.spans.truncate(first);
                return Ok(false);
            }
            let (w, valid) = match line.get(i..i + 8) {
                Some(word) => (u64::from_le_bytes(word.try_into().unwrap_or_default()), !0),
                None => {
                    let n = line.len() - i;
                    let w = line[i..]
                        .iter()
                        .rev()
                        .fold(0u64, |w, &b| w << 8 | u64::from(b));
                    (w, (1u64 << (8 * n)) - 1)
                }
            };
            let ends = (bytes_eq(w, b'\n') | bytes_eq(w, b'\r')) & valid;
            // The bytes before the first line end in the word.
            let before = if ends == 0 {
                valid
            } else {
                (1u64 << (ends.trailing_zeros() & !7)) - 1
            };
            let quotes = self.quote.map_or(0, |q| bytes_eq(w, q)) & before;
            if quotes != 0 {
                // A quote: the parser's.
                batch.spans.truncate(first);
                return Ok(false);
            }
            high |= w & before;
            let mut delims = bytes_eq(w, delimiter) & before;
            while delims != 0 {
                let j = i + delims.trailing_zeros() as usize / 8;
                batch.spans.push((base + field, base + j));
                field = j + 1;
                delims &= delims - 1;
            }
            if ends != 0 {
                break i + ends.trailing_zeros() as usize / 8;
            }
            i += 8;
        };
        if end as u64 > MAX_RECORD_BYTES {
            batch.spans.truncate(first);
            return Err(self.too_long(self.line));
        }
        batch.spans.push((base + field, base + end));
        batch.room(end);
        batch.bytes[base..base + end].copy_from_slice(&line[..end]);
        let at = self.line;
        // The line end is the record's.
        self.line += u64::from(line[end] == b'\n');
        self.at += end + 1;
        self.push(batch, first, at, base, high & 0x8080_8080_8080_8080 == 0)?;
        Ok(true)
    }

    /// Reads the next record with the parser.
    fn parse(&mut self, batch: &mut Batch) -> Result<bool, Fail> {
        use csv_core::ReadRecordResult as R;
        let base = batch.used;
        let first = batch.spans.len();
        let mut nout = 0;
        // The field ends of one call to the parser.
        let mut ends = [0usize; 64];
        // The line where the record starts: past the blank lines the
        // parser skips before it.
        let mut line = self.line;
        let mut blank = true;
        // The record's bytes consumed so far, and the last of them.
        let mut len = 0u64;
        let mut last = 0u8;
        loop {
            batch.room(nout + 256);
            if !self.started {
                // The parser takes a byte order mark off its first input,
                // and reads an input emptied by that as the end: give it
                // one more byte than a mark, unless the file is shorter.
                self.fill_to(BOM.len() + 1)?;
            } else if self.at == self.filled && !self.eof {
                self.fill()?;
            }
            let input = &self.buf[self.at..self.filled];
            let bom = if !self.started && input.starts_with(BOM) {
                BOM.len()
            } else {
                0
            };
            self.started = true;
            let (res, nin, o, e) =
                self.core
                    .read_record(input, &mut batch.bytes[base + nout..], &mut ends);
            let took = &input[bom.min(nin)..nin];
            let lines = took.iter().filter(|&&b| b == b'\n').count() as u64;
            let mut rec = took;
            if blank {
                let skip = took
                    .iter()
                    .position(|&b| b != b'\n' && b != b'\r')
                    .unwrap_or(took.len());
                line += took[..skip].iter().filter(|&&b| b == b'\n').count() as u64;
                rec = &took[skip..];
                blank = rec.is_empty();
            }
            if let Some(&b) = rec.last() {
                last = b;
            }
            len += rec.len() as u64;
            self.line += lines;
            self.at += nin;
            nout += o;
            // The parser's field ends count from the record's start.
            let mut start = batch.spans[first..].last().map_or(base, |s| s.1);
            for &end in &ends[..e] {
                batch.spans.push((start, base + end));
                start = base + end;
            }
            // At most the limit and a line end: longer is refused without
            // reading the rest.
            if len > MAX_RECORD_BYTES + 1 {
                batch.spans.truncate(first);
                return Err(self.too_long(line));
            }
            match res {
                R::InputEmpty | R::OutputFull | R::OutputEndsFull => {}
                R::Record => {
                    // A record ends at its line end, or at the end of the
                    // file (when nothing was consumed this time).
                    if nin > 0 && (last == b'\n' || last == b'\r') {
                        len -= 1;
                    }
                    if len > MAX_RECORD_BYTES {
                        batch.spans.truncate(first);
                        return Err(self.too_long(line));
                    }
                    self.push(batch, first, line, base, false)?;
                    return Ok(true);
                }
                R::End => {
                    batch.spans.truncate(first);
                    return Ok(false);
                }
            }
        }
    }
}

/// The bytes of `w` equal to `c`: the high bit of each such byte set,
/// every other bit clear.
#[inline]
fn bytes_eq(w: u64, c: u8) -> u64 {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const SEVEN: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = w ^ (LOW * u64::from(c));
    !(((x & SEVEN) + SEVEN) | x | SEVEN)
}

fn csv_error(src: &Source, line: u64, reason: impl Into<String>) -> Fail {
    Box::new(StoreError::Csv {
        file: src.name.clone(),
        line,
        reason: reason.into(),
    })
}

/// The last label read, so that rows of one label (the common case) look
/// it up once.
#[derive(Debug, Default)]
struct LabelCache {
    name: Vec<u8>,
    id: Option<u16>,
}

impl LabelCache {
    #[inline]
    fn find(&mut self, g: &GraphData, name: &[u8]) -> Option<u16> {
        if self.id.is_some()
            && self.name.len() == name.len()
            && self.name.iter().zip(name).all(|(a, b)| a == b)
        {
            return self.id;
        }
        let (id, _) = g.schema.find(value::text(name))?;
        self.name.clear();
        self.name.extend_from_slice(name);
        self.id = Some(id);
        self.id
    }
}

/// The label and property record of an element whose label is field
/// `at` of `row`, its properties the fields after it.
#[inline]
fn element(
    g: &mut GraphData,
    caps: &Caps,
    src: &Source,
    row: &Row<'_>,
    at: usize,
    labels: &mut LabelCache,
) -> Result<Element, Fail> {
    let count = row.len() - at - 1;
    let not_found = || {
        csv_error(
            src,
            row.line,
            format!("label {} is not in the schema", quote(row.text(at))),
        )
    };
    let id = labels.find(g, row.field(at)).ok_or_else(not_found)?;
    let def = g.schema.label(id).ok_or_else(not_found)?;
    if def.properties.is_empty() {
        if count > 0 {
            return Err(csv_error(
                src,
                row.line,
                format!(
                    "{count} property fields, label {} has none",
                    quote(row.text(at))
                ),
            ));
        }
        return Ok(Element {
            label: id,
            props: Element::NO_PROPERTIES,
        });
    }
    let start = g.props.len();
    value::encode(def, count, row.fields_from(at + 1), &mut g.props)
        .map_err(|why| csv_error(src, row.line, why))?;
    let limit = caps.max_property_bytes.min(u64::from(u32::MAX));
    let cap = || {
        Box::new(StoreError::Cap {
            cap: "store.max_property_bytes",
            what: "property bytes",
            limit,
        })
    };
    if g.props.len() as u64 > limit {
        return Err(cap());
    }
    Ok(Element {
        label: id,
        props: u32::try_from(start).map_err(|_| cap())?,
    })
}

/// Adds the vertex of one row; `hash` is its id's.
fn add_vertex(
    g: &mut GraphData,
    caps: &Caps,
    src: &Source,
    row: &Row<'_>,
    hash: u64,
    labels: &mut LabelCache,
) -> Result<(), Fail> {
    if row.len() < 2 {
        return Err(csv_error(
            src,
            row.line,
            "a vertex line needs an id and a label: id,label,property...",
        ));
    }
    let id = row.field(0);
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(csv_error(
            src,
            row.line,
            format!("a vertex id must be 1 to {MAX_ID_BYTES} bytes"),
        ));
    }
    if g.ids.find_hashed(hash, id).is_some() {
        return Err(csv_error(
            src,
            row.line,
            format!("vertex {} is already in the graph", quote(row.text(0))),
        ));
    }
    let limit = caps.max_vertices.min(u64::from(u32::MAX - 1));
    let cap = || {
        Box::new(StoreError::Cap {
            cap: "store.max_vertices",
            what: "vertices",
            limit,
        })
    };
    if g.graph.node_count() as u64 >= limit {
        return Err(cap());
    }
    let e = element(g, caps, src, row, 1, labels)?;
    g.ids.push_hashed(hash, row.text(0)).ok_or_else(cap)?;
    g.graph.add_node(e);
    Ok(())
}

/// Checks the edge of one row, whose ends were looked up as `ends`, and
/// packs its properties; the edge to add, or `None` if it is skipped as
/// parallel. `pending` edges were checked but are not in the graph yet.
#[allow(clippy::too_many_arguments)]
fn add_edge(
    g: &mut GraphData,
    caps: &Caps,
    parallel: ParallelEdges,
    pending: usize,
    src: &Source,
    row: &Row<'_>,
    ends: [Option<u32>; 2],
    labels: &mut LabelCache,
) -> Result<Option<(NodeIndex, NodeIndex, Element)>, Fail> {
    if row.len() < 3 {
        return Err(csv_error(
            src,
            row.line,
            "an edge line needs a source, a target and a label: source,target,label,property...",
        ));
    }
    let end = |i: usize| {
        ends[i].map(|n| NodeIndex::new(n as usize)).ok_or_else(|| {
            csv_error(
                src,
                row.line,
                format!("vertex {} is not in the graph", quote(row.text(i))),
            )
        })
    };
    let (s, t) = (end(0)?, end(1)?);
    let limit = caps.max_edges.min(u64::from(u32::MAX - 1));
    if (g.graph.edge_count() + pending) as u64 >= limit {
        return Err(Box::new(StoreError::Cap {
            cap: "store.max_edges",
            what: "edges",
            limit,
        }));
    }
    if parallel == ParallelEdges::Ignore
        && let Some(label) = labels.find(g, row.field(2))
        && g.graph
            .edges_connecting(s, t)
            .any(|e| e.weight().label == label)
    {
        return Ok(None);
    }
    let e = element(g, caps, src, row, 2, labels)?;
    Ok(Some((s, t, e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random bytes of CSV: fields, delimiters, quotes, line ends of
    /// every kind, blank lines, multi-byte and invalid UTF-8.
    fn random_csv(next: &mut impl FnMut() -> u64, len: usize) -> Vec<u8> {
        const PIECES: [&[u8]; 16] = [
            b"a",
            b"bc",
            b",",
            b";",
            b"\t",
            b"\"",
            b"\"\"",
            b"\n",
            b"\r\n",
            b"\r",
            b"\n\n",
            b" ",
            b"'",
            "é".as_bytes(),
            b"xyz0123456789",
            b"\xff",
        ];
        let mut out = Vec::new();
        if next().is_multiple_of(8) {
            out.extend_from_slice(BOM);
        }
        while out.len() < len {
            let r = next();
            // Invalid UTF-8 rarely, so that most files read to the end.
            let piece = PIECES[(r % 16) as usize];
            if piece == b"\xff" && r % 64 != 15 {
                continue;
            }
            out.extend_from_slice(piece);
        }
        out
    }

    /// What the `csv` crate reads: each record's fields and the line where
    /// it starts (past the blank lines before it), until the end or the
    /// first record that is not UTF-8 (its line, and no fields).
    fn expected(data: &[u8], spec: &ImportSpec) -> Vec<(u64, Option<Vec<Vec<u8>>>)> {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(spec.delimiter)
            .quote(spec.quote.unwrap_or(b'"'))
            .quoting(spec.quote.is_some())
            .from_reader(data);
        let mut rec = csv::ByteRecord::new();
        let mut out = Vec::new();
        while r.read_byte_record(&mut rec).unwrap() {
            let mut at = rec.position().unwrap().byte() as usize;
            if at == 0 && data.starts_with(BOM) {
                at = BOM.len();
            }
            while matches!(data.get(at), Some(b'\n' | b'\r')) {
                at += 1;
            }
            let line = 1 + data[..at].iter().filter(|&&b| b == b'\n').count() as u64;
            if rec.iter().any(|f| std::str::from_utf8(f).is_err()) {
                out.push((line, None));
                break;
            }
            out.push((line, Some(rec.iter().map(<[u8]>::to_vec).collect())));
        }
        out
    }

    /// What this module's reader reads, with a buffer of `size` bytes.
    fn read(data: &[u8], spec: &ImportSpec, size: usize) -> Vec<(u64, Option<Vec<Vec<u8>>>)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, data).unwrap();
        let src = Source {
            name: "f.csv".into(),
            path: path.clone(),
        };
        let mut reader = CsvReader::with_buffer(&src, File::open(&path).unwrap(), spec, size);
        let mut batch = Batch::default();
        let mut out = Vec::new();
        loop {
            // Records pile up in the batch as they do in an import.
            if batch.rows.len() == 5 {
                batch.clear();
            }
            match reader.read(&mut batch) {
                Ok(true) => {
                    let row = batch.row(batch.rows.len() - 1);
                    let fields = (0..row.len()).map(|i| row.field(i).to_vec()).collect();
                    out.push((row.line, Some(fields)));
                }
                Ok(false) => {
                    // Every byte read and taken.
                    assert_eq!(reader.read_bytes, data.len() as u64);
                    assert_eq!(reader.at, reader.filled);
                    break;
                }
                Err(e) => match *e {
                    StoreError::Csv { line, reason, .. } if reason == "a field is not UTF-8" => {
                        out.push((line, None));
                        break;
                    }
                    other => panic!("{other}"),
                },
            }
        }
        out
    }

    #[test]
    fn records_are_read_as_the_csv_crate_reads_them_with_their_lines() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let specs = [
            (b',', Some(b'"')),
            (b';', Some(b'"')),
            (b'\t', None),
            (b',', Some(b'\'')),
            (b',', None),
        ];
        for case in 0..300 {
            let len = (next() % 300) as usize;
            let data = random_csv(&mut next, len);
            let (delimiter, quote) = specs[case % specs.len()];
            let spec = ImportSpec {
                delimiter,
                quote,
                ..ImportSpec::default()
            };
            let want = expected(&data, &spec);
            for size in [4, 5, 8, 64, CSV_BUFFER] {
                let got = read(&data, &spec, size);
                assert_eq!(
                    got,
                    want,
                    "case {case}, buffer {size}: {:?}",
                    String::from_utf8_lossy(&data)
                );
            }
        }
    }
}
