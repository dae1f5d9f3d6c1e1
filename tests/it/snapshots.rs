//! Snapshots of the projections: a registry started from a snapshot and
//! the log's tail holds exactly what one started from the whole log holds,
//! whatever the cut; a snapshot that is damaged, sealed under another
//! pepper or not a state is passed over, and the log used; one keyreg
//! sealed that the log no longer agrees with stops the start.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use keyreg::domain::audit::AuditIndex;
use keyreg::domain::chain::ChainHash;
use keyreg::domain::command::Command;
use keyreg::domain::history::History;
use keyreg::domain::snapshot::{Binding, Sealed, seal};
use keyreg::domain::table::Table;
use keyreg::domain::time::ManualClock;
use keyreg::domain::token::Pepper;
use keyreg::domain::token::TokenFormat;
use keyreg::registry::{Config, Projections, Registry, fold_log};
use keyreg::store::{DataDir, snapshot};
use proptest::prelude::*;

use crate::property::{create_acme, op, run};
use crate::serve::eventually;
use crate::support::*;

/// What a registry holds, taken before it closes.
fn state(r: &Registry) -> (Table, AuditIndex) {
    let p = r.read();
    (p.table.clone(), p.audit.clone())
}

/// The state of `dir` opened from its newest snapshot, and from the whole
/// log with the snapshots moved aside; both registries closed again.
fn both_ways(dir: &Path, clock: &Arc<ManualClock>) -> ((Table, AuditIndex), (Table, AuditIndex)) {
    let from_snapshot = reopen(dir, clock);
    let a = state(&from_snapshot);
    from_snapshot.close().unwrap();
    let aside = dir.join("snapshots-aside");
    std::fs::rename(dir.join("snapshots"), &aside).unwrap();
    let from_log = reopen(dir, clock);
    let b = state(&from_log);
    from_log.close().unwrap();
    std::fs::remove_dir_all(dir.join("snapshots")).unwrap();
    std::fs::rename(&aside, dir.join("snapshots")).unwrap();
    (a, b)
}

