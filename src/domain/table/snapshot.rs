//! The table in a snapshot: written field by field, and read back into a
//! table equal to the one written (indexes, interning and the expiry index
//! are rebuilt from the keys, as `apply` would have left them).
//!
//! Scope and address sets, actors and orgs are written once each and named
//! by number in every key, as the table shares them in memory: a million
//! keys with a few distinct scope sets cost a few bytes each for them.

use std::collections::HashMap;
use std::sync::Arc;

use super::key::{Legacy, Rare, Status, Text, Usage};
use super::role::{Role, Roles};
use super::{Key, Org, Table};
use crate::domain::cidr::Cidr;
use crate::domain::event::Catalog;
use crate::domain::id::{Actor, KeyId, OrgId, RoleName, Seq};
use crate::domain::scope::Scope;
use crate::domain::snapshot::{Decoder, Encoder, SnapshotError, damaged};
use crate::domain::token::{PepperFingerprint, TokenHash};
use crate::domain::verifier::Code;

/// Numbers for shared values, in the order first met.
struct Numbering<T> {
    numbers: HashMap<T, u32>,
    values: Vec<T>,
}

impl<T: Clone + Eq + std::hash::Hash> Numbering<T> {
    fn new() -> Self {
        Numbering { numbers: HashMap::new(), values: vec![] }
    }

    fn number(&mut self, value: &T) -> u32 {
        if let Some(&n) = self.numbers.get(value) {
            return n;
        }
        let n = self.values.len() as u32;
        self.numbers.insert(value.clone(), n);
        self.values.push(value.clone());
        n
    }
}

fn pick<T: Clone>(values: &[T], n: u32, what: &str) -> Result<T, SnapshotError> {
    values.get(n as usize).cloned().ok_or_else(|| damaged(format!("{what} number {n} is not in the snapshot")))
}

/// How a snapshot writes the outcome of reports from before outcomes were
/// recorded; others are written as their place in `Code::ALL`.
const NO_OUTCOME: u8 = u8::MAX;

fn write_usage(w: &mut Encoder, u: &Usage) {
    w.u64(u.total);
    w.opt_time(u.last_used_at);
    match &u.last_ip {
        Some(ip) => {
            w.u8(1);
            w.str(ip);
        }
        None => w.u8(0),
    }
    w.len(u.per_day.len());
    for ((day, outcome), count) in &u.per_day {
        w.i64(*day);
        w.u8(outcome.map_or(NO_OUTCOME, |c| c as u8));
        w.u64(*count);
    }
}

fn read_usage(r: &mut Decoder<'_>) -> Result<Usage, SnapshotError> {
    let total = r.u64()?;
    let last_used_at = r.opt_time()?;
    let last_ip = if r.bool()? { Some(r.str()?.to_owned()) } else { None };
    let mut per_day = std::collections::BTreeMap::new();
    for _ in 0..r.len(17)? {
        let day = r.i64()?;
        let outcome = match r.u8()? {
            NO_OUTCOME => None,
            n => Some(*Code::ALL.get(n as usize).ok_or_else(|| damaged(format!("no outcome numbered {n}")))?),
        };
        per_day.insert((day, outcome), r.u64()?);
    }
    Ok(Usage { total, last_used_at, last_ip, per_day })
}

fn write_hash(w: &mut Encoder, h: &TokenHash) {
    w.raw(h.as_bytes());
}

fn read_hash(r: &mut Decoder<'_>) -> Result<TokenHash, SnapshotError> {
    Ok(TokenHash::from_bytes(r.array()?))
}

/// A list of values written as JSON: scope and address sets and catalogues
/// are few, and JSON reads them back through the same parsers as the log.
fn write_json<T: serde::Serialize + ?Sized>(w: &mut Encoder, v: &T) {
    w.str(&serde_json::to_string(v).unwrap_or_default());
}

fn read_json<T: serde::de::DeserializeOwned>(r: &mut Decoder<'_>) -> Result<T, SnapshotError> {
    serde_json::from_str(r.str()?).map_err(damaged)
}

