//! The registry of live handles: every handle C holds is a number checked
//! here, never a pointer, so a freed, made-up or mistyped handle is
//! refused without reading memory it does not own.
//!
//! A handle is 64 bits: the object's type (8 bits, never 0), the slot's
//! generation (24 bits, mixed with a per-process salt), the shard (6
//! bits) and the slot in it (26 bits). A slot's generation moves on every
//! time its object is freed, so the old handle no longer matches; a slot
//! whose generation has run out is retired, never reused, so a freed
//! handle is never valid again. Each shard is a vector of slots behind a
//! reader-writer lock: a lookup takes the read lock, checks type and
//! generation, and clones the object's `Arc` (or, for short reads, works
//! under the lock), so a handle freed by one thread while another uses it
//! stays alive until that use ends.

use std::any::Any;
use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use parking_lot::RwLock;

use crate::status::{Fail, glc_status};

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;
const SLOT_BITS: u32 = 26;
const MAX_SLOTS: usize = 1 << SLOT_BITS;
const GEN_SHIFT: u32 = 32;
const GEN_MASK: u32 = (1 << 24) - 1;
const KIND_SHIFT: u32 = 56;

/// A type that handles of one C type stand for.
pub(crate) trait Kind: Any + Send + Sync {
    /// The tag in the handle's top byte (1 to 255, one per type).
    const KIND: u8;
    /// The C type's name, for messages.
    const NAME: &'static str;
}

struct Slot {
    /// Counts the objects the slot has held; the live one's is the
    /// handle's.
    generation: u32,
    kind: u8,
    object: Option<Arc<dyn Any + Send + Sync>>,
}

