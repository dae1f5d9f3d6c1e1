# keyreg's tasks. `just test` runs every test; `just run` starts a registry.

default: test

# Every test: unit, integration (real binary, real sled, real processes).
test:
    cargo test

# Lints as CI would want them.
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings

# A working registry on ./data at http://127.0.0.1:8080 (the first run
# initialises ./data and prints its first key, once), publishing to NATS
# when one answers at 127.0.0.1:4222.
run:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release
    test -e data/pepper || ./target/release/keyreg init --data data
    nats=none
    if (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then nats=nats://127.0.0.1:4222; fi
    echo "NATS: $nats"
    exec ./target/release/keyreg serve --data data --listen 127.0.0.1:8080 --nats "$nats"

# The benchmarks, quick sizes (under 5 minutes): prints the results table.
bench:
    cargo build --release -p keyreg-bench
    ./target/release/keyreg-bench run

# The benchmarks at the sizes of BENCHMARKS.md (1,000,000 keys and events).
bench-full:
    cargo build --release -p keyreg-bench
    ./target/release/keyreg-bench run --full
