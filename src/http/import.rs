//! `POST /v1/keys/import`: a key that existed before keyreg, taken in with
//! its secret or only that secret's SHA-256, so its holders keep working
//! while they move to keyreg's tokens. The secret never comes back in the
//! answer, and no error message repeats it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::keys::{CreateKeyRequest, Extras, changed};
use super::{ApiError, AppState, Body, Caller};
use crate::domain::command::{Command, NewSecret};
use crate::domain::legacy;
use crate::domain::permission::Permission;
use crate::domain::token::{TokenFormat, parse_hex32};
use crate::registry::Registry;

pub async fn import(
    State(s): State<AppState>,
    caller: Caller,
    Body(mut req): Body<CreateKeyRequest>,
) -> Result<Response, ApiError> {
    caller.require(Permission::KeysAdmin)?;
    let secret = legacy_secret(&s.registry, req.secret.take(), req.secret_sha256.take())?;
    let new = req.into_new_key(s.registry.next_key_id(), secret)?;
    let outcome = s.registry.execute(caller.actor(), caller.org.clone(), Command::ImportKey(new)).await?;
    let extras = Extras { secret: None, warnings: Some(&outcome.warnings), dry_run: false };
    changed(&s, StatusCode::CREATED, &outcome, extras)
}

/// The stored hash and display prefix of the secret to import.
fn legacy_secret(registry: &Registry, secret: Option<String>, sha256: Option<String>) -> Result<NewSecret, ApiError> {
    let invalid = |why: String| Err(ApiError::Validation(why));
    match (secret, sha256) {
        (Some(_), Some(_)) => invalid("give secret or secret_sha256, not both".into()),
        (None, None) => invalid("give the legacy secret as secret, or its SHA-256 as secret_sha256".into()),
        (Some(secret), None) => {
            check_secret(registry.format(), &secret)?;
            Ok(NewSecret {
                hash: legacy::hash_secret(registry.pepper(), &secret),
                display_prefix: legacy::display_prefix(&secret),
            })
        }
        (None, Some(hex)) => match parse_hex32(&hex.to_ascii_lowercase()) {
            Some(digest) => Ok(NewSecret {
                hash: legacy::hash(registry.pepper(), &digest),
                display_prefix: legacy::DIGEST_ONLY_PREFIX.into(),
            }),
            None => invalid("secret_sha256 must be 64 hexadecimal digits: a SHA-256 digest".into()),
        },
    }
}

fn check_secret(format: &TokenFormat, secret: &str) -> Result<(), ApiError> {
    if format.is_shaped(secret) {
        return Err(ApiError::Validation(
            "secret is in keyreg's own token format: keyreg makes such secrets, it does not import them".into(),
        ));
    }
    if !legacy::is_shaped(secret) {
        return Err(ApiError::Validation(format!(
            "secret must be {} to {} printable ASCII characters, without spaces or control characters",
            legacy::MIN_LEN,
            legacy::MAX_LEN
        )));
    }
    Ok(())
}
