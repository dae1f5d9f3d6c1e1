//! Snapshots for replicas, in the JetStream object store
//! `<PREFIX>_SNAPSHOTS`: the registry publishes the table of each snapshot
//! it writes (`publish`), and a new replica starts from the newest one it
//! can bind to the chain (`newest`) instead of replaying the whole stream.
//!
//! An object is named by its sequence (20 digits, so names sort as
//! numbers) and holds the table alone, sealed as on disk
//! (`domain::snapshot`). The object store is writable by anyone on NATS,
//! so each object's metadata carries a MAC (`domain::mac`) over its name,
//! its size and the blake3 of its content. A replica looks at the listing
//! only (no download) and passes over every object whose MAC fails, so a
//! large junk object costs it nothing; the registry deletes such objects
//! and keeps its own newest few, so no name it did not write displaces
//! them. A replica trusts an object only if:
//!
//! - its MAC holds, and the content it downloads (at most the size the MAC
//!   names) hashes to the value the MAC names;
//! - its seal checks out under the replica's pepper;
//! - the table decodes and stands at the sequence it names;
//! - the events stream holds that sequence with that chain hash. The next
//!   event's `prevhash` is then checked by the fold like any other.
//!
//! The table's digest is not recomputed (it took 1.2 s of a 4.2 s start at
//! a million keys): the seal is a keyed hash under a key only pepper
//! holders derive, over the table's bytes and the digest together, and the
//! registry computes that digest from the very table it encodes. Whoever
//! could seal a table whose digest lies could as well mint valid tokens.
//! What recomputing would still catch, an encoder and decoder that disagree,
//! the snapshot property test catches (a table read back from a snapshot
//! has the digest of the one folded from the log, `tests/it/snapshots.rs`),
//! and `GET /v1/state/digest` recomputes it on demand.
//!
//! Anything else is passed over with a log line; with none left the
//! replica replays the stream from the start.

use async_nats::jetstream::{self, object_store};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use super::{Layout, NatsError, hash_header, nats_err};
use crate::domain::chain::ChainHash;
use crate::domain::id::Seq;
use crate::domain::mac::{Kind, MessageKeys};
use crate::domain::merkle::Frontier;
use crate::domain::snapshot::{Decoder, unseal};
use crate::domain::table::Table;
use crate::domain::token::Pepper;

/// Objects kept in the store: the newest and one before it, so that a
/// replica reading the older one while a new one lands still finds it.
#[cfg(feature = "server")]
const KEEP: usize = 2;

#[cfg(feature = "server")]
fn object_name(seq: Seq) -> String {
    format!("{:020}", seq.0)
}

/// Object metadata: the blake3 of the content, and the MAC.
const CONTENT: &str = "keyreg-content";
const MAC: &str = "keyreg-mac";

fn object_parts<'a>(name: &'a str, size: &'a [u8; 8], content: &'a str) -> [&'a [u8]; 3] {
    [name.as_bytes(), size, content.as_bytes()]
}

/// An object a registry holding this pepper wrote: its name, size and
/// content hash, as its authenticated metadata says.
struct Authentic {
    name: String,
    size: usize,
    content: blake3::Hash,
}

/// Every object in the store, newest name first, each with its metadata
/// checked: `Ok` if the MAC holds, `Err(name)` if not.
async fn objects(
    store: &object_store::ObjectStore,
    keys: &MessageKeys,
) -> Result<Vec<Result<Authentic, String>>, NatsError> {
    // A listing that meets an object being removed can wait for ever.
    let infos = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let listed = store.list().await.map_err(nats_err)?.collect::<Vec<_>>().await;
        listed.into_iter().collect::<Result<Vec<_>, _>>().map_err(nats_err)
    })
    .await
    .map_err(|_| NatsError::Nats("listing the snapshot objects timed out".into()))??;
    let mut objects = vec![];
    for info in infos {
        let content = info.metadata.get(CONTENT).map(String::as_str).unwrap_or("");
        let size = (info.size as u64).to_be_bytes();
        let mac = info.metadata.get(MAC).map(String::as_str);
        let authentic = keys.check(Kind::Snapshot, &object_parts(&info.name, &size, content), mac);
        objects.push(match blake3::Hash::from_hex(content) {
            Ok(content) if authentic => Ok(Authentic { name: info.name, size: info.size, content }),
            _ => Err(info.name),
        });
    }
    sort_newest_first(&mut objects);
    Ok(objects)
}

