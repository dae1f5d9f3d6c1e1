//! Requests that read much of the log (views of the past, the chain
//! check): few at once, and fairly shared between organizations.
//!
//! Each runs off the runtime's threads, holding one of `AT_ONCE` permits
//! and its org's only permit. So one org never has more than one such
//! request running, and however hard it pushes, another org finds a permit
//! free: one tenant's slow views cannot make every other tenant's answer
//! `BUSY`. A request that finds no permit within the wait is answered 503
//! `BUSY`, and tries again later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;
use crate::domain::id::OrgId;

/// Heavy requests running at once, all orgs together.
pub const AT_ONCE: usize = 2;
/// How long a heavy request waits for permits before it is answered BUSY.
const WAIT: Duration = Duration::from_secs(2);

pub struct Heavy {
    all: Arc<Semaphore>,
    /// One permit per org, made the first time the org asks.
    orgs: Mutex<HashMap<OrgId, Arc<Semaphore>>>,
    wait: Duration,
}

impl Default for Heavy {
    fn default() -> Self {
        Heavy::new(AT_ONCE, WAIT)
    }
}

impl Heavy {
    pub fn new(at_once: usize, wait: Duration) -> Heavy {
        Heavy { all: Arc::new(Semaphore::new(at_once)), orgs: Mutex::default(), wait }
    }

    /// Runs `work` for `org` on a blocking thread once it holds its org's
    /// permit and one of the shared ones; BUSY if they do not come in time.
    pub async fn run<T: Send + 'static>(
        &self,
        org: &OrgId,
        work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permits = tokio::time::timeout(self.wait, self.permits(org)).await;
        let Ok(Some(permits)) = permits else {
            return Err(ApiError::Busy(format!(
                "this organization's last request that reads the history is still running, or {AT_ONCE} such \
                 requests are; try again shortly"
            )));
        };
        super::blocking(move || {
            let _permits = permits;
            work()
        })
        .await
    }

    async fn permits(&self, org: &OrgId) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        let own = {
            let mut orgs = self.orgs.lock().unwrap_or_else(PoisonError::into_inner);
            orgs.entry(org.clone()).or_insert_with(|| Arc::new(Semaphore::new(1))).clone()
        };
        let own = own.acquire_owned().await.ok()?;
        let shared = self.all.clone().acquire_owned().await.ok()?;
        Some((own, shared))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_org_waits_behind_itself_and_never_blocks_another() {
        let heavy = Arc::new(Heavy::new(2, Duration::from_millis(100)));
        let (acme, beta) = (OrgId::parse("acme").unwrap(), OrgId::parse("beta").unwrap());
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let slow = {
            let (heavy, acme) = (heavy.clone(), acme.clone());
            tokio::spawn(async move {
                heavy
                    .run(&acme, move || {
                        started_tx.send(()).unwrap();
                        release_rx.recv().unwrap();
                        Ok(1)
                    })
                    .await
            })
        };
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap()).await.unwrap();
        let again = heavy.run(&acme, || Ok(2)).await;
        assert!(matches!(again, Err(ApiError::Busy(_))), "a second request of the same org waits, then is BUSY");
        assert_eq!(heavy.run(&beta, || Ok(3)).await.unwrap(), 3, "another org is not held up");
        release_tx.send(()).unwrap();
        assert_eq!(slow.await.unwrap().unwrap(), 1);
        assert_eq!(heavy.run(&acme, || Ok(4)).await.unwrap(), 4, "the org's permit came back");
    }
}
