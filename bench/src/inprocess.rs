//! Measurements inside one process: verify against a table of many keys
//! (baseline: the keyed hash alone, the floor of any verify), the replica's
//! memory per key, and replay and start-up from a large log.

use std::hint::black_box;
use std::time::Instant;

use crate::{Row, Size, median, progress, resident_bytes};
use keyreg::domain::cidr::Cidr;
use keyreg::domain::command::Command;
use keyreg::domain::event::{Change, Event, KeyChange, KeyCreated, KeyUpdated, OrgSettings};
use keyreg::domain::history::History;
use keyreg::domain::id::{Actor, IdGenerator, KeyId, OrgId, Seq};
use keyreg::domain::scope::Scope;
use keyreg::domain::table::{Status, Table};
use keyreg::domain::time::{Clock, SystemClock, Timestamp};
use keyreg::domain::token::{Pepper, TokenFormat};
use keyreg::domain::verifier::{self, Question};
use keyreg::registry::{Projections, Registry, fold_log};
use keyreg::store::DataDir;
use keyreg::store::log::Log;

/// An event as an org's admin key makes it through the API, the usual author.
/// One admin key for every event, as in life: a table shares its keys'
/// creators, and an author per key (as this bench once had) would add an
/// actor's allocation to every key's memory.
pub(crate) fn event(ids: &mut IdGenerator, now: Timestamp, org: &OrgId, change: Change) -> Event {
    static ADMIN: std::sync::LazyLock<Actor> =
        std::sync::LazyLock::new(|| Actor::Key(IdGenerator::default().key_id(Timestamp::from_micros(0))));
    Event { id: ids.event_id(now), time: now, org: org.clone(), actor: ADMIN.clone(), via: None, batch_rest: 0, change }
}

pub(crate) fn created(
    display_prefix: String,
    hash: keyreg::domain::token::TokenHash,
    scopes: &[Scope],
    cidrs: &[Cidr],
) -> KeyCreated {
    KeyCreated {
        name: "bench key".into(),
        description: String::new(),
        owner: String::new(),
        scopes: scopes.to_vec(),
        allowed_cidrs: cidrs.to_vec(),
        expires_at: None,
        display_prefix,
        key_hash: hash,
        roles: vec![],
        meta: None,
    }
}

