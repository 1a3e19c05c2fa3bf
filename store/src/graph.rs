//! A graph's data in memory: GES's property-graph model on a `petgraph`
//! directed graph.
//!
//! - Vertices are petgraph nodes; a vertex's external id (GES's vertex id,
//!   a string) is kept once, in a flat id table whose index is the node's
//!   index, so that id → node and node → id are both one step (the table
//!   is one string of all ids, their end offsets, and a hash table of
//!   indexes).
//! - Each vertex and each edge has exactly one label (a number into the
//!   [`Schema`]) and one record of properties in the graph's byte arena
//!   ([`crate::value`] has the layout). Parallel edges are allowed.
//! - The weight of a node or an edge is an [`Element`], 8 bytes: with
//!   petgraph's own links an edge costs 24 bytes, a vertex 16, before its
//!   id and properties.
//!
//! A `GraphData` is never changed once a query can see it: an import
//! builds a new one (a copy of the old one, plus the new data) and the host
//! swaps it in whole.

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::ids::IdTable;
use crate::schema::{LabelDef, Schema};
use crate::value::{self, Value};

/// The weight of a vertex or an edge: its label and where its properties
/// start in the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element {
    /// The label's number in the schema.
    pub label: u16,
    /// The offset of its property record, [`Element::NO_PROPERTIES`] for a
    /// label with no properties.
    pub props: u32,
}

impl Element {
    /// The `props` of an element whose label has no properties.
    pub const NO_PROPERTIES: u32 = u32::MAX;
}

/// Per-graph caps on what an import may add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Most vertices.
    pub max_vertices: u64,
    /// Most edges.
    pub max_edges: u64,
    /// Most bytes of property records (the arena), at most 4 GiB.
    pub max_property_bytes: u64,
}

impl Default for Caps {
    /// 10 million vertices, 50 million edges, 1 GiB of properties.
    fn default() -> Self {
        Caps {
            max_vertices: 10_000_000,
            max_edges: 50_000_000,
            max_property_bytes: 1 << 30,
        }
    }
}

/// A vertex as a query shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct VertexView<'a> {
    /// Its id.
    pub id: &'a str,
    /// Its label's name.
    pub label: &'a str,
    /// Its properties in the label's order, each with its values (none
    /// when absent).
    pub properties: Vec<(&'a str, Vec<Value>)>,
}

/// One graph's data: schema, vertices, edges, properties.
#[derive(Debug, Clone, Default)]
pub struct GraphData {
    pub(crate) schema: Schema,
    pub(crate) ids: IdTable,
    pub(crate) graph: DiGraph<Element, Element, u32>,
    pub(crate) props: Vec<u8>,
}

impl GraphData {
    /// An empty graph with no schema.
    pub fn new() -> GraphData {
        GraphData::default()
    }

