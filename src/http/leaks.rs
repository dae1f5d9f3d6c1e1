//! `POST /v1/leaks`: leak reports from secret scanning (GitHub's partner
//! format, `domain::leak`). Each token that is a live key of this registry
//! is revoked at once, as `system:leak-report`, with where it was found as
//! the reason; the answer is GitHub's feedback, by the token's SHA-256.
//! Nothing is read from the body, and nothing changes, unless its signature
//! checks out against `--leak-keys`.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{ApiError, AppState, json};
use crate::domain::command::Command;
use crate::domain::id::Actor;
use crate::domain::leak::{self, Feedback, Label, LeakError};
use crate::domain::table::Status;
use crate::domain::verifier::{self, Presented, Question};

const KEY_ID: &str = "github-public-key-identifier";
const SIGNATURE: &str = "github-public-key-signature";
/// A report of `leak::MAX_TOKENS` tokens fits.
pub const BODY_LIMIT: usize = 1024 * 1024;

pub async fn report(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let Some(path) = &s.options.leak_keys else {
        return Err(ApiError::NotFound("leak reports are off: start keyreg serve with --leak-keys FILE".into()));
    };
    let keys = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| ApiError::Internal(format!("cannot read the leak keys file {}: {e}", path.display())))?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let found = leak::verified(&keys, header(KEY_ID), header(SIGNATURE), &body).map_err(|e| match e {
        LeakError::KeysFile(_) => ApiError::Internal(e.to_string()),
        LeakError::Body(_) => ApiError::Validation(e.to_string()),
        LeakError::Unsigned | LeakError::UnknownKey(_) | LeakError::BadSignature => {
            ApiError::Unauthenticated(e.to_string())
        }
    })?;
    let now = s.registry.now();
    let live: Vec<_> = {
        let p = s.registry.read();
        found
            .iter()
            .map(|f| {
                let presented = Presented::of(s.registry.format(), s.registry.pepper(), &f.token);
                verifier::check(&p.table, &presented, &Question::default(), now)
                    .key
                    .filter(|k| matches!(k.status_at(now), Status::Active | Status::Disabled))
                    .map(|k| (k.org.clone(), k.id))
            })
            .collect()
    };
    let mut revoked = HashSet::new();
    let mut feedback = Vec::with_capacity(found.len());
    for (f, live) in found.iter().zip(live) {
        let label = match live {
            Some((org, id)) => {
                if revoked.insert(id) {
                    let revoke = Command::Revoke { id, expected: None, reason: Some(leak::reason(&f.url)) };
                    match s.registry.execute(Actor::system("leak-report"), org, revoke).await.map_err(ApiError::from) {
                        // Revoked meanwhile, by someone else: still a true leak.
                        Ok(_) | Err(ApiError::Conflict(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                Label::TruePositive
            }
            None => Label::FalsePositive,
        };
        feedback.push(Feedback::new(f, label));
    }
    Ok(json(StatusCode::OK, &feedback))
}
