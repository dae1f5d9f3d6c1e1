//! Access reports over NATS: replicas publish what they counted on
//! `keyreg.access.<node>`; the registry appends each report once
//! (`ingest.rs`).
//!
//! Exactly once, end to end: a report's id is its `Nats-Msg-Id`, so a
//! publish retried inside the duplicate window is stored once; the registry
//! acknowledges a message only after its `key.accessed` is durable (or was
//! refused as already recorded), so a crash redelivers rather than loses;
//! and the domain refuses a report id it has already recorded, so a
//! redelivery is not counted twice.
//!
//! A report carries its MAC (`Keyreg-Mac`, over the body): the registry
//! drops a report whose MAC fails, so only a node holding the pepper can
//! count uses. Its fields are then checked like any input (`decide`).

use async_nats::jetstream::{self, message::PublishMessage};
use serde::{Deserialize, Serialize};

use super::Layout;
use crate::access::Report;
use crate::domain::event::KeyAccessed;
use crate::domain::id::{KeyId, OrgId};
use crate::domain::mac::{Kind, MAC_HEADER, MessageKeys};

/// The body of an access report message.
#[derive(Serialize, Deserialize)]
pub struct ReportMessage {
    pub org: OrgId,
    pub key_id: KeyId,
    #[serde(flatten)]
    pub report: KeyAccessed,
}

impl ReportMessage {
    /// The report a message carries, if its MAC holds under `keys`.
    pub fn authentic(message: &async_nats::Message, keys: &MessageKeys) -> Option<Result<ReportMessage, String>> {
        let body = super::authentic_body(message, keys, Kind::Report)?;
        Some(serde_json::from_slice(body).map_err(|e| e.to_string()))
    }
}

/// Publishes reports and waits for their acknowledgements; returns those
/// that could not be published, for the next flush.
pub async fn publish(
    js: &jetstream::Context,
    layout: &Layout,
    keys: &MessageKeys,
    node: &str,
    reports: Vec<Report>,
) -> Vec<Report> {
    let mut failed = vec![];
    for (org, key_id, report) in reports {
        let message = ReportMessage { org, key_id, report };
        let body = match serde_json::to_vec(&message) {
            Ok(b) => b,
            Err(_) => continue,
        };
        let mac = keys.tag(Kind::Report, &[&body]);
        let publish = PublishMessage::build()
            .payload(body.into())
            .message_id(message.report.report_id.as_str())
            .header(MAC_HEADER, mac.as_str());
        let acked = match js.send_publish(layout.access_subject(node), publish).await {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        if !acked {
            failed.push((message.org, message.key_id, message.report));
        }
    }
    failed
}
