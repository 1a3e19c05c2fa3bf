//! Graph algorithms over a [`GraphData`]: PageRank, weakly connected
//! components, k-hop neighbourhoods and unweighted shortest paths.
//!
//! Each takes a [`Control`]: it asks [`Control::is_cancelled`] at least
//! once per iteration and every [`CHECK_EVERY_STEPS`] vertices or edges
//! visited, and stops with [`StoreError::Cancelled`] once it says yes; it
//! reports progress as it goes. Vertices are named by node index; the
//! graph maps indexes to ids.

use petgraph::unionfind::UnionFind;
use petgraph::visit::EdgeRef;

use crate::Control;
use crate::error::StoreError;
use crate::graph::GraphData;

/// Vertices or edges visited between two cancel checks.
pub const CHECK_EVERY_STEPS: usize = 1 << 16;

/// PageRank's parameters, with GES's names and defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageRankParams {
    /// The damping factor, in 0..=1 (default 0.85).
    pub alpha: f64,
    /// Stop once the sum of the ranks' changes in one iteration is below
    /// this (default 0.00001).
    pub convergence: f64,
    /// Stop after this many iterations at the most (default 1000).
    pub max_iterations: u32,
    /// Follow edges from source to target (default), or both ways.
    pub directed: bool,
}

impl Default for PageRankParams {
    fn default() -> Self {
        PageRankParams {
            alpha: 0.85,
            convergence: 0.000_01,
            max_iterations: 1_000,
            directed: true,
        }
    }
}

/// PageRank's result.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRank {
    /// The rank of each vertex, by node index; they sum to 1.
    pub ranks: Vec<f64>,
    /// Iterations run.
    pub iterations: u32,
    /// Whether the change fell below `convergence`.
    pub converged: bool,
}

struct Checker<'a> {
    control: &'a dyn Control,
    steps: usize,
}

impl Checker<'_> {
    fn step(&mut self, n: usize) -> Result<(), StoreError> {
        self.steps += n;
        if self.steps >= CHECK_EVERY_STEPS {
            self.steps = 0;
            if self.control.is_cancelled() {
                return Err(StoreError::Cancelled);
            }
        }
        Ok(())
    }

    fn now(&mut self) -> Result<(), StoreError> {
        self.steps = 0;
        if self.control.is_cancelled() {
            return Err(StoreError::Cancelled);
        }
        Ok(())
    }
}

/// In-edges in compressed rows, and out-degrees.
struct InRows {
    /// The edges into `v` are `sources[offsets[v]..offsets[v + 1]]`.
    offsets: Vec<u32>,
    sources: Vec<u32>,
    out_degree: Vec<u32>,
}

