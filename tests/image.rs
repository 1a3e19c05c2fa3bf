//! Images: the whole state out as bytes and back, over a fresh engine or a
//! running one; damaged or hostile bytes are typed errors, never a panic.
//!
//! `IMAGE_CASES=5000 cargo test --release --test image` runs the property
//! tests with more cases.

use std::time::Duration;

use graph_lifecycle::*;
use proptest::prelude::*;

mod common;
use common::*;

/// An engine with something of everything in it: graphs in every kind of
/// state, live and ended tasks with payloads, reasons and deadlines,
/// answers in request windows, windows of removed and absent keys.
fn busy() -> Rig {
    let rig = Rig::with(
        Config::default()
            .timeout(LifecycleKind::Import, Some(Duration::from_secs(60)))
            .max_retained_per_graph(5),
    );
    let req = |s: &str| Some(RequestId::new(s).unwrap());
    let a = key("proj", "a");
    rig.running(&a);
    rig.engine.import(&a, "edges.csv").unwrap();
    let import = rig.job();
    rig.report(&import, Report::Progress(40));
    let t = rig.host_task(&a, "pagerank");
    rig.report(&t, Report::Failed("out of memory".into()));
    rig.host_task(&a, "async-query");
    let b = key("proj", "b");
    rig.engine
        .request(req("create-b"))
        .create_graph(&b)
        .unwrap();
    rig.engine.request(req("start-b")).start(&b).unwrap();
    rig.report(&rig.job(), Report::Failed("no disk".into()));
    let c = key("other", "c");
    rig.running(&c);
    rig.engine
        .request(req("restart-c"))
        .force_restart(&c)
        .unwrap();
    let _ = rig.engine.request(req("stop-c")).stop(&c).unwrap_err();
    let gone = key("proj", "gone");
    rig.engine.create_graph(&gone).unwrap();
    rig.engine.request(req("rm")).remove_graph(&gone).unwrap();
    let _ = rig
        .engine
        .request(req("ghost"))
        .start(&key("proj", "ghost"))
        .unwrap_err();
    rig
}

#[test]
fn an_image_restores_to_the_same_state_and_the_same_bytes() {
    let rig = busy();
    let bytes = rig.engine.image().encode();
    let image = Image::decode(&bytes).unwrap();
    assert_eq!(image.graph_count(), rig.engine.graph_count());
    // The same time as the original, so that the windows' answers are as
    // fresh there as here.
    let (copy, _jobs) = Engine::builder()
        .config(rig.engine.config().clone())
        .clock(std::sync::Arc::new(ManualClock::new(rig.now())))
        .ids(SequentialIds::new(9))
        .restore(&image)
        .unwrap();
    assert_eq!(copy.snapshot(), rig.engine.snapshot());
    assert!(copy.image().encode() == bytes);
    assert_eq!(copy.next_deadline(), rig.engine.next_deadline());
    // The windows came along: retries are answered on the copy.
    let c = key("other", "c");
    let first = rig
        .engine
        .request(Some(RequestId::new("restart-c").unwrap()))
        .force_restart(&c)
        .unwrap();
    let again = copy
        .request(Some(RequestId::new("restart-c").unwrap()))
        .force_restart(&c)
        .unwrap();
    assert_eq!(again, first);
    let gone = key("proj", "gone");
    copy.request(Some(RequestId::new("rm").unwrap()))
        .remove_graph(&gone)
        .unwrap();
}

#[test]
fn restoring_over_a_running_engine_voids_every_old_token_and_old_handles() {
    let rig = busy();
    let image = rig.engine.image();
    let target = Rig::seeded(Config::default(), 2);
    let k = key("proj", "a");
    target.running(&k);
    let handle = target.engine.graph(&k).unwrap();
    target.engine.import(&k, "x").unwrap();
    let import = target.job();
    let host = target.host_task(&k, "algo");
    let other = key("t", "z");
    target.running(&other);
    target.engine.stop(&other).unwrap();
    let stop = target.job();
    assert!(!import.token.is_void() && !host.token.is_void() && !stop.token.is_void());

    target.engine.restore(&image).unwrap();
    assert!(import.token.is_void() && host.token.is_void() && stop.token.is_void());
    assert_eq!(handle.state(), None);
    assert_eq!(target.engine.snapshot(), rig.engine.snapshot());
    assert!(target.engine.state(&other).is_err());
    // A report about a replaced task finds nothing of it.
    assert_eq!(
        target
            .engine
            .report(&import.task, Report::Succeeded)
            .unwrap_err()
            .code(),
        "TASK_NOT_FOUND"
    );
    // No job was handed over by the restore; the restored live tasks have
    // fresh, valid tokens, and the graph goes on.
    target.assert_no_job();
    let restarted = target.engine.force_restart(&k).unwrap();
    assert_eq!(target.job().id(), restarted.job);
}

