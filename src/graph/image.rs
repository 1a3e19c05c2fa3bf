//! A graph's whole state as a snapshot stores it (feature `journal`).

use serde::{Deserialize, Serialize};

use super::{GraphData, Task};
use crate::id::{Epoch, GraphKey, JobId};
use crate::state::GraphState;
use crate::task::CancelToken;
use crate::time::Timestamp;

/// One graph's whole state: tasks in creation order (live) and in the
/// order they ended (retained), so that a graph rebuilt from it evicts,
/// lists and times out exactly as the original would have.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct GraphImage {
    key: GraphKey,
    state: GraphState,
    epoch: Epoch,
    created_at: Timestamp,
    updated_at: Timestamp,
    next_seq: u64,
    lifecycle: Option<JobId>,
    restart_key: Option<(JobId, String)>,
    live: Vec<Task>,
    done: Vec<Task>,
}

impl GraphData {
    /// A copy of the graph's state for a snapshot.
    pub(crate) fn image(&self) -> GraphImage {
        let mut live: Vec<Task> = self.live.values().cloned().collect();
        live.sort_unstable_by_key(|t| t.seq);
        for t in &mut live {
            t.token = None;
        }
        let done = self.done.iter().cloned().collect();
        GraphImage {
            key: self.key.clone(),
            state: self.state,
            epoch: self.epoch,
            created_at: self.created_at,
            updated_at: self.updated_at,
            next_seq: self.next_seq,
            lifecycle: self.lifecycle,
            restart_key: self.restart_key.clone(),
            live,
            done,
        }
    }

    /// Rebuilds a graph from a snapshot's image, checking what the apply
    /// step relies on (statuses, unique ids, the live lifecycle job that
    /// matches the state), so that a damaged image is refused rather than
    /// trusted. Live tasks get fresh tokens; deadlines are rebuilt from
    /// the live tasks.
    pub(crate) fn from_image(img: GraphImage) -> Result<Self, String> {
        let key = img.key.clone();
        let bad = |what: String| Err(format!("graph {key}: {what}"));
        if img.next_seq > 1 << 62 {
            return bad(format!("a task counter of {}", img.next_seq));
        }
        let mut g = GraphData::new(img.key, img.created_at);
        g.state = img.state;
        g.epoch = img.epoch;
        g.updated_at = img.updated_at;
        g.next_seq = img.next_seq;
        g.lifecycle = img.lifecycle;
        g.restart_key = img.restart_key;
        for mut t in img.live {
            if t.status.is_terminal() || t.seq >= g.next_seq || g.task(t.id).is_some() {
                return bad(format!("live task {} is not a valid live task", t.id));
            }
            if let Some(d) = t.deadline {
                g.deadlines.insert((d, t.id));
            }
            t.token = Some(CancelToken::new(&g.fence, g.epoch));
            g.live.insert(t.id, t);
        }
        for mut t in img.done {
            if !t.status.is_terminal() || t.seq >= g.next_seq || g.task(t.id).is_some() {
                return bad(format!("retained task {} is not a valid ended task", t.id));
            }
            t.token = None;
            g.done.push(t, usize::MAX);
        }
        let job_kind = g
            .lifecycle
            .and_then(|id| g.live.get(&id))
            .and_then(|t| t.kind.lifecycle());
        if job_kind != g.state.job_kind() || (g.lifecycle.is_some() && job_kind.is_none()) {
            return bad(format!(
                "state {} does not match its lifecycle job",
                g.state
            ));
        }
        if let Some((id, _)) = &g.restart_key
            && g.lifecycle != Some(*id)
        {
            return bad("an idempotency key without its live restart".to_owned());
        }
        Ok(g)
    }
}
