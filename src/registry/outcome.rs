//! What a command did, as its callers see it: its events, and the state
//! after it of what it touched; and what a command would do (`preview`,
//! for dry runs).

use crate::domain::command::{Acting, Command, Context, Decision, Refusal};
use crate::domain::decide::decide;
use crate::domain::event::Event;
use crate::domain::id::{IdGenerator, KeyId, OrgId, Seq};
use crate::domain::table::{Key, Org, Role, Table};
use crate::domain::time::Timestamp;

/// What a command did: its events with their sequence numbers, the state
/// after it of every key it touched and of its organization, and the
/// warnings its decision carried.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub events: Vec<(Seq, Event)>,
    pub keys: Vec<Key>,
    pub org: Option<Org>,
    /// The role a role command is about, after it (none once deleted).
    pub role: Option<Role>,
    /// The log head after the command (for a command that recorded nothing,
    /// the head when it was decided).
    pub head: Seq,
    pub warnings: Vec<String>,
}

impl Outcome {
    /// The state after `events` of the keys they touched (and of the key
    /// the command is about, even when it changed nothing) and of `org`.
    pub(super) fn of(
        table: &Table,
        command: &Command,
        decision: Decision,
        events: Vec<(Seq, Event)>,
        before: Seq,
    ) -> Outcome {
        let mut keys: Vec<Key> = vec![];
        for id in touched(command, events.iter().map(|(_, e)| e)) {
            if !keys.iter().any(|k| k.id == id)
                && let Some(k) = table.key(&id)
            {
                keys.push(k.clone());
            }
        }
        let Decision { org, warnings, .. } = decision;
        let head = events.last().map(|(s, _)| *s).unwrap_or(before);
        let role = command.role().and_then(|name| table.role(&org, name).cloned());
        Outcome { events, keys, org: table.org(&org).cloned(), role, head, warnings }
    }
}

/// The key a command is about, then every key its events touch (repeats
/// included).
fn touched<'a>(command: &Command, events: impl Iterator<Item = &'a Event>) -> impl Iterator<Item = KeyId> {
    command.key().into_iter().chain(events.filter_map(|e| e.key_id().copied()))
}

impl super::Registry {
    /// What `command` would do, decided against the live table and applied
    /// to a scratch copy: nothing is recorded. For `?dry_run=true`.
    pub fn preview(&self, who: impl Into<Acting>, org: OrgId, command: &Command) -> Result<Outcome, Refusal> {
        let p = self.read();
        let now = self.now().max(p.table.last_time().unwrap_or(Timestamp::from_micros(i64::MIN)));
        let ctx = Context { who: who.into(), org, now };
        let decision = decide(&p.table, &ctx, command)?;
        let events = decision.events(&ctx, &mut IdGenerator::default());
        let touched: Vec<KeyId> = touched(command, events.iter()).collect();
        let mut scratch = p.table.scratch(&decision.org, &touched);
        let before = p.table.applied();
        let events: Vec<(Seq, Event)> = (before.0 + 1..).map(Seq).zip(events).collect();
        for (seq, event) in &events {
            scratch.apply(*seq, event);
        }
        Ok(Outcome::of(&scratch, command, decision, events, before))
    }
}
