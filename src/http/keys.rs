//! Key management routes: create, list, get, edit (with If-Match and dry
//! run), disable, enable, revoke, delete, bulk revoke, rotate.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::{
    ApiError, AppState, AsOfQuery, Body, Caller, DryRunQuery, Params, execute_or_preview, expected_version, json,
    no_store, no_such_key, parse_key_id, parse_time, past, with_etag,
};
use crate::domain::cidr::Cidr;
use crate::domain::command::{Command, Expiry, KeyEdit, NewKey, NewSecret};
use crate::domain::id::{Actor, KeyId, RoleName};
use crate::domain::meta::Meta;
use crate::domain::permission::Permission;
use crate::domain::scope::Scope;
use crate::domain::table::{Key, KeyView, Status, Table};
use crate::domain::time::Timestamp;
use crate::registry::Outcome;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// The body of a create, and of an import, which adds the legacy secret.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    pub(super) secret: Option<String>,
    pub(super) secret_sha256: Option<String>,
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    scopes: Vec<String>,
    /// A preset's scopes, added to `scopes`.
    preset: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    expires_at: Option<String>,
    expires_in_days: Option<f64>,
    #[serde(default)]
    allowed_cidrs: Vec<String>,
    meta: Option<serde_json::Value>,
}

/// Absent fields stay as they are; `expires_at: null` removes the expiry,
/// `meta: null` the metadata.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyRequest {
    name: Option<String>,
    description: Option<String>,
    owner: Option<String>,
    scopes: Option<Vec<String>>,
    preset: Option<String>,
    roles: Option<Vec<String>>,
    allowed_cidrs: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    meta: Option<Option<serde_json::Value>>,
}

/// Distinguishes a field given as `null` (`Some(None)`) from an absent one.
fn present<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A key's metadata as given, checked.
fn parse_meta(value: &serde_json::Value) -> Result<Meta, ApiError> {
    Meta::new(value).map_err(|e| ApiError::InvalidField { field: "meta", detail: e.to_string() })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    #[serde(default)]
    grace_seconds: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    q: Option<String>,
    /// Only keys whose owner is exactly this.
    owner: Option<String>,
    /// Only keys created by this actor (`key:<id>`, `user:<email>`, `system:<what>`).
    created_by: Option<String>,
    /// Only keys that expire within a week (and still work, or could).
    expiring: Option<bool>,
    limit: Option<usize>,
    cursor: Option<String>,
    as_of: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    confirm: Option<String>,
    reason: Option<String>,
}

#[derive(Serialize)]
struct KeyResponse<'a> {
    key: KeyView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<&'a [String]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dry_run: bool,
}

#[derive(Serialize)]
pub(super) struct KeyList<'a> {
    pub(super) keys: Vec<KeyView<'a>>,
    pub(super) next_cursor: Option<String>,
}

pub(super) fn parse_scopes(scopes: &[String]) -> Result<Vec<Scope>, ApiError> {
    scopes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Scope::parse(s).map_err(|e| ApiError::InvalidField { field: "scopes", detail: format!("scopes[{i}]: {e}") })
        })
        .collect()
}

/// The scopes a request asks for, its preset expanded (`preset::expand`).
fn scopes_asked(scopes: Option<&[String]>, preset: Option<&str>) -> Result<Option<Vec<Scope>>, ApiError> {
    let scopes = scopes.map(parse_scopes).transpose()?;
    Ok(crate::domain::preset::expand(preset, scopes)?)
}

fn parse_roles(roles: &[String]) -> Result<Vec<RoleName>, ApiError> {
    roles
        .iter()
        .enumerate()
        .map(|(i, r)| {
            RoleName::parse(r)
                .map_err(|e| ApiError::InvalidField { field: "roles", detail: format!("roles[{i}]: {e}") })
        })
        .collect()
}

fn parse_cidrs(cidrs: &[String]) -> Result<Vec<Cidr>, ApiError> {
    cidrs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Cidr::parse(c).map_err(|e| ApiError::InvalidField {
                field: "allowed_cidrs",
                detail: format!("allowed_cidrs[{i}]: {e}"),
            })
        })
        .collect()
}

/// What goes with a key in an answer, beside the key itself.
#[derive(Default)]
pub(super) struct Extras<'a> {
    pub(super) secret: Option<&'a str>,
    pub(super) warnings: Option<&'a [String]>,
    pub(super) dry_run: bool,
}

/// The answer about one key (as `table` renders its roles), with an `ETag`
/// of its version.
fn key_response(status: StatusCode, table: &Table, key: &Key, now: Timestamp, extras: Extras<'_>) -> Response {
    let Extras { secret, warnings, dry_run } = extras;
    let response =
        with_etag(json(status, &KeyResponse { key: table.view(key, now), secret, warnings, dry_run }), key.version);
    if secret.is_some() { no_store(response) } else { response }
}

