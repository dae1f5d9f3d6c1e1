//! The console's sign-in sessions: server-side, in memory, named to the
//! browser by a random cookie (HttpOnly, SameSite=Strict, path `/console`).
//!
//! A session holds the key the person signed in with, so that every page
//! is answered by the HTTP API under that key's own authority: the key is
//! checked again on each request (revoked, disabled, expired, moved out of
//! its address ranges: the session ends), and its permissions are the
//! API's, not a copy. The secret stays in the server's memory, never in a
//! cookie, a URL, a page or the browser's storage, and the map is lost on
//! restart (everyone signs in again), which is the safe direction.
//!
//! A session ends 12 hours after sign-in, or after an idle hour (shorter
//! with `serve --console-idle-secs`), whichever comes first. Each session
//! carries its own CSRF token, which every form that writes must send back.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::id::fill_random;
use crate::domain::time::Timestamp;

/// The longest a session lives, however busy.
pub const MAX_AGE_SECONDS: i64 = 12 * 3600;
/// The longest a session lives unused, unless the operator sets less.
pub const IDLE_SECONDS: i64 = 3600;
/// The cookie naming a session.
pub const COOKIE: &str = "keyreg_session";

/// Live sessions, by the blake3 of their cookie: a dump of this map names
/// no cookie a browser could present.
pub struct Sessions {
    idle_seconds: i64,
    live: Mutex<HashMap<[u8; 32], Session>>,
}

/// Who is signed in, as the API will see them.
#[derive(Clone)]
pub struct Session {
    /// The key's secret, presented to the API on the person's behalf.
    pub token: Secret,
    /// The person named at sign-in (`user:<email>`), for keys that hold
    /// `actors:assert`: every change is recorded as them.
    pub user: Option<String>,
    pub csrf: String,
    /// The session's entry in the map (the blake3 of its cookie).
    id: [u8; 32],
    /// A new secret waiting to be shown, once, on the page the browser is
    /// sent to after the write (POST, redirect, GET): a reload or Back
    /// finds it gone and writes nothing again.
    shown: Option<Shown>,
    started: Timestamp,
    seen: Timestamp,
}

/// A write's answer carrying a new secret, and the dialog's title.
#[derive(Clone)]
pub struct Shown {
    pub key_id: String,
    pub answer: serde_json::Value,
    pub title: &'static str,
}

/// A secret that never prints itself.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Why a request has no session.
#[derive(Debug, PartialEq, Eq)]
pub enum Missing {
    /// No cookie, or one this server never issued (or forgot on restart).
    None,
    /// The session ran out: idle too long, or older than 12 hours.
    Expired,
}

impl Sessions {
    pub fn new(idle_seconds: i64) -> Sessions {
        Sessions { idle_seconds: idle_seconds.clamp(1, IDLE_SECONDS), live: Mutex::default() }
    }

    /// Starts a session; answers the cookie's value.
    pub fn start(&self, token: String, user: Option<String>, now: Timestamp) -> String {
        let cookie = random_hex();
        let session = Session {
            token: Secret(token),
            user,
            csrf: random_hex(),
            id: id(&cookie),
            shown: None,
            started: now,
            seen: now,
        };
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|_, s| self.alive(s, now));
        live.insert(id(&cookie), session);
        cookie
    }

    /// Keeps `shown` for the next page of `session` that asks for it.
    pub fn keep_to_show(&self, session: &Session, shown: Shown) {
        if let Some(s) = self.live.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&session.id) {
            s.shown = Some(shown);
        }
    }

    /// The secret kept for `key_id`, taken: it is shown this once.
    pub fn take_shown(&self, session: &Session, key_id: &str) -> Option<Shown> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let s = live.get_mut(&session.id)?;
        s.shown.take_if(|shown| shown.key_id == key_id)
    }

    /// The session named by `cookie`, marked as used now.
    pub fn touch(&self, cookie: Option<&str>, now: Timestamp) -> Result<Session, Missing> {
        let cookie = cookie.ok_or(Missing::None)?;
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let entry = live.get_mut(&id(cookie)).ok_or(Missing::None)?;
        if !self.alive(entry, now) {
            live.remove(&id(cookie));
            return Err(Missing::Expired);
        }
        entry.seen = now;
        // A page needs the secret only through `take_shown`.
        Ok(Session { shown: None, ..entry.clone() })
    }

    pub fn end(&self, cookie: &str) {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).remove(&id(cookie));
    }

    fn alive(&self, s: &Session, now: Timestamp) -> bool {
        let age = |since: Timestamp| (now.micros() - since.micros()) / 1_000_000;
        age(s.started) < MAX_AGE_SECONDS && age(s.seen) < self.idle_seconds
    }
}

fn id(cookie: &str) -> [u8; 32] {
    *blake3::hash(cookie.as_bytes()).as_bytes()
}

pub(super) fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    fill_random(&mut bytes);
    blake3::Hash::from_bytes(bytes).to_hex().to_string()
}

/// Compares a CSRF token in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_micros(1_800_000_000_000_000 + seconds * 1_000_000)
    }

    #[test]
    fn a_session_ends_after_an_idle_hour_or_twelve_hours() {
        let sessions = Sessions::new(IDLE_SECONDS);
        let cookie = sessions.start("kr_secret".into(), None, at(0));
        assert!(sessions.touch(Some(&cookie), at(3599)).is_ok());
        assert_eq!(sessions.touch(Some(&cookie), at(3599 + 3600)).err(), Some(Missing::Expired));
        assert_eq!(sessions.touch(Some(&cookie), at(3599 + 3601)).err(), Some(Missing::None));

        let busy = sessions.start("kr_secret".into(), None, at(0));
        for half_hour in 1..24 {
            assert!(sessions.touch(Some(&busy), at(half_hour * 1800)).is_ok(), "after {half_hour} half hours");
        }
        assert_eq!(sessions.touch(Some(&busy), at(12 * 3600)).err(), Some(Missing::Expired));
    }

    #[test]
    fn cookies_and_csrf_tokens_are_unguessable_and_distinct() {
        let sessions = Sessions::new(IDLE_SECONDS);
        let (a, b) = (sessions.start("x".into(), None, at(0)), sessions.start("x".into(), None, at(0)));
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        let (sa, sb) = (sessions.touch(Some(&a), at(1)).unwrap(), sessions.touch(Some(&b), at(1)).unwrap());
        assert_ne!(sa.csrf, sb.csrf);
        assert!(same_token(&sa.csrf, &sa.csrf.clone()) && !same_token(&sa.csrf, &sb.csrf));
        assert_eq!(format!("{:?}", sa.token), "Secret(…)");
        sessions.end(&a);
        assert_eq!(sessions.touch(Some(&a), at(2)).err(), Some(Missing::None));
    }
}