impl Table {
    /// Appends the table's snapshot form to `w`.
    pub fn encode(&self, w: &mut Encoder) {
        let mut scopes: Numbering<Arc<[Scope]>> = Numbering::new();
        let mut cidrs: Numbering<Arc<[Cidr]>> = Numbering::new();
        let mut actors: Numbering<Actor> = Numbering::new();
        let mut orgs: Numbering<OrgId> = Numbering::new();
        let mut body = Encoder::default();
        body.len(self.keys.len());
        for k in &self.keys {
            write_hash(&mut body, &k.hash);
            body.raw(k.id.as_str().as_bytes());
            body.u8(Status::ALL.iter().position(|s| *s == k.status).unwrap_or(0) as u8);
            body.u8(u8::from(k.legacy.current) | (u8::from(k.legacy.grace) << 1));
            body.opt_time(k.expires_at);
            body.u32(orgs.number(&k.org));
            body.u32(scopes.number(&k.scopes));
            body.u32(cidrs.number(&k.allowed_cidrs));
            body.len(k.roles.len());
            k.roles.iter().for_each(|r| body.u32(*r));
            match k.grace() {
                Some((hash, until)) => {
                    body.u8(1);
                    write_hash(&mut body, &hash);
                    body.time(until);
                }
                None => body.u8(0),
            }
            body.bytes(&k.text.0);
            body.u32(actors.number(&k.created_by));
            body.time(k.created_at);
            body.time(k.updated_at);
            body.u64(k.version.0);
            match k.usage.as_deref() {
                Some(u) => {
                    body.u8(1);
                    write_usage(&mut body, u);
                }
                None => body.u8(0),
            }
            match k.meta() {
                Some(m) => {
                    body.u8(1);
                    body.str(m.json());
                }
                None => body.u8(0),
            }
        }
        let roles = self.roles.parts();
        for role in roles.slab {
            actors.number(&role.created_by);
        }

        w.u64(self.applied.0);
        match self.pepper {
            Some(fp) => {
                w.u8(1);
                w.raw(fp.as_bytes());
            }
            None => w.u8(0),
        }
        w.opt_time(self.last_time);
        let mut all_orgs: Vec<&Org> = self.orgs.values().collect();
        all_orgs.sort_by(|a, b| a.id.cmp(&b.id));
        w.len(all_orgs.len());
        for o in all_orgs {
            w.str(o.id.as_str());
            w.str(&o.name);
            w.u32(o.max_keys);
            w.time(o.created_at);
            w.time(o.updated_at);
            w.u64(o.version.0);
            w.u32(o.counted_keys);
            write_usage(w, &o.usage);
        }
        let mut reports: Vec<(&String, &u64)> = self.reports.iter().collect();
        reports.sort();
        w.len(reports.len());
        for (origin, mark) in reports {
            w.str(origin);
            w.u64(*mark);
        }
        w.len(orgs.values.len());
        orgs.values.iter().for_each(|o| w.str(o.as_str()));
        w.len(scopes.values.len());
        scopes.values.iter().for_each(|s| write_json(w, &s[..]));
        w.len(cidrs.values.len());
        cidrs.values.iter().for_each(|c| write_json(w, &c[..]));
        w.len(actors.values.len());
        actors.values.iter().for_each(|a| w.str(&a.to_string()));
        w.len(roles.slab.len());
        for role in roles.slab {
            w.str(role.org.as_str());
            w.str(role.name.as_str());
            w.str(&role.description);
            write_json(w, &role.scopes[..]);
            w.u32(actors.numbers[&role.created_by]);
            w.time(role.created_at);
            w.time(role.updated_at);
            w.u64(role.version.0);
        }
        let mut live: Vec<u32> = roles.live.values().copied().collect();
        live.sort_unstable();
        w.len(live.len());
        live.iter().for_each(|s| w.u32(*s));
        let mut catalogs: Vec<(&OrgId, &Catalog)> = roles.catalogs.iter().collect();
        catalogs.sort_by(|a, b| a.0.cmp(b.0));
        w.len(catalogs.len());
        for (org, catalog) in catalogs {
            w.str(org.as_str());
            write_json(w, catalog);
        }
        w.raw(&body.bytes);
    }

