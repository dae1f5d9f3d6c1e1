//! The registry's duty to its transparency log: every `EVERY`, when events
//! were acknowledged since the last checkpoint, sign a new one, send it
//! with a consistency proof to each witness (`serve --witness`, C2SP
//! `tlog-witness`), and serve it with the cosignatures they answer (on
//! `GET /v1/checkpoint` and to replicas over NATS). A witness that is
//! down, slow or refuses costs its cosignature, never the checkpoint; why
//! is logged, and it is asked again for the newest one two seconds later.
//!
//! A witness's last cosigned size is learned from its 409 answer (the
//! protocol's way), so a registry needs no state of its own here: after a
//! restart the first exchange with each witness tells it.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tokio::sync::watch;

use crate::domain::mac::MessageKeys;
use crate::domain::note::{Checkpoint, Note, Signature, base64};
use crate::http::forward::exchange;
use crate::nats::{Connection, Nats, checkpoints};
use crate::registry::Registry;

/// How often the registry looks for events to checkpoint.
pub const EVERY: Duration = Duration::from_millis(100);

/// How long a witness has to answer before the checkpoint is served
/// without its cosignature, so that a slow witness cannot hold the
/// checkpoint more than a second behind the log.
const ANSWER_WITHIN: Duration = Duration::from_millis(800);

/// How long a witness that failed is left alone before it is asked again
/// (for a new checkpoint, or for the one it missed).
const AFTER_FAILURE: Duration = Duration::from_secs(2);

/// Where one witness is, the last size it cosigned as far as known, and
/// when it may be asked again after a failure.
struct Witness {
    url: String,
    cosigned: u64,
    rest_until: Instant,
}

impl Witness {
    /// Whether to ask it for a checkpoint of `size` now.
    fn due(&self, size: u64) -> bool {
        self.cosigned < size && self.rest_until <= Instant::now()
    }
}

pub async fn run(
    registry: Registry,
    witnesses: Vec<String>,
    nats: Option<(Nats, Connection)>,
    mut stop: watch::Receiver<bool>,
) {
    let mut witnesses: Vec<Witness> =
        witnesses.into_iter().map(|url| Witness { url, cosigned: 0, rest_until: Instant::now() }).collect();
    let keys = MessageKeys::new(registry.pepper());
    loop {
        // A new checkpoint; else the newest again, for a witness that
        // missed it.
        let (note, new) = match registry.sign_checkpoint() {
            Ok(Some(note)) => (Some(note), true),
            Ok(None) => {
                let published = *registry.checkpoints().borrow();
                (witnesses.iter().any(|w| w.due(published)).then(|| registry.checkpoint()).flatten(), false)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot sign a checkpoint");
                (None, false)
            }
        };
        if let Some(mut note) = note {
            let size = size(&note);
            let asked = witnesses.iter_mut().filter(|w| w.due(size)).map(|w| ask(&registry, w, &note, size));
            let before = note.signatures.len();
            for cosignatures in futures_util::future::join_all(asked).await {
                cosignatures.into_iter().for_each(|s| note.add(s));
            }
            if new || note.signatures.len() > before {
                registry.publish_checkpoint(note.clone());
                if let Some((nats, connection)) = &nats {
                    let (headers, body) = checkpoints::message(&note, &keys);
                    let subject = nats.layout.checkpoint_subject();
                    if let Err(e) = connection.js.client().publish_with_headers(subject, headers, body).await {
                        tracing::debug!(error = %e, "cannot send the checkpoint to replicas");
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The size a checkpoint note states.
fn size(note: &Note) -> u64 {
    Checkpoint::parse(&note.text).map_or(0, |c| c.size)
}

/// `cosign`, within `ANSWER_WITHIN`; a witness that fails rests for
/// `AFTER_FAILURE`.
async fn ask(registry: &Registry, witness: &mut Witness, note: &Note, size: u64) -> Vec<Signature> {
    let url = witness.url.clone();
    let answer = tokio::time::timeout(ANSWER_WITHIN, cosign(registry, witness, note, size)).await.unwrap_or_else(|_| {
        tracing::warn!(witness = %url, "the witness did not answer in time; the checkpoint goes without its cosignature");
        vec![]
    });
    if answer.is_empty() {
        witness.rest_until = Instant::now() + AFTER_FAILURE;
    }
    answer
}

/// Asks one witness to cosign `note` (of `size` events), retrying once
/// from the size it says it holds; its cosignature lines, or none.
async fn cosign(registry: &Registry, witness: &mut Witness, note: &Note, size: u64) -> Vec<Signature> {
    for _ in 0..2 {
        if witness.cosigned > size {
            tracing::error!(witness = %witness.url, cosigned = witness.cosigned, size, "the witness cosigned a larger tree than this log has: was the log rolled back?");
            return vec![];
        }
        let proof = match registry.consistency_proof(witness.cosigned, size) {
            Ok(proof) => proof,
            Err(e) => {
                tracing::error!(error = %e, "cannot prove consistency for a witness");
                return vec![];
            }
        };
        let lines: String = proof.iter().map(|h| format!("{}\n", base64(h))).collect();
        let body = format!("old {}\n{lines}\n{note}", witness.cosigned);
        match post(&witness.url, body).await {
            Ok((StatusCode::OK, text)) => {
                witness.cosigned = size;
                return text.lines().filter_map(|l| Signature::parse(l).ok()).collect();
            }
            Ok((StatusCode::CONFLICT, text)) if text.trim().parse::<u64>().is_ok() => {
                witness.cosigned = text.trim().parse().unwrap_or(0);
            }
            Ok((status, text)) => {
                tracing::warn!(witness = %witness.url, %status, answer = %text.trim(), "the witness refused the checkpoint");
                return vec![];
            }
            Err(e) => {
                tracing::warn!(witness = %witness.url, error = %e, "cannot reach the witness");
                return vec![];
            }
        }
    }
    vec![]
}

/// POSTs `body` to `<url>/add-checkpoint` (an `http://` URL); the status
/// and the answer's text.
async fn post(url: &str, body: String) -> Result<(StatusCode, String), String> {
    let rest = url.strip_prefix("http://").ok_or("a witness's URL must start with http://")?;
    let (authority, prefix) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p.trim_end_matches('/')));
    let path = match prefix.is_empty() {
        true => "/add-checkpoint".to_owned(),
        false => format!("/{prefix}/add-checkpoint"),
    };
    let request = Request::post(path)
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(body))
        .map_err(|e| e.to_string())?;
    let answer = exchange(authority, request).await?;
    let status = answer.status();
    let text = axum::body::to_bytes(answer.into_body(), 64 * 1024).await.map_err(|e| e.to_string())?;
    Ok((status, String::from_utf8_lossy(&text).into_owned()))
}
