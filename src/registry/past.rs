//! Views of the past: a key, a page of keys, an org and its roles as they
//! stood at a time, each folded from only the events it shows (the org's
//! key-less events and those keys' own, read from the log by sequence
//! through the audit index), so a view costs what its history costs; and
//! `table_as_of`, the whole log folded, which they must equal.

use super::Registry;
use super::history::fold_log;
use crate::domain::history::History;
use crate::domain::id::{KeyId, OrgId, Seq};
use crate::domain::table::{Key, Table};
use crate::domain::time::Timestamp;
use crate::store::log::LogError;

/// Past keys rebuilt at a time by `page_as_of`.
const PAGE_CHUNK: usize = 256;

impl Registry {
    /// The key `id` of `org` as it stood at `at`, with its org and roles:
    /// only that key's events and its org's own are read from the log, so
    /// it costs what that history costs, not the whole log.
    pub fn key_as_of(&self, org: &OrgId, id: &KeyId, at: Timestamp) -> Result<Table, LogError> {
        self.keys_as_of(org, std::slice::from_ref(id), self.read().audit.last_seq_at(at))
    }

    /// `org`, its roles and every key it had, as they stood at `at`: the
    /// cost of that org's history; other orgs' events are not read.
    pub fn org_as_of(&self, org: &OrgId, at: Timestamp) -> Result<Table, LogError> {
        let (up_to, keys) = {
            let p = self.read();
            let up_to = p.audit.last_seq_at(at);
            (up_to, p.audit.keys_of(org, up_to, None).copied().collect::<Vec<KeyId>>())
        };
        self.keys_as_of(org, &keys, up_to)
    }

    /// `org` and its roles and catalogue as they stood at `at`, without its
    /// keys: the org's own events only.
    pub fn roles_as_of(&self, org: &OrgId, at: Timestamp) -> Result<Table, LogError> {
        self.keys_as_of(org, &[], self.read().audit.last_seq_at(at))
    }

    /// A page of `org`'s keys as they stood at `at`: a table holding the
    /// org and the first `limit + 1` keys below `before` (highest id first)
    /// that `wanted` accepts in that past, and maybe others it does not. A
    /// listing run over it answers what it would over the whole past table.
    /// Keys are rebuilt from their own histories, first `limit + 1` of them
    /// (when the filter keeps them all, that table is the answer), then
    /// `PAGE_CHUNK` at a time, so a request holds at most a chunk of past
    /// keys however large the org, and a page costs its keys' histories
    /// (more only when the filter passes over many keys).
    pub fn page_as_of(
        &self,
        org: &OrgId,
        at: Timestamp,
        before: Option<KeyId>,
        limit: usize,
        wanted: impl Fn(&Key) -> bool,
    ) -> Result<Table, LogError> {
        let up_to = self.read().audit.last_seq_at(at);
        let mut found: Vec<KeyId> = vec![];
        let mut after_chunk = before;
        let mut chunk_size = limit + 1;
        while found.len() <= limit {
            let chunk: Vec<KeyId> =
                self.read().audit.keys_of(org, up_to, after_chunk.as_ref()).take(chunk_size).copied().collect();
            let Some(last) = chunk.last() else { break };
            after_chunk = Some(*last);
            let past = self.keys_as_of(org, &chunk, up_to)?;
            let room = limit + 1 - found.len();
            let first_chunk = found.is_empty();
            found.extend(chunk.iter().filter(|id| past.key(id).is_some_and(&wanted)).take(room));
            if first_chunk && (found.len() > limit || chunk.len() < chunk_size) {
                return Ok(past);
            }
            chunk_size = PAGE_CHUNK;
        }
        self.keys_as_of(org, &found, up_to)
    }

    /// Folds `org`'s own events and `keys`' events up to `up_to`, read
    /// from the log. The log's chain was checked when the registry opened;
    /// these records are read from it as they are.
    fn keys_as_of(&self, org: &OrgId, keys: &[KeyId], up_to: Seq) -> Result<Table, LogError> {
        let seqs = self.read().audit.keys_history(org, keys, up_to);
        let mut table = Table::default();
        for seq in seqs {
            let record = self.shared.log.get(seq)?.ok_or(LogError::Damaged(seq))?;
            let decoded = crate::domain::event::decode(record.bytes()).map_err(|_| LogError::Damaged(seq))?;
            table.apply(seq, &decoded.event);
        }
        Ok(table)
    }

    /// The whole key table as it stood at `at`: the log folded up to the
    /// last event at or before `at`. What the views of the past above must
    /// equal (the property tests compare them) and the benchmarks' baseline;
    /// the API never folds the whole log for a request.
    pub fn table_as_of(&self, at: Timestamp) -> Result<Table, LogError> {
        let last = self.read().audit.last_seq_at(at);
        let mut history = History::new(Table::default());
        fold_log(&self.shared.log, &mut history, Some(last), |_| {})?;
        Ok(history.into_state())
    }
}
