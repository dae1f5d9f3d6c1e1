//! Why a registry did not open, and why a command did not take effect.

use crate::domain::command::Refusal;
use crate::domain::id::Seq;
use crate::store::DirError;
use crate::store::log::LogError;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Dir(#[from] DirError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("initialising failed: {0}")]
    Init(String),
    #[error("cannot start the writer thread: {0}")]
    Thread(std::io::Error),
    #[error(
        "{0} belongs to a node that committed to the event stream and did not stop cleanly: its log may end in \
         events the stream never confirmed. Start it once with `keyreg serve --nats URL` (it settles them with the \
         stream), stop it, then run this again"
    )]
    Unsettled(String),
    #[error("the log in {0} is still locked after the registry closed")]
    StillLocked(String),
    #[error(
        "{0}/pepper is not the pepper this log was made with (its fingerprint differs from the one the log \
         records), so every key would answer NOT_FOUND; put back this data dir's own pepper file"
    )]
    WrongPepper(String),
    #[error(
        "{file} is a snapshot sealed under this data dir's pepper at event {seq}, but {why}: the log was cut short \
         or altered after it was written, and starting would serve a past that may lack revocations. Restore the \
         data dir from a backup; move that snapshot aside only if you know how the log lost those events"
    )]
    Rollback { file: String, seq: Seq, why: String },
    #[error(transparent)]
    LogKey(#[from] crate::store::key::KeyFileError),
}

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Refused by the rules; nothing was recorded.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The log could not make the events durable, or the registry does not
    /// take writes. Nothing was acknowledged; whether the events survive is
    /// decided by what reached the disk, and a restart will tell.
    #[error("the log is unavailable: {0}")]
    Unavailable(String),
    /// The org has used its allowance of events or bytes for now; nothing
    /// was recorded.
    #[error(
        "this organization is writing faster than the registry allows (events and bytes per minute); try again in {} s",
        retry_after.as_secs().max(1)
    )]
    RateLimited { retry_after: std::time::Duration },
    /// This node does not lead (several nodes): nothing was recorded. The
    /// leader, when one is known, is where to send the write.
    #[error("{}", match .0 {
        Some(l) => format!("this node does not lead; the leader is {} at {}", l.node, l.url),
        None => "no node of this registry leads now; nothing changed, try again shortly".to_owned(),
    })]
    NotLeader(Option<super::Leader>),
}