#[test]
fn an_image_that_breaks_the_engines_rules_is_refused_and_changes_nothing() {
    let rig = busy();
    let image = rig.engine.image();
    // Fewer graphs allowed than the image holds.
    let (small, _jobs) = Engine::builder()
        .config(Config::default().max_graphs(1))
        .build();
    small.create_graph(&key("p", "kept")).unwrap();
    let err = small.restore(&image).unwrap_err();
    assert!(matches!(err, ImageError::Invalid { .. }), "{err}");
    assert_eq!(small.graph_count(), 1);
    assert!(err.to_string().contains("limit"), "{err}");
}

/// The image cut at every byte offset: always a typed error.
#[test]
fn an_image_cut_anywhere_is_a_typed_error() {
    let bytes = busy().engine.image().encode();
    for cut in 0..bytes.len() {
        let err = Image::decode(&bytes[..cut]).expect_err("a cut image");
        assert!(!err.to_string().is_empty(), "cut at {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        Image::decode(&longer),
        Err(ImageError::Length { .. })
    ));
}

/// Every single bit flipped: always a typed error, never an image that
/// reads as another state.
#[test]
fn every_flipped_bit_of_an_image_is_caught() {
    let bytes = busy().engine.image().encode();
    for bit in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(Image::decode(&b).is_err(), "bit {bit} flipped went unseen");
    }
}

/// A body that is not an image, under a header whose checksum matches it
/// (what the checksum cannot catch): a typed error or a valid image,
/// never a panic, and what decodes is checked again on restore.
fn sealed(body: &[u8]) -> Vec<u8> {
    let real = busy().engine.image().encode();
    let mut out = real[..8].to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in out[8..20].iter().chain(body) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    out.extend_from_slice(&h.to_le_bytes());
    out.extend_from_slice(body);
    out
}

#[test]
fn the_image_header_seals_a_body_as_the_test_expects() {
    // The test's sealing matches the format: a real body re-sealed reads.
    let real = busy().engine.image().encode();
    assert!(sealed(&real[28..]) == real);
}

fn cases(default: u32) -> u32 {
    std::env::var("IMAGE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_make_decoding_or_restoring_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let (engine, _jobs) = Engine::builder().build();
        if let Ok(image) = Image::decode(&sealed(&body)) {
            let _ = engine.restore(&image);
        }
        let _ = Image::decode(&body);
    }

    /// A real image's body with bytes overwritten, re-sealed so the
    /// checksum passes: whatever decodes is checked before it is restored.
    #[test]
    fn a_damaged_body_under_a_matching_checksum_is_refused_or_consistent(
        at in any::<prop::sample::Index>(),
        with in prop::collection::vec(any::<u8>(), 1..8),
    ) {
        let real = busy().engine.image().encode();
        let mut body = real[28..].to_vec();
        let i = at.index(body.len());
        for (j, b) in with.iter().enumerate() {
            if let Some(x) = body.get_mut(i + j) {
                *x = *b;
            }
        }
        if let Ok(image) = Image::decode(&sealed(&body)) {
            let (engine, _jobs) = Engine::builder()
                .config(Config::default().max_retained_per_graph(5))
                .build();
            if engine.restore(&image).is_ok() {
                // Whatever was accepted is an engine that works.
                let snap = engine.snapshot();
                for g in &snap.graphs {
                    let _ = engine.force_restart(&g.info.key);
                }
                prop_assert!(engine.image().encode().len() > 28);
            }
        }
    }
}
