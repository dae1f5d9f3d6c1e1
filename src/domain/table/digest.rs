//! The state digest: a blake3 hash of the table's canonical form, equal on
//! every node that applied the same log.

use super::key::{Legacy, Usage};
use super::{Key, Org, Table};
use crate::domain::id::OrgId;

impl Table {
    /// A blake3 digest of the table's canonical form: every org, role,
    /// catalogue and key in id order, every field that events set (stored
    /// status, hashes, usage). Two nodes that applied the same log give the
    /// same digest, whatever their clocks say.
    pub fn digest(&self) -> blake3::Hash {
        let mut orgs: Vec<&Org> = self.orgs.values().collect();
        orgs.sort_by(|a, b| a.id.cmp(&b.id));
        self.digest_of(orgs, |_| true, self.all_keys())
    }

    /// The same digest over one organization, its roles and its keys only:
    /// what a tenant may compare, without learning anything of other tenants.
    pub fn org_digest(&self, org: &OrgId) -> blake3::Hash {
        let mut keys: Vec<&Key> = self.keys_of(org, None).collect();
        keys.reverse();
        self.digest_of(self.org(org), |o| o == org, keys)
    }

    fn digest_of<'a>(
        &'a self,
        orgs: impl IntoIterator<Item = &'a Org>,
        in_scope: impl Fn(&OrgId) -> bool,
        keys: Vec<&'a Key>,
    ) -> blake3::Hash {
        let mut h = Lines::default();
        for r in self.roles.all().into_iter().filter(|r| in_scope(&r.org)) {
            let mut line = h.line();
            line.field(&r.org).field(&r.name).field(&r.description).field(&r.scopes).field(&r.created_by);
            line.field(&r.created_at).field(&r.updated_at).field(&r.version).end();
        }
        for (org, catalog) in self.roles.catalogs().into_iter().filter(|(o, _)| in_scope(o)) {
            h.line().field(&org).sorted(&catalog).end();
        }
        for k in &keys {
            h.line().field(&k.id).field(&self.role_names(k)).end();
        }
        digest_rows(h, orgs, keys)
    }
}

/// The canonical form being hashed, a line at a time.
#[derive(Default)]
struct Lines {
    hasher: blake3::Hasher,
    /// The line being written: serde writes a value in many small pieces,
    /// and the hasher takes each line whole, much faster.
    buf: Vec<u8>,
}

impl Lines {
    fn line(&mut self) -> Line<'_> {
        self.buf.clear();
        self.buf.push(b'[');
        Line { lines: self, first: true }
    }
}

/// One line of the canonical form: a JSON array whose bytes are those of
/// `serde_json::json!([...]).to_string()`, the digest's original
/// definition, without building a `Value` per key.
struct Line<'l> {
    lines: &'l mut Lines,
    first: bool,
}

impl Line<'_> {
    /// A field whose serialization is the same as its `Value`'s: numbers,
    /// strings, options, sequences and tuples of them.
    fn field<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> &mut Self {
        if !std::mem::take(&mut self.first) {
            self.lines.buf.push(b',');
        }
        // Writing into a Vec cannot fail, and these values always serialize.
        let _ = serde_json::to_writer(&mut self.lines.buf, value);
        self
    }

    /// A field holding maps: through a `Value`, whose maps are sorted by key.
    fn sorted<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> &mut Self {
        self.field(&serde_json::to_value(value).unwrap_or_default())
    }

    fn end(&mut self) {
        self.lines.buf.extend_from_slice(b"]\n");
        self.lines.hasher.update(&self.lines.buf);
    }
}

fn digest_rows<'a>(mut h: Lines, orgs: impl IntoIterator<Item = &'a Org>, keys: Vec<&'a Key>) -> blake3::Hash {
    let unused = serde_json::to_value(Usage::default()).unwrap_or_default();
    for o in orgs {
        let mut line = h.line();
        line.field(&o.id).field(&o.name).field(&o.max_keys).field(&o.created_at).field(&o.updated_at);
        line.field(&o.version).field(&o.counted_keys).sorted(&o.usage).end();
    }
    for k in keys {
        let mut line = h.line();
        line.field(&k.id).field(&k.org).field(k.name()).field(k.description()).field(k.owner());
        line.field(&k.created_by).field(&k.created_at).field(&k.updated_at).field(&k.expires_at);
        line.field(&k.scopes).field(&k.allowed_cidrs).field(&k.status).field(k.display_prefix());
        line.field(&k.version).field(&k.hash).field(&k.grace());
        match k.usage() {
            u if *u == Usage::default() => line.field(&unused),
            u => line.sorted(u),
        };
        // Only legacy keys carry the flags, so digests of logs without
        // imports stay what they were.
        if k.legacy != Legacy::default() {
            line.field(&k.legacy.current).field(&k.legacy.grace);
        }
        // Likewise only keys with metadata carry it.
        if let Some(meta) = k.meta() {
            line.field(meta);
        }
        line.end();
    }
    h.hasher.finalize()
}
