//! A new replica's time to answer at `size.keys` keys: started from the
//! snapshot the registry published in the object store, against the
//! baseline of the same replica replaying the whole stream, in one run
//! against one private nats-server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::inprocess::{created, event};
use crate::{Row, Size, progress};
use keyreg::domain::event::{Change, KeyChange, OrgSettings};
use keyreg::domain::id::{IdGenerator, OrgId};
use keyreg::domain::scope::Scope;
use keyreg::domain::time::{Clock, SystemClock};
use keyreg::domain::token::TokenFormat;
use keyreg::nats::Nats;
use keyreg::nats::publisher::OutboxStatus;
use keyreg::registry::Registry;
use keyreg::replica::{Replica, ReplicaConfig};
use keyreg::store::DataDir;
use keyreg::store::log::Log;

pub(crate) fn measure(size: Size, nats_url: &str) -> anyhow::Result<Vec<Row>> {
    let n = size.keys;
    let dir = crate::tempdir()?;
    let data = DataDir::new(&dir.join("data"));
    let (registry, _) = Registry::init(&data, crate::config())?;
    let pepper = registry.pepper().clone();
    registry.close()?;
    progress(&format!("bootstrap: a log of {n} keys"));
    {
        let mut log = Log::open(&data.log_path())?;
        let (mut ids, org, now) = (IdGenerator::default(), OrgId::parse("acme")?, SystemClock.now());
        let settings = OrgSettings { name: "Acme".into(), max_keys: 10_000_000, ..OrgSettings::default() };
        log.stage(&event(&mut ids, now, &org, Change::OrgCreated(settings)))?;
        let (format, scopes) = (TokenFormat::default(), vec![Scope::parse("read")?]);
        for i in 0..n {
            let token = format.generate();
            let key = created(token.display_prefix(), token.hash(&pepper), &scopes, &[]);
            let id = ids.key_id(now);
            log.stage(&event(&mut ids, now, &org, Change::Key(id, KeyChange::Created(key))))?;
            if i % 100_000 == 0 {
                log.commit()?;
            }
        }
        log.commit()?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // A prefix of its own: the other measurements' registries publish to
    // the same nats-server.
    let nats = Nats { layout: keyreg::nats::Layout::new("BOOTSTRAP")?, ..Nats::new(nats_url) };
    // Open (from the log), publish the stream, stop (writing a snapshot),
    // open again from it and publish the snapshot's table.
    let registry = Registry::open(&data, crate::config())?;
    let head = registry.head().seq;
    let (stop_tx, stop_rx) = watch::channel(false);
    let connection = runtime.block_on(nats.connect())?;
    let outbox = Arc::new(OutboxStatus::default());
    let duties = crate::nats::local_duties(&runtime, &registry, &nats, connection.clone(), &outbox, &stop_rx)?;
    progress(&format!("bootstrap: publishing {head} events to the stream"));
    crate::nats::wait_for("the stream", Duration::from_secs(900), || outbox.published().0 >= head)?;
    let _ = stop_tx.send(true);
    for duty in duties {
        let _ = runtime.block_on(duty);
    }
    registry.close()?;
    let registry = Registry::open(&data, crate::config())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let publishing = crate::nats::local_duties(&runtime, &registry, &nats, connection, &outbox, &stop_rx)?;
    progress("bootstrap: publishing the snapshot");
    let js =
        runtime.block_on(async { anyhow::Ok(async_nats::jetstream::new(async_nats::connect(nats_url).await?)) })?;
    crate::nats::wait_for("the snapshot in the object store", Duration::from_secs(600), || {
        runtime.block_on(async {
            match js.get_object_store(nats.layout.snapshots_bucket()).await {
                Ok(store) => store.info(format!("{:020}", head.0)).await.is_ok(),
                Err(_) => false,
            }
        })
    })?;
    let publish_s = started.elapsed().as_secs_f64();
    // Where a bootstrap's time goes, phase by phase, as `snapshots::newest`
    // spends it.
    let phases = runtime.block_on(async {
        use tokio::io::AsyncReadExt;
        let t = Instant::now();
        let store = js.get_object_store(nats.layout.snapshots_bucket()).await?;
        let mut bytes = vec![];
        store.get(format!("{:020}", head.0)).await?.read_to_end(&mut bytes).await?;
        let (download, size) = (t.elapsed().as_secs_f64(), bytes.len());
        let t = Instant::now();
        let sealed = keyreg::domain::snapshot::unseal(bytes, &pepper)?;
        let unseal = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let table = keyreg::domain::table::Table::decode(&mut keyreg::domain::snapshot::Decoder::new(sealed.table()))?;
        let decode = t.elapsed().as_secs_f64();
        let t = Instant::now();
        std::hint::black_box(table.digest());
        let digest = t.elapsed().as_secs_f64();
        anyhow::Ok(format!(
            "{:.0} MB: download {download:.2} s, seal check {unseal:.2} s, decode {decode:.2} s, digest {digest:.2} s",
            size as f64 / 1e6
        ))
    })?;
    let answering = |bootstrap: bool| -> anyhow::Result<f64> {
        let mut config = ReplicaConfig::new(nats_url, pepper.clone());
        config.nats = nats.clone();
        config.bootstrap = bootstrap;
        config.max_staleness = None;
        let started = Instant::now();
        let replica = runtime.block_on(Replica::start(config))?;
        crate::nats::wait_for("the new replica to answer", Duration::from_secs(900), || {
            replica.applied() >= head && replica.unavailable().is_none()
        })?;
        let answering = started.elapsed().as_secs_f64();
        // A replica left following would take CPU from the next run.
        runtime.block_on(replica.stop());
        Ok(answering)
    };
    let (mut snapshot, mut stream) = (vec![], vec![]);
    for run in 0..size.runs.min(3) {
        progress(&format!("bootstrap: run {} of {}", run + 1, size.runs.min(3)));
        snapshot.push(answering(true)?);
        stream.push(answering(false)?);
    }
    let _ = stop_tx.send(true);
    for duty in publishing {
        let _ = runtime.block_on(duty);
    }
    registry.close()?;
    drop(runtime);
    std::fs::remove_dir_all(&dir)?;
    let (snapshot, stream) = (crate::median(snapshot), crate::median(stream));
    Ok(vec![Row::new(
        format!("5. a new replica answering at {n} keys, from the published snapshot"),
        format!("{snapshot:.2} s"),
        "< 2 s",
        format!(
            "replaying the stream ({head} events): {stream:.2} s; ×{:.1}. The snapshot's table, {phases}. \
             Publishing it took {publish_s:.1} s",
            stream / snapshot
        ),
        Some(snapshot < 2.0),
    )])
}
