//! A key's request window: the answers to the commands that carried a
//! request id, so that a retry gets the first answer (`docs/CONTRACT.md`,
//! "Retries").

use std::hash::RandomState;

use super::queue::{Key, Timed, TimedQueue};
use crate::command::{Asked, Command, Outcome};
use crate::config::Config;
use crate::error::Error;
use crate::id::RequestId;
use crate::time::Timestamp;

/// One answered request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answered {
    pub(crate) id: RequestId,
    /// The time of the command that carried it.
    pub(crate) at: Timestamp,
    /// Its order among the window's entries.
    pub(crate) n: u64,
    /// What the command asked, which a retry repeats.
    pub(crate) asked: Asked,
    pub(crate) answer: Result<Outcome, Error>,
}

impl Timed for Answered {
    type Id = RequestId;
    fn id(&self) -> &RequestId {
        &self.id
    }
    fn key(&self) -> Key {
        (self.at, self.n)
    }
}

/// The answers of one key, oldest first, bounded by
/// [`Config::request_window`] entries and [`Config::request_window_age`].
/// Request ids come from clients, so the index hashes them with a keyed
/// hash. The queue is allocated with the first answer: a graph whose
/// commands carry no request id spends one pointer on its window.
#[derive(Debug, Clone, Default)]
pub(crate) struct Requests {
    queue: Option<Box<TimedQueue<Answered, RandomState>>>,
    /// The next entry's `n`.
    next: u64,
}

impl Requests {
    /// The answer to a retry of `cmd`, if the window holds its request
    /// id at the command's time: the first answer, or
    /// [`Error::RequestReused`] if the id was first used for something
    /// else.
    pub(crate) fn answer(&self, cfg: &Config, cmd: &Command) -> Option<Result<Outcome, Error>> {
        let id = cmd.request.as_ref()?;
        let e = self.queue.as_ref()?.get(id)?;
        let fresh = cfg
            .request_window_age
            .is_none_or(|age| e.at.saturating_add(age) > cmd.at);
        if !fresh {
            return None;
        }
        let asked = cmd.op.asked();
        if e.asked == asked {
            return Some(e.answer.clone());
        }
        let name = |a: Asked| match a.job {
            Some(job) => format!("{} of job {job}", a.name()),
            None => a.name().to_owned(),
        };
        Some(Err(Error::RequestReused {
            key: cmd.key.clone(),
            request: id.clone(),
            first: name(e.asked),
            op: name(asked),
        }))
    }

    /// Records the answer to `id` at `now`: entries past their age go
    /// first, then the oldest past the count bound. An entry of the same
    /// id (past its age, or [`answer`](Self::answer) would have found it)
    /// is replaced.
    pub(crate) fn record(
        &mut self,
        cfg: &Config,
        id: RequestId,
        now: Timestamp,
        asked: Asked,
        answer: Result<Outcome, Error>,
    ) {
        if let Some(q) = &mut self.queue {
            q.remove(&id);
        }
        let cap = cfg.request_window;
        if cap == 0 {
            return;
        }
        let queue = self.queue.get_or_insert_with(Box::default);
        if let Some(age) = cfg.request_window_age {
            while queue
                .front()
                .is_some_and(|e| e.at.saturating_add(age) <= now)
            {
                queue.pop_front();
            }
        }
        while queue.len() >= cap {
            queue.pop_front();
        }
        let n = self.next;
        self.next += 1;
        queue.push(
            Answered {
                id,
                at: now,
                n,
                asked,
                answer,
            },
            cap,
        );
    }

    /// The time of the newest entry.
    pub(crate) fn newest(&self) -> Option<Timestamp> {
        self.iter().map(|e| e.at).max()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.len())
    }

    /// Oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Answered> {
        self.queue.iter().flat_map(|q| q.iter())
    }

    pub(crate) fn next_n(&self) -> u64 {
        self.next
    }

    /// A window rebuilt from an image: `entries` with unique ids and
    /// orders below `next`.
    pub(crate) fn rebuild(next: u64, entries: Vec<Answered>) -> Result<Self, String> {
        let mut queue: TimedQueue<Answered, RandomState> = TimedQueue::default();
        for e in entries {
            if e.n >= next || queue.get(&e.id).is_some() {
                return Err(format!("request {} is not a valid window entry", e.id));
            }
            queue.push(e, usize::MAX);
        }
        Ok(Requests {
            queue: (!queue.is_empty()).then(|| Box::new(queue)),
            next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Op;
    use crate::id::GraphKey;
    use std::time::Duration;

    fn cmd(req: &str, ms: u64, op: Op) -> Command {
        Command::new(GraphKey::parse("p", "g").unwrap(), t(ms), op)
            .with_request(RequestId::new(req).unwrap())
    }

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn record(w: &mut Requests, cfg: &Config, c: &Command, answer: Result<Outcome, Error>) {
        let id = c.request.clone().unwrap();
        w.record(cfg, id, c.at, c.op.asked(), answer);
    }

    #[test]
    fn an_answer_is_kept_for_its_age_and_then_forgotten() {
        let cfg = Config::default().request_window_age(Some(Duration::from_millis(100)));
        let mut w = Requests::default();
        record(
            &mut w,
            &cfg,
            &cmd("a", 1_000, Op::Create),
            Ok(Outcome::Created),
        );
        assert_eq!(
            w.answer(&cfg, &cmd("a", 1_099, Op::Create)),
            Some(Ok(Outcome::Created))
        );
        assert_eq!(w.answer(&cfg, &cmd("a", 1_100, Op::Create)), None);
        assert_eq!(w.answer(&cfg, &cmd("b", 1_000, Op::Create)), None);
        // Recording again replaces the aged entry; nothing else is left.
        record(
            &mut w,
            &cfg,
            &cmd("a", 1_200, Op::Remove),
            Ok(Outcome::Updated),
        );
        assert_eq!(w.len(), 1);
        assert_eq!(
            w.answer(&cfg, &cmd("a", 1_200, Op::Remove)),
            Some(Ok(Outcome::Updated))
        );
    }

    #[test]
    fn a_request_id_used_for_another_operation_is_refused_as_reused() {
        let cfg = Config::default();
        let mut w = Requests::default();
        record(&mut w, &cfg, &cmd("a", 0, Op::Create), Ok(Outcome::Created));
        let got = w.answer(&cfg, &cmd("a", 1, Op::Remove));
        assert!(
            matches!(got, Some(Err(Error::RequestReused { ref first, ref op, .. }))
                if first == "create" && op == "remove"),
            "{got:?}"
        );
    }

    #[test]
    fn the_count_bound_evicts_the_oldest_answers() {
        let cfg = Config::default().request_window(3);
        let mut w = Requests::default();
        for (i, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
            record(
                &mut w,
                &cfg,
                &cmd(name, i as u64, Op::Expire),
                Ok(Outcome::Updated),
            );
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.answer(&cfg, &cmd("a", 9, Op::Expire)), None);
        assert!(w.answer(&cfg, &cmd("d", 9, Op::Expire)).is_some());
    }

    #[test]
    fn a_window_of_zero_keeps_nothing() {
        let cfg = Config::default().request_window(0);
        let mut w = Requests::default();
        record(&mut w, &cfg, &cmd("a", 0, Op::Create), Ok(Outcome::Created));
        assert!(w.is_empty());
    }
}
