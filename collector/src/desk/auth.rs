//! Agents' sign-in: tokens in, random session ids out.
//!
//! Design, in short:
//! - An agent signs in with a token: one of the desk's `agent_tokens` (desk only) or
//!   one of the collector's `api_tokens`. Tokens are long random strings, compared in
//!   constant time.
//! - A sign-in creates a session id of 256 random bits from the operating system's
//!   generator, sent as the cookie `footpath_desk` (`HttpOnly`, `SameSite=Strict`,
//!   `Path=/desk`, `Secure` when configured). The browser's scripts cannot read it and
//!   other sites cannot make the browser send it.
//! - The server keeps only the SHA-256 of each session id with its expiry time (by the
//!   injected clock) and the SHA-256 of the token it was signed in with, in memory and
//!   in a small file next to the database, so that agents stay signed in across a
//!   collector restart while the file holds nothing an attacker could present.
//!   Signing out deletes the entry.
//! - A session lasts only as long as its token: one whose token is no longer among the
//!   configured `api_tokens` or `agent_tokens` (the configuration was edited and the
//!   collector restarted) is refused and deleted. Entries saved without a token hash
//!   (by an older collector) are dropped the same way.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;

use axum::http::{header, HeaderMap};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const COOKIE_NAME: &str = "footpath_desk";

/// One signed-in agent's session.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    expires_ms: i64,
    /// The SHA-256 (hex) of the token the agent signed in with.
    token_sha256: String,
}

/// The signed-in agents' sessions, by the hash of their ids.
pub struct AgentSessions {
    sessions: Mutex<HashMap<String, Entry>>,
    /// Where the sessions survive restarts; `None` keeps them in memory only.
    file: Option<PathBuf>,
    /// The SHA-256 (hex) of every token that may sign in with this configuration.
    allowed_tokens: HashSet<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SavedSession {
    sha256: String,
    expires_ms: i64,
    #[serde(default)]
    token_sha256: Option<String>,
}

impl AgentSessions {
    /// Loads the sessions saved in `file` (if any) that have not expired by `now_ms`
    /// and were signed in with one of `tokens`; the file is rewritten without the
    /// others.
    pub fn load<'a>(
        file: Option<PathBuf>,
        now_ms: i64,
        tokens: impl IntoIterator<Item = &'a String>,
    ) -> AgentSessions {
        let allowed_tokens: HashSet<String> = tokens.into_iter().map(|t| digest(t)).collect();
        let mut sessions = HashMap::new();
        let mut dropped = 0_usize;
        if let Some(path) = &file {
            if let Ok(text) = std::fs::read_to_string(path) {
                match serde_json::from_str::<Vec<SavedSession>>(&text) {
                    Ok(saved) => {
                        for session in saved {
                            match session.token_sha256 {
                                Some(token_sha256)
                                    if session.expires_ms > now_ms
                                        && allowed_tokens.contains(&token_sha256) =>
                                {
                                    let entry = Entry {
                                        expires_ms: session.expires_ms,
                                        token_sha256,
                                    };
                                    sessions.insert(session.sha256, entry);
                                }
                                _ => dropped += 1,
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "ignoring unreadable desk sessions file")
                    }
                }
            }
        }
        let agents = AgentSessions {
            sessions: Mutex::new(sessions),
            file,
            allowed_tokens,
        };
        if dropped > 0 {
            tracing::info!(
                dropped,
                "desk sessions ended: expired, or their token is no longer configured"
            );
            agents.save(&agents.lock());
        }
        agents
    }

    /// Starts a session for an agent who presented `token` (already checked), lasting
    /// until `expires_ms`, and returns its id.
    pub fn create(&self, token: &str, now_ms: i64, expires_ms: i64) -> String {
        let mut bytes = [0_u8; 32];
        // ThreadRng is a CSPRNG seeded (and reseeded) from the operating system.
        rand::rng().fill_bytes(&mut bytes);
        let id = hex::encode(bytes);
        let mut sessions = self.lock();
        sessions.retain(|_, entry| entry.expires_ms > now_ms);
        let entry = Entry {
            expires_ms,
            token_sha256: digest(token),
        };
        sessions.insert(digest(&id), entry);
        self.save(&sessions);
        id
    }

    /// Whether `id` names a session that has not expired by `now_ms` and whose token
    /// may still sign in. A session whose token may not is deleted.
    pub fn is_valid(&self, id: &str, now_ms: i64) -> bool {
        let key = digest(id);
        let mut sessions = self.lock();
        let Some(entry) = sessions.get(&key) else {
            return false;
        };
        if !self.allowed_tokens.contains(&entry.token_sha256) {
            sessions.remove(&key);
            self.save(&sessions);
            return false;
        }
        entry.expires_ms > now_ms
    }

    /// Whether `id` names a valid session (see [`AgentSessions::is_valid`]) that was
    /// signed in with one of `tokens`: the desk's administrators are those who signed
    /// in with an API token rather than an agent's.
    pub fn signed_in_with_one_of<'a>(
        &self,
        id: &str,
        now_ms: i64,
        tokens: impl IntoIterator<Item = &'a String>,
    ) -> bool {
        if !self.is_valid(id, now_ms) {
            return false;
        }
        let wanted: HashSet<String> = tokens.into_iter().map(|token| digest(token)).collect();
        self.lock()
            .get(&digest(id))
            .is_some_and(|entry| wanted.contains(&entry.token_sha256))
    }

    pub fn remove(&self, id: &str) {
        let mut sessions = self.lock();
        if sessions.remove(&digest(id)).is_some() {
            self.save(&sessions);
        }
    }

