//! The synchronisation primitives the core is built on, in one place.
//!
//! Every lock and atomic of the engine comes from here, so that a model
//! checker can replace them under a `cfg` without touching the logic.

pub(crate) use parking_lot::{Mutex, RwLock};
pub(crate) use std::sync::Arc;
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
