//! A witness (`keyreg witness`): C2SP `tlog-witness`'s `POST
//! /add-checkpoint`. It cosigns a log's checkpoint only when the log's key
//! signed it and a consistency proof shows it extends the last checkpoint
//! this witness cosigned for that log, so no two checkpoints it cosigns
//! are inconsistent. With a quorum of such witnesses, a log cannot show
//! one history to some readers and another to others.
//!
//! Its state, the latest cosigned size and root of each log, is one JSON
//! file in its data dir, replaced atomically (written aside, fsynced,
//! renamed, the dir fsynced) before the cosignature is answered; the check
//! and the update happen under one lock, as the protocol requires. Its
//! key is `DIR/witness-key` (made on first start, mode 0600).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::Mutex;

use crate::domain::merkle::{Hash, verify_consistency};
use crate::domain::note::{COSIGNATURE, Checkpoint, Note, SigningKey, VerifierKey, base64, hash_from_base64};
use crate::store::key::{self, KeyFileError};

/// The C2SP limit on consistency proof lines.
const MAX_PROOF: usize = 63;

#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("cannot make the witness's dir {0}: {1}")]
    Dir(String, std::io::Error),
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error("--name: {0}")]
    Name(crate::domain::note::NoteError),
    #[error("the witness's state {0} cannot be read: {1}")]
    State(String, String),
}

/// The last checkpoint cosigned for one log.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Seen {
    size: u64,
    root: String,
}

pub struct Witness {
    key: SigningKey,
    /// The logs it witnesses, by origin (their key's name).
    logs: BTreeMap<String, VerifierKey>,
    state_path: PathBuf,
    /// Origin → the last checkpoint cosigned; the lock spans check and save.
    state: Mutex<BTreeMap<String, Seen>>,
    clock: Arc<dyn crate::domain::time::Clock>,
}

impl Witness {
    /// Opens (or makes) the witness's data dir with a key named `name`, to
    /// witness the logs of `logs`.
    pub fn open(
        dir: &Path,
        name: &str,
        logs: Vec<VerifierKey>,
        clock: Arc<dyn crate::domain::time::Clock>,
    ) -> Result<Witness, WitnessError> {
        use std::os::unix::fs::DirBuilderExt;
        let shown = dir.display().to_string();
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| WitnessError::Dir(shown, e))?;
        let key_path = dir.join("witness-key");
        if !key_path.exists() {
            key::save_new(&key::generate(name, COSIGNATURE).map_err(WitnessError::Name)?, &key_path)?;
        }
        let key = key::load(&key_path, COSIGNATURE)?;
        let state_path = dir.join("state.json");
        let state = match std::fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| WitnessError::State(state_path.display().to_string(), e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(WitnessError::State(state_path.display().to_string(), e.to_string())),
        };
        let logs = logs.into_iter().map(|k| (k.name.clone(), k)).collect();
        Ok(Witness { key, logs, state_path, state: Mutex::new(state), clock })
    }

    /// The witness's public key, to give to the logs' auditors.
    pub fn key(&self) -> &VerifierKey {
        self.key.verifier()
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new().route("/add-checkpoint", post(add_checkpoint)).with_state(self)
    }

    async fn add(&self, body: &str) -> Result<String, Refused> {
        let request = Request::parse(body)?;
        let checkpoint = Checkpoint::parse(&request.note.text).map_err(|e| Refused::Bad(e.to_string()))?;
        let log = self.logs.get(&checkpoint.origin).ok_or(Refused::UnknownLog)?;
        if !request.note.signed_by(log) {
            return Err(Refused::Signature);
        }
        if request.old > checkpoint.size {
            return Err(Refused::Bad("the old size is larger than the checkpoint's".into()));
        }
        let mut state = self.state.lock().await;
        let (size, root) = match state.get(&checkpoint.origin) {
            Some(seen) => (seen.size, hash_from_base64(&seen.root)),
            None => (0, None),
        };
        if request.old != size {
            return Err(Refused::Stale(size));
        }
        let root = root.unwrap_or([0; 32]);
        if size == checkpoint.size && size > 0 && root != checkpoint.root {
            return Err(Refused::Fork);
        }
        if !verify_consistency(size, checkpoint.size, &root, &checkpoint.root, &request.proof) {
            tracing::warn!(origin = %checkpoint.origin, from = size, to = checkpoint.size, "a checkpoint that does not extend the last one cosigned");
            return Err(Refused::Proof);
        }
        let mut next = state.clone();
        next.insert(checkpoint.origin.clone(), Seen { size: checkpoint.size, root: base64(&checkpoint.root) });
        save(&self.state_path, &next).map_err(Refused::Internal)?;
        *state = next;
        let time = self.clock.now().micros().max(0) as u64 / 1_000_000;
        Ok(format!("{}\n", self.key.cosign(&request.note.text, time)))
    }
}

