//! The checked-in header is the one cbindgen generates from the crate.
//!
//! When this test fails, the crate's ABI (or its docs) changed since the
//! header was generated: regenerate it and commit the result with
//!
//! ```sh
//! UPDATE_HEADER=1 cargo test -p graph-lifecycle-capi --test header
//! ```

use std::path::Path;

/// The header in `include/` equals what cbindgen makes of the crate now,
/// byte for byte; with `UPDATE_HEADER=1` it is rewritten instead.
#[test]
fn checked_in_header_matches_the_generated_one() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = dir.join("include/graph_lifecycle.h");
    if std::env::var_os("UPDATE_HEADER").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write the header");
        return;
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    if checked_in != generated {
        let first = checked_in
            .split(|b| *b == b'\n')
            .zip(generated.split(|b| *b == b'\n'))
            .position(|(a, b)| a != b)
            .map_or_else(|| "at the end".to_owned(), |n| format!("at line {}", n + 1));
        panic!(
            "capi/include/graph_lifecycle.h is out of date (it first differs {first}).\n\
             Regenerate it and commit the result:\n\n    \
             UPDATE_HEADER=1 cargo test -p graph-lifecycle-capi --test header\n"
        );
    }
}
