//! Expiry notices: keys that expire within 7 days get a `key.expiring`
//! notice on `<prefix>.notices.<org>`, once when they come within 7 days
//! and once more within a day. A notice is a message for the org's own
//! tooling (a chat bot, a ticket), not an event in the log: it records no
//! change. It carries its MAC (`Keyreg-Mac`) like every message keyreg
//! sends, and is kept 30 days in the `<PREFIX>_NOTICES` stream so a
//! consumer that was down still gets it.
//!
//! The leader looks at start (or as soon as it leads) and then every
//! `every` (an hour unless told);
//! which notices went out is kept in the `<PREFIX>_NOTICES` KV bucket (per
//! key: its expiry and the last threshold noticed), so a restart or a new
//! leader sends none twice, and a key whose expiry moved is noticed again.

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{kv, stream};
use serde::Serialize;
use tokio::sync::watch;

use crate::domain::id::{KeyId, OrgId};
use crate::domain::mac::{Kind, MAC_HEADER, MessageKeys};
use crate::domain::table::{EXPIRING_WITHIN, Table};
use crate::domain::time::Timestamp;
use crate::nats::{Connection, Nats, NatsError, nats_err};
use crate::registry::Registry;

/// How long before its expiry a key is noticed again (first: `EXPIRING_WITHIN`).
const DAY: i64 = 86_400;
/// How soon a node that does not lead looks again whether it leads.
const NOT_LEADING: Duration = Duration::from_secs(1);
/// How long the stream keeps a notice.
const KEPT: Duration = Duration::from_secs(30 * 86_400);

/// One notice, as sent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notice {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub org: OrgId,
    pub key_id: KeyId,
    pub name: String,
    pub owner: String,
    pub expires_at: Timestamp,
    /// The threshold crossed: `7d` or `1d`.
    pub within: &'static str,
    pub time: Timestamp,
}

impl Notice {
    /// What the KV bucket keeps for the key once this notice went out.
    fn mark(&self) -> String {
        format!("{} {}", self.expires_at.micros(), self.within)
    }
}

/// The notices due at `now`: every active or disabled key that expires
/// within a week, at the threshold it is past.
pub fn due(table: &Table, now: Timestamp) -> Vec<Notice> {
    table
        .due_to_expire(now.plus_seconds(EXPIRING_WITHIN))
        .into_iter()
        .filter_map(|(org, id)| {
            let key = table.key(&id).filter(|k| k.expiring_soon(now))?;
            let at = key.expires_at?;
            let within = if at <= now.plus_seconds(DAY) { "1d" } else { "7d" };
            Some(Notice {
                kind: "key.expiring",
                org,
                key_id: id,
                name: key.name().to_owned(),
                owner: key.owner().to_owned(),
                expires_at: at,
                within,
                time: now,
            })
        })
        .collect()
}

/// Whether a key whose bucket entry reads `sent` still needs `notice`: it
/// was never noticed, its expiry moved, or it crossed a nearer threshold.
fn needed(notice: &Notice, sent: Option<&str>) -> bool {
    match sent.and_then(|s| s.split_once(' ')) {
        Some((at, within)) => at != notice.expires_at.micros().to_string() || (within == "7d" && notice.within == "1d"),
        None => true,
    }
}

/// Sends the notices due, on the leader, at start and every `every`, until `stop`.
pub async fn run(
    nats: Nats,
    connection: Connection,
    keys: MessageKeys,
    registry: Registry,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    // The stream and the bucket, found or made once, when a notice is first due.
    let mut sent = None;
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => return,
        }
        // A node that does not lead (yet) looks again soon, so that a new
        // leader's first round comes at once, not a period later.
        if !registry.leads() {
            next = tokio::time::Instant::now() + NOT_LEADING;
            continue;
        }
        next = tokio::time::Instant::now() + every;
        let due = due(&registry.read().table, registry.now());
        if due.is_empty() {
            continue;
        }
        let store = match sent.take() {
            Some(store) => store,
            None => match open(&nats, &connection).await {
                Ok(store) => store,
                Err(e) => {
                    tracing::debug!(error = %e, "expiry notices wait for NATS");
                    continue;
                }
            },
        };
        if let Err(e) = send(&nats, &connection, &keys, due, &store).await {
            tracing::warn!(error = %e, "cannot send expiry notices; trying again at the next round");
        }
        sent = Some(store);
    }
}

/// The notices stream and the bucket of those sent, made if missing.
async fn open(nats: &Nats, connection: &Connection) -> Result<kv::Store, NatsError> {
    let js = &connection.js;
    let stream = stream::Config {
        name: nats.layout.notices_stream(),
        subjects: vec![nats.layout.notice_subject("*")],
        storage: stream::StorageType::File,
        max_age: KEPT,
        num_replicas: nats.replicas.max(1),
        ..Default::default()
    };
    js.get_or_create_stream(stream).await.map_err(nats_err)?;
    let bucket = nats.layout.notices_stream();
    match js.get_key_value(&bucket).await {
        Ok(kv) => Ok(kv),
        Err(_) => js
            .create_key_value(kv::Config {
                bucket,
                history: 1,
                max_age: KEPT,
                num_replicas: nats.replicas.max(1),
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(nats_err),
    }
}

/// Sends each of `due` not already sent, and marks it sent.
async fn send(
    nats: &Nats,
    connection: &Connection,
    keys: &MessageKeys,
    due: Vec<Notice>,
    sent: &kv::Store,
) -> Result<(), NatsError> {
    let js = &connection.js;
    for notice in due {
        let entry = sent.get(notice.key_id.as_str()).await.map_err(nats_err)?;
        if !needed(&notice, entry.as_deref().and_then(|v| std::str::from_utf8(v).ok())) {
            continue;
        }
        let body = serde_json::to_vec(&notice).map_err(nats_err)?;
        let mac = keys.tag(Kind::Notice, &[&body]);
        let message = PublishMessage::build()
            .payload(body.into())
            .message_id(format!("{}.{}.{}", notice.key_id, notice.expires_at.micros(), notice.within))
            .header(MAC_HEADER, mac.as_str());
        let subject = nats.layout.notice_subject(notice.org.as_str());
        js.send_publish(subject, message).await.map_err(nats_err)?.await.map_err(nats_err)?;
        sent.put(notice.key_id.as_str(), notice.mark().into()).await.map_err(nats_err)?;
        tracing::debug!(key = %notice.key_id, within = notice.within, "sent an expiry notice");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(expires_at: i64, within: &'static str) -> Notice {
        Notice {
            kind: "key.expiring",
            org: OrgId::parse("acme").unwrap(),
            key_id: crate::domain::id::IdGenerator::default().key_id(Timestamp::from_micros(0)),
            name: "ci".into(),
            owner: String::new(),
            expires_at: Timestamp::from_micros(expires_at),
            within,
            time: Timestamp::from_micros(0),
        }
    }

    #[test]
    fn each_threshold_is_noticed_once_and_a_moved_expiry_again() {
        let week = notice(5, "7d");
        assert!(needed(&week, None));
        assert!(!needed(&week, Some("5 7d")));
        assert!(needed(&notice(5, "1d"), Some("5 7d")));
        assert!(!needed(&notice(5, "1d"), Some("5 1d")));
        assert!(!needed(&week, Some("5 1d")), "never back from a day to a week");
        assert!(needed(&notice(9, "7d"), Some("5 1d")), "a new expiry is a new notice");
    }
}
