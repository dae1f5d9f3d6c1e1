//! Roles, presets and the catalogue: an org's named bundles of scopes (with
//! If-Match and dry run on edits, as for keys), the built-in presets, and
//! the org's list of actions.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::keys::parse_scopes;
use super::{
    ApiError, AppState, AsOfQuery, Body, Caller, DryRunQuery, Params, execute_or_preview, expected_version, json,
    parse_time, past, with_etag,
};
use crate::domain::command::{Command, RoleEdit};
use crate::domain::event::{Catalog, CatalogAction, Change, RoleChange};
use crate::domain::id::{KeyId, RoleName};
use crate::domain::permission::Permission;
use crate::domain::preset::{PRESETS, Preset};
use crate::domain::table::{Role, RoleView, Table};
use crate::domain::time::Timestamp;
use crate::registry::Outcome;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleRequest {
    name: String,
    #[serde(default)]
    description: String,
    scopes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoleRequest {
    description: Option<String>,
    scopes: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRoleQuery {
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogRequest {
    actions: Vec<CatalogEntry>,
    #[serde(default)]
    enforce: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    action: String,
    #[serde(default)]
    description: String,
}

#[derive(Serialize)]
struct RoleResponse<'a> {
    role: RoleView<'a>,
    /// How many keys hold the role and can still be used or enabled
    /// again (not revoked, expired or deleted).
    keys: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<&'a [String]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dry_run: bool,
}

#[derive(Serialize)]
struct RoleList<'a> {
    roles: Vec<RoleView<'a>>,
}

#[derive(Serialize)]
struct DeletedRole<'a> {
    name: &'a RoleName,
    deleted: bool,
    removed_from: &'a [KeyId],
    warnings: &'a [String],
}

#[derive(Serialize)]
struct PresetList {
    presets: &'static [Preset],
}

/// A role name from a path: one outside the grammar names no role.
fn path_role(name: &str) -> Result<RoleName, ApiError> {
    RoleName::parse(name).map_err(|_| no_such_role(name))
}

fn no_such_role(name: &str) -> ApiError {
    ApiError::NotFound(format!("no role {:?} in this organization", name.chars().take(80).collect::<String>()))
}

fn role_response(
    status: StatusCode,
    now: Timestamp,
    table: &Table,
    role: &Role,
    warnings: Option<&[String]>,
    dry_run: bool,
) -> Response {
    let keys = table.live_keys_with_role(&role.org, &role.name, now).len();
    with_etag(json(status, &RoleResponse { role: role.view(), keys, warnings, dry_run }), role.version)
}

/// The answer about a role a command made or changed.
fn changed(s: &AppState, status: StatusCode, outcome: &Outcome, dry_run: bool) -> Result<Response, ApiError> {
    let role = outcome.role.as_ref().ok_or_else(|| ApiError::Internal("a role command returned no role".into()))?;
    Ok(role_response(status, s.registry.now(), &s.registry.read().table, role, Some(&outcome.warnings), dry_run))
}

pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateRoleRequest>,
) -> Result<Response, ApiError> {
    caller.require(Permission::RolesAdmin)?;
    let name = RoleName::parse(&req.name)
        .map_err(|e| ApiError::InvalidField { field: "name", detail: format!("name: {e}") })?;
    let command = Command::CreateRole { name, description: req.description, scopes: parse_scopes(&req.scopes)? };
    let outcome = s.registry.execute(caller.actor(), caller.org.clone(), command).await?;
    changed(&s, StatusCode::CREATED, &outcome, false)
}

pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Params(q): Params<AsOfQuery>,
) -> Result<Response, ApiError> {
    caller.require(Permission::KeysRead)?;
    let page = |table: &Table| {
        json(StatusCode::OK, &RoleList { roles: table.roles_of(&caller.org).into_iter().map(Role::view).collect() })
    };
    match q.as_of {
        Some(at) => {
            let (at, org) = (parse_time("as_of", &at)?, caller.org.clone());
            Ok(page(&past(&s, &caller, move |r| r.roles_as_of(&org, at)).await?))
        }
        None => Ok(page(&s.registry.read().table)),
    }
}

pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Params(q): Params<AsOfQuery>,
) -> Result<Response, ApiError> {
    caller.require(Permission::KeysRead)?;
    let name = path_role(&name)?;
    // Which holders are live is judged at the time the table stands for.
    let answer = |table: &Table, at: Timestamp| {
        let role = table.role(&caller.org, &name).ok_or_else(|| no_such_role(name.as_str()))?;
        Ok(role_response(StatusCode::OK, at, table, role, None, false))
    };
    match q.as_of {
        Some(at) => {
            let (at, org) = (parse_time("as_of", &at)?, caller.org.clone());
            answer(&past(&s, &caller, move |r| r.org_as_of(&org, at)).await?, at)
        }
        None => answer(&s.registry.read().table, s.registry.now()),
    }
}

pub async fn update(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Params(q): Params<DryRunQuery>,
    headers: HeaderMap,
    Body(req): Body<UpdateRoleRequest>,
) -> Result<Response, ApiError> {
    caller.require(Permission::RolesAdmin)?;
    let name = path_role(&name)?;
    let edit = RoleEdit { description: req.description, scopes: req.scopes.as_deref().map(parse_scopes).transpose()? };
    let command = Command::EditRole { name, expected: expected_version(&headers)?, edit };
    let outcome = execute_or_preview(&s, &caller, command, q.dry_run).await?;
    changed(&s, StatusCode::OK, &outcome, q.dry_run)
}

pub async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Params(q): Params<DeleteRoleQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Permission::RolesAdmin)?;
    let name = path_role(&name)?;
    let command = Command::DeleteRole { name: name.clone(), expected: expected_version(&headers)?, force: q.force };
    let outcome = s.registry.execute(caller.actor(), caller.org.clone(), command).await?;
    let removed_from = outcome
        .events
        .iter()
        .find_map(|(_, e)| match &e.change {
            Change::Role(RoleChange::Deleted(d)) => Some(&d.removed_from[..]),
            _ => None,
        })
        .unwrap_or_default();
    let answer = DeletedRole { name: &name, deleted: true, removed_from, warnings: &outcome.warnings };
    Ok(json(StatusCode::OK, &answer))
}

pub async fn presets(caller: Caller) -> Result<Response, ApiError> {
    caller.require(Permission::KeysRead)?;
    Ok(json(StatusCode::OK, &PresetList { presets: PRESETS }))
}

pub async fn get_catalog(State(s): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Permission::KeysRead)?;
    let p = s.registry.read();
    let empty = Catalog::default();
    Ok(json(StatusCode::OK, p.table.catalog(&caller.org).unwrap_or(&empty)))
}

pub async fn put_catalog(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<CatalogRequest>,
) -> Result<Response, ApiError> {
    caller.require(Permission::RolesAdmin)?;
    let actions = req.actions.into_iter().map(|a| CatalogAction { action: a.action, description: a.description });
    let command = Command::SetCatalog(Catalog { actions: actions.collect(), enforce: req.enforce });
    s.registry.execute(caller.actor(), caller.org.clone(), command).await?;
    get_catalog(State(s), caller).await
}
