#!/usr/bin/env bash
# Builds the C ABI with cargo, then compiles and runs, against the header
# and the static library:
#   - tests/abi_test.c, the C test of every exported function, under
#     AddressSanitizer, UndefinedBehaviorSanitizer and LeakSanitizer;
#   - examples/host.cpp, the C++ example host (C++17).
# Needs only the Rust toolchain and gcc/g++.
#
# Usage: capi/build-examples.sh [--release]
set -euo pipefail
cd "$(dirname "$0")"

profile=debug
cargo_flags=()
if [ "${1:-}" = "--release" ]; then
    profile=release
    cargo_flags=(--release)
fi

cargo build --quiet -p graph-lifecycle-capi "${cargo_flags[@]}"
target="${CARGO_TARGET_DIR:-$(cd .. && pwd)/target}"
lib="$target/$profile/libgraph_lifecycle_capi.a"
out="$target/$profile/capi-examples"
mkdir -p "$out"
# What a Rust static library needs from the system.
syslibs=(-lpthread -ldl -lm)

# Every function the header declares is called by the C test.
missing=0
for f in $(grep -oE '^glc_status (glc_[a-z_]+)\(' include/graph_lifecycle.h | sed -E 's/^glc_status (glc_[a-z_]+)\(/\1/'); do
    if ! grep -q "\\b$f(" tests/abi_test.c; then
        echo "tests/abi_test.c does not call $f" >&2
        missing=1
    fi
done
[ "$missing" = 0 ]

# The header stands alone in C and C++, with warnings as errors.
printf '#include "graph_lifecycle.h"\nint main(void) { return 0; }\n' >"$out/header_only.c"
gcc -std=c99 -Wall -Wextra -Wpedantic -Werror -Iinclude -fsyntax-only "$out/header_only.c"
g++ -std=c++17 -Wall -Wextra -Wpedantic -Werror -Iinclude -fsyntax-only -x c++ "$out/header_only.c"

gcc -std=c11 -g -O1 -Wall -Wextra -Werror -Iinclude \
    -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
    tests/abi_test.c "$lib" "${syslibs[@]}" -o "$out/abi_test"
g++ -std=c++17 -O2 -Wall -Wextra -Werror -Iinclude \
    examples/host.cpp "$lib" "${syslibs[@]}" -o "$out/host"

echo "==> abi_test (AddressSanitizer, UndefinedBehaviorSanitizer, LeakSanitizer)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$out/abi_test"
echo "==> host (the C++ example host)"
"$out/host"