/// The answer about a key a command changed, rendered with the live table.
pub(super) fn changed(
    s: &AppState,
    status: StatusCode,
    outcome: &Outcome,
    extras: Extras<'_>,
) -> Result<Response, ApiError> {
    let key = outcome.keys.first().ok_or_else(|| ApiError::Internal("a key command returned no key".into()))?;
    Ok(key_response(status, &s.registry.read().table, key, s.registry.now(), extras))
}

/// `POST /v1/keys`; with `?dry_run=true`, the key it would make and the
/// warnings, with no secret made and nothing recorded.
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    Params(q): Params<DryRunQuery>,
    Body(req): Body<CreateKeyRequest>,
) -> Result<Response, ApiError> {
    caller.require(Permission::KeysAdmin)?;
    if req.secret.is_some() || req.secret_sha256.is_some() {
        return Err(ApiError::Validation(
            "keyreg makes a new key's secret; to take in an existing secret, use POST /v1/keys/import".into(),
        ));
    }
    let token = s.registry.format().generate();
    let new = req.into_new_key(s.registry.next_key_id(), s.registry.secret_of(&token))?;
    let outcome = execute_or_preview(&s, &caller, Command::CreateKey(new), q.dry_run).await?;
    let (status, secret) = if q.dry_run { (StatusCode::OK, None) } else { (StatusCode::CREATED, Some(token.expose())) };
    let extras = Extras { secret, warnings: Some(&outcome.warnings), dry_run: q.dry_run };
    changed(&s, status, &outcome, extras)
}

impl CreateKeyRequest {
    /// The new key the request describes, with `secret` as its secret.
    pub(super) fn into_new_key(self, id: KeyId, secret: NewSecret) -> Result<NewKey, ApiError> {
        let expiry = match (&self.expires_at, self.expires_in_days) {
            (Some(_), Some(_)) => {
                return Err(ApiError::Validation("give expires_at or expires_in_days, not both".into()));
            }
            (Some(at), None) => Expiry::At(parse_time("expires_at", at)?),
            // Its bounds are the domain's (`decide`); out of i64's range
            // saturates, and is refused there too.
            (None, Some(days)) => Expiry::AfterSeconds((days * 86_400.0).round() as i64),
            (None, None) => Expiry::Never,
        };
        Ok(NewKey {
            id,
            secret,
            scopes: scopes_asked(Some(&self.scopes), self.preset.as_deref())?.unwrap_or_default(),
            roles: parse_roles(&self.roles)?,
            allowed_cidrs: parse_cidrs(&self.allowed_cidrs)?,
            name: self.name,
            description: self.description,
            owner: self.owner,
            expiry,
            meta: self.meta.as_ref().map(parse_meta).transpose()?,
        })
    }
}

/// Which statuses a listing shows.
fn status_filter(status: Option<&str>) -> Result<Option<Status>, ApiError> {
    match status.unwrap_or("active") {
        "all" => Ok(None),
        s => Status::parse(s).map(Some).ok_or_else(|| {
            ApiError::Validation("status must be active, disabled, expired, revoked, deleted or all".into())
        }),
    }
}

/// What a listing keeps, from its query.
#[derive(Clone)]
struct Wanted {
    status: Option<Status>,
    /// Lowercased.
    needle: Option<String>,
    owner: Option<String>,
    created_by: Option<Actor>,
    expiring: bool,
}

impl Wanted {
    fn accepts(&self, k: &Key, now: Timestamp) -> bool {
        self.status.is_none_or(|st| k.status_at(now) == st)
            && (!self.expiring || k.expiring_soon(now))
            && self.needle.as_deref().is_none_or(|n| k.name().to_lowercase().contains(n))
            && self.owner.as_deref().is_none_or(|o| k.owner() == o)
            && self.created_by.as_ref().is_none_or(|a| *k.created_by == *a)
    }
}

pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Response, ApiError> {
    caller.require(Permission::KeysRead)?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Validation(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let cursor = q
        .cursor
        .as_deref()
        .map(|c| KeyId::parse(c).map_err(|_| ApiError::Validation("cursor is not one this API returned".into())))
        .transpose()?;
    let wanted = Wanted {
        status: status_filter(q.status.as_deref())?,
        needle: q.q.as_deref().map(str::to_lowercase),
        owner: q.owner,
        created_by: q
            .created_by
            .as_deref()
            .map(|a| {
                Actor::parse(a)
                    .map_err(|e| ApiError::InvalidField { field: "created_by", detail: format!("created_by: {e}") })
            })
            .transpose()?,
        expiring: q.expiring.unwrap_or(false),
    };
    let page = |table: &Table, now: Timestamp| -> Response {
        let mut keys = Vec::with_capacity(limit.min(64));
        let mut more = false;
        for key in table.keys_of(&caller.org, cursor.as_ref()).filter(|k| wanted.accepts(k, now)) {
            if keys.len() == limit {
                more = true;
                break;
            }
            keys.push(table.view(key, now));
        }
        let next_cursor = if more { keys.last().map(|k| k.id.to_string()) } else { None };
        json(StatusCode::OK, &KeyList { keys, next_cursor })
    };
    match q.as_of {
        Some(at) => {
            let at = parse_time("as_of", &at)?;
            let (org, filter) = (caller.org.clone(), wanted.clone());
            let table =
                past(&s, &caller, move |r| r.page_as_of(&org, at, cursor, limit, |k| filter.accepts(k, at))).await?;
            Ok(page(&table, at))
        }
        None => Ok(page(&s.registry.read().table, s.registry.now())),
    }
}

pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(q): Params<AsOfQuery>,
) -> Result<Response, ApiError> {
    caller.require(Permission::KeysRead)?;
    let id = parse_key_id(&id)?;
    let not_found = || no_such_key(id.as_str());
    match q.as_of {
        Some(at) => {
            let at = parse_time("as_of", &at)?;
            let org = caller.org.clone();
            let table = past(&s, &caller, move |r| r.key_as_of(&org, &id, at)).await?;
            let key = table.key_in(&caller.org, &id).ok_or_else(not_found)?;
            Ok(key_response(StatusCode::OK, &table, key, at, Extras::default()))
        }
        None => {
            let p = s.registry.read();
            let key = p.table.key_in(&caller.org, &id).ok_or_else(not_found)?;
            Ok(key_response(StatusCode::OK, &p.table, key, s.registry.now(), Extras::default()))
        }
    }
}

