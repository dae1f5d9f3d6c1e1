//! Access reports over NATS: replicas publish what they counted on
//! `keyreg.access.<node>`; the registry appends each report once.
//!
//! Exactly once, end to end: a report's id is its `Nats-Msg-Id`, so a
//! publish retried inside the duplicate window is stored once; the registry
//! acknowledges a message only after its `key.accessed` is durable (or was
//! refused as already recorded), so a crash redelivers rather than loses;
//! and the domain refuses a report id it has already recorded, so a
//! redelivery is not counted twice.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, message::PublishMessage};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{NatsError, access_stream, nats_err};
use crate::access::Report;
use crate::command::{Command, Refusal};
use crate::event::KeyAccessed;
use crate::id::{Actor, KeyId, OrgId};
use crate::registry::{ExecError, Registry};

const CONSUMER: &str = "keyreg-registry";

/// The body of an access report message.
#[derive(Serialize, Deserialize)]
pub struct ReportMessage {
    pub org: OrgId,
    pub key_id: KeyId,
    #[serde(flatten)]
    pub report: KeyAccessed,
}

pub fn subject(node: &str) -> String {
    format!("keyreg.access.{node}")
}

/// Publishes reports and waits for their acknowledgements; returns those
/// that could not be published, for the next flush.
pub async fn publish(js: &jetstream::Context, node: &str, reports: Vec<Report>) -> Vec<Report> {
    let mut failed = vec![];
    for (org, key_id, report) in reports {
        let message = ReportMessage { org, key_id, report };
        let body = match serde_json::to_vec(&message) {
            Ok(b) => b,
            Err(_) => continue,
        };
        let publish = PublishMessage::build().payload(body.into()).message_id(message.report.report_id.as_str());
        let acked = match js.send_publish(subject(node), publish).await {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        if !acked {
            failed.push((message.org, message.key_id, message.report));
        }
    }
    failed
}

/// Appends every report from `KEYREG_ACCESS` to the log, until `stop`.
pub async fn ingest(url: String, registry: Registry, mut stop: watch::Receiver<bool>) {
    let client = match super::connect(&url).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot ingest access reports");
            return;
        }
    };
    let js = jetstream::new(client);
    loop {
        tokio::select! {
            result = ingest_until_error(&js, &registry) => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "access report ingest waits for NATS");
                }
            }
            _ = stop.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn ingest_until_error(js: &jetstream::Context, registry: &Registry) -> Result<(), NatsError> {
    let stream = access_stream(js).await?;
    let config = consumer::pull::Config {
        durable_name: Some(CONSUMER.into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        ..Default::default()
    };
    let consumer = stream.get_or_create_consumer(CONSUMER, config).await.map_err(nats_err)?;
    let mut messages = consumer.messages().await.map_err(nats_err)?;
    let actor = Actor::system("usage");
    while let Some(message) = messages.next().await {
        let message = message.map_err(nats_err)?;
        let report: ReportMessage = match serde_json::from_slice(&message.payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "an access report is not readable; dropping it");
                message.ack().await.map_err(nats_err)?;
                continue;
            }
        };
        let command = Command::RecordAccess { id: report.key_id, report: report.report };
        match registry.execute(actor.clone(), report.org, command).await {
            Ok(_) => {}
            Err(ExecError::Refused(Refusal::Conflict(why))) => {
                tracing::debug!(%why, "duplicate access report")
            }
            Err(ExecError::Refused(r)) => {
                tracing::warn!(refusal = %r, "an access report was refused")
            }
            // Not acknowledged: NATS redelivers it after ack_wait.
            Err(ExecError::Unavailable(e)) => return Err(NatsError::Nats(e)),
        }
        message.ack().await.map_err(nats_err)?;
    }
    Ok(())
}
