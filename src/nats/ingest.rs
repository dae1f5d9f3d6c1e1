//! The registry's side of access reports: every report on `KEYREG_ACCESS`
//! becomes a `key.accessed` event, once. A message is acknowledged only
//! after its event is durable (or was refused as already recorded), so a
//! crash redelivers rather than loses. A report whose MAC fails is dropped
//! (acknowledged, never appended): it was not sent by a node holding the
//! pepper.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use tokio::sync::watch;

use super::reports::ReportMessage;
use super::{Connection, Nats, NatsError, nats_err};
use crate::domain::command::{Command, Refusal};
use crate::domain::id::Actor;
use crate::domain::mac::MessageKeys;
use crate::registry::{ExecError, Registry};

const CONSUMER: &str = "keyreg-registry";

/// Appends every report from the access stream to the log, until `stop`.
pub async fn run(
    nats: Nats,
    connection: Connection,
    keys: MessageKeys,
    registry: Registry,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        // Only the leader appends: a standby leaves reports to it.
        while !registry.leads() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stop.changed() => return,
            }
        }
        tokio::select! {
            result = run_until_error(&nats, &connection.js, &keys, &registry) => {
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

async fn run_until_error(
    nats: &Nats,
    js: &jetstream::Context,
    keys: &MessageKeys,
    registry: &Registry,
) -> Result<(), NatsError> {
    let stream = nats.access_stream(js).await?;
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
        let report = match ReportMessage::authentic(&message, keys) {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "an access report is not readable; dropping it");
                message.ack().await.map_err(nats_err)?;
                continue;
            }
            None => {
                tracing::warn!(subject = %message.subject, "an access report whose MAC fails; dropping it");
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
            Err(e @ (ExecError::Unavailable(_) | ExecError::RateLimited { .. } | ExecError::NotLeader(_))) => {
                return Err(NatsError::Nats(e.to_string()));
            }
        }
        message.ack().await.map_err(nats_err)?;
    }
    Ok(())
}
