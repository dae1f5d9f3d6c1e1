//! The Merkle tree over the log (RFC 6962, RFC 9162 §2.1): a leaf per
//! stored event, in log order (leaf index = seq − 1), hashed with SHA-256
//! over the event's stored bytes. Where the blake3 chain lets whoever holds
//! every event check the history, the tree lets a tenant check its own
//! events against a signed root (an inclusion proof), and anyone check that
//! a later root extends an earlier one (a consistency proof), without
//! seeing anyone else's events.
//!
//! `Tree` keeps the hashes of every whole, aligned subtree of 2^`LOW`
//! leaves or more (about 4 bytes per event); a node below that is rebuilt
//! from at most 2^`LOW` leaves the caller reads back from the log, so the
//! domain stays free of I/O and a proof costs a few reads, never a pass
//! over the log. `Frontier` is the compact range a replica keeps: the
//! roots of the perfect subtrees left of the end, enough for the root.
//! The two `verify_*` functions are RFC 9162's §2.1.3.2 and §2.1.4.2,
//! used by the witness, `keyreg audit verify` and the replicas.

use sha2::{Digest, Sha256};

use crate::domain::snapshot::{Decoder, Encoder, SnapshotError, damaged};

pub type Hash = [u8; 32];

/// SHA-256(0x00 ‖ bytes).
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    Sha256::new().chain_update([0]).chain_update(bytes).finalize().into()
}

/// SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new().chain_update([1]).chain_update(left).chain_update(right).finalize().into()
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Subtrees smaller than 2^LOW leaves are not kept.
const LOW: u32 = 4;

/// The tree over the whole log, growing one leaf per event.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct Tree {
    size: u64,
    /// `levels[i][j]`: the subtree of 2^(LOW+i) leaves starting at leaf
    /// j·2^(LOW+i), for every such subtree that is complete.
    levels: Vec<Vec<Hash>>,
    /// The leaves after the last complete subtree of 2^LOW.
    pending: Vec<Hash>,
}

/// Why a proof cannot be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError<E> {
    #[error("the tree has {size} leaves; {asked} is out of range")]
    OutOfRange { asked: u64, size: u64 },
    #[error("{0}")]
    Leaf(E),
}

impl Tree {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds the next event's leaf (`leaf_hash` of its stored bytes).
    pub fn push(&mut self, leaf: Hash) {
        self.pending.push(leaf);
        self.size += 1;
        if self.pending.len() == 1 << LOW {
            let group = perfect_root(&self.pending);
            self.pending.clear();
            self.add(0, group);
        }
    }

    fn add(&mut self, level: usize, node: Hash) {
        if self.levels.len() == level {
            self.levels.push(Vec::new());
        }
        let nodes = &mut self.levels[level];
        nodes.push(node);
        if nodes.len().is_multiple_of(2) {
            let parent = node_hash(&nodes[nodes.len() - 2], &nodes[nodes.len() - 1]);
            self.add(level + 1, parent);
        }
    }

    /// The root of the tree of the first `size` leaves. `leaf(i)` hands
    /// back leaf i's hash (the log's event seq i + 1, through `leaf_hash`).
    pub fn root<E>(&self, size: u64, leaf: impl FnMut(u64) -> Result<Hash, E>) -> Result<Hash, ProofError<E>> {
        self.within(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        Subtrees { tree: self, leaf }.range(0, size)
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves
    /// (RFC 9162 §2.1.3.1).
    pub fn inclusion<E>(
        &self,
        index: u64,
        size: u64,
        leaf: impl FnMut(u64) -> Result<Hash, E>,
    ) -> Result<Vec<Hash>, ProofError<E>> {
        self.within(size)?;
        if index >= size {
            return Err(ProofError::OutOfRange { asked: index, size });
        }
        let mut proof = Vec::new();
        Subtrees { tree: self, leaf }.path(index, 0, size, &mut proof)?;
        Ok(proof)
    }

    /// The consistency proof from the tree of `from` leaves to that of
    /// `to` (RFC 9162 §2.1.4.1); empty when `from` is 0 or `to`.
    pub fn consistency<E>(
        &self,
        from: u64,
        to: u64,
        leaf: impl FnMut(u64) -> Result<Hash, E>,
    ) -> Result<Vec<Hash>, ProofError<E>> {
        self.within(to)?;
        if from > to {
            return Err(ProofError::OutOfRange { asked: from, size: to });
        }
        let mut proof = Vec::new();
        if from > 0 && from < to {
            Subtrees { tree: self, leaf }.subproof(from, 0, to, true, &mut proof)?;
        }
        Ok(proof)
    }

    /// The compact range at the tree's size: what a replica starting from
    /// a snapshot needs to go on computing roots.
    pub fn frontier(&self) -> Frontier {
        let mut peaks = Vec::new();
        let mut start = 0;
        for level in (0..64u32).rev().filter(|l| self.size >> l & 1 == 1) {
            let root = match level >= LOW {
                true => self.levels[(level - LOW) as usize][(start >> level) as usize],
                // Whole subtrees this small lie among the pending leaves.
                false => {
                    let from = (start - (self.size - self.pending.len() as u64)) as usize;
                    perfect_root(&self.pending[from..from + (1 << level)])
                }
            };
            peaks.push((level, root));
            start += 1 << level;
        }
        Frontier { size: self.size, peaks }
    }

    fn within<E>(&self, size: u64) -> Result<(), ProofError<E>> {
        match size <= self.size {
            true => Ok(()),
            false => Err(ProofError::OutOfRange { asked: size, size: self.size }),
        }
    }

    /// The snapshot form: the size, then each level's hashes, then the
    /// pending leaves.
    pub fn encode(&self, w: &mut Encoder) {
        w.u64(self.size);
        w.len(self.levels.len());
        for level in self.levels.iter().chain([&self.pending]) {
            w.len(level.len());
            level.iter().for_each(|h| w.raw(h));
        }
    }

    pub fn decode(r: &mut Decoder) -> Result<Tree, SnapshotError> {
        let size = r.u64()?;
        let count = r.len(8)?;
        let mut read = || -> Result<Vec<Hash>, SnapshotError> { (0..r.len(32)?).map(|_| r.array()).collect() };
        let levels = (0..count).map(|_| read()).collect::<Result<Vec<_>, _>>()?;
        let tree = Tree { size, levels, pending: read()? };
        let whole = |level: usize| (size >> (LOW as usize + level)) as usize;
        let shaped = tree.pending.len() as u64 == size % (1 << LOW)
            && tree.levels.iter().enumerate().all(|(i, nodes)| nodes.len() == whole(i))
            && whole(tree.levels.len()) == 0;
        match shaped {
            true => Ok(tree),
            false => Err(damaged("a Merkle tree of the wrong shape")),
        }
    }
}

/// A tree and a way to read its leaves: the hashes of its subtrees.
struct Subtrees<'a, F> {
    tree: &'a Tree,
    leaf: F,
}

impl<E, F: FnMut(u64) -> Result<Hash, E>> Subtrees<'_, F> {
    /// The root of the whole subtree of 2^level leaves starting at `start`.
    fn perfect(&mut self, level: u32, start: u64) -> Result<Hash, ProofError<E>> {
        if level >= LOW {
            return Ok(self.tree.levels[(level - LOW) as usize][(start >> level) as usize]);
        }
        let kept_from = self.tree.size - self.tree.pending.len() as u64;
        let leaves = (start..start + (1 << level))
            .map(|i| match i >= kept_from {
                true => Ok(self.tree.pending[(i - kept_from) as usize]),
                false => (self.leaf)(i).map_err(ProofError::Leaf),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(perfect_root(&leaves))
    }

    /// MTH of the leaves [start, end): whole subtrees are looked up, the
    /// rest split as RFC 6962 splits (the largest power of two first).
    fn range(&mut self, start: u64, end: u64) -> Result<Hash, ProofError<E>> {
        let n = end - start;
        if n.is_power_of_two() {
            return self.perfect(n.trailing_zeros(), start);
        }
        let k = split(n);
        let left = self.perfect(k.trailing_zeros(), start)?;
        Ok(node_hash(&left, &self.range(start + k, end)?))
    }

    /// PATH(m, D[start:end]), m counted from `start`.
    fn path(&mut self, m: u64, start: u64, end: u64, proof: &mut Vec<Hash>) -> Result<(), ProofError<E>> {
        let n = end - start;
        if n == 1 {
            return Ok(());
        }
        let k = split(n);
        if m < k {
            self.path(m, start, start + k, proof)?;
            proof.push(self.range(start + k, end)?);
        } else {
            self.path(m - k, start + k, end, proof)?;
            proof.push(self.range(start, start + k)?);
        }
        Ok(())
    }

    /// SUBPROOF(m, D[start:end], b).
    fn subproof(
        &mut self,
        m: u64,
        start: u64,
        end: u64,
        whole: bool,
        proof: &mut Vec<Hash>,
    ) -> Result<(), ProofError<E>> {
        let n = end - start;
        if m == n {
            if !whole {
                proof.push(self.range(start, end)?);
            }
            return Ok(());
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, start + k, whole, proof)?;
            proof.push(self.range(start + k, end)?);
        } else {
            self.subproof(m - k, start + k, end, false, proof)?;
            proof.push(self.range(start, start + k)?);
        }
        Ok(())
    }
}

/// The largest power of two smaller than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The root of a whole subtree given all its leaves (a power of two).
fn perfect_root(leaves: &[Hash]) -> Hash {
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = level.chunks(2).map(|pair| node_hash(&pair[0], &pair[1])).collect();
    }
    level[0]
}

/// The compact range of a growing tree: the roots of its perfect subtrees,
/// largest first. Enough to know the root at the current size.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (level, root) of each perfect subtree, left to right.
    peaks: Vec<(u32, Hash)>,
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        self.size += 1;
        let mut node = (0, leaf);
        while let Some(&(level, left)) = self.peaks.last().filter(|(level, _)| *level == node.0) {
            self.peaks.pop();
            node = (level + 1, node_hash(&left, &node.1));
        }
        self.peaks.push(node);
    }

    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(&(_, last)) = peaks.next() else { return empty_root() };
        peaks.fold(last, |right, (_, left)| node_hash(left, &right))
    }

    pub fn encode(&self, w: &mut Encoder) {
        w.u64(self.size);
        w.len(self.peaks.len());
        self.peaks.iter().for_each(|(_, h)| w.raw(h));
    }

    /// Reads `encode`'s form: one peak per bit of the size, largest first.
    pub fn decode(r: &mut Decoder) -> Result<Frontier, SnapshotError> {
        let size = r.u64()?;
        let levels: Vec<u32> = (0..64u32).rev().filter(|l| size >> l & 1 == 1).collect();
        if r.len(32)? != levels.len() {
            return Err(damaged("a Merkle frontier of the wrong shape"));
        }
        let peaks = levels.into_iter().map(|l| Ok((l, r.array()?))).collect::<Result<_, SnapshotError>>()?;
        Ok(Frontier { size, peaks })
    }
}

/// What a replica keeps of the tree: the frontier some way back and the
/// leaves since, so it can tell the root at any recent size (a checkpoint
/// arrives after the events it covers, by which time more may have come).
#[derive(Clone, Debug, Default)]
pub struct Trail {
    base: Frontier,
    recent: std::collections::VecDeque<Hash>,
}

/// How many leaves a `Trail` keeps behind its end (at least).
const TRAIL: usize = 4096;

impl Trail {
    pub fn new(base: Frontier) -> Trail {
        Trail { base, recent: Default::default() }
    }

    pub fn size(&self) -> u64 {
        self.base.size + self.recent.len() as u64
    }

    pub fn push(&mut self, leaf: Hash) {
        self.recent.push_back(leaf);
        if self.recent.len() >= 2 * TRAIL {
            self.recent.drain(..TRAIL).for_each(|l| self.base.push(l));
        }
    }

    /// The root at `size`, if it is within what the trail keeps.
    pub fn root(&self, size: u64) -> Option<Hash> {
        let extra = size.checked_sub(self.base.size).filter(|n| *n <= self.recent.len() as u64)?;
        let mut at = self.base.clone();
        self.recent.iter().take(extra as usize).for_each(|l| at.push(*l));
        Some(at.root())
    }
}

