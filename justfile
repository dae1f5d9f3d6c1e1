# keyreg's tasks. `just test` runs every test; `just run` starts a registry.

default: test

# Every test: unit, integration (real binary, real sled, real processes).
test:
    cargo test --all-targets

# Lints as CI would want them.
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings
