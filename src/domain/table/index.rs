//! `SlotIndex`: the key table's lookups (secret hash to key, key id to key),
//! as one flat array of 8-byte entries, each a slot number in the table's
//! `Vec<Key>` and 32 bits of the looked-up value's hash.
//!
//! Why not a `HashMap<TokenHash, u32>`: a verify at a million keys is bound
//! by cache misses, and a std map costs two (its control bytes and its bucket
//! live apart) and 40 bytes per entry. Here a probe reads one cache line of
//! entries (linear probing, at most three quarters full), the 32-bit tag
//! rejects nearly every entry that is not the one sought, and the caller
//! confirms a candidate by comparing the full value in the slot it names.
//! The index never stores the values themselves: the table already holds
//! them, which is what keeps an entry at 8 bytes.

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    /// The low 32 bits of the value's hash; an entry's home position is
    /// `tag & mask`, so growing and deleting need nothing but the entry.
    tag: u32,
    /// The slot plus one; zero marks an empty entry.
    slot: u32,
}

#[derive(Clone, Default)]
pub struct SlotIndex {
    entries: Vec<Entry>,
    len: usize,
}

impl SlotIndex {
    /// The first slot whose entry has this hash and that `is` confirms.
    #[inline]
    pub fn get(&self, hash: u64, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.entries.is_empty() {
            return None;
        }
        let mask = self.entries.len() - 1;
        let tag = hash as u32;
        let mut i = tag as usize & mask;
        loop {
            let e = self.entries[i];
            if e.slot == 0 {
                return None;
            }
            if e.tag == tag && is(e.slot - 1) {
                return Some(e.slot - 1);
            }
            i = (i + 1) & mask;
        }
    }

