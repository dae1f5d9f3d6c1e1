# keyreg's tasks. `just test` runs every test; `just run` starts a registry.

# Run every test (the same as `just test`)
default: test

# Every test: unit, integration (real binary, real sled, real nats-server), the console in Chromium
test:
    cargo test
    just test-browser

# (`cargo test --no-run` builds the binary as `cargo test` does, with the same
# features, so nothing is rebuilt after `cargo test`.)

# The console driven in Debian's Chromium, headless, with an axe-core check of every page
test-browser:
    cargo test --no-run --quiet
    cd tests/browser && npm ci --no-audit --no-fund --silent && npm test

# Take the console's screenshots again into docs/console (README shows four)
screenshots:
    cargo test --no-run --quiet
    cd tests/browser && npm ci --no-audit --no-fund --silent && SCREENSHOTS=docs/console npm test

# The embeddable replica builds without the server, sled or the command line
lean:
    #!/usr/bin/env bash
    set -euo pipefail
    tree=$(cargo tree -e normal --no-default-features --features replica --prefix none)
    for crate in axum clap sled ureq tracing-subscriber anyhow; do
        if grep -q "^$crate v" <<<"$tree"; then echo "the replica feature pulls in $crate"; exit 1; fi
    done
    cargo build --no-default-features --features replica
    echo "lean: the replica feature builds without axum, clap, sled, ureq, tracing-subscriber and anyhow"

# Schemathesis against schemas/openapi.json for FUZZ_SECONDS (90) on seeded data: no 5xx, no answer off its schema, every operation a 2xx at least once, the chain intact
fuzz:
    bash .ci/fuzz

# Formatting and lints, as CI would want them (the replica-only build too)
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy --no-default-features --features replica -- -D warnings

# A registry on $KEYREG_DATA (./data) at $KEYREG_LISTEN (127.0.0.1:8080), publishing to $KEYREG_NATS under a stream prefix of its own
run:
    #!/usr/bin/env bash
    set -euo pipefail
    data="${KEYREG_DATA:-data}"
    listen="${KEYREG_LISTEN:-127.0.0.1:8080}"
    nats=$(just _nats)
    # Before anything is written: a data dir initialised for an address
    # that cannot be used only confuses the next try.
    if (exec 3<>"/dev/tcp/${listen%:*}/${listen##*:}") 2>/dev/null; then
        echo "something already listens on $listen: stop it (just stop), or set KEYREG_LISTEN=127.0.0.1:PORT" >&2
        exit 1
    fi
    cargo build --release
    test -e "$data/pepper" || ./target/release/keyreg init --data "$data"
    prefix=$(just _prefix "$data")
    echo "data: $data   listen: http://$listen   NATS: $nats   stream prefix: $prefix" >&2
    echo $$ > "${data%/}.pid"
    exec ./target/release/keyreg serve --data "$data" --listen "$listen" --nats "$nats" --stream-prefix "$prefix"

