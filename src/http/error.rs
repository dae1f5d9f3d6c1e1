//! The one mapping from errors to HTTP: every failure an API call can meet
//! becomes an `ApiError`, and `ApiError` alone decides status, code and
//! title. Bodies are `application/problem+json`. 5xx details are logged,
//! never returned.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::command::Refusal;
use crate::registry::{ExecError, ReadError};
use crate::store::log::LogError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Validation(String),
    /// A field of the request breaks a domain rule; the body names it so
    /// a form can place the message without reading the sentence.
    #[error("{detail}")]
    InvalidField { field: &'static str, detail: String },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    KeyLimit(String),
    #[error("{0}")]
    VersionMismatch(String),
    #[error("{detail}")]
    Escalation { detail: String, permissions: Vec<String> },
    #[error("{detail}")]
    UnknownAction { detail: String, suggestions: Vec<String> },
    #[error("{0}")]
    RoleInUse(String),
    #[error("the request body is larger than this route accepts (64 KiB; 1 MiB for PUT /v1/catalog)")]
    PayloadTooLarge,
    #[error("the request headers are larger than 16 KiB")]
    HeadersTooLarge,
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Stale(String),
    #[error("{0}")]
    Unavailable(String),
    /// Several nodes, and none leads now (or this one cannot reach it).
    #[error("{0}")]
    NoLeader(String),
    /// Too many views of the past are being rebuilt at once.
    #[error("{0}")]
    Busy(String),
    /// The org writes faster than allowed; `Retry-After` says when to try.
    #[error("{detail}")]
    RateLimited { detail: String, retry_after: std::time::Duration },
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
    /// `ESCALATION`: the management permissions the change would grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    permissions: Option<&'a [String]>,
    /// `VALIDATION` of one field: its name in the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    /// `UNKNOWN_ACTION`: the catalogue's closest actions.
    #[serde(skip_serializing_if = "Option::is_none")]
    suggestions: Option<&'a [String]>,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::Validation(_) | ApiError::InvalidField { .. } => {
                (StatusCode::BAD_REQUEST, "VALIDATION", "The request is not valid")
            }
            ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "No valid key was presented"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN", "The key may not do this"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND", "Not found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "CONFLICT", "The current state does not allow this"),
            ApiError::KeyLimit(_) => (StatusCode::CONFLICT, "KEY_LIMIT", "The organization has reached max_keys"),
            ApiError::VersionMismatch(_) => {
                (StatusCode::PRECONDITION_FAILED, "VERSION_MISMATCH", "The resource has changed since that version")
            }
            ApiError::Escalation { .. } => {
                (StatusCode::FORBIDDEN, "ESCALATION", "A key may not grant more than it holds")
            }
            ApiError::UnknownAction { .. } => {
                (StatusCode::BAD_REQUEST, "UNKNOWN_ACTION", "The action is not in the organization's catalogue")
            }
            ApiError::RoleInUse(_) => (StatusCode::CONFLICT, "ROLE_IN_USE", "Keys still hold the role"),
            ApiError::PayloadTooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", "The request body is too large")
            }
            ApiError::HeadersTooLarge => {
                (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "HEADERS_TOO_LARGE", "The request headers are too large")
            }
            ApiError::RequestTimeout => {
                (StatusCode::REQUEST_TIMEOUT, "REQUEST_TIMEOUT", "The request body did not arrive in time")
            }
            ApiError::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "Method not allowed")
            }
            ApiError::Stale(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "STALE", "This node has not applied that sequence yet")
            }
            ApiError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "The service cannot take writes now")
            }
            ApiError::NoLeader(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "NO_LEADER", "No node of this registry leads now; nothing changed")
            }
            ApiError::Busy(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "BUSY", "Too many views of the past are being rebuilt; try again")
            }
            ApiError::RateLimited { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", "The organization is writing too fast")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "Internal error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.parts();
        let detail = match &self {
            ApiError::Internal(why) | ApiError::Unavailable(why) => {
                tracing::error!(code, error = %why, "request failed");
                if matches!(self, ApiError::Internal(_)) {
                    "internal error; the server log has the details".to_owned()
                } else {
                    self.to_string()
                }
            }
            other => other.to_string(),
        };
        let problem = Problem {
            type_: format!("urn:keyreg:problem:{}", code.to_ascii_lowercase()),
            title,
            status: status.as_u16(),
            detail,
            code,
            permissions: match &self {
                ApiError::Escalation { permissions, .. } => Some(permissions),
                _ => None,
            },
            field: match &self {
                ApiError::InvalidField { field, .. } => Some(field),
                _ => None,
            },
            suggestions: match &self {
                ApiError::UnknownAction { suggestions, .. } => Some(suggestions),
                _ => None,
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        // Refused before the request was read to its end: the rest of it is
        // still on the wire, so the connection cannot carry another request.
        if matches!(self, ApiError::PayloadTooLarge | ApiError::HeadersTooLarge | ApiError::RequestTimeout) {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let ApiError::RateLimited { retry_after, .. } = &self {
            // Whole seconds, rounded up: never an invitation to come back early.
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Validation { field, .. } => ApiError::InvalidField { field, detail: r.to_string() },
            Refusal::NotFound { .. } => ApiError::NotFound(r.to_string()),
            Refusal::Conflict(_) => ApiError::Conflict(r.to_string()),
            Refusal::KeyLimit { .. } => ApiError::KeyLimit(r.to_string()),
            Refusal::VersionMismatch { .. } => ApiError::VersionMismatch(r.to_string()),
            Refusal::Escalation { permissions } => ApiError::Escalation {
                detail: r.to_string(),
                permissions: permissions.iter().map(str::to_owned).collect(),
            },
            Refusal::UnknownAction { ref suggestions, .. } => {
                ApiError::UnknownAction { detail: r.to_string(), suggestions: suggestions.clone() }
            }
            Refusal::RoleInUse { .. } => ApiError::RoleInUse(r.to_string()),
            Refusal::Forbidden(_) => ApiError::Forbidden(r.to_string()),
        }
    }
}

/// A log that cannot be read is the server's failure, never the caller's.
impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Log(e) => e.into(),
            // The history there cannot be vouched for: nothing is returned
            // from the break on, and the answer says where it is.
            e @ ReadError::Broken(_) => ApiError::Unavailable(e.to_string()),
        }
    }
}

impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Refused(r) => r.into(),
            ExecError::Unavailable(why) => ApiError::Unavailable(why),
            e @ ExecError::NotLeader(_) => ApiError::NoLeader(e.to_string()),
            ExecError::RateLimited { retry_after } => {
                ApiError::RateLimited { detail: ExecError::RateLimited { retry_after }.to_string(), retry_after }
            }
        }
    }
}
