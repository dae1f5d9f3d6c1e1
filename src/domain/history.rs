//! The one fold from history to state: records (a sequence number, the
//! stored bytes, the hash recorded with them) go through the chain checker,
//! are decoded once, and are applied to a state by that state's own total
//! `apply`.
//!
//! A decision's events (marked by `batch_rest`) are applied together, when
//! the last of them has checked out: no state built here, and so no reader
//! of one, ever shows part of a decision (some of an offboarding's keys
//! revoked and others not).
//!
//! Every reader of history uses it: the registry's start-up and its `as_of`
//! tables (records from the sled log), `keyreg replay` and `keyreg audit
//! verify` (from the log or the NATS stream), and each verifier replica
//! (from the stream, one event at a time). Where the records come from is
//! the caller's business; what counts as a valid history is decided here
//! alone.

use crate::domain::chain::{ChainBreak, ChainChecker, ChainHash, ChainReport};
use crate::domain::event::Event;
use crate::domain::id::Seq;
use crate::domain::time::Timestamp;

/// A state built by folding events. `apply` must be total: an event that
/// does not fit changes nothing rather than failing.
pub trait Apply {
    fn apply(&mut self, seq: Seq, event: &Event);

    /// Sees each record's stored bytes as soon as it checks out, before a
    /// decision's held events are applied: for a state built over the
    /// bytes themselves (the registry's Merkle tree).
    fn stored(&mut self, _seq: Seq, _bytes: &[u8]) {}
}

/// Checking the chain without building anything (`keyreg audit verify`).
impl Apply for () {
    fn apply(&mut self, _: Seq, _: &Event) {}
}

/// What became of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Checked and applied, with any held events of its decision before it.
    Applied,
    /// Checked, and held until the rest of its decision has arrived.
    Held,
    /// Checked, but stamped after the fold's time limit: not applied. Event
    /// times never go backwards, so nothing after it belongs either.
    Past,
}

/// A state and the chain it was folded from.
pub struct History<T> {
    checker: ChainChecker,
    state: T,
    until: Option<Timestamp>,
    /// Checked events of a decision whose last event has not come yet.
    held: Vec<(Seq, Event)>,
}

impl<T: Apply> History<T> {
    /// An empty state, expecting the log's first event.
    pub fn new(state: T) -> Self {
        History { checker: ChainChecker::default(), state, until: None, held: vec![] }
    }

    /// A state already folded up to `seq`, whose event hashed to `hash`
    /// (a snapshot's), expecting the event after it.
    pub fn resume(state: T, seq: Seq, hash: ChainHash) -> Self {
        History { checker: ChainChecker::after(seq, hash), state, until: None, held: vec![] }
    }

    /// Applies only events stamped at or before `t`: the state as of `t`.
    pub fn until(mut self, t: Timestamp) -> Self {
        self.until = Some(t);
        self
    }

    /// Checks one record and, if it holds and is in time, applies it, or
    /// holds it until the rest of its decision has come.
    pub fn push(&mut self, seq: Seq, bytes: &[u8], recorded: Option<ChainHash>) -> Result<Step, ChainBreak> {
        let decoded = self.checker.check(seq, bytes, recorded)?;
        if self.until.is_some_and(|t| decoded.event.time > t) {
            // A decision's events share one time, so none is held here in
            // a log keyreg wrote; whatever is, was in time.
            self.apply_held();
            return Ok(Step::Past);
        }
        self.state.stored(seq, bytes);
        if decoded.event.batch_rest > 0 {
            self.held.push((seq, decoded.event));
            return Ok(Step::Held);
        }
        self.apply_held();
        self.state.apply(seq, &decoded.event);
        Ok(Step::Applied)
    }

    fn apply_held(&mut self) {
        for (seq, event) in self.held.drain(..) {
            self.state.apply(seq, &event);
        }
    }

    /// Breaks the chain for a reason found while reading (a record that
    /// could not be read at all).
    pub fn fail(&mut self, seq: Seq, why: String) -> ChainBreak {
        self.checker.fail(seq, why)
    }

    pub fn state(&self) -> &T {
        &self.state
    }

    pub fn into_state(self) -> T {
        self.state
    }

    /// The last sequence that checked out, and its hash (events held for
    /// the rest of their decision included).
    pub fn head(&self) -> (Seq, ChainHash) {
        self.checker.head()
    }

    pub fn broken(&self) -> Option<&ChainBreak> {
        self.checker.broken()
    }