fn newest(dir: &Path) -> Sealed {
    let pepper = DataDir::new(dir).pepper().unwrap();
    snapshot::read(&snapshot::files(&dir.join("snapshots"))[0], &pepper).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Commands in rounds; after each round the registry closes (writing a
    /// snapshot at its head) and the state from that snapshot is compared
    /// with the whole log's.
    #[test]
    fn a_start_from_a_snapshot_equals_a_start_from_the_log(
        rounds in proptest::collection::vec(proptest::collection::vec(op(), 0..12), 1..5),
    ) {
        let dir = tempdir();
        let (mut registry, _, clock) = registry_with_clock(dir.path());
        create_acme(&registry);
        let mut keys = vec![];
        for ops in &rounds {
            for op in ops {
                run(op, &mut keys, &registry, &clock);
            }
            let head = registry.head().seq;
            registry.close().unwrap();
            prop_assert_eq!(newest(dir.path()).binding.seq, head, "a clean stop snapshots its head");
            let (from_snapshot, from_log) = both_ways(dir.path(), &clock);
            prop_assert!(from_snapshot == from_log, "at seq {}", head);
            prop_assert_eq!(from_snapshot.0.digest(), from_log.0.digest());
            registry = reopen(dir.path(), &clock);
        }
        registry.close().unwrap();
    }
}

/// A way to spoil the newest snapshot.
type Damage = Box<dyn Fn()>;

#[test]
fn a_snapshot_that_does_not_check_out_is_passed_over() {
    let dir = tempdir();
    let (registry, _, clock) = registry_with_clock(dir.path());
    every_event_type(&registry, &clock);
    let expected = state(&registry);
    registry.close().unwrap();
    let snapshots = dir.path().join("snapshots");
    let path = snapshot::files(&snapshots)[0].clone();
    let good = std::fs::read(&path).unwrap();
    let sealed = newest(dir.path());
    let pepper = DataDir::new(dir.path()).pepper().unwrap();
    let rewrite = |bytes: Vec<u8>| {
        let path = path.clone();
        move || std::fs::write(&path, &bytes).unwrap()
    };
    let reseal = |pepper: Pepper, hash: ChainHash, payload: Vec<u8>| {
        let (dir, binding) = (snapshots.clone(), Binding { hash, ..sealed.binding });
        move || {
            snapshot::write(&dir, binding.seq, &seal(&pepper, binding, &payload, payload.len())).unwrap();
        }
    };
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x20;
    let cases: Vec<(&str, Damage)> = vec![
        ("a flipped byte", Box::new(rewrite(flipped))),
        ("cut short", Box::new(rewrite(good[..good.len() - 100].to_vec()))),
        (
            "sealed under another pepper",
            Box::new(reseal(Pepper::generate(), sealed.binding.hash, sealed.payload().to_vec())),
        ),
        (
            "sealed and bound, but not a state",
            Box::new(reseal(pepper.clone(), sealed.binding.hash, b"not a state".to_vec())),
        ),
    ];
    for (what, damage) in cases {
        for f in snapshot::files(&snapshots) {
            std::fs::remove_file(f).unwrap();
        }
        damage();
        let registry = reopen(dir.path(), &clock);
        assert!(state(&registry) == expected, "{what}: the state differs from the log's");
        assert!(registry.refusing_writes().is_none(), "{what}");
        registry.close().unwrap();
        assert_eq!(newest(dir.path()).binding.seq, sealed.binding.seq, "{what}: the close wrote a good snapshot again");
    }
    let registry = reopen(dir.path(), &clock);
    assert!(state(&registry) == expected, "from the rewritten snapshot");
    registry.close().unwrap();
}

/// A log cut short under a sealed snapshot (a revocation dropped by
/// whoever could write the data dir), or one that holds another event
/// where a sealed snapshot says, is refused at start, naming the snapshot
/// and the sequence; it used to start with a warning.
#[test]
fn a_log_rolled_back_under_a_sealed_snapshot_refuses_to_start() {
    let dir = tempdir();
    let (registry, _, clock) = registry_with_clock(dir.path());
    registry.close().unwrap();
    let early = tempdir();
    copy_dir(dir.path(), early.path());
    let registry = reopen(dir.path(), &clock);
    every_event_type(&registry, &clock);
    let head = registry.head().seq;
    registry.close().unwrap();
    let later = snapshot::files(&dir.path().join("snapshots"))[0].clone();
    std::fs::copy(&later, early.path().join("snapshots").join(later.file_name().unwrap())).unwrap();
    let config = || Config::new(clock.clone() as Arc<dyn keyreg::domain::time::Clock>, TokenFormat::default());
    let refused = Registry::open(&DataDir::new(early.path()), config()).err().expect("a cut-short log opened");
    let said = refused.to_string();
    assert!(said.contains(&format!("at event {head}")) && said.contains("ends before"), "{said}");

    // Sealed under the pepper but bound to another chain hash at an event
    // the log holds.
    let pepper = DataDir::new(dir.path()).pepper().unwrap();
    let sealed = newest(dir.path());
    let other = Binding { hash: ChainHash([9; 32]), ..sealed.binding };
    snapshot::write(
        &dir.path().join("snapshots"),
        other.seq,
        &seal(&pepper, other, sealed.payload(), sealed.payload().len()),
    )
    .unwrap();
    let refused = Registry::open(&DataDir::new(dir.path()), config()).err().expect("an altered log opened");
    assert!(refused.to_string().contains("another event"), "{refused}");
}

/// Every `snapshot_every` events a snapshot is written in the background,
/// while the registry keeps running, and it holds exactly the state the
/// log folds to at its sequence.
#[test]
fn a_running_registry_snapshots_every_so_many_events() {
    let dir = tempdir();
    let clock = Arc::new(ManualClock::new(t0()));
    let mut config = Config::new(clock.clone() as Arc<dyn keyreg::domain::time::Clock>, TokenFormat::default());
    config.snapshot_every = 25;
    let (registry, _) = Registry::init(&DataDir::new(dir.path()), config).unwrap();
    let pepper = DataDir::new(dir.path()).pepper().unwrap();
    let seqs = || -> Vec<u64> {
        snapshot::files(&dir.path().join("snapshots"))
            .iter()
            .filter_map(|f| snapshot::read(f, &pepper).ok())
            .map(|s| s.binding.seq.0)
            .collect()
    };
    // Thirty events past each mark, then the snapshot of that mark: a mark
    // passed while the last snapshot is still being written is skipped
    // (the writer never waits for one), which a loaded machine would turn
    // into a missing snapshot here.
    for (round, wanted) in [(0, 1), (1, 2)] {
        for i in 0..30 {
            let key = registry.new_key(&registry.format().generate(), &format!("k{round}-{i}"), "", &["read"]);
            registry.execute_blocking(admin(), keyreg::domain::id::OrgId::system(), Command::CreateKey(key)).unwrap();
        }
        assert!(eventually(Duration::from_secs(10), || seqs().len() == wanted), "snapshots: {:?}", seqs());
    }
    for sealed in snapshot::files(&dir.path().join("snapshots")).iter().map(|f| snapshot::read(f, &pepper).unwrap()) {
        let from_snapshot = Projections::decode(sealed.payload()).unwrap();
        let mut folded = History::new(Projections::default());
        fold_log(registry.log(), &mut folded, Some(sealed.binding.seq), |_| {}).unwrap();
        assert_eq!(folded.head(), (sealed.binding.seq, sealed.binding.hash));
        let folded = folded.into_state();
        assert!(
            from_snapshot.table == folded.table && from_snapshot.audit == folded.audit,
            "at {}",
            sealed.binding.seq
        );
    }
    let mut taken = seqs();
    taken.sort_unstable();
    assert!(taken[0] >= 25 && taken[0] < 50 && taken[1] >= 50, "{taken:?}");
    registry.close().unwrap();
}
