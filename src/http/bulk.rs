//! Many keys at once: bulk revoke (or delete) by id, and offboarding, which
//! revokes every key of one owner. Each is one decision, so its events are
//! one batch: every node sees the keys go together.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::keys::KeyList;
use super::{ApiError, AppState, Body, Caller, json, parse_key_id};
use crate::domain::command::Command;
use crate::domain::id::KeyId;
use crate::domain::permission::Permission;
use crate::domain::table::KeyView;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRevokeRequest {
    ids: Vec<String>,
    reason: Option<String>,
    #[serde(default)]
    delete: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffboardRequest {
    owner: String,
    reason: Option<String>,
}

#[derive(Serialize)]
struct Offboarded<'a> {
    owner: &'a str,
    /// The keys revoked, oldest first; empty when the owner had none left.
    revoked: Vec<KeyId>,
}

pub async fn bulk_revoke(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<BulkRevokeRequest>,
) -> Result<Response, ApiError> {
    caller.require(Permission::KeysAdmin)?;
    let ids = req.ids.iter().map(|id| parse_key_id(id)).collect::<Result<Vec<_>, _>>()?;
    let command = Command::BulkRevoke { ids, reason: req.reason, delete: req.delete };
    let outcome = s.registry.execute(caller.actor(), caller.org.clone(), command).await?;
    let now = s.registry.now();
    let p = s.registry.read();
    let keys: Vec<KeyView> = outcome.keys.iter().map(|k| p.table.view(k, now)).collect();
    Ok(json(StatusCode::OK, &KeyList { keys, next_cursor: None }))
}

pub async fn offboard(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<OffboardRequest>,
) -> Result<Response, ApiError> {
    caller.require(Permission::KeysAdmin)?;
    let command = Command::Offboard { owner: req.owner.clone(), reason: req.reason };
    let outcome = s.registry.execute(caller.actor(), caller.org.clone(), command).await?;
    let revoked = outcome.events.iter().filter_map(|(_, e)| e.key_id().copied()).collect();
    Ok(json(StatusCode::OK, &Offboarded { owner: &req.owner, revoked }))
}
