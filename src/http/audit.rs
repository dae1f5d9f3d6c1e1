//! Audit routes: the history filtered and paged, the chain check, and the
//! raw event stream, all served from the stored bytes.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, AppState, Caller, Params, blocking, json, parse_key_id, parse_time};
use crate::domain::audit::{Order, Query};
use crate::domain::chain::ChainHash;
use crate::domain::event;
use crate::domain::id::{Actor, Seq};
use crate::domain::permission::Permission;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    key_id: Option<String>,
    actor: Option<String>,
    #[serde(rename = "type")]
    type_name: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    order: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    after_seq: Option<u64>,
    limit: Option<usize>,
}

const MAX_EVENTS: usize = 10_000;

pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Params(q): Params<AuditQuery>,
) -> Result<Response, ApiError> {
    caller.require(Permission::AuditRead)?;
    let limit = q.limit.unwrap_or(super::keys::DEFAULT_LIMIT);
    if !(1..=super::keys::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Validation(format!("limit must be 1 to {}", super::keys::MAX_LIMIT)));
    }
    let order = match q.order.as_deref() {
        None | Some("desc") => Order::Desc,
        Some("asc") => Order::Asc,
        Some(_) => return Err(ApiError::Validation("order must be asc or desc".into())),
    };
    if let Some(t) = &q.type_name
        && !event::TYPES.contains(&t.as_str())
    {
        return Err(ApiError::Validation(format!("type must be one of {}", event::TYPES.join(", "))));
    }
    let query = Query {
        org: caller.org.clone(),
        key: q.key_id.as_deref().map(parse_key_id).transpose()?,
        actor: q
            .actor
            .as_deref()
            .map(|a| {
                Actor::parse(a).map_err(|e| ApiError::InvalidField { field: "actor", detail: format!("actor: {e}") })
            })
            .transpose()?,
        type_name: q.type_name,
        since: q.since.as_deref().map(|t| parse_time("since", t)).transpose()?,
        until: q.until.as_deref().map(|t| parse_time("until", t)).transpose()?,
        after: q
            .cursor
            .as_deref()
            .map(|c| {
                c.parse::<u64>()
                    .map(Seq)
                    .map_err(|_| ApiError::Validation("cursor is not one this API returned".into()))
            })
            .transpose()?,
        order,
        limit,
    };
    let (seqs, more) = s.registry.read().audit.query(&query);
    // The events go out exactly as stored: the body is assembled from the
    // stored bytes (read off the runtime: sled reads block), never from a
    // re-serialization.
    // Each record's link is checked as it is read.
    let registry = s.registry.clone();
    let last = seqs.last().copied();
    let body = blocking(move || {
        let mut body = Vec::from(&b"{\"events\":["[..]);
        for (i, record) in registry.read_checked_at(seqs).enumerate() {
            let record = record?;
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(record.bytes());
        }
        body.extend_from_slice(b"],\"next_cursor\":");
        match last.filter(|_| more) {
            Some(last) => body.extend_from_slice(format!("\"{last}\"}}").as_bytes()),
            None => body.extend_from_slice(b"null}"),
        }
        Ok(body)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response())
}

/// Checks the chain: the events after the sealed mark, the ones before it
/// having been checked already (`Registry::verify_chain`). A `_system` key
/// hears about the whole log; any
/// other org's key about its own events in it: how many of them the check
/// covered, and the last of them (with its hash), so one tenant learns
/// nothing of another's activity. `ok` and `first_bad_seq` are the chain's:
/// a break anywhere matters to everyone whose history follows it.
pub async fn verify_chain(State(s): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Permission::AuditRead)?;
    let registry = s.registry.clone();
    let mut report = s.heavy.run(&caller.org, move || Ok(registry.verify_chain()?)).await?;
    if caller.org.is_tenant() {
        let (events, last) = s.registry.read().audit.org_events(&caller.org, report.head_seq);
        report.events = events;
        report.head_seq = last.unwrap_or_default();
        report.head_hash = match last {
            Some(seq) => {
                let reader = s.registry.log().clone();
                blocking(move || Ok(reader.get(seq)?.map(|r| r.hash))).await?.unwrap_or_default()
            }
            None => ChainHash::ZERO,
        };
    }
    Ok(json(StatusCode::OK, &report))
}

/// Raw events after `after_seq` in log order, one stored event per line,
/// each record's link checked. Keys of the system org read the whole log;
/// any other org's keys read the events of their own org only (still in log
/// order, byte for byte), found through the audit index.
pub async fn events(
    State(s): State<AppState>,
    caller: Caller,
    Params(q): Params<EventsQuery>,
) -> Result<Response, ApiError> {
    caller.require(Permission::AuditRead)?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=MAX_EVENTS).contains(&limit) {
        return Err(ApiError::Validation(format!("limit must be 1 to {MAX_EVENTS}")));
    }
    let registry = s.registry.clone();
    let after = Seq(q.after_seq.unwrap_or(0));
    // A tenant's events come from the audit index, not a scan of the log.
    let tenant = caller.org.is_tenant().then(|| s.registry.read().audit.org_events_after(&caller.org, after, limit));
    let body = blocking(move || {
        let records: Box<dyn Iterator<Item = Result<_, _>>> = match tenant {
            Some(seqs) => Box::new(registry.read_checked_at(seqs)),
            // No event comes after the largest sequence there can be.
            None => Box::new(registry.read_checked(Seq(after.0.saturating_add(1)), None).take(limit)),
        };
        let mut body = Vec::new();
        for record in records {
            body.extend_from_slice(record?.bytes());
            body.push(b'\n');
        }
        Ok(body)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"))], body).into_response())
}

#[derive(serde::Serialize)]
pub struct Digest {
    pub seq: Seq,
    pub digest: String,
}

/// `{seq, digest}` of the live table: equal on every node that applied the
/// same log up to `seq`. A `_system` key gets the whole table's; any other
/// org's key its own org's, at its org's last event.
pub async fn digest(State(s): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Permission::AuditRead)?;
    let p = s.registry.read();
    let (seq, digest) = if !caller.org.is_tenant() {
        (p.table.applied(), p.table.digest())
    } else {
        let last = p.audit.org_events(&caller.org, p.table.applied()).1;
        (last.unwrap_or_default(), p.table.org_digest(&caller.org))
    };
    Ok(json(StatusCode::OK, &Digest { seq, digest: digest.to_hex().to_string() }))
}
