//! The transparency routes: the newest signed checkpoint (open to anyone,
//! as a checkpoint is public by design) and the RFC 9162 proofs against
//! it. An inclusion proof is given only for an event the caller may read:
//! a tenant's key, for its own org's events; any other event is as absent
//! for it as for `/v1/events`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Caller, Params, blocking, json};
use crate::domain::event;
use crate::domain::id::Seq;
use crate::domain::note::base64;
use crate::domain::permission::Permission;
use crate::registry::{Registry, TreeError};

impl From<TreeError> for ApiError {
    fn from(e: TreeError) -> Self {
        match e {
            TreeError::Beyond { .. } => ApiError::Validation(e.to_string()),
            TreeError::Log(..) => ApiError::Internal(e.to_string()),
        }
    }
}

/// `GET /v1/checkpoint`: a C2SP checkpoint note, with every cosignature
/// collected for it.
pub async fn checkpoint(State(s): State<AppState>) -> Result<Response, ApiError> {
    let note = s.registry.checkpoint().ok_or_else(|| {
        ApiError::Unavailable(
            "no checkpoint is signed yet: the log has no acknowledged event; try again shortly".into(),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note.to_string()).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    seq: u64,
    size: Option<u64>,
}

#[derive(Serialize)]
struct Inclusion {
    leaf_index: u64,
    tree_size: u64,
    hashes: Vec<String>,
}

/// `GET /v1/proofs/inclusion?seq=S[&size=N]`: event S in the tree of N
/// events (the newest checkpoint's size unless given).
pub async fn inclusion(
    State(s): State<AppState>,
    caller: Caller,
    Params(q): Params<InclusionQuery>,
) -> Result<Response, ApiError> {
    caller.require(Permission::AuditRead)?;
    let size = tree_size(&s.registry, q.size)?;
    let seq = Seq(q.seq);
    if seq.0 == 0 || seq.0 > size {
        return Err(ApiError::Validation(format!("seq must be 1 to the tree size ({size})")));
    }
    let registry = s.registry.clone();
    let hashes = blocking(move || {
        let record = registry.log().get(seq)?.ok_or_else(|| ApiError::NotFound(format!("no event {seq}")))?;
        let org = event::decode(record.bytes()).map_err(|e| ApiError::Internal(e.to_string()))?.event.org;
        if caller.org.is_tenant() && org != caller.org {
            return Err(ApiError::NotFound(format!("no event {seq} of your organization")));
        }
        Ok(registry.inclusion_proof(seq, size)?)
    })
    .await?;
    let answer =
        Inclusion { leaf_index: seq.0 - 1, tree_size: size, hashes: hashes.iter().map(|h| base64(h)).collect() };
    Ok(json(StatusCode::OK, &answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    from: u64,
    to: Option<u64>,
}

#[derive(Serialize)]
struct Consistency {
    from: u64,
    to: u64,
    hashes: Vec<String>,
}

/// `GET /v1/proofs/consistency?from=M[&to=N]`: the tree of N events
/// extends that of M (N: the newest checkpoint's size unless given).
pub async fn consistency(
    State(s): State<AppState>,
    _caller: Caller,
    Params(q): Params<ConsistencyQuery>,
) -> Result<Response, ApiError> {
    let to = tree_size(&s.registry, q.to)?;
    if q.from > to {
        return Err(ApiError::Validation(format!("from must be at most to ({to})")));
    }
    let registry = s.registry.clone();
    let hashes = blocking(move || Ok(registry.consistency_proof(q.from, to)?)).await?;
    let answer = Consistency { from: q.from, to, hashes: hashes.iter().map(|h| base64(h)).collect() };
    Ok(json(StatusCode::OK, &answer))
}

/// `asked`, or the newest checkpoint's size; never beyond what a
/// checkpoint may cover (acknowledged events).
fn tree_size(registry: &Registry, asked: Option<u64>) -> Result<u64, ApiError> {
    let signed = *registry.checkpoints().borrow();
    let limit = registry.acknowledged().0;
    match asked {
        None if signed == 0 => Err(ApiError::Unavailable("no checkpoint is signed yet; try again shortly".into())),
        None => Ok(signed),
        Some(n) if n == 0 || n > limit => {
            Err(ApiError::Validation(format!("the tree size must be 1 to {limit}, the acknowledged events")))
        }
        Some(n) => Ok(n),
    }
}
