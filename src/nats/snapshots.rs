//! Snapshots for replicas, in the JetStream object store
//! `<PREFIX>_SNAPSHOTS`: the registry publishes the table of each snapshot
//! it writes (`publish`), and a new replica starts from the newest one it
//! can bind to the chain (`newest`) instead of replaying the whole stream.
//!
//! An object is named by its sequence (20 digits, so names sort as
//! numbers) and holds the table alone, sealed as on disk
//! (`domain::snapshot`). A replica trusts one only if:
//!
//! - its seal checks out under the replica's pepper (the object store is
//!   writable by anyone on NATS; the seal is not);
//! - the table decodes, stands at the sequence it names, and its digest,
//!   recomputed, is the one in the header;
//! - the events stream holds that sequence with that chain hash. The next
//!   event's `prevhash` is then checked by the fold like any other.
//!
//! Anything else is passed over with a log line; with none left the
//! replica replays the stream from the start.

use async_nats::jetstream::{self, object_store};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use super::{Layout, NatsError, hash_header, nats_err};
use crate::domain::chain::ChainHash;
use crate::domain::id::Seq;
use crate::domain::snapshot::{Reader, unseal};
use crate::domain::table::Table;
use crate::domain::token::Pepper;

/// Objects kept in the store: the newest and one before it, so that a
/// replica reading the older one while a new one lands still finds it.
const KEEP: usize = 2;

fn object_name(seq: Seq) -> String {
    format!("{:020}", seq.0)
}

/// Object names, newest first.
async fn names(store: &object_store::ObjectStore) -> Result<Vec<String>, NatsError> {
    let mut list = store.list().await.map_err(nats_err)?;
    let mut names = vec![];
    while let Some(info) = list.next().await {
        names.push(info.map_err(nats_err)?.name);
    }
    names.sort_unstable_by(|a, b| b.cmp(a));
    Ok(names)
}

/// The registry's side: publishes the newest snapshot on disk at start and
/// each new one as it is written, until `stop` turns true. A failure
/// (NATS down) is retried at the next snapshot or after a pause.
#[cfg(feature = "server")]
pub async fn run(
    connection: super::Connection,
    layout: Layout,
    registry: crate::registry::Registry,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut written = registry.snapshots_written();
    let mut published = Seq(0);
    loop {
        let reg = registry.clone();
        let mut failed = false;
        if let Ok(Some((seq, sealed))) = tokio::task::spawn_blocking(move || reg.newest_table_snapshot()).await
            && seq > published
        {
            match publish(&connection.js, &layout, seq, &sealed).await {
                Ok(()) => published = seq,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot publish a snapshot for replicas; trying again shortly");
                    failed = true;
                }
            }
        }
        tokio::select! {
            _ = written.changed() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)), if failed => {}
            _ = stop.changed() => return,
        }
    }
}

/// Publishes a sealed table snapshot taken at `seq`, unless the store has
/// it already, and removes all but the newest few.
#[cfg(feature = "server")]
async fn publish(js: &jetstream::Context, layout: &Layout, seq: Seq, sealed: &[u8]) -> Result<(), NatsError> {
    let store = js
        .create_object_store(object_store::Config { bucket: layout.snapshots_bucket(), ..Default::default() })
        .await
        .map_err(nats_err)?;
    let mut all = names(&store).await?;
    let name = object_name(seq);
    if !all.contains(&name) {
        let mut reader = sealed;
        store.put(name.as_str(), &mut reader).await.map_err(nats_err)?;
        tracing::info!(%seq, bytes = sealed.len(), "published a snapshot for replicas");
        all.push(name);
        all.sort_unstable_by(|a, b| b.cmp(a));
    }
    for old in all.into_iter().skip(KEEP) {
        let _ = store.delete(&old).await;
    }
    Ok(())
}

/// A replica's starting point: a table and the chain's head at it.
pub struct Bootstrap {
    pub table: Table,
    pub seq: Seq,
    pub hash: ChainHash,
}

/// The newest snapshot in the store that checks out (see the module's
/// doc), or `None` if there is none.
pub async fn newest(js: &jetstream::Context, layout: &Layout, pepper: &Pepper) -> Result<Option<Bootstrap>, NatsError> {
    let Ok(store) = js.get_object_store(layout.snapshots_bucket()).await else {
        return Ok(None);
    };
    let Ok(events) = js.get_stream(layout.events_stream()).await else {
        return Ok(None);
    };
    for name in names(&store).await? {
        let mut bytes = vec![];
        store.get(&name).await.map_err(nats_err)?.read_to_end(&mut bytes).await.map_err(nats_err)?;
        match check(bytes, pepper, &events).await {
            Ok(b) => return Ok(Some(b)),
            Err(why) => tracing::warn!(object = %name, %why, "passing over a snapshot; the stream is replayed instead"),
        }
    }
    Ok(None)
}

async fn check(bytes: Vec<u8>, pepper: &Pepper, events: &jetstream::stream::Stream) -> Result<Bootstrap, String> {
    let sealed = unseal(bytes, pepper).map_err(|e| e.to_string())?;
    let binding = sealed.binding;
    let mut reader = Reader::new(sealed.table());
    let table = Table::decode(&mut reader).map_err(|e| e.to_string())?;
    if !reader.is_empty() || table.applied() != binding.seq {
        return Err("its table is not at the sequence it names".into());
    }
    if *table.digest().as_bytes() != binding.digest {
        return Err("its table's digest is not the one it was sealed with".into());
    }
    let message = events
        .get_raw_message(binding.seq.0)
        .await
        .map_err(|e| format!("the stream does not hold its event {}: {e}", binding.seq))?;
    if hash_header(Some(&message.headers)) != Some(binding.hash) {
        return Err(format!("the stream's event {} is not the one it was taken at", binding.seq));
    }
    Ok(Bootstrap { table, seq: binding.seq, hash: binding.hash })
}