pub async fn update(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(q): Params<DryRunQuery>,
    headers: HeaderMap,
    Body(req): Body<UpdateKeyRequest>,
) -> Result<Response, ApiError> {
    caller.require(Permission::KeysAdmin)?;
    let id = parse_key_id(&id)?;
    let expected = expected_version(&headers)?;
    let expires_at = match req.expires_at {
        None => None,
        Some(None) => Some(None),
        Some(Some(at)) => Some(Some(parse_time("expires_at", &at)?)),
    };
    let edit = KeyEdit {
        name: req.name,
        description: req.description,
        owner: req.owner,
        expires_at,
        scopes: scopes_asked(req.scopes.as_deref(), req.preset.as_deref())?,
        roles: req.roles.as_deref().map(parse_roles).transpose()?,
        allowed_cidrs: req.allowed_cidrs.as_deref().map(parse_cidrs).transpose()?,
        meta: req.meta.map(|m| m.as_ref().map(parse_meta).transpose()).transpose()?,
    };
    let command = Command::EditKey { id, expected, edit };
    let outcome = execute_or_preview(&s, &caller, command, q.dry_run).await?;
    let extras = Extras { secret: None, warnings: Some(&outcome.warnings), dry_run: q.dry_run };
    changed(&s, StatusCode::OK, &outcome, extras)
}

/// Runs a command that changes one key and answers with the key after it.
async fn one_key(s: &AppState, caller: &Caller, command: Command) -> Result<Response, ApiError> {
    let outcome = s.registry.execute(caller.actor(), caller.org.clone(), command).await?;
    changed(s, StatusCode::OK, &outcome, Extras::default())
}

pub async fn disable(
    s: State<AppState>,
    caller: Caller,
    id: Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    switch(s, caller, id, headers, |id, expected| Command::Disable { id, expected }).await
}

pub async fn enable(
    s: State<AppState>,
    caller: Caller,
    id: Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    switch(s, caller, id, headers, |id, expected| Command::Enable { id, expected }).await
}

/// Disable and enable: the same request, a different command.
async fn switch(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    command: fn(KeyId, Option<crate::domain::id::Seq>) -> Command,
) -> Result<Response, ApiError> {
    caller.require(Permission::KeysAdmin)?;
    let command = command(parse_key_id(&id)?, expected_version(&headers)?);
    one_key(&s, &caller, command).await
}

pub async fn revoke(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(req): Body<RevokeRequest>,
) -> Result<Response, ApiError> {
    caller.require(Permission::KeysAdmin)?;
    let command = Command::Revoke { id: parse_key_id(&id)?, expected: expected_version(&headers)?, reason: req.reason };
    one_key(&s, &caller, command).await
}

pub async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(q): Params<DeleteQuery>,
) -> Result<Response, ApiError> {
    caller.require(Permission::KeysAdmin)?;
    let id = parse_key_id(&id)?;
    let confirm = q.confirm.ok_or_else(|| ApiError::InvalidField {
        field: "confirm",
        detail: "confirm: pass ?confirm=<the key's name> to delete it".into(),
    })?;
    one_key(&s, &caller, Command::Delete { id, confirm, reason: q.reason }).await
}

pub async fn rotate(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(req): Body<RotateRequest>,
) -> Result<Response, ApiError> {
    caller.require(Permission::KeysAdmin)?;
    let token = s.registry.format().generate();
    let command = Command::Rotate {
        id: parse_key_id(&id)?,
        expected: expected_version(&headers)?,
        secret: s.registry.secret_of(&token),
        grace_seconds: req.grace_seconds,
    };
    let outcome = s.registry.execute(caller.actor(), caller.org.clone(), command).await?;
    changed(&s, StatusCode::OK, &outcome, Extras { secret: Some(token.expose()), ..Extras::default() })
}