/// The state written aside, fsynced, renamed into place, the dir fsynced.
fn save(path: &Path, state: &BTreeMap<String, Seen>) -> Result<(), String> {
    let aside = path.with_extension("json.new");
    let write = || -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        let file = std::fs::File::create(&aside)?;
        std::io::Write::write_all(&mut &file, &bytes)?;
        file.sync_all()?;
        std::fs::rename(&aside, path)?;
        std::fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
    };
    write().map_err(|e| format!("cannot save the witness's state {}: {e}", path.display()))
}

/// An `add-checkpoint` body: `old N`, proof lines, a blank line, the note.
struct Request {
    old: u64,
    proof: Vec<Hash>,
    note: Note,
}

impl Request {
    fn parse(body: &str) -> Result<Request, Refused> {
        let bad = |why: &str| Refused::Bad(why.to_owned());
        let (head, note) = body.split_once("\n\n").ok_or_else(|| bad("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old =
            lines.next().and_then(|l| l.strip_prefix("old ")).ok_or_else(|| bad("the first line is not `old N`"))?;
        if old.starts_with('0') && old != "0" {
            return Err(bad("the old size has leading zeroes"));
        }
        let old = old.parse().map_err(|_| bad("the old size is not a number"))?;
        let proof = lines
            .map(|l| hash_from_base64(l).ok_or_else(|| bad("a proof line is not a base64 hash")))
            .collect::<Result<Vec<_>, _>>()?;
        if proof.len() > MAX_PROOF {
            return Err(bad("more than 63 proof lines"));
        }
        let note = Note::parse(note).map_err(|e| Refused::Bad(e.to_string()))?;
        Ok(Request { old, proof, note })
    }
}

/// Why a checkpoint was not cosigned, with the protocol's status for each.
#[derive(Debug)]
enum Refused {
    Bad(String),
    UnknownLog,
    Signature,
    Stale(u64),
    Fork,
    Proof,
    Internal(String),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            Refused::Bad(why) => (StatusCode::BAD_REQUEST, why),
            Refused::UnknownLog => (StatusCode::NOT_FOUND, "this witness does not witness that origin".into()),
            Refused::Signature => (StatusCode::FORBIDDEN, "no signature by the log's key checks out".into()),
            Refused::Stale(size) => {
                return (StatusCode::CONFLICT, [(header::CONTENT_TYPE, "text/x.tlog.size")], format!("{size}\n"))
                    .into_response();
            }
            Refused::Fork => {
                (StatusCode::CONFLICT, "a checkpoint of this size with another root was cosigned already".into())
            }
            Refused::Proof => (StatusCode::UNPROCESSABLE_ENTITY, "the consistency proof does not check out".into()),
            Refused::Internal(why) => (StatusCode::INTERNAL_SERVER_ERROR, why),
        };
        (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{text}\n")).into_response()
    }
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    let Ok(body) = std::str::from_utf8(&body) else {
        return Refused::Bad("the body is not UTF-8".into()).into_response();
    };
    match w.add(body).await {
        Ok(lines) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], lines).into_response(),
        Err(refused) => refused.into_response(),
    }
}