    /// An empty graph with this schema.
    pub fn with_schema(schema: Schema) -> GraphData {
        GraphData {
            schema,
            ..GraphData::default()
        }
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// How many vertices.
    pub fn vertex_count(&self) -> usize {
        self.graph.node_count()
    }

    /// How many edges.
    pub fn edge_count(&self) -> usize {
        self.graph.edge_count()
    }

    /// Bytes of property records.
    pub fn property_bytes(&self) -> usize {
        self.props.len()
    }

    /// The petgraph graph itself (node weights and edge weights are
    /// [`Element`]s; node `i` is the vertex whose id is
    /// [`vertex_id(i)`](Self::vertex_id)).
    pub fn petgraph(&self) -> &DiGraph<Element, Element, u32> {
        &self.graph
    }

    /// The node index of a vertex id.
    pub fn index_of(&self, id: &str) -> Option<u32> {
        self.ids.find(id)
    }

    /// The id of the vertex at a node index.
    pub fn vertex_id(&self, index: u32) -> Option<&str> {
        self.ids.get(index as usize)
    }

    fn label_of(&self, e: Element) -> Option<&LabelDef> {
        self.schema.label(e.label)
    }

    fn properties(&self, e: Element) -> Vec<(&str, Vec<Value>)> {
        let Some(label) = self.label_of(e) else {
            return Vec::new();
        };
        let values = if e.props == Element::NO_PROPERTIES {
            None
        } else {
            value::decode(label, &self.props, e.props as usize)
        };
        label
            .properties
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let v = values
                    .as_ref()
                    .and_then(|vs| vs.get(i).cloned())
                    .unwrap_or_default();
                (p.name.as_str(), v)
            })
            .collect()
    }

    /// A vertex by id, with its label and properties.
    pub fn vertex(&self, id: &str) -> Option<VertexView<'_>> {
        let index = self.ids.find(id)? as usize;
        let e = *self.graph.node_weight(NodeIndex::new(index))?;
        Some(VertexView {
            id: self.ids.get(index)?,
            label: self.label_of(e).map_or("", |l| l.name.as_str()),
            properties: self.properties(e),
        })
    }

    /// The node indexes one edge away from `index`: along out-edges,
    /// in-edges, or both (`directed = false`). A neighbour joined by
    /// several edges comes once per edge.
    pub fn neighbors(&self, index: u32, directed: bool) -> impl Iterator<Item = u32> + '_ {
        let n = NodeIndex::new(index as usize);
        let out = self
            .graph
            .neighbors_directed(n, Direction::Outgoing)
            .map(|m| m.index() as u32);
        let inc = (!directed)
            .then(|| {
                self.graph
                    .neighbors_directed(n, Direction::Incoming)
                    .map(|m| m.index() as u32)
            })
            .into_iter()
            .flatten();
        out.chain(inc)
    }

    /// Every vertex in node order: id, label name, properties as CSV
    /// fields.
    pub(crate) fn vertex_rows(&self) -> impl Iterator<Item = (&str, &str, Vec<String>)> + '_ {
        self.graph.node_indices().map(move |n| {
            let e = self.graph[n];
            (
                self.ids.get(n.index()).unwrap_or_default(),
                self.label_of(e).map_or("", |l| l.name.as_str()),
                self.properties(e)
                    .iter()
                    .map(|(_, v)| value::field(v))
                    .collect(),
            )
        })
    }

    /// Every edge in edge order: source id, target id, label name,
    /// properties as CSV fields.
    pub(crate) fn edge_rows(&self) -> impl Iterator<Item = (&str, &str, &str, Vec<String>)> + '_ {
        self.graph.edge_references().map(move |r| {
            let e = *r.weight();
            (
                self.ids.get(r.source().index()).unwrap_or_default(),
                self.ids.get(r.target().index()).unwrap_or_default(),
                self.label_of(e).map_or("", |l| l.name.as_str()),
                self.properties(e)
                    .iter()
                    .map(|(_, v)| value::field(v))
                    .collect(),
            )
        })
    }

    /// The graph emptied: no vertex, no edge, no property; the schema kept
    /// unless `clear_schema`.
    pub fn cleared(&self, clear_schema: bool) -> GraphData {
        if clear_schema {
            GraphData::new()
        } else {
            GraphData::with_schema(self.schema.clone())
        }
    }

    /// The heap memory the graph holds, in bytes, counted from its
    /// containers' capacities: the petgraph nodes and edges, the id table
    /// (the ids' bytes, their end offsets and the hash table) and the
    /// arena.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        // petgraph's `Node` and `Edge`: the weight plus two links each, and
        // for an edge its two ends (all u32 indexes).
        let node = size_of::<Element>() + 2 * 4;
        let edge = size_of::<Element>() + 4 * 4;
        self.graph.capacity().0 * node
            + self.graph.capacity().1 * edge
            + self.ids.heap_bytes()
            + self.props.capacity()
    }

    /// Gives back spare capacity (after an import sized its containers
    /// for the worst case).
    pub(crate) fn shrink_to_fit(&mut self) {
        self.graph.shrink_to_fit();
        self.ids.shrink_to_fit();
        self.props.shrink_to_fit();
    }
}
