//! The state digest: a blake3 hash of the table's canonical form, equal on
//! every node that applied the same log.

use super::key::Legacy;
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
        let mut h = blake3::Hasher::new();
        let mut line = |value: serde_json::Value| {
            h.update(value.to_string().as_bytes());
            h.update(b"\n");
        };
        for r in self.roles.all().into_iter().filter(|r| in_scope(&r.org)) {
            line(serde_json::json!([
                r.org,
                r.name,
                r.description,
                r.scopes,
                r.created_by,
                r.created_at,
                r.updated_at,
                r.version
            ]));
        }
        for (org, catalog) in self.roles.catalogs().into_iter().filter(|(o, _)| in_scope(o)) {
            line(serde_json::json!([org, catalog]));
        }
        for k in &keys {
            line(serde_json::json!([k.id, self.role_names(k)]));
        }
        digest_rows(h, orgs, keys)
    }
}

fn digest_rows<'a>(mut h: blake3::Hasher, orgs: impl IntoIterator<Item = &'a Org>, keys: Vec<&'a Key>) -> blake3::Hash {
    for o in orgs {
        let line = serde_json::json!([
            o.id,
            o.name,
            o.max_keys,
            o.created_at,
            o.updated_at,
            o.version,
            o.counted_keys,
            o.usage
        ]);
        h.update(line.to_string().as_bytes());
        h.update(b"\n");
    }
    for k in keys {
        let mut line = serde_json::json!([
            k.id,
            k.org,
            k.name(),
            k.description(),
            k.owner(),
            k.created_by,
            k.created_at,
            k.updated_at,
            k.expires_at,
            k.scopes,
            k.allowed_cidrs,
            k.status,
            k.display_prefix(),
            k.version,
            k.hash,
            k.grace(),
            k.usage()
        ]);
        // Only legacy keys carry the flags, so digests of logs without
        // imports stay what they were.
        if k.legacy != Legacy::default()
            && let Some(fields) = line.as_array_mut()
        {
            fields.extend([k.legacy.current.into(), k.legacy.grace.into()]);
        }
        h.update(line.to_string().as_bytes());
        h.update(b"\n");
    }
    h.finalize()
}