/// Verify in process over a table of `size.keys` keys, and the memory that
/// table takes.
pub(crate) fn verify_and_memory(size: Size) -> Vec<Row> {
    let n = size.keys;
    progress(&format!("verify: generating {n} keys"));
    let format = TokenFormat::default();
    let pepper = Pepper::generate();
    let now = SystemClock.now();
    let org = OrgId::parse("acme").unwrap_or_else(|_| OrgId::system());
    let mut ids = IdGenerator::default();
    let scopes =
        [Scope::parse("billing:*"), Scope::parse("read@workspaces/ws-1/**")].into_iter().flatten().collect::<Vec<_>>();
    let cidrs = [Cidr::parse("10.0.0.0/8"), Cidr::parse("2001:db8::/32")].into_iter().flatten().collect::<Vec<_>>();
    let tokens: Vec<String> = (0..n).map(|_| format.generate().expose().to_owned()).collect();
    let keyed: Vec<(KeyId, String, keyreg::domain::token::TokenHash)> = tokens
        .iter()
        .map(|t| {
            let token = format.parse(t).expect("a generated token parses");
            (ids.key_id(now), token.display_prefix(), token.hash(&pepper))
        })
        .collect();

    let before = resident_bytes();
    let mut table = Table::default();
    table.apply(
        Seq(1),
        &event(
            &mut ids,
            now,
            &org,
            Change::OrgCreated(OrgSettings { name: "Acme".into(), max_keys: 10_000_000, ..OrgSettings::default() }),
        ),
    );
    for (i, (id, prefix, hash)) in keyed.iter().enumerate() {
        let change = Change::Key(*id, KeyChange::Created(created(prefix.clone(), *hash, &scopes, &cidrs)));
        table.apply(Seq(i as u64 + 2), &event(&mut ids, now, &org, change));
    }
    let per_key = resident_bytes().saturating_sub(before) as f64 / n as f64;
    drop(keyed);

    // 80 % valid, 10 % unknown but well-formed, 10 % malformed.
    let mut presented: Vec<String> = Vec::with_capacity(n);
    for (i, t) in tokens.iter().enumerate() {
        presented.push(match i % 10 {
            8 => format.generate().expose().to_owned(),
            9 => format!("{}0", &t[..t.len() - 1]),
            _ => tokens[(i * 7919) % n].clone(),
        });
    }
    let plain = Question::default();
    let checked =
        Question { action: Some("read"), resource: Some("workspaces/ws-1/reports"), ip: "10.1.2.3".parse().ok() };
    let mut floor = vec![];
    let mut bare = vec![];
    let mut full = vec![];
    for run in 0..size.runs {
        progress(&format!("verify: run {} of {}", run + 1, size.runs));
        let t = Instant::now();
        for p in &presented {
            black_box(blake3::keyed_hash(&FLOOR_KEY, p.as_bytes()));
        }
        floor.push(t.elapsed().as_nanos() as f64 / n as f64);
        for (question, out) in [(&plain, &mut bare), (&checked, &mut full)] {
            let t = Instant::now();
            for p in &presented {
                black_box(verifier::verify(&table, &format, &pepper, p, question, now));
            }
            out.push(t.elapsed().as_nanos() as f64 / n as f64);
        }
    }
    let (floor, bare, full) = (median(floor), median(bare), median(full));
    let from_snapshot = snapshot_decode(&table, n, size.runs);
    let per_sec = |ns: f64| format!("{:.0} ns = {:.2} M/s", ns, 1e3 / ns);
    vec![
        Row::new(
            format!("1. verify in process, {n} keys, no scope/IP check"),
            per_sec(bare),
            "≤ 500 ns (≥ 2 M/s)",
            format!("keyed hash alone {}; ×{:.2} the floor", per_sec(floor), bare / floor),
            Some(bare <= 500.0),
        ),
        Row::new(
            format!("1. verify in process, {n} keys, scope + IP check"),
            per_sec(full),
            "≤ 500 ns (≥ 2 M/s)",
            format!("×{:.2} the floor", full / floor),
            Some(full <= 500.0),
        ),
        Row::new(
            format!("6. replica table memory, {n} keys"),
            format!("{per_key:.0} bytes/key"),
            "≤ 300 bytes/key",
            "-",
            Some(per_key <= 300.0),
        ),
        Row::new(
            format!("6. replica table memory, {n} keys, read from a snapshot (how a new replica starts)"),
            format!("{:.0} bytes/key", from_snapshot.per_key),
            "≤ 300 bytes/key",
            format!("folded event by event, above: {per_key:.0} bytes/key"),
            Some(from_snapshot.per_key <= 300.0),
        ),
        Row::new(
            format!("5. decode a table snapshot of {n} keys ({:.0} MB), in process", from_snapshot.bytes as f64 / 1e6),
            format!("{:.2} s", from_snapshot.decode_s),
            "-",
            format!("encoding it: {:.2} s", from_snapshot.encode_s),
            None,
        ),
    ]
}

struct FromSnapshot {
    bytes: usize,
    encode_s: f64,
    decode_s: f64,
    per_key: f64,
}

