//! The synchronisation primitives the core is built on, in one place.
//!
//! Every lock, atomic and channel of the engine comes from here, so that a
//! model checker can replace them under a `cfg` without touching the logic.
//!
//! - The normal build uses `parking_lot`'s locks, std's atomics and
//!   `crossbeam-channel`.
//! - Under `--cfg loom` the locks and atomics are [loom]'s, wrapped so that
//!   they are called the way `parking_lot`'s are, and the channel is a small
//!   one built on loom's mutex and condition variable with the semantics of
//!   `crossbeam-channel` that the crate relies on. `tests/loom.rs` then
//!   explores every interleaving of the engine's threads (see
//!   `docs/VERIFICATION.md`).
//!
//! `Arc` is std's in both builds: its count guards no state of the
//! protocol, and loom's `Arc` cannot hold the `str` and `[u8]` the ids and
//! payloads share.
//!
//! [loom]: https://docs.rs/loom

pub(crate) use std::sync::Arc;

#[cfg(not(loom))]
pub(crate) use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use self::loom_locks::{Mutex, RwLock};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{MutexGuard, RwLockReadGuard, RwLockWriteGuard};

/// The job and event channels.
#[cfg(not(loom))]
pub(crate) mod channel {
    pub(crate) use crossbeam_channel::{Receiver, Sender, unbounded};
}

/// loom's locks with `parking_lot`'s calling convention: `lock`, `read`
/// and `write` return the guard. A lock is never poisoned: a panic in a
/// model fails the model anyway.
#[cfg(loom)]
mod loom_locks {
    use loom::sync::{MutexGuard, RwLockReadGuard, RwLockWriteGuard};
    use std::sync::PoisonError;

    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct RwLock<T>(loom::sync::RwLock<T>);

    impl<T> RwLock<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::RwLock::new(value))
        }

        pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
            self.0.read().unwrap_or_else(PoisonError::into_inner)
        }

        pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
            self.0.write().unwrap_or_else(PoisonError::into_inner)
        }
    }
}

/// The job and event channels under loom: a queue under a loom mutex, a
/// loom condition variable for `recv`, and counts of senders and receivers
/// for disconnection, returning `crossbeam-channel`'s error types.
///
/// Every channel of the crate is unbounded (events are bounded by a count
/// of their own). What it does not model: `recv_timeout` never waits
/// (under loom every timeout may elapse at once, so it is a `try_recv`
/// that answers `Timeout` when empty).
#[cfg(loom)]
pub(crate) mod channel {
    use std::collections::VecDeque;
    use std::fmt;
    use std::sync::{Arc, PoisonError};
    use std::time::Duration;

    use crossbeam_channel::{RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError};
    use loom::sync::{Condvar, Mutex, MutexGuard};

    struct State<T> {
        queue: VecDeque<T>,
        senders: usize,
        receivers: usize,
    }

    struct Chan<T> {
        state: Mutex<State<T>>,
        /// Signalled when a message arrives or the last sender leaves.
        ready: Condvar,
    }

    impl<T> Chan<T> {
        fn state(&self) -> MutexGuard<'_, State<T>> {
            self.state.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    pub(crate) fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
        let chan = Arc::new(Chan {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                senders: 1,
                receivers: 1,
            }),
            ready: Condvar::new(),
        });
        (Sender(chan.clone()), Receiver(chan))
    }

    pub(crate) struct Sender<T>(Arc<Chan<T>>);

    impl<T> Sender<T> {
        /// Sends without waiting, as crossbeam's `send` on an unbounded
        /// channel does.
        pub(crate) fn send(&self, value: T) -> Result<(), SendError<T>> {
            self.try_send(value).map_err(|e| SendError(e.into_inner()))
        }

        pub(crate) fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
            let mut st = self.0.state();
            if st.receivers == 0 {
                return Err(TrySendError::Disconnected(value));
            }
            st.queue.push_back(value);
            drop(st);
            self.0.ready.notify_one();
            Ok(())
        }
    }

    impl<T> Clone for Sender<T> {
        fn clone(&self) -> Self {
            self.0.state().senders += 1;
            Sender(self.0.clone())
        }
    }

    impl<T> Drop for Sender<T> {
        fn drop(&mut self) {
            let mut st = self.0.state();
            st.senders -= 1;
            let last = st.senders == 0;
            drop(st);
            if last {
                self.0.ready.notify_all();
            }
        }
    }

    pub(crate) struct Receiver<T>(Arc<Chan<T>>);

    impl<T> Receiver<T> {
        pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
            let mut st = self.0.state();
            match st.queue.pop_front() {
                Some(v) => Ok(v),
                None if st.senders == 0 => Err(TryRecvError::Disconnected),
                None => Err(TryRecvError::Empty),
            }
        }

        pub(crate) fn recv(&self) -> Result<T, RecvError> {
            let mut st = self.0.state();
            loop {
                if let Some(v) = st.queue.pop_front() {
                    return Ok(v);
                }
                if st.senders == 0 {
                    return Err(RecvError);
                }
                st = self
                    .0
                    .ready
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }

        pub(crate) fn recv_timeout(&self, _timeout: Duration) -> Result<T, RecvTimeoutError> {
            self.try_recv().map_err(|e| match e {
                TryRecvError::Empty => RecvTimeoutError::Timeout,
                TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            })
        }

        pub(crate) fn len(&self) -> usize {
            self.0.state().queue.len()
        }

        pub(crate) fn is_empty(&self) -> bool {
            self.0.state().queue.is_empty()
        }
    }

    impl<T> Clone for Receiver<T> {
        fn clone(&self) -> Self {
            self.0.state().receivers += 1;
            Receiver(self.0.clone())
        }
    }

    impl<T> Drop for Receiver<T> {
        fn drop(&mut self) {
            self.0.state().receivers -= 1;
        }
    }

    impl<T> fmt::Debug for Receiver<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Receiver { .. }")
        }
    }
}