/// The in-edges of every vertex in compressed rows; with `directed =
/// false` each edge counts both ways. Also each vertex's out-degree on the
/// same terms.
fn in_rows(g: &GraphData, directed: bool, check: &mut Checker<'_>) -> Result<InRows, StoreError> {
    let n = g.vertex_count();
    let pg = g.petgraph();
    let mut offsets = vec![0u32; n + 1];
    let mut out_degree = vec![0u32; n];
    for e in pg.edge_references() {
        let (s, t) = (e.source().index(), e.target().index());
        offsets[t + 1] += 1;
        out_degree[s] += 1;
        if !directed {
            offsets[s + 1] += 1;
            out_degree[t] += 1;
        }
        check.step(1)?;
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    let mut fill = offsets.clone();
    let mut sources = vec![0u32; offsets[n] as usize];
    for e in pg.edge_references() {
        let (s, t) = (e.source().index(), e.target().index());
        sources[fill[t] as usize] = s as u32;
        fill[t] += 1;
        if !directed {
            sources[fill[s] as usize] = t as u32;
            fill[s] += 1;
        }
        check.step(1)?;
    }
    Ok(InRows {
        offsets,
        sources,
        out_degree,
    })
}

/// PageRank by power iteration: each iteration gives every vertex
/// `(1 - alpha) / n + alpha * (sum of rank(u) / out_degree(u) over its
/// in-edges (u, v) + dangling / n)`, where `dangling` is the rank held by
/// vertices with no out-edge, spread evenly. Parallel edges count once
/// each.
///
/// # Errors
///
/// [`StoreError::Request`] for parameters out of range,
/// [`StoreError::Cancelled`].
pub fn pagerank(
    g: &GraphData,
    p: &PageRankParams,
    control: &dyn Control,
) -> Result<PageRank, StoreError> {
    if !(0.0..=1.0).contains(&p.alpha) || !p.convergence.is_finite() || p.convergence < 0.0 {
        return Err(StoreError::Request(
            "alpha must be in 0..=1 and convergence a number of at least 0".into(),
        ));
    }
    let n = g.vertex_count();
    if n == 0 {
        return Ok(PageRank {
            ranks: Vec::new(),
            iterations: 0,
            converged: true,
        });
    }
    let mut check = Checker { control, steps: 0 };
    let InRows {
        offsets,
        sources,
        out_degree,
    } = in_rows(g, p.directed, &mut check)?;
    let nf = n as f64;
    let mut rank = vec![1.0 / nf; n];
    let mut next = vec![0.0; n];
    let mut contrib = vec![0.0; n];
    let mut first_delta = None;
    let mut last_pct = 0u8;
    for it in 0..p.max_iterations {
        check.now()?;
        let mut dangling = 0.0;
        for u in 0..n {
            if out_degree[u] == 0 {
                dangling += rank[u];
                contrib[u] = 0.0;
            } else {
                contrib[u] = rank[u] / f64::from(out_degree[u]);
            }
        }
        let base = (1.0 - p.alpha) / nf + p.alpha * dangling / nf;
        let mut delta = 0.0;
        for v in 0..n {
            let (a, b) = (offsets[v] as usize, offsets[v + 1] as usize);
            let s: f64 = sources[a..b].iter().map(|&u| contrib[u as usize]).sum();
            let r = base + p.alpha * s;
            delta += (r - rank[v]).abs();
            next[v] = r;
            check.step(b - a + 1)?;
        }
        std::mem::swap(&mut rank, &mut next);
        let iterations = it + 1;
        if delta < p.convergence {
            return Ok(PageRank {
                ranks: rank,
                iterations,
                converged: true,
            });
        }
        // Progress: the larger of the iterations' share and how far the
        // change has come down towards the convergence threshold (on a
        // log scale).
        let d0 = *first_delta.get_or_insert(delta);
        let by_delta = if d0 > p.convergence && delta > 0.0 && p.convergence > 0.0 {
            ((d0 / delta).ln() / (d0 / p.convergence).ln()).clamp(0.0, 0.99)
        } else {
            0.0
        };
        let by_iter = f64::from(iterations) / f64::from(p.max_iterations.max(1));
        let pct = (by_delta.max(by_iter) * 100.0).min(99.0) as u8;
        if pct > last_pct {
            last_pct = pct;
            control.progress(pct);
        }
    }
    Ok(PageRank {
        ranks: rank,
        iterations: p.max_iterations,
        converged: false,
    })
}

/// Weakly connected components: for each vertex, by node index, the
/// smallest node index of its component.
///
/// # Errors
///
/// [`StoreError::Cancelled`].
pub fn connected_components(g: &GraphData, control: &dyn Control) -> Result<Vec<u32>, StoreError> {
    let n = g.vertex_count();
    let mut check = Checker { control, steps: 0 };
    let mut uf = UnionFind::<u32>::new(n);
    let total = g.edge_count().max(1);
    let mut last_pct = 0u8;
    for (i, e) in g.petgraph().edge_references().enumerate() {
        uf.union(e.source().index() as u32, e.target().index() as u32);
        check.step(1)?;
        if i % CHECK_EVERY_STEPS == 0 {
            let pct = (i * 90 / total) as u8;
            if pct > last_pct {
                last_pct = pct;
                control.progress(pct);
            }
        }
    }
    check.now()?;
    let mut smallest = vec![u32::MAX; n];
    let mut rep = vec![0u32; n];
    for v in 0..n as u32 {
        let r = uf.find_mut(v);
        rep[v as usize] = r;
        let s = &mut smallest[r as usize];
        *s = (*s).min(v);
        check.step(1)?;
    }
    Ok(rep.into_iter().map(|r| smallest[r as usize]).collect())
}

/// The vertices within `k` hops of `sources` (not the sources
/// themselves), each with its distance, in breadth-first order; along
/// out-edges, or both ways with `directed = false`.
///
/// # Errors
///
/// [`StoreError::Request`] for a source index out of range,
/// [`StoreError::Cancelled`].
pub fn k_hop(
    g: &GraphData,
    sources: &[u32],
    k: u32,
    directed: bool,
    control: &dyn Control,
) -> Result<Vec<(u32, u32)>, StoreError> {
    let n = g.vertex_count();
    let mut check = Checker { control, steps: 0 };
    let mut depth = vec![u32::MAX; n];
    let mut frontier = Vec::new();
    for &s in sources {
        let d = depth
            .get_mut(s as usize)
            .ok_or_else(|| StoreError::Request(format!("vertex index {s} is out of range")))?;
        if *d != 0 {
            *d = 0;
            frontier.push(s);
        }
    }
    let mut out = Vec::new();
    for level in 1..=k {
        let mut next = Vec::new();
        for &u in &frontier {
            for v in g.neighbors(u, directed) {
                let d = &mut depth[v as usize];
                if *d == u32::MAX {
                    *d = level;
                    next.push(v);
                    out.push((v, level));
                }
                check.step(1)?;
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    Ok(out)
}

/// A shortest path (fewest edges) from `source` to `target`, both
/// included, by breadth-first search; `None` if there is none.
///
/// # Errors
///
/// [`StoreError::Request`] for an index out of range,
/// [`StoreError::Cancelled`].
pub fn shortest_path(
    g: &GraphData,
    source: u32,
    target: u32,
    directed: bool,
    control: &dyn Control,
) -> Result<Option<Vec<u32>>, StoreError> {
    let n = g.vertex_count();
    if source as usize >= n || target as usize >= n {
        return Err(StoreError::Request("a vertex index is out of range".into()));
    }
    if source == target {
        return Ok(Some(vec![source]));
    }
    let mut check = Checker { control, steps: 0 };
    let mut parent = vec![u32::MAX; n];
    parent[source as usize] = source;
    let mut frontier = vec![source];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for &u in &frontier {
            for v in g.neighbors(u, directed) {
                if parent[v as usize] == u32::MAX {
                    parent[v as usize] = u;
                    if v == target {
                        let mut path = vec![target];
                        let mut at = target;
                        while at != source {
                            at = parent[at as usize];
                            path.push(at);
                        }
                        path.reverse();
                        return Ok(Some(path));
                    }
                    next.push(v);
                }
                check.step(1)?;
            }
        }
        frontier = next;
    }
    Ok(None)
}