struct Shard {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl Shard {
    const fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

static TABLE: [RwLock<Shard>; SHARDS] = [const { RwLock::new(Shard::new()) }; SHARDS];

/// Mixed into the generation bits; 0 until first needed.
static SALT: AtomicU32 = AtomicU32::new(0);

fn salt() -> u32 {
    let s = SALT.load(Ordering::Relaxed);
    if s != 0 {
        return s;
    }
    // Any nonzero 24-bit value; random, so that handle values differ from
    // one process to the next.
    let fresh = (RandomState::new().hash_one(0x5eed_u32) as u32 & GEN_MASK).max(1);
    match SALT.compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => fresh,
        Err(won) => won,
    }
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The shard this thread's new handles go to first.
    static HOME: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn home_shard() -> usize {
    HOME.try_with(|h| {
        if h.get() == usize::MAX {
            h.set(NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS);
        }
        h.get()
    })
    .unwrap_or(0)
}

fn encode(kind: u8, generation: u32, shard: usize, slot: usize) -> u64 {
    (u64::from(kind) << KIND_SHIFT)
        | (u64::from((generation ^ salt()) & GEN_MASK) << GEN_SHIFT)
        | ((slot as u64) << SHARD_BITS)
        | shard as u64
}

/// The shard, slot and generation a handle of type `T` names, if its bits
/// can name one.
fn decode<T: Kind>(handle: u64) -> Result<(usize, usize, u32), Fail> {
    if handle == 0 {
        return Err(Fail::new(
            glc_status::GLC_INVALID_HANDLE,
            format!("{} handle is zero (no handle)", T::NAME),
        ));
    }
    if (handle >> KIND_SHIFT) as u8 != T::KIND {
        return Err(not_live::<T>(handle));
    }
    let shard = (handle & (SHARDS as u64 - 1)) as usize;
    let slot = ((handle >> SHARD_BITS) & (MAX_SLOTS as u64 - 1)) as usize;
    let generation = ((handle >> GEN_SHIFT) as u32 & GEN_MASK) ^ salt();
    Ok((shard, slot, generation))
}

fn not_live<T: Kind>(handle: u64) -> Fail {
    Fail::new(
        glc_status::GLC_INVALID_HANDLE,
        format!(
            "{} handle 0x{handle:016x} is not live: freed, never handed out, or of another type",
            T::NAME
        ),
    )
}

/// Registers `object` and returns its new handle.
pub(crate) fn insert<T: Kind>(object: T) -> Result<u64, Fail> {
    let object: Arc<dyn Any + Send + Sync> = Arc::new(object);
    let home = home_shard();
    for i in 0..SHARDS {
        let shard_no = (home + i) % SHARDS;
        let mut shard = TABLE[shard_no].write();
        let slot_no = match shard.free.pop() {
            Some(n) => n as usize,
            None if shard.slots.len() < MAX_SLOTS => {
                shard.slots.push(Slot {
                    generation: 0,
                    kind: 0,
                    object: None,
                });
                shard.slots.len() - 1
            }
            None => continue,
        };
        let slot = &mut shard.slots[slot_no];
        slot.generation += 1;
        slot.kind = T::KIND;
        slot.object = Some(object);
        return Ok(encode(T::KIND, slot.generation, shard_no, slot_no));
    }
    Err(Fail::new(
        glc_status::GLC_HANDLE_LIMIT,
        "the handle table is full: free some handles",
    ))
}

/// The object behind a live handle, kept alive while the caller holds it.
pub(crate) fn get<T: Kind>(handle: u64) -> Result<Arc<T>, Fail> {
    let (shard, slot, generation) = decode::<T>(handle)?;
    let object = {
        let shard = TABLE[shard].read();
        shard
            .slots
            .get(slot)
            .filter(|s| s.generation == generation && s.kind == T::KIND)
            .and_then(|s| s.object.clone())
    };
    object
        .and_then(|o| o.downcast::<T>().ok())
        .ok_or_else(|| not_live::<T>(handle))
}

/// Runs `f` on the object behind a live handle, under its shard's read
/// lock: for short reads that neither block nor touch the registry.
pub(crate) fn with<T: Kind, R>(handle: u64, f: impl FnOnce(&T) -> R) -> Result<R, Fail> {
    let (shard, slot, generation) = decode::<T>(handle)?;
    let shard = TABLE[shard].read();
    let object = shard
        .slots
        .get(slot)
        .filter(|s| s.generation == generation && s.kind == T::KIND)
        .and_then(|s| s.object.as_deref())
        .and_then(|o| o.downcast_ref::<T>())
        .ok_or_else(|| not_live::<T>(handle))?;
    Ok(f(object))
}

/// Unregisters a live handle and returns its object, for the caller to
/// drop outside the registry's locks. The zero handle is `Ok(None)`.
pub(crate) fn remove<T: Kind>(handle: u64) -> Result<Option<Arc<T>>, Fail> {
    if handle == 0 {
        return Ok(None);
    }
    let (shard_no, slot_no, generation) = decode::<T>(handle)?;
    let object = {
        let mut shard = TABLE[shard_no].write();
        let slot = shard
            .slots
            .get_mut(slot_no)
            .filter(|s| s.generation == generation && s.kind == T::KIND && s.object.is_some())
            .ok_or_else(|| not_live::<T>(handle))?;
        let object = slot.object.take();
        slot.kind = 0;
        // A slot whose generation would wrap is retired: its handles, old
        // and new, could otherwise meet.
        if slot.generation < GEN_MASK {
            shard.free.push(slot_no as u32);
        }
        object
    };
    Ok(object.and_then(|o| o.downcast::<T>().ok()))
}

/// How many handles are live, of every type: a scan of every shard.
pub(crate) fn live() -> usize {
    TABLE
        .iter()
        .map(|shard| {
            shard
                .read()
                .slots
                .iter()
                .filter(|s| s.object.is_some())
                .count()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct A(u32);
    impl Kind for A {
        const KIND: u8 = 250;
        const NAME: &'static str = "a";
    }
    struct B;
    impl Kind for B {
        const KIND: u8 = 251;
        const NAME: &'static str = "b";
    }

    /// A handle stops working once removed, even after its slot holds a
    /// new object, and a handle of one type never reaches another type's
    /// object.
    #[test]
    fn a_removed_handle_never_matches_the_slots_next_object() {
        let h = insert(A(7)).unwrap();
        assert_eq!(with::<A, _>(h, |a| a.0).unwrap(), 7);
        assert!(get::<B>(h).is_err());
        assert!(remove::<B>(h).is_err());
        assert_eq!(remove::<A>(h).unwrap().map(|a| a.0), Some(7));
        let again = insert(A(8)).unwrap();
        assert_ne!(again, h);
        assert_eq!(
            get::<A>(h).unwrap_err().status,
            glc_status::GLC_INVALID_HANDLE
        );
        assert!(remove::<A>(h).is_err());
        assert_eq!(get::<A>(again).unwrap().0, 8);
        assert!(remove::<A>(again).unwrap().is_some());
    }

    /// A slot whose generation has run out is never handed out again.
    #[test]
    fn a_slot_at_its_last_generation_is_retired() {
        let h = insert(A(1)).unwrap();
        let (shard, slot, _) = decode::<A>(h).unwrap();
        TABLE[shard].write().slots[slot].generation = GEN_MASK;
        let last = encode(A::KIND, GEN_MASK, shard, slot);
        assert!(remove::<A>(last).unwrap().is_some());
        assert!(!TABLE[shard].read().free.contains(&(slot as u32)));
    }
}