/// RFC 9162 §2.1.3.2: does `proof` show leaf `index`, of hash `leaf`, in
/// the tree of `size` leaves whose root is `root`?
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s, mut r) = (index, size - 1, *leaf);
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: does `proof` show that the tree of `to` leaves with
/// root `new` extends the tree of `from` leaves with root `old`? From an
/// empty tree anything follows (with an empty proof, as C2SP's witness
/// protocol sends it).
pub fn verify_consistency(from: u64, to: u64, old: &Hash, new: &Hash, proof: &[Hash]) -> bool {
    if from > to {
        return false;
    }
    if from == 0 || from == to {
        return proof.is_empty() && (from == 0 || old == new);
    }
    let mut path = proof.to_vec();
    if from.is_power_of_two() {
        path.insert(0, *old);
    }
    let Some((first, rest)) = path.split_first() else { return false };
    let (mut f, mut s) = (from - 1, to - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && fr == *old && sr == *new
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u64) -> Vec<u8> {
        format!("event {i}").into_bytes()
    }

    fn tree(n: u64) -> Tree {
        let mut t = Tree::default();
        (0..n).for_each(|i| t.push(leaf_hash(&event(i))));
        t
    }

    fn leaf(i: u64) -> Result<Hash, String> {
        Ok(leaf_hash(&event(i)))
    }

    /// MTH straight from RFC 6962's definition, over every leaf.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn roots_at_every_size_match_the_definition_and_the_frontier() {
        let t = tree(70);
        let mut frontier = Frontier::default();
        let leaves: Vec<Hash> = (0..70).map(|i| leaf(i).unwrap()).collect();
        for n in 0..=70u64 {
            assert_eq!(t.root(n, leaf).unwrap(), mth(&leaves[..n as usize]), "size {n}");
            if n > 0 {
                frontier.push(leaves[n as usize - 1]);
            }
            assert_eq!(frontier.root(), mth(&leaves[..n as usize]), "frontier at {n}");
        }
    }

    #[test]
    fn every_inclusion_and_consistency_proof_verifies_and_a_wrong_one_does_not() {
        let t = tree(37);
        for size in 1..=37u64 {
            let root = t.root(size, leaf).unwrap();
            for i in 0..size {
                let proof = t.inclusion(i, size, leaf).unwrap();
                assert!(verify_inclusion(i, size, &leaf(i).unwrap(), &proof, &root), "{i} in {size}");
                assert!(!verify_inclusion(i, size, &leaf_hash(b"forged"), &proof, &root));
            }
            for from in 0..=size {
                let proof = t.consistency(from, size, leaf).unwrap();
                let old = t.root(from, leaf).unwrap();
                assert!(verify_consistency(from, size, &old, &root, &proof), "{from} to {size}");
                if from > 0 && from < size {
                    assert!(!verify_consistency(from, size, &leaf_hash(b"other"), &root, &proof));
                }
            }
        }
    }

    #[test]
    fn a_trees_frontier_and_a_trail_know_the_roots() {
        for n in [0, 1, 15, 16, 17, 33, 70] {
            let t = tree(n);
            let frontier = t.frontier();
            assert_eq!(frontier.root(), t.root(n, leaf).unwrap(), "size {n}");
            let mut w = Encoder::default();
            frontier.encode(&mut w);
            assert_eq!(Frontier::decode(&mut Decoder::new(&w.bytes)).unwrap(), frontier);
        }
        let full = tree(3 * TRAIL as u64);
        let mut trail = Trail::new(tree(10).frontier());
        (10..3 * TRAIL as u64).for_each(|i| trail.push(leaf(i).unwrap()));
        let newest = 3 * TRAIL as u64;
        assert_eq!(trail.root(newest), Some(full.root(newest, leaf).unwrap()));
        assert_eq!(trail.root(newest - 100), Some(full.root(newest - 100, leaf).unwrap()));
        assert_eq!(trail.root(newest + 1), None);
        assert_eq!(trail.root(11), None, "far behind the trail's end");
    }

    #[test]
    fn a_tree_survives_its_snapshot_form_and_a_misshapen_one_is_refused() {
        let t = tree(53);
        let mut w = Encoder::default();
        t.encode(&mut w);
        assert_eq!(Tree::decode(&mut Decoder::new(&w.bytes)).unwrap(), t);
        let mut bad = w.bytes.clone();
        bad[0] ^= 1;
        assert!(Tree::decode(&mut Decoder::new(&bad)).is_err());
    }

    #[test]
    fn a_proof_beyond_the_tree_is_refused() {
        let t = tree(5);
        assert_eq!(t.inclusion(5, 5, leaf), Err(ProofError::OutOfRange { asked: 5, size: 5 }));
        assert_eq!(t.consistency(2, 6, leaf), Err(ProofError::OutOfRange { asked: 6, size: 5 }));
    }
}
