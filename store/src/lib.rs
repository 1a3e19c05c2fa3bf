//! A property-graph store for hosts of the `graph-lifecycle` core: the
//! data behind the lifecycle, with the Graph Engine Service's (GES) data
//! model and file formats.
//!
//! - [`GraphData`]: one graph in memory, on a `petgraph` directed graph;
//!   one label per vertex and per edge, properties typed by the graph's
//!   [`Schema`] and packed into one byte arena.
//! - [`import`](import::import) and [`export`](export::export): GES's
//!   headerless CSV vertex and edge files and its XML metadata file,
//!   streamed, with progress and cancel checks, within per-graph [`Caps`].
//! - [`paths::Root`]: the paths a request names (`obs://bucket/key`),
//!   resolved under a configured root, escapes refused.
//! - [`format`](mod@format) and [`disk::GraphDir`]: a compact checksummed file per
//!   graph, and the commit protocol that replaces it only once the
//!   lifecycle core accepted the job's success.
//! - [`algo`]: PageRank, connected components, k-hop and shortest path.
//!
//! The crate does no threading and knows nothing of the lifecycle core
//! or HTTP: the host runs its functions on its workers and passes a
//! [`Control`] that reads the job's cancel token and reports progress.
//!
//! ```
//! use graph_lifecycle_store::{Caps, GraphData, NoControl, algo, import};
//! # let dir = tempfile::tempdir().unwrap();
//! # let p = |n: &str| dir.path().join(n);
//! std::fs::write(p("schema.xml"), r#"<PMML><labels>
//!     <label name="person"><properties>
//!       <property name="name" cardinality="single" dataType="string"/>
//!     </properties></label>
//!     <label name="knows"/>
//!   </labels></PMML>"#).unwrap();
//! std::fs::write(p("v.csv"), "a,person,Ann\nb,person,Bob\nc,person,\n").unwrap();
//! std::fs::write(p("e.csv"), "a,b,knows\nb,c,knows\n").unwrap();
//! let src = |n: &str| Some(import::Source { name: n.into(), path: p(n) });
//! let spec = import::ImportSpec {
//!     schema: src("schema.xml"), vertices: src("v.csv"), edges: src("e.csv"),
//!     ..Default::default()
//! };
//! let (g, stats) = import::import(&GraphData::new(), &spec, &Caps::default(), &NoControl).unwrap();
//! assert_eq!((stats.vertices, stats.edges), (3, 2));
//! assert_eq!(g.vertex("a").unwrap().label, "person");
//! let a = g.index_of("a").unwrap();
//! let two_hops = algo::k_hop(&g, &[a], 2, true, &NoControl).unwrap();
//! assert_eq!(two_hops.len(), 2);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod algo;
pub mod disk;
pub mod error;
pub mod export;
pub mod format;
pub mod graph;
mod ids;
pub mod import;
pub mod paths;
pub mod schema;
pub mod value;

pub use error::StoreError;
pub use graph::{Caps, Element, GraphData, VertexView};
pub use schema::Schema;
pub use value::Value;

/// What long work asks its host as it goes: whether to stop, and where
/// it is.
pub trait Control {
    /// Whether the work is no longer wanted (a cancel token went void).
    fn is_cancelled(&self) -> bool;
    /// The work is this far, in percent (0 to 99; the host reports 100 on
    /// success). Called only when the figure grows.
    fn progress(&self, percent: u8);
}

/// A [`Control`] that never cancels and ignores progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoControl;

impl Control for NoControl {
    fn is_cancelled(&self) -> bool {
        false
    }

    fn progress(&self, _: u8) {}
}