    /// Asks the CPU to start loading the entries `get(hash, ..)` will read
    /// first. Changes nothing and answers nothing.
    #[inline]
    #[allow(unsafe_code)]
    pub fn prefetch(&self, hash: u64) {
        #[cfg(target_arch = "x86_64")]
        if !self.entries.is_empty() {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let at = &self.entries[hash as u32 as usize & (self.entries.len() - 1)];
            // SAFETY: a prefetch is a hint that never faults and reads nothing
            // into the program; it is unsafe only for its `target_feature`
            // (SSE), which every x86_64 CPU has.
            unsafe { _mm_prefetch::<_MM_HINT_T0>((at as *const Entry).cast()) };
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn insert(&mut self, hash: u64, slot: u32) {
        if (self.len + 1) * 4 > self.entries.len() * 3 {
            self.grow();
        }
        self.place(Entry { tag: hash as u32, slot: slot + 1 });
        self.len += 1;
    }

    /// Removes the entry for `slot` under `hash`, if there is one.
    pub fn remove(&mut self, hash: u64, slot: u32) {
        if self.entries.is_empty() {
            return;
        }
        let mask = self.entries.len() - 1;
        let wanted = Entry { tag: hash as u32, slot: slot + 1 };
        let mut hole = wanted.tag as usize & mask;
        loop {
            let e = self.entries[hole];
            if e.slot == 0 {
                return;
            }
            if e == wanted {
                break;
            }
            hole = (hole + 1) & mask;
        }
        // Backward shift: move up every later entry of the run that may sit
        // at the hole (its home is not strictly between the hole and it), so
        // no probe ever stops early at a gap.
        let mut next = hole;
        loop {
            next = (next + 1) & mask;
            let e = self.entries[next];
            if e.slot == 0 {
                break;
            }
            let home = e.tag as usize & mask;
            let stays = if hole <= next { hole < home && home <= next } else { hole < home || home <= next };
            if !stays {
                self.entries[hole] = e;
                hole = next;
            }
        }
        self.entries[hole] = Entry::default();
        self.len -= 1;
    }

    fn place(&mut self, entry: Entry) {
        let mask = self.entries.len() - 1;
        let mut i = entry.tag as usize & mask;
        while self.entries[i].slot != 0 {
            i = (i + 1) & mask;
        }
        self.entries[i] = entry;
    }

    /// Makes room for `more` entries at once: a table read from a snapshot
    /// knows its size, and growing to it step by step would rehash every
    /// entry about twice.
    pub fn reserve(&mut self, more: usize) {
        let mut size = self.entries.len().max(16);
        while (self.len + more) * 4 > size * 3 {
            size *= 2;
        }
        if size > self.entries.len() {
            self.resize(size);
        }
    }

    fn grow(&mut self) {
        self.resize((self.entries.len() * 2).max(16));
    }

    fn resize(&mut self, size: usize) {
        let old = std::mem::replace(&mut self.entries, vec![Entry::default(); size]);
        for e in old.into_iter().filter(|e| e.slot != 0) {
            self.place(e);
        }
    }

    fn sorted(&self) -> Vec<Entry> {
        let mut v: Vec<Entry> = self.entries.iter().copied().filter(|e| e.slot != 0).collect();
        v.sort_unstable();
        v
    }
}

/// Two indexes are equal when they hold the same entries, wherever those
/// sit in the array (which depends on the order of inserts and removals).
impl PartialEq for SlotIndex {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.sorted() == other.sorted()
    }
}

impl std::fmt::Debug for SlotIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SlotIndex({} entries)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The whole index against the model, in one pass over the array: the
    /// entries are exactly the model's, and every entry sits in the run of
    /// occupied positions that starts at or before its home, so no probe
    /// for it can stop at a gap first. This is what makes every `get`
    /// right, checked without a probe per entry.
    fn check(index: &SlotIndex, model: &HashMap<u32, u64>, step: u32) {
        let mut expected: Vec<Entry> =
            model.iter().map(|(&slot, &h)| Entry { tag: h as u32, slot: slot + 1 }).collect();
        expected.sort_unstable();
        assert_eq!(index.sorted(), expected, "step {step}: the entries differ from the model");
        assert_eq!(index.len, model.len());
        let size = index.entries.len();
        let Some(empty) = index.entries.iter().position(|e| e.slot == 0) else {
            assert_eq!(size, 0, "step {step}: a full array can never end a probe");
            return;
        };
        // Walk once around from an empty position, tracking where the
        // current run of occupied positions began.
        let mut run_start = None;
        for k in 1..=size {
            let i = (empty + k) % size;
            let e = index.entries[i];
            if e.slot == 0 {
                run_start = None;
                continue;
            }
            let start = *run_start.get_or_insert(i);
            let home = e.tag as usize & (size - 1);
            // `home` must lie in the run between `start` and `i`, cyclically.
            let in_run = if start <= i { (start..=i).contains(&home) } else { home >= start || home <= i };
            assert!(in_run, "step {step}: the entry at {i} (home {home}) is cut off by a gap before {start}");
        }
    }

    /// Random inserts and removals, with hashes chosen to collide in the low
    /// bits (long runs, wrap-around at the end of the array): `get` checked
    /// on the entry each step touches, and the whole index against a
    /// `HashMap` every 50 steps.
    #[test]
    fn agrees_with_a_map_through_inserts_removals_and_growth() {
        let mut index = SlotIndex::default();
        let mut model: HashMap<u32, u64> = HashMap::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for step in 0..20_000u32 {
            let remove = !model.is_empty() && rand() % 3 == 0;
            if remove {
                let slot = *model.keys().nth((rand() % model.len() as u64) as usize).unwrap();
                let hash = model.remove(&slot).unwrap();
                index.remove(hash, slot);
                assert_eq!(index.get(hash, |s| s == slot), None, "step {step}: a removed entry is found");
            } else {
                // Few distinct low bits: many entries share a home position.
                let hash = (rand() & !0xffff_ffff) | (rand() % 64) | if step % 2 == 0 { 0xffff_ffc0 } else { 0 };
                index.insert(hash, step);
                model.insert(step, hash);
                assert_eq!(index.get(hash, |s| s == step), Some(step), "step {step}");
            }
            if step % 50 == 0 {
                check(&index, &model, step);
            }
        }
        check(&index, &model, 20_000);
        for (&slot, &hash) in &model {
            assert_eq!(index.get(hash, |s| s == slot), Some(slot));
            assert_eq!(index.get(hash, |_| false), None);
        }
    }
}