    /// How many sessions are kept (expired ones included until the next sign-in).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves a consistent map: every update is one
        // insert or remove.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the file atomically (a temporary file renamed over it). A failure costs
    /// only sign-ins at the next restart, so it is logged rather than returned.
    fn save(&self, sessions: &HashMap<String, Entry>) {
        let Some(path) = &self.file else { return };
        let saved: Vec<SavedSession> = sessions
            .iter()
            .map(|(sha256, entry)| SavedSession {
                sha256: sha256.clone(),
                expires_ms: entry.expires_ms,
                token_sha256: Some(entry.token_sha256.clone()),
            })
            .collect();
        let temporary = path.with_extension("tmp");
        let result = serde_json::to_vec(&saved)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&temporary, bytes))
            .and_then(|()| std::fs::rename(&temporary, path));
        if let Err(error) = result {
            tracing::warn!(path = %path.display(), %error, "could not save desk sessions");
        }
    }
}

fn digest(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// Whether `presented` is one of `tokens`; the one check of every bearer and desk
/// token. Every token is compared, and each comparison is of SHA-256 digests in
/// constant time, so that the response time tells neither how much of a guess was right
/// nor how long the tokens are.
pub fn is_known_token<'a>(tokens: impl IntoIterator<Item = &'a String>, presented: &str) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    tokens.into_iter().fold(false, |found, token| {
        let token = Sha256::digest(token.as_bytes());
        let difference = token
            .iter()
            .zip(presented.iter())
            .fold(0_u8, |difference, (x, y)| difference | (x ^ y));
        found | (difference == 0)
    })
}

/// The value of the desk's cookie in the request, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim().to_owned())
}

/// The `Set-Cookie` value that starts a session.
pub fn session_cookie_header(id: &str, max_age_seconds: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE_NAME}={id}; Path=/desk; Max-Age={max_age_seconds}; HttpOnly; SameSite=Strict{secure}")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cleared_cookie_header(secure: bool) -> String {
    session_cookie_header("", 0, secure)
}

/// The bearer token of an `Authorization` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN_A: &str = "token-a-0123456789abcdef0123456789";
    const TOKEN_B: &str = "token-b-0123456789abcdef0123456789";

    #[test]
    fn sessions_expire_survive_restarts_and_end_on_sign_out() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("desk-sessions.json");
        let tokens = vec![TOKEN_A.to_owned(), TOKEN_B.to_owned()];
        let sessions = AgentSessions::load(Some(file.clone()), 1_000, &tokens);
        let id = sessions.create(TOKEN_A, 1_000, 5_000);
        assert_eq!(id.len(), 64);
        assert!(sessions.is_valid(&id, 4_999));
        assert!(!sessions.is_valid(&id, 5_000));
        assert!(!sessions.is_valid("not-a-session", 1_000));
        assert_ne!(sessions.create(TOKEN_A, 1_000, 5_000), id, "ids are random");

        // The file holds hashes only, and a restart keeps the session.
        let saved = std::fs::read_to_string(&file).unwrap();
        assert!(!saved.contains(&id), "{saved}");
        assert!(!saved.contains(TOKEN_A), "{saved}");
        assert!(saved.contains(&digest(TOKEN_A)), "{saved}");
        let reloaded = AgentSessions::load(Some(file.clone()), 2_000, &tokens);
        assert!(reloaded.is_valid(&id, 2_000));
        reloaded.remove(&id);
        assert!(!reloaded.is_valid(&id, 2_000));
        assert!(!AgentSessions::load(Some(file), 2_000, &tokens).is_valid(&id, 2_000));
    }

    #[test]
    fn a_session_ends_with_its_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("desk-sessions.json");
        let both = vec![TOKEN_A.to_owned(), TOKEN_B.to_owned()];
        let sessions = AgentSessions::load(Some(file.clone()), 1_000, &both);
        let by_a = sessions.create(TOKEN_A, 1_000, 9_000);
        let by_b = sessions.create(TOKEN_B, 1_000, 9_000);
        drop(sessions);

        // Restarted with token A removed: A's session is refused and gone from the
        // file; B's lives on.
        let only_b = vec![TOKEN_B.to_owned()];
        let reloaded = AgentSessions::load(Some(file.clone()), 2_000, &only_b);
        assert!(!reloaded.is_valid(&by_a, 2_000));
        assert!(reloaded.is_valid(&by_b, 2_000));
        assert_eq!(reloaded.len(), 1);
        let saved = std::fs::read_to_string(&file).unwrap();
        assert!(!saved.contains(&digest(TOKEN_A)), "{saved}");
        // Putting the token back does not revive the deleted session.
        assert!(!AgentSessions::load(Some(file.clone()), 2_000, &both).is_valid(&by_a, 2_000));

        // A file written without token hashes (an older collector) signs nobody in.
        let legacy = format!("[{{\"sha256\":\"{}\",\"expiresMs\":9000}}]", digest(&by_b));
        std::fs::write(&file, legacy).unwrap();
        let reloaded = AgentSessions::load(Some(file), 2_000, &both);
        assert!(!reloaded.is_valid(&by_b, 2_000));
        assert!(reloaded.is_empty());
    }

    #[test]
    fn cookies_and_tokens() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; footpath_desk=abc ; b=2".parse().unwrap(),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("abc"));
        assert_eq!(session_cookie(&HeaderMap::new()), None);
        assert_eq!(
            session_cookie_header("abc", 60, true),
            "footpath_desk=abc; Path=/desk; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        let tokens = vec!["alpha-token".to_owned()];
        assert!(is_known_token(&tokens, "alpha-token"));
        assert!(!is_known_token(&tokens, "alpha-tokeN"));
        assert!(!is_known_token(&tokens, ""));
    }
}
