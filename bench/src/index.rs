//! The key table's index (`SlotIndex`, hand-written) against the
//! well-kept alternative, `hashbrown::HashTable`, used the same way: both
//! map the first 8 bytes of a keyed hash to a slot in a slab of key-sized
//! records, and the caller confirms a candidate against the record. Random
//! lookups of present keys at the benchmark's size, so the index is far
//! larger than the CPU's caches, as at a million keys.

use std::hint::black_box;
use std::time::Instant;

use hashbrown::HashTable;
use keyreg::domain::table::index::SlotIndex;

use crate::{Row, Size, median, progress};

/// A stand-in for a key record: its hash first, then the rest of a key's
/// size, so that confirming a candidate costs what it costs in the table.
#[derive(Clone)]
struct Record {
    hash: [u8; 32],
    _rest: [u8; 184],
}

fn prefix(hash: &[u8; 32]) -> u64 {
    u64::from_le_bytes(hash[..8].try_into().unwrap_or_default())
}

pub(crate) fn measure(size: Size) -> Vec<Row> {
    let n = size.keys;
    progress(&format!("index: {n} entries"));
    let slab: Vec<Record> =
        (0..n).map(|i| Record { hash: *blake3::hash(&(i as u64).to_le_bytes()).as_bytes(), _rest: [0; 184] }).collect();
    let mut ours = SlotIndex::default();
    let mut theirs: HashTable<u32> = HashTable::new();
    for (slot, r) in slab.iter().enumerate() {
        ours.insert(prefix(&r.hash), slot as u32);
        let h = prefix(&r.hash);
        theirs.insert_unique(h, slot as u32, |s| prefix(&slab[*s as usize].hash));
    }
    let order: Vec<[u8; 32]> = (0..n).map(|i| slab[(i * 7919) % n].hash).collect();
    let (mut a, mut b) = (vec![], vec![]);
    for run in 0..size.runs {
        progress(&format!("index: run {} of {}", run + 1, size.runs));
        let t = Instant::now();
        for hash in &order {
            black_box(ours.get(prefix(hash), |s| slab[s as usize].hash == *hash));
        }
        a.push(t.elapsed().as_nanos() as f64 / n as f64);
        let t = Instant::now();
        for hash in &order {
            black_box(theirs.find(prefix(hash), |s| slab[*s as usize].hash == *hash));
        }
        b.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    let (a, b) = (median(a), median(b));
    vec![Row::new(
        format!("8. index lookup, {n} entries: SlotIndex (hand-written)"),
        format!("{a:.0} ns"),
        "≤ hashbrown, or use hashbrown",
        format!("hashbrown::HashTable {b:.0} ns; ×{:.2}", a / b),
        Some(a <= b),
    )]
}