    pub fn report(&self) -> ChainReport {
        self.checker.report()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{Change, OrgSettings, encode};
    use crate::domain::id::{Actor, IdGenerator, OrgId};

    /// A record as a reader hands it over: (seq, bytes, recorded hash).
    type Record = (Seq, Vec<u8>, Option<ChainHash>);

    /// Records as the log stores them: (seq, bytes, hash).
    fn records(n: u64) -> Vec<(Seq, Vec<u8>, ChainHash)> {
        batched(n, |_| 0)
    }

    /// The same, each event saying how many after it share its decision.
    fn batched(n: u64, rest: impl Fn(u64) -> u32) -> Vec<(Seq, Vec<u8>, ChainHash)> {
        let mut ids = IdGenerator::default();
        let mut prev = ChainHash::ZERO;
        (1..=n)
            .map(|i| {
                let time = Timestamp::from_micros(i as i64 * 1_000_000);
                let event = Event {
                    id: ids.event_id(time),
                    time,
                    org: OrgId::parse("acme").unwrap(),
                    actor: Actor::system("test"),
                    via: None,
                    batch_rest: rest(i),
                    change: Change::OrgUpdated(OrgSettings {
                        name: format!("Acme {i}"),
                        max_keys: 5,
                        ..OrgSettings::default()
                    }),
                };
                let bytes = encode(Seq(i), &prev, &event);
                prev = prev.next(&bytes);
                (Seq(i), bytes, prev)
            })
            .collect()
    }

    #[derive(Default)]
    struct Seen(Vec<Seq>);

    impl Apply for Seen {
        fn apply(&mut self, seq: Seq, _: &Event) {
            self.0.push(seq);
        }
    }

    #[test]
    fn a_whole_chain_folds_and_a_time_limit_stops_it() {
        let all = records(5);
        let mut h = History::new(Seen::default()).until(Timestamp::from_micros(3_000_000));
        let steps: Vec<Step> = all.iter().map(|(s, b, r)| h.push(*s, b, Some(*r)).unwrap()).collect();
        assert_eq!(steps[..3], [Step::Applied; 3]);
        assert_eq!(steps[3..], [Step::Past; 2]);
        assert_eq!(h.state().0, [Seq(1), Seq(2), Seq(3)]);
        assert!(h.report().ok);
    }

    /// Events 2 to 4 are one decision: nothing of it shows until its last
    /// event has checked out, then all of it does.
    #[test]
    fn a_decisions_events_are_applied_together() {
        let all = batched(5, |i| if (2..=4).contains(&i) { (4 - i) as u32 } else { 0 });
        let mut h = History::new(Seen::default());
        let steps: Vec<Step> = all.iter().map(|(s, b, r)| h.push(*s, b, Some(*r)).unwrap()).collect();
        assert_eq!(steps, [Step::Applied, Step::Held, Step::Held, Step::Applied, Step::Applied]);
        assert_eq!(h.state().0, [Seq(1), Seq(2), Seq(3), Seq(4), Seq(5)]);
        let mut partway = History::new(Seen::default());
        for (s, b, r) in &all[..3] {
            partway.push(*s, b, Some(*r)).unwrap();
        }
        assert_eq!((partway.state().0.as_slice(), partway.head().0), ([Seq(1)].as_slice(), Seq(3)));
    }

    #[test]
    fn every_kind_of_break_is_named_by_its_sequence() {
        let all = records(4);
        let bad_hash = ChainHash([1; 32]);
        let mut changed = all[2].1.clone();
        let at = changed.len() - 5;
        changed[at] ^= 1;
        let cases: Vec<(&str, Vec<Record>)> = vec![
            ("gap", vec![rec(&all[0]), rec(&all[2])]),
            ("repeat", vec![rec(&all[0]), rec(&all[1]), rec(&all[1])]),
            ("changed byte", vec![rec(&all[0]), rec(&all[1]), (Seq(3), changed, Some(all[2].2))]),
            ("wrong recorded hash", vec![rec(&all[0]), rec(&all[1]), (Seq(3), all[2].1.clone(), Some(bad_hash))]),
            ("no recorded hash", vec![rec(&all[0]), rec(&all[1]), (Seq(3), all[2].1.clone(), None)]),
            ("not an event", vec![rec(&all[0]), rec(&all[1]), (Seq(3), b"{}".to_vec(), Some(all[2].2))]),
            ("stored at the wrong place", vec![rec(&all[0]), rec(&all[1]), (Seq(3), all[3].1.clone(), Some(all[3].2))]),
        ];
        for (what, input) in cases {
            let mut h = History::new(Seen::default());
            let broken = input.iter().find_map(|(s, b, r)| h.push(*s, b, *r).err());
            let broken = broken.unwrap_or_else(|| panic!("{what}: not caught"));
            let expected = if what == "gap" { Seq(2) } else { Seq(3) };
            assert_eq!(broken.seq, expected, "{what}: {}", broken.why);
            assert_eq!(h.report().first_bad_seq, Some(expected), "{what}");
            assert_eq!(h.head().0, Seq(expected.0 - 1), "{what}");
            assert!(h.push(all[3].0, &all[3].1, Some(all[3].2)).is_err(), "{what}: a broken chain stays broken");
        }
    }

    fn rec(r: &(Seq, Vec<u8>, ChainHash)) -> Record {
        (r.0, r.1.clone(), Some(r.2))
    }

    #[test]
    fn resuming_after_a_known_head_checks_the_link() {
        let all = records(3);
        let mut h = History::resume(Seen::default(), Seq(2), all[1].2);
        assert_eq!(h.push(Seq(3), &all[2].1, Some(all[2].2)), Ok(Step::Applied));
        let mut wrong = History::resume(Seen::default(), Seq(2), all[0].2);
        assert!(wrong.push(Seq(3), &all[2].1, Some(all[2].2)).is_err());
    }
}