/// The table encoded as a snapshot and read back: the time each way, and
/// the memory the table read back takes (a new replica's, which starts from
/// the registry's published snapshot).
fn snapshot_decode(table: &Table, n: usize, runs: usize) -> FromSnapshot {
    progress("verify: a snapshot of the table, read back");
    let t = Instant::now();
    let mut w = keyreg::domain::snapshot::Encoder::default();
    table.encode(&mut w);
    let encode_s = t.elapsed().as_secs_f64();
    let before = resident_bytes();
    let decode = || {
        let t = Instant::now();
        let read = Table::decode(&mut keyreg::domain::snapshot::Decoder::new(&w.bytes)).expect("the table reads back");
        (t.elapsed().as_secs_f64(), read)
    };
    let (first, kept) = decode();
    let per_key = resident_bytes().saturating_sub(before) as f64 / n as f64;
    let mut times = vec![first];
    for _ in 1..runs {
        times.push(decode().0);
    }
    drop(kept);
    FromSnapshot { bytes: w.bytes.len(), encode_s, decode_s: median(times), per_key }
}

/// Views of the past at random times: one key's (p50, p99) in ms, for
/// random keys that existed then; the first page of the listing (p50,
/// p99) in ms; the baseline, the whole table folded to a random time, in
/// seconds.
fn as_of(data: &DataDir, first: Timestamp) -> anyhow::Result<AsOf> {
    progress("replay: views of the past at random times");
    let registry = Registry::open(data, crate::config())?;
    let (keys, last) = {
        let p = registry.read();
        let keys: Vec<(OrgId, KeyId, Timestamp)> =
            p.table.all_keys().iter().map(|k| (k.org.clone(), k.id, k.created_at)).collect();
        (keys, p.table.last_time().unwrap_or(first))
    };
    // A fixed pseudo-random walk, so that runs compare.
    let span = (last.micros() - first.micros()).max(1) as u64;
    let random_time = |i: u64| Timestamp::from_micros(first.micros() + (i.wrapping_mul(2_654_435_761) % span) as i64);
    let mut one = vec![];
    for i in 0..1000u64 {
        let (org, id, created) = &keys[(i as usize * 7919) % keys.len()];
        let at = random_time(i).max(*created);
        let t = Instant::now();
        let table = registry.key_as_of(org, id, at)?;
        one.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(table.key(id).is_some(), "the key's past lost the key");
    }
    let org = keys[0].0.clone();
    let mut pages = vec![];
    for i in 0..300u64 {
        let at = random_time(i);
        let t = Instant::now();
        let table = registry.page_as_of(&org, at, None, 50, |k| k.status_at(at) == Status::Active)?;
        let page: Vec<_> = table.keys_of(&org, None).take(50).map(|k| table.view(k, at)).collect();
        black_box(serde_json::to_vec(&page)?);
        pages.push(t.elapsed().as_secs_f64() * 1e3);
    }
    one.sort_by(f64::total_cmp);
    pages.sort_by(f64::total_cmp);
    let t = Instant::now();
    black_box(registry.table_as_of(random_time(7))?);
    let whole = t.elapsed().as_secs_f64();
    registry.close()?;
    let p50_p99 = |s: &[f64]| (crate::percentile(s, 0.5), crate::percentile(s, 0.99));
    Ok(AsOf { one_key: p50_p99(&one), page: p50_p99(&pages), whole })
}

struct AsOf {
    one_key: (f64, f64),
    page: (f64, f64),
    whole: f64,
}

/// p50, p99 and max, in ms.
type Latency = (f64, f64, f64);