    /// Reads a table back from its snapshot form.
    pub fn decode(r: &mut Decoder<'_>) -> Result<Table, SnapshotError> {
        let mut t = Table { applied: Seq(r.u64()?), ..Table::default() };
        t.pepper = if r.bool()? { Some(PepperFingerprint::from_bytes(r.array()?)) } else { None };
        t.last_time = r.opt_time()?;
        for _ in 0..r.len(40)? {
            let id = OrgId::parse(r.str()?).map_err(damaged)?;
            let org = Org {
                id: id.clone(),
                name: r.str()?.to_owned(),
                max_keys: r.u32()?,
                created_at: r.time()?,
                updated_at: r.time()?,
                version: Seq(r.u64()?),
                counted_keys: r.u32()?,
                usage: read_usage(r)?,
            };
            t.orgs.insert(id, org);
        }
        for _ in 0..r.len(12)? {
            let origin = r.str()?.to_owned();
            t.reports.insert(origin, r.u64()?);
        }
        let org_ids = (0..r.len(4)?).map(|_| OrgId::parse(r.str()?).map_err(damaged)).collect::<Result<Vec<_>, _>>()?;
        let scope_sets = (0..r.len(4)?)
            .map(|_| read_json::<Vec<Scope>>(r).map(|s| t.shared.scopes(&s)))
            .collect::<Result<Vec<_>, _>>()?;
        let cidr_sets = (0..r.len(4)?)
            .map(|_| read_json::<Vec<Cidr>>(r).map(|c| t.shared.cidrs(&c)))
            .collect::<Result<Vec<_>, _>>()?;
        let actors = (0..r.len(4)?)
            .map(|_| Actor::parse(r.str()?).map_err(damaged).map(|a| t.shared.actor(&a)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut slab = vec![];
        for _ in 0..r.len(40)? {
            slab.push(Role {
                org: OrgId::parse(r.str()?).map_err(damaged)?,
                name: RoleName::parse(r.str()?).map_err(damaged)?,
                description: r.str()?.to_owned(),
                scopes: read_json::<Vec<Scope>>(r)?.into(),
                created_by: (*pick(&actors, r.u32()?, "actor")?).clone(),
                created_at: r.time()?,
                updated_at: r.time()?,
                version: Seq(r.u64()?),
            });
        }
        let mut live = HashMap::new();
        for _ in 0..r.len(4)? {
            let slot = r.u32()?;
            let role = slab.get(slot as usize).ok_or_else(|| damaged(format!("role slot {slot}")))?;
            live.insert((role.org.clone(), role.name.clone()), slot);
        }
        let mut catalogs = HashMap::new();
        for _ in 0..r.len(8)? {
            let org = OrgId::parse(r.str()?).map_err(damaged)?;
            catalogs.insert(org, read_json::<Catalog>(r)?);
        }
        t.roles = Roles::from_parts(slab, live, catalogs);
        let n = r.len(100)?;
        t.keys.reserve_exact(n);
        t.by_id.reserve(n);
        t.by_hash.reserve(n);
        for _ in 0..n {
            let hash = read_hash(r)?;
            let id = std::str::from_utf8(r.raw(KeyId::LEN)?).map_err(damaged)?;
            let id = KeyId::parse(id).map_err(damaged)?;
            let status = *Status::ALL.get(r.u8()? as usize).ok_or_else(|| damaged("a key status"))?;
            let flags = r.u8()?;
            let (expires_at, org) = (r.opt_time()?, pick(&org_ids, r.u32()?, "org")?);
            let scopes = pick(&scope_sets, r.u32()?, "scope set")?;
            let allowed_cidrs = pick(&cidr_sets, r.u32()?, "address set")?;
            let roles = (0..r.len(4)?).map(|_| r.u32()).collect::<Result<Box<[u32]>, _>>()?;
            let grace = if r.bool()? { Some((read_hash(r)?, r.time()?)) } else { None };
            let text = Text(r.bytes()?.into());
            let created_by = pick(&actors, r.u32()?, "actor")?;
            let (created_at, updated_at, version) = (r.time()?, r.time()?, Seq(r.u64()?));
            let usage = if r.bool()? { Some(Box::new(read_usage(r)?)) } else { None };
            let meta = if r.bool()? { Some(serde_json::from_str(r.str()?).map_err(damaged)?) } else { None };
            let key = Key {
                hash,
                id,
                status,
                legacy: Legacy { current: flags & 1 != 0, grace: flags & 2 != 0 },
                expires_at,
                org,
                scopes,
                allowed_cidrs,
                roles,
                rare: Rare::with(None, |r| *r = Rare { grace, meta }),
                text,
                created_by,
                created_at,
                updated_at,
                version,
                usage,
            };
            if key.roles.iter().any(|s| *s as usize >= t.roles.len()) || t.slot_of(&key.id).is_some() {
                return Err(damaged(format!("the key {id}")));
            }
            t.restore_key(key);
        }
        Ok(t)
    }

    /// Adds a key read from a snapshot, with every index entry `apply`
    /// would have made for it.
    fn restore_key(&mut self, key: Key) {
        let slot = self.keys.len() as u32;
        if let Some(e) = super::apply::expiry_entry(&key) {
            self.expiring.insert(e);
        }
        if let Some((hash, _)) = key.grace() {
            self.hashes(key.legacy.grace).insert(hash.prefix(), slot);
        }
        self.insert_key(key);
    }
}
