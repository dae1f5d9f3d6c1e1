//! Organization routes: create, list, read, update.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::usage::UsageView;
use super::{ApiError, AppState, Body, Caller, json, no_store};
use crate::domain::command::Command;
use crate::domain::id::OrgId;
use crate::domain::permission::Permission;
use crate::domain::table::{KeyView, Org};
use crate::registry::ORG_ADMIN_SCOPES;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrgRequest {
    id: String,
    name: String,
    max_keys: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrgRequest {
    name: Option<String>,
    max_keys: Option<u32>,
}

#[derive(Serialize)]
struct CreatedOrg<'a> {
    org: &'a Org,
    key: KeyView<'a>,
    secret: &'a str,
}

#[derive(Serialize)]
struct OrgResponse<'a> {
    org: &'a Org,
    key_counts: BTreeMap<&'static str, u64>,
    usage: UsageView<'static>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

/// An org in the operator's list: its settings and the keys that count
/// against its limit.
#[derive(Serialize)]
struct OrgSummary<'a> {
    #[serde(flatten)]
    org: &'a Org,
    keys_in_use: u32,
}

#[derive(Serialize)]
struct OrgList<'a> {
    orgs: Vec<OrgSummary<'a>>,
}

pub async fn create_org(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateOrgRequest>,
) -> Result<Response, ApiError> {
    caller.require(Permission::OrgsCreate)?;
    let id = OrgId::parse(&req.id)
        .ok()
        .filter(OrgId::is_tenant)
        .ok_or_else(|| ApiError::Validation("id must match [a-z0-9][a-z0-9-]{1,62}".into()))?;
    let token = s.registry.format().generate();
    let admin = s.registry.new_key(&token, "admin", "the first key of the organization", ORG_ADMIN_SCOPES);
    let command = Command::CreateOrg { id: id.clone(), name: req.name, max_keys: req.max_keys, admin };
    let outcome = s.registry.execute(caller.actor(), id, command).await?;
    let (Some(org), Some(key)) = (outcome.org.as_ref(), outcome.keys.first()) else {
        return Err(ApiError::Internal("org creation returned no org or key".into()));
    };
    let now = s.registry.now();
    let p = s.registry.read();
    Ok(no_store(json(StatusCode::CREATED, &CreatedOrg { org, key: p.table.view(key, now), secret: token.expose() })))
}

/// `GET /v1/orgs`: every organization, by id, for the operator.
pub async fn list_orgs(State(s): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Permission::OrgsAdmin)?;
    let p = s.registry.read();
    let mut orgs: Vec<OrgSummary> =
        p.table.orgs().map(|org| OrgSummary { org, keys_in_use: org.counted_keys }).collect();
    orgs.sort_by(|a, b| a.org.id.as_str().cmp(b.org.id.as_str()));
    Ok(json(StatusCode::OK, &OrgList { orgs }))
}

fn org_response(s: &AppState, id: &OrgId, warnings: &[String]) -> Result<Response, ApiError> {
    let now = s.registry.now();
    let p = s.registry.read();
    let org = p.table.org(id).ok_or_else(|| ApiError::NotFound(format!("no organization {id}")))?;
    let mut key_counts: BTreeMap<&'static str, u64> =
        [("active", 0), ("disabled", 0), ("expired", 0), ("revoked", 0), ("deleted", 0)].into_iter().collect();
    for key in p.table.keys_of(id, None) {
        *key_counts.entry(key.status_at(now).as_str()).or_default() += 1;
    }
    Ok(json(StatusCode::OK, &OrgResponse { org, key_counts, usage: UsageView::all_time(&org.usage), warnings }))
}

pub async fn get_org(State(s): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Permission::KeysRead)?;
    org_response(&s, &caller.org, &[])
}

/// The org's own settings: its name. `max_keys` is the operator's.
pub async fn update_org(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<UpdateOrgRequest>,
) -> Result<Response, ApiError> {
    caller.require(Permission::KeysAdmin)?;
    let command = Command::UpdateOrg { name: req.name, max_keys: req.max_keys };
    s.registry.execute(caller.actor(), caller.org.clone(), command).await?;
    org_response(&s, &caller.org, &[])
}

/// The operator's settings of any org: its `max_keys` (and name).
pub async fn operate_org(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<UpdateOrgRequest>,
) -> Result<Response, ApiError> {
    caller.require(Permission::OrgsAdmin)?;
    let id = OrgId::parse(&id)
        .map_err(|_| ApiError::NotFound(format!("no organization {:?}", id.chars().take(80).collect::<String>())))?;
    let outcome = s
        .registry
        .execute(caller.actor(), id.clone(), Command::UpdateOrg { name: req.name, max_keys: req.max_keys })
        .await?;
    org_response(&s, &id, &outcome.warnings)
}
