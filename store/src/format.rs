//! The stored form of a graph: one file, compact and checksummed.
//!
//! ```text
//! header   "GLSTORE1"  version: u32 = 1  stamp: u64  crc32: u32
//!          (the CRC-32 of the 20 bytes before it)
//! section  tag: u8  len: u64  payload: len bytes  crc32: u32
//!          (the CRC-32 of tag, len and payload)
//!   1 schema    the metadata file's XML
//!   2 props     the property arena, as is
//!   3 ids       count: u64, then per vertex: LEB128 length, UTF-8 bytes
//!   4 vertices  count: u64, then per vertex: label u16, props u32
//!   5 edges     count: u64, then per edge: source u32, target u32,
//!               label u16, props u32
//! end      tag 0xFF, len 0, crc32
//! ```
//!
//! Integers are little-endian. The stamp identifies the graph the data
//! belongs to (the host stores the graph's creation time there, so that a
//! graph created again under the same name never loads the data of the
//! one removed). A vertex costs 6 bytes plus its id, an edge 14, plus
//! their property records.
//!
//! Reading trusts nothing: every section's checksum, every length against
//! what the file holds, every count against its section's length, every
//! vertex index, label and property offset against what exists, and ids
//! are unique. A damaged file is [`StoreError::Corrupt`], never a panic,
//! and never an allocation larger than the file.

use std::io::{self, Write};

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::error::StoreError;
use crate::graph::{Element, GraphData};
use crate::ids::{IdTable, MAX_IDS};
use crate::schema::Schema;
use crate::value::{get_varint, put_varint};

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"GLSTORE1";
/// The format's version.
pub const VERSION: u32 = 1;

const SCHEMA: u8 = 1;
const PROPS: u8 = 2;
const IDS: u8 = 3;
const VERTICES: u8 = 4;
const EDGES: u8 = 5;
const END: u8 = 0xFF;

fn section(w: &mut impl Write, tag: u8, payload: &[u8]) -> io::Result<()> {
    let len = (payload.len() as u64).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[tag]);
    crc.update(&len);
    crc.update(payload);
    w.write_all(&[tag])?;
    w.write_all(&len)?;
    w.write_all(payload)?;
    w.write_all(&crc.finalize().to_le_bytes())
}

/// Writes `g` with `stamp` to `w`.
///
/// # Errors
///
/// The writer's.
pub fn write(g: &GraphData, stamp: u64, w: &mut impl Write) -> io::Result<()> {
    let mut header = Vec::with_capacity(20);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&stamp.to_le_bytes());
    w.write_all(&header)?;
    w.write_all(&crc32fast::hash(&header).to_le_bytes())?;
    section(w, SCHEMA, g.schema.to_xml().as_bytes())?;
    section(w, PROPS, &g.props)?;
    let mut buf = Vec::with_capacity(8 + g.ids.iter().map(|s| s.len() + 2).sum::<usize>());
    buf.extend_from_slice(&(g.ids.len() as u64).to_le_bytes());
    for id in g.ids.iter() {
        put_varint(&mut buf, id.len() as u64);
        buf.extend_from_slice(id.as_bytes());
    }
    section(w, IDS, &buf)?;
    buf.clear();
    buf.extend_from_slice(&(g.graph.node_count() as u64).to_le_bytes());
    for e in g.graph.node_weights() {
        buf.extend_from_slice(&e.label.to_le_bytes());
        buf.extend_from_slice(&e.props.to_le_bytes());
    }
    section(w, VERTICES, &buf)?;
    buf.clear();
    buf.reserve(8 + g.graph.edge_count() * 14);
    buf.extend_from_slice(&(g.graph.edge_count() as u64).to_le_bytes());
    for r in g.graph.edge_references() {
        buf.extend_from_slice(&(r.source().index() as u32).to_le_bytes());
        buf.extend_from_slice(&(r.target().index() as u32).to_le_bytes());
        buf.extend_from_slice(&r.weight().label.to_le_bytes());
        buf.extend_from_slice(&r.weight().props.to_le_bytes());
    }
    section(w, EDGES, &buf)?;
    section(w, END, &[])
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    file: &'a str,
}

