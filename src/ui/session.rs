//! The dashboard's sessions: a random token in an HttpOnly, SameSite=Strict cookie
//! (Secure over TLS) names a session, which holds the signed-in access key, its
//! CSRF token and its expiry; and the sign-in rate limit per client address.
//!
//! Invariants: a session lives at most `session_secs` from its sign-in and never
//! outlives its key (a key disabled, rotated or removed ends it at its next request,
//! `Dashboard::viewer`); every state-changing request carries the session's CSRF
//! token, compared in constant time; tokens come from the OS's random source and
//! are never logged. Sessions live in this gateway's memory: a restart signs
//! everyone out, and in a cluster a client keeps to one gateway (or signs in again).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// The cookie that names a session.
pub const COOKIE: &str = "hoard_session";
/// Sessions kept at most; the oldest goes first when a sign-in would pass it.
const MAX_SESSIONS: usize = 10_000;

#[derive(Clone)]
pub struct Session {
    pub access_key: String,
    pub csrf: String,
    pub expires: Instant,
}

pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
    lifetime: Duration,
    signins: DefaultKeyedRateLimiter<IpAddr>,
}

/// A fresh random token, hex.
fn token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Whether two secrets are equal, in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl Sessions {
    pub fn new(lifetime: Duration, signins_per_minute: u32) -> Sessions {
        let per_minute = NonZeroU32::new(signins_per_minute).unwrap_or(NonZeroU32::MIN);
        Sessions {
            live: Mutex::new(HashMap::new()),
            lifetime,
            signins: RateLimiter::hashmap(Quota::per_minute(per_minute)),
        }
    }

    /// Whether `peer` may try to sign in now (each attempt counts).
    pub fn may_try(&self, peer: IpAddr) -> bool {
        // Addresses whose limit has recovered are forgotten, so many clients over
        // time do not grow the table without bound.
        if self.signins.len() > MAX_SESSIONS {
            self.signins.retain_recent();
        }
        self.signins.check_key(&peer).is_ok()
    }

    /// Opens a session for `access_key`; answers its cookie token.
    pub fn open(&self, access_key: &str) -> (String, Session) {
        let session = Session {
            access_key: access_key.to_owned(),
            csrf: token(),
            expires: Instant::now() + self.lifetime,
        };
        let id = token();
        if let Ok(mut live) = self.live.lock() {
            let now = Instant::now();
            live.retain(|_, s| s.expires > now);
            if live.len() >= MAX_SESSIONS
                && let Some(oldest) = live
                    .iter()
                    .min_by_key(|(_, s)| s.expires)
                    .map(|(k, _)| k.clone())
            {
                live.remove(&oldest);
            }
            live.insert(id.clone(), session.clone());
        }
        (id, session)
    }

    /// The live session `id` names.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut live = self.live.lock().ok()?;
        match live.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                live.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        if let Ok(mut live) = self.live.lock() {
            live.remove(id);
        }
    }

    /// Seconds a new session lives.
    pub fn lifetime_secs(&self) -> u64 {
        self.lifetime.as_secs()
    }
}

/// The session token a request's `Cookie` headers carry.
pub fn cookie_token(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// The `Set-Cookie` value for a session token (`None`: the one that ends it).
pub fn set_cookie(token: Option<&str>, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match token {
        Some(t) => {
            format!("{COOKIE}={t}; Path=/ui; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
        }
        None => format!("{COOKIE}=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Strict{secure}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_at_its_expiry_and_when_closed() {
        let s = Sessions::new(Duration::from_millis(50), 5);
        let (a, _) = s.open("KEY");
        let (b, _) = s.open("KEY");
        assert_ne!(a, b);
        assert_eq!(s.get(&a).map(|x| x.access_key), Some("KEY".into()));
        s.close(&a);
        assert!(s.get(&a).is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(s.get(&b).is_none(), "expired");
    }

    #[test]
    fn sign_in_attempts_are_limited_per_address() {
        let s = Sessions::new(Duration::from_secs(60), 3);
        let here: IpAddr = [127, 0, 0, 1].into();
        let there: IpAddr = [127, 0, 0, 2].into();
        assert!((0..3).all(|_| s.may_try(here)));
        assert!(!s.may_try(here));
        assert!(s.may_try(there));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            "a=1; hoard_session=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("xyz"));
        let c = set_cookie(Some("xyz"), 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(!set_cookie(Some("xyz"), 60, false).contains("Secure"));
    }
}