/// Appends (one writer, each durable) while a periodic snapshot of the
/// whole log is written, against appends with none: (p50, p99, max) in ms
/// for each, and how many appends the snapshot lasted.
fn snapshot_stall(data: &DataDir, events: u64) -> anyhow::Result<(Latency, Latency, usize)> {
    progress("replay: appends during a snapshot");
    // 100 appends to warm up, 2,000 for the baseline, then the next
    // snapshot mark: both measured under the same conditions, once the
    // background chain check that starts at open is done.
    let config = keyreg::registry::Config { snapshot_every: events + 2100, ..crate::config() };
    let registry = Registry::open(data, config)?;
    crate::nats::wait_for("the chain check", std::time::Duration::from_secs(300), || registry.chain_checked())?;
    let org = OrgId::parse("acme")?;
    let append = |registry: &Registry| -> anyhow::Result<f64> {
        let key = registry.new_key(&registry.format().generate(), "stall", "", &["read"]);
        let t = Instant::now();
        registry.execute_blocking(Actor::system("bench"), org.clone(), Command::CreateKey(key))?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    let written = registry.snapshots_written();
    for _ in 0..100 {
        append(&registry)?;
    }
    let without = (0..2000).map(|_| append(&registry)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut during = vec![];
    while *written.borrow() == Seq(0) {
        during.push(append(&registry)?);
        anyhow::ensure!(during.len() < 10_000_000, "the snapshot never finished");
    }
    registry.close()?;
    let stats = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (crate::percentile(&v, 0.5), crate::percentile(&v, 0.99), v.last().copied().unwrap_or(0.0))
    };
    let n = during.len();
    Ok((stats(during), stats(without), n))
}

/// Any 32-byte key gives the baseline's cost: the floor is one keyed hash.
const FLOOR_KEY: [u8; 32] = [7; 32];

/// Replay and start-up from a log of `size.events` events.
pub(crate) fn replay(size: Size) -> anyhow::Result<Vec<Row>> {
    let n = size.events;
    let dir = crate::tempdir()?;
    let data = DataDir::new(&dir.join("data"));
    data.create(&Pepper::generate())?;
    progress(&format!("replay: writing a log of {n} events"));
    let first = SystemClock.now();
    {
        let mut log = Log::open(&data.log_path())?;
        let mut ids = IdGenerator::default();
        let org = OrgId::parse("acme")?;
        // One event a millisecond, so that "as of a time" has a past.
        let at = |i: usize| Timestamp::from_micros(first.micros() + i as i64 * 1000);
        let now = at(0);
        let format = TokenFormat::default();
        let pepper = Pepper::generate();
        log.stage(&event(
            &mut ids,
            now,
            &org,
            Change::OrgCreated(OrgSettings { name: "Acme".into(), max_keys: 10_000_000, ..OrgSettings::default() }),
        ))?;
        let mut keys: Vec<KeyId> = vec![];
        let scopes = vec![Scope::parse("read")?];
        for i in 1..n {
            let change = if i % 4 == 1 || keys.is_empty() {
                let token = format.generate();
                let id = ids.key_id(at(i));
                keys.push(id);
                Change::Key(id, KeyChange::Created(created(token.display_prefix(), token.hash(&pepper), &scopes, &[])))
            } else {
                let id = keys[i % keys.len()];
                let updated = KeyUpdated {
                    name: "bench key".into(),
                    description: format!("edit {i}"),
                    owner: String::new(),
                    expires_at: None,
                    meta: None,
                    changed: vec!["description".into()],
                };
                Change::Key(id, KeyChange::Updated(updated))
            };
            log.stage(&event(&mut ids, at(i), &org, change))?;
            if i % 100_000 == 0 {
                log.commit()?;
            }
        }
        log.commit()?;
    }
    let mut rates = vec![];
    let mut unchecked = vec![];
    let mut startups = vec![];
    let mut from_snapshot = vec![];
    let mut writes = vec![];
    let mut snapshot_bytes = 0;
    for run in 0..size.runs {
        progress(&format!("replay: run {} of {}", run + 1, size.runs));
        let log = Log::open(&data.log_path())?;
        // The baseline: the same fold without the chain check (no hashing,
        // no sequence and prevhash checks): what the check costs.
        let t = Instant::now();
        let mut bare = Projections::default();
        for record in log.reader().read(Seq(1), None) {
            let record = record?;
            bare.apply(record.seq, &keyreg::domain::event::decode(record.bytes())?.event);
        }
        unchecked.push(t.elapsed().as_secs_f64());
        drop(bare);
        let t = Instant::now();
        let mut history = History::new(Projections::default());
        fold_log(&log.reader(), &mut history, None, |_| {})?;
        anyhow::ensure!(history.report().ok, "the benchmark's log does not check out");
        let p = history.into_state();
        rates.push(t.elapsed().as_secs_f64());
        drop((p, log));
        let _ = std::fs::remove_dir_all(data.snapshots_path());
        let t = Instant::now();
        let registry = Registry::open(&data, crate::config())?;
        startups.push(t.elapsed().as_secs_f64());
        // A clean stop writes the snapshot the next start loads.
        let t = Instant::now();
        registry.close()?;
        writes.push(t.elapsed().as_secs_f64());
        snapshot_bytes = keyreg::store::snapshot::files(&data.snapshots_path())
            .first()
            .and_then(|f| std::fs::metadata(f).ok())
            .map_or(0, |m| m.len());
        let t = Instant::now();
        let registry = Registry::open(&data, crate::config())?;
        from_snapshot.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(registry.read().table.applied() == Seq(n as u64), "the snapshot start stopped short");
        registry.close()?;
    }
    let AsOf { one_key, page, whole } = as_of(&data, first)?;
    let (during, without, lasted) = snapshot_stall(&data, n as u64)?;
    let proofs = crate::transparency::proofs(&data)?;
    // Last: it appends, and the measures above count on the log as built.
    let readiness = crate::readiness::measure(&data, size.runs)?;
    let (checked, unchecked, startup) = (median(rates), median(unchecked), median(startups));
    let (from_snapshot, write) = (median(from_snapshot), median(writes));
    let keys = n.div_ceil(4);
    let rate = n as f64 / checked;
    std::fs::remove_dir_all(&dir)?;
    Ok([
        Row::new(
            format!("5. replay {n} events into the projections, chain checked"),
            format!("{:.2} M events/s ({checked:.2} s)", rate / 1e6),
            "≥ 0.5 M events/s",
            format!(
                "without the chain check {unchecked:.2} s: the check adds {:.2} s ({:.0}%)",
                checked - unchecked,
                (checked - unchecked) / unchecked * 100.0
            ),
            Some(rate >= 0.5e6),
        ),
        Row::new(
            format!("5. one key as of a random time, {n} events (what `GET /v1/keys/{{id}}?as_of` reads)"),
            format!("p50 {:.3} ms, p99 {:.3} ms", one_key.0, one_key.1),
            "p99 < 5 ms",
            format!("the whole table as of a random time: {whole:.2} s"),
            Some(one_key.1 < 5.0),
        ),
        Row::new(
            format!("5. first page (50 active keys) as of a random time, {n} events (`GET /v1/keys?as_of`)"),
            format!("p50 {:.2} ms, p99 {:.2} ms", page.0, page.1),
            "p99 < 50 ms",
            format!("the whole table as of a random time: {whole:.2} s"),
            Some(page.1 < 50.0),
        ),
        Row::new(
            format!("5. durable appends (1 writer) while a snapshot of {n} events is written"),
            format!("p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms ({lasted} appends)", during.0, during.1, during.2),
            "appends do not stall",
            format!(
                "with no snapshot running: p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms; p99 ×{:.2}",
                without.0,
                without.1,
                without.2,
                during.1 / without.1
            ),
            Some(during.1 <= without.1 * 1.5 && during.2 < 100.0),
        ),
        Row::new(
            format!("5. registry start-up with {n} events, from a snapshot"),
            format!("{from_snapshot:.2} s"),
            "< 1 s",
            format!(
                "from the whole log: {startup:.2} s; ×{:.2}. Snapshot: {:.0} bytes/key on disk ({keys} keys), written \
                 in {write:.2} s on a clean stop",
                startup / from_snapshot,
                snapshot_bytes as f64 / keys as f64
            ),
            Some(from_snapshot < 1.0),
        ),
    ]
    .into_iter()
    .chain(readiness)
    .chain(proofs)
    .collect())
}