impl<'a> Cursor<'a> {
    fn corrupt(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            file: self.file.to_owned(),
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], StoreError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| self.corrupt(format!("{what} is cut short")))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self, what: &str) -> Result<u16, StoreError> {
        Ok(u16::from_le_bytes(
            self.take(2, what)?.try_into().unwrap_or_default(),
        ))
    }

    fn u32(&mut self, what: &str) -> Result<u32, StoreError> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().unwrap_or_default(),
        ))
    }

    fn u64(&mut self, what: &str) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().unwrap_or_default(),
        ))
    }

    /// The next section, which must be `tag`, its checksum checked.
    fn section(&mut self, tag: u8, what: &str) -> Result<Cursor<'a>, StoreError> {
        let start = self.pos;
        let t = self.take(1, what)?[0];
        if t != tag {
            return Err(self.corrupt(format!("expected the {what} section, found tag {t}")));
        }
        let len = self.u64(what)?;
        let len = usize::try_from(len).map_err(|_| self.corrupt(format!("{what} is too long")))?;
        let payload = self.take(len, what)?;
        let covered = &self.b[start..self.pos];
        let crc = self.u32(what)?;
        if crc32fast::hash(covered) != crc {
            return Err(self.corrupt(format!("the {what} section's checksum does not match")));
        }
        Ok(Cursor {
            b: payload,
            pos: 0,
            file: self.file,
        })
    }

    /// A count of records of `size` bytes (at least 1) that must fill the
    /// rest of the section exactly, or at least fit (`exact = false`).
    fn count(&mut self, size: usize, exact: bool, what: &str) -> Result<usize, StoreError> {
        let n = self.u64(what)?;
        let left = (self.b.len() - self.pos) as u64;
        let need = n.checked_mul(size as u64);
        let ok = match need {
            Some(need) if exact => need == left,
            Some(need) => need <= left,
            None => false,
        };
        if !ok {
            return Err(self.corrupt(format!("{what}: {n} records do not fit the section")));
        }
        usize::try_from(n).map_err(|_| self.corrupt(format!("{what}: too many records")))
    }
}

/// Reads a stored graph from its bytes; `file` names it in errors.
/// Returns the stamp and the graph.
///
/// # Errors
///
/// [`StoreError::Corrupt`] saying what is damaged.
pub fn read(bytes: &[u8], file: &str) -> Result<(u64, GraphData), StoreError> {
    let mut c = Cursor {
        b: bytes,
        pos: 0,
        file,
    };
    if c.take(8, "the header")? != MAGIC {
        return Err(c.corrupt("not a stored graph (bad magic)"));
    }
    let version = c.u32("the header")?;
    if version != VERSION {
        return Err(c.corrupt(format!(
            "format version {version}, this build reads {VERSION}"
        )));
    }
    let stamp = c.u64("the header")?;
    let header_crc = crc32fast::hash(&c.b[..c.pos]);
    if c.u32("the header")? != header_crc {
        return Err(c.corrupt("the header's checksum does not match"));
    }
    let s = c.section(SCHEMA, "schema")?;
    let schema = Schema::from_xml(s.b, file).map_err(|e| c.corrupt(e.to_string()))?;
    let props = c.section(PROPS, "properties")?.b.to_vec();
    if props.len() > u32::MAX as usize {
        return Err(c.corrupt("the property section is over 4 GiB"));
    }
    let mut s = c.section(IDS, "ids")?;
    let n = s.count(1, false, "ids")?;
    if n > MAX_IDS {
        return Err(s.corrupt("ids: too many records"));
    }
    let mut ids = IdTable::with_capacity(n, s.b.len());
    for _ in 0..n {
        let len = get_varint(s.b, &mut s.pos).ok_or_else(|| s.corrupt("an id's length"))?;
        let len = usize::try_from(len).map_err(|_| s.corrupt("an id's length"))?;
        let raw = s.take(len, "an id")?;
        let id = std::str::from_utf8(raw).map_err(|_| s.corrupt("an id is not UTF-8"))?;
        if !ids.insert(id) {
            return Err(s.corrupt("an id repeats"));
        }
    }
    if s.pos != s.b.len() {
        return Err(s.corrupt("bytes after the ids"));
    }
    ids.shrink_to_fit();
    let check = |e: Element, c: &Cursor<'_>| -> Result<Element, StoreError> {
        let Some(label) = schema.label(e.label) else {
            return Err(c.corrupt(format!("label number {} is not in the schema", e.label)));
        };
        let ok = if e.props == Element::NO_PROPERTIES {
            label.properties.is_empty()
        } else {
            (e.props as usize) < props.len()
        };
        if !ok {
            return Err(c.corrupt(format!("a property offset {} is out of place", e.props)));
        }
        Ok(e)
    };
    let mut s = c.section(VERTICES, "vertices")?;
    let nv = s.count(6, true, "vertices")?;
    if nv != ids.len() {
        return Err(s.corrupt(format!("{nv} vertices for {} ids", ids.len())));
    }
    let mut s_edges = c.section(EDGES, "edges")?;
    let ne = s_edges.count(14, true, "edges")?;
    let mut graph = DiGraph::<Element, Element, u32>::with_capacity(nv, ne);
    for _ in 0..nv {
        let e = Element {
            label: s.u16("vertices")?,
            props: s.u32("vertices")?,
        };
        graph.add_node(check(e, &s)?);
    }
    for _ in 0..ne {
        let a = s_edges.u32("edges")? as usize;
        let b = s_edges.u32("edges")? as usize;
        let e = Element {
            label: s_edges.u16("edges")?,
            props: s_edges.u32("edges")?,
        };
        if a >= nv || b >= nv {
            return Err(s_edges.corrupt("an edge's end is not a vertex"));
        }
        graph.add_edge(NodeIndex::new(a), NodeIndex::new(b), check(e, &s_edges)?);
    }
    let end = c.section(END, "end")?;
    if !end.b.is_empty() || c.pos != c.b.len() {
        return Err(c.corrupt("bytes after the end"));
    }
    Ok((
        stamp,
        GraphData {
            schema,
            ids,
            graph,
            props,
        },
    ))
}