# Stop the registry `just run` started
stop:
    #!/usr/bin/env bash
    set -euo pipefail
    pidfile="${KEYREG_DATA:-data}"; pidfile="${pidfile%/}.pid"
    if [ -e "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; then
        echo "stopped the registry of ${KEYREG_DATA:-data}" >&2
    else
        echo "no registry of ${KEYREG_DATA:-data} is running" >&2
    fi
    rm -f "$pidfile"

# Stop `just run`'s registry, delete its data dir and everything of its stream prefix on NATS
reset:
    #!/usr/bin/env bash
    set -euo pipefail
    data="${KEYREG_DATA:-data}"
    just stop
    if [ -e "$data/pepper" ]; then
        nats=$(just _nats)
        if [ "$nats" != none ]; then
            ./target/release/keyreg stream reset --nats "$nats" --stream-prefix "$(just _prefix "$data")" --yes
        fi
        rm -rf "$data"
        echo "deleted $data" >&2
    fi

# The NATS `just run` uses: $KEYREG_NATS, else nats://127.0.0.1:4222 when something answers there, else none
_nats:
    #!/usr/bin/env bash
    if [ -n "${KEYREG_NATS:-}" ]; then
        echo "$KEYREG_NATS"
    elif (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
        echo nats://127.0.0.1:4222
    else
        echo none
    fi

# The stream prefix of a data dir: named after that dir's pepper file (its path, inode and time), so two checkouts, or data/ wiped and made again, never share a stream
_prefix data:
    #!/usr/bin/env bash
    set -euo pipefail
    id=$(printf '%s %s' "$(realpath '{{data}}')" "$(stat -c '%i %Y' '{{data}}/pepper')" | sha256sum | cut -c1-8)
    echo "DEV_${id^^}"

# The benchmarks at quick sizes (a few minutes); prints the results table
bench:
    cargo build --release -p keyreg-bench
    ./target/release/keyreg-bench run

# Failover over N trials in a row (SIGKILL of the leader under 8 writers; the fencing test as often): p50 and max
bench-failover trials="20":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo test --no-run --quiet
    times=()
    for i in $(seq {{trials}}); do
        out=$(cargo test --quiet --test it registry_nodes -- --nocapture --test-threads 1 2>&1) || { echo "$out"; echo "trial $i failed" >&2; exit 1; }
        ms=$(grep -o 'FAILOVER_MS [0-9]*' <<<"$out" | cut -d' ' -f2)
        times+=("$ms")
        echo "trial $i/{{trials}}: writes acknowledged again ${ms} ms after the SIGKILL" >&2
    done
    sorted=$(printf '%s\n' "${times[@]}" | sort -n)
    echo "failover, {{trials}} SIGKILL trials, --lease 1s: p50 $(sed -n "$(( ({{trials}} + 1) / 2 ))p" <<<"$sorted") ms, max $(tail -n1 <<<"$sorted") ms"

# A/B of durable appends: REV's keyreg-bench against this checkout's, runs interleaved, medians
bench-ab rev writers="1 16 64" events="4000" runs="5":
    #!/usr/bin/env bash
    set -euo pipefail
    root=$(pwd)
    work=$(mktemp -d)
    trap 'git worktree remove --force "$work/a" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
    git worktree add --detach --quiet "$work/a" '{{rev}}'
    echo "bench-ab: building {{rev}} (its own target dir, target/ab)" >&2
    (cd "$work/a" && CARGO_TARGET_DIR="$root/target/ab" cargo build --release --quiet -p keyreg-bench)
    cp target/ab/release/keyreg-bench "$work/bench-a"
    echo "bench-ab: building this checkout" >&2
    cargo build --release --quiet -p keyreg-bench
    cp target/release/keyreg-bench "$work/bench-b"
    echo "| writers | {{rev}} (events/s, median of {{runs}}) | this checkout | ratio |"
    echo "|---|---|---|---|"
    for w in {{writers}}; do
        a=(); b=()
        for r in $(seq {{runs}}); do
            for side in a b; do
                line=$("$work/bench-$side" append --data "$work/data-$side-$w-$r" --writers "$w" --events {{events}} 2>&1 | tail -n1)
                rate=$(grep -o '[0-9]* events/s' <<<"$line" | cut -d' ' -f1)
                [ -n "$rate" ] || { echo "bench-ab: no rate in: $line" >&2; exit 1; }
                if [ "$side" = a ]; then a+=("$rate"); else b+=("$rate"); fi
                rm -rf "$work/data-$side-$w-$r"
                echo "bench-ab: $w writers, run $r, $side: $rate events/s" >&2
            done
        done
        ma=$(printf '%s\n' "${a[@]}" | sort -n | sed -n "$(( ({{runs}} + 1) / 2 ))p")
        mb=$(printf '%s\n' "${b[@]}" | sort -n | sed -n "$(( ({{runs}} + 1) / 2 ))p")
        echo "| $w | $ma | $mb | ×$(awk "BEGIN { printf \"%.3f\", $mb / $ma }") |"
    done

# Ten minutes of mixed load on a registry and two replicas while NATS restarts every minute (RELIABILITY.md)
soak minutes="10":
    cargo build --release -p keyreg --bin keyreg
    cargo build --release -p keyreg-bench
    ./target/release/keyreg-bench soak --minutes {{minutes}}

# The benchmarks at the sizes of BENCHMARKS.md (1,000,000 keys and events)
bench-full:
    cargo build --release -p keyreg-bench
    ./target/release/keyreg-bench run --full