fn sort_newest_first(objects: &mut [Result<Authentic, String>]) {
    fn name(o: &Result<Authentic, String>) -> &str {
        match o {
            Ok(a) => &a.name,
            Err(n) => n,
        }
    }
    objects.sort_unstable_by(|a, b| name(b).cmp(name(a)));
}

/// The registry's side: publishes the newest snapshot on disk at start and
/// each new one as it is written, until `stop` turns true. A failure
/// (NATS down) is retried at the next snapshot or after a pause.
#[cfg(feature = "server")]
pub async fn run(
    connection: super::Connection,
    nats: super::Nats,
    keys: MessageKeys,
    registry: crate::registry::Registry,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut written = registry.snapshots_written();
    let mut published = Seq(0);
    loop {
        let reg = registry.clone();
        let mut failed = false;
        // Standbys keep their own snapshots; the leader's are published.
        if registry.leads()
            && let Ok(Some((seq, sealed))) = tokio::task::spawn_blocking(move || reg.newest_table_snapshot()).await
            && seq > published
        {
            match publish(&connection.js, &nats, &keys, seq, &sealed).await {
                Ok(()) => published = seq,
                Err(e) => {
                    // Unreachable NATS is said once, by the connection.
                    tracing::debug!(error = %e, "cannot publish a snapshot for replicas; trying again shortly");
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
/// it already, then removes every object whose MAC fails and all but the
/// newest few of its own.
#[cfg(feature = "server")]
async fn publish(
    js: &jetstream::Context,
    nats: &super::Nats,
    keys: &MessageKeys,
    seq: Seq,
    sealed: &[u8],
) -> Result<(), NatsError> {
    let store = js
        .create_object_store(object_store::Config {
            bucket: nats.layout.snapshots_bucket(),
            num_replicas: nats.replicas.max(1),
            ..Default::default()
        })
        .await
        .map_err(nats_err)?;
    let name = object_name(seq);
    let mut present = objects(&store, keys).await?;
    if !present.iter().any(|o| o.as_ref().is_ok_and(|a| a.name == name)) {
        let hash = blake3::hash(sealed);
        let content = hash.to_hex().to_string();
        let size = (sealed.len() as u64).to_be_bytes();
        let mac = keys.tag(Kind::Snapshot, &object_parts(&name, &size, &content));
        let metadata = object_store::ObjectMetadata {
            name: name.clone(),
            metadata: [(CONTENT.to_owned(), content), (MAC.to_owned(), mac)].into(),
            ..Default::default()
        };
        let mut reader = sealed;
        store.put(metadata, &mut reader).await.map_err(nats_err)?;
        tracing::info!(%seq, bytes = sealed.len(), "published a snapshot for replicas");
        present.push(Ok(Authentic { name, size: sealed.len(), content: hash }));
        sort_newest_first(&mut present);
    }
    let mut kept = 0;
    for object in present {
        let old = match object {
            Ok(_) if kept < KEEP => {
                kept += 1;
                continue;
            }
            Ok(a) => a.name,
            Err(forged) => {
                tracing::warn!(object = %forged, "removing a snapshot object whose MAC fails");
                forged
            }
        };
        let _ = store.delete(&old).await;
    }
    Ok(())
}

/// How long a download of `size` bytes may take: generous (10 MB/s, plus
/// ten seconds), since a replica that gives up replays the whole stream.
fn download_time(size: usize) -> std::time::Duration {
    std::time::Duration::from_secs(10 + size as u64 / 10_000_000)
}

/// A replica's starting point: a table, the Merkle tree's frontier and the
/// chain's head at it.
pub struct Bootstrap {
    pub table: Table,
    pub frontier: Frontier,
    pub seq: Seq,
    pub hash: ChainHash,
}

/// The newest snapshot in the store that checks out (see the module's
/// doc), or `None` if there is none.
pub async fn newest(
    js: &jetstream::Context,
    layout: &Layout,
    pepper: &Pepper,
    keys: &MessageKeys,
) -> Result<Option<Bootstrap>, NatsError> {
    let Ok(store) = js.get_object_store(layout.snapshots_bucket()).await else {
        return Ok(None);
    };
    let Ok(events) = js.get_stream(layout.events_stream()).await else {
        return Ok(None);
    };
    for object in objects(&store, keys).await? {
        let object = match object {
            Ok(a) => a,
            Err(name) => {
                tracing::warn!(object = %name, "passing over a snapshot object whose MAC fails, without reading it");
                continue;
            }
        };
        let mut bytes = Vec::with_capacity(object.size);
        // An object removed while it is read (the registry keeps only its
        // newest few) would never finish reading.
        let read = async {
            let read = store.get(&object.name).await.map_err(|e| e.to_string())?;
            read.take(object.size as u64).read_to_end(&mut bytes).await.map_err(|e| e.to_string())
        };
        let started = std::time::Instant::now();
        let downloaded = tokio::time::timeout(download_time(object.size), read).await;
        tracing::info!(object = %object.name, bytes = bytes.len(), ms = started.elapsed().as_millis() as u64, "downloaded a snapshot");
        let checked = match downloaded {
            Err(_) => Err("it did not finish downloading in time (removed meanwhile?)".to_owned()),
            Ok(Err(e)) => Err(format!("it cannot be read: {e}")),
            Ok(Ok(_)) if blake3::hash(&bytes) != object.content => Err("its content is not what its MAC names".into()),
            Ok(Ok(_)) => check(bytes, pepper, &events).await,
        };
        match checked {
            Ok(b) => return Ok(Some(b)),
            Err(why) => {
                tracing::warn!(object = %object.name, %why, "passing over a snapshot; the stream is replayed instead")
            }
        }
    }
    Ok(None)
}

async fn check(bytes: Vec<u8>, pepper: &Pepper, events: &jetstream::stream::Stream) -> Result<Bootstrap, String> {
    let started = std::time::Instant::now();
    let size = bytes.len();
    // A second of work at a million keys: off the runtime's threads, which
    // serve this replica's verifies meanwhile.
    let pepper = pepper.clone();
    let ((table, frontier), binding) = tokio::task::spawn_blocking(move || {
        let sealed = unseal(bytes, &pepper).map_err(|e| e.to_string())?;
        let mut reader = Decoder::new(sealed.table());
        let table = Table::decode(&mut reader).map_err(|e| e.to_string())?;
        let frontier = Frontier::decode(&mut reader).map_err(|e| e.to_string())?;
        if !reader.is_empty() || table.applied() != sealed.binding.seq || frontier.size() != sealed.binding.seq.0 {
            return Err("its table is not at the sequence it names".to_owned());
        }
        Ok(((table, frontier), sealed.binding))
    })
    .await
    .map_err(|e| e.to_string())??;
    tracing::info!(bytes = size, ms = started.elapsed().as_millis() as u64, "read a snapshot's table");
    let message = events
        .get_raw_message(binding.seq.0)
        .await
        .map_err(|e| format!("the stream does not hold its event {}: {e}", binding.seq))?;
    if hash_header(Some(&message.headers)) != Some(binding.hash) {
        return Err(format!("the stream's event {} is not the one it was taken at", binding.seq));
    }
    Ok(Bootstrap { table, frontier, seq: binding.seq, hash: binding.hash })
}
