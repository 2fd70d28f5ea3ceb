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
//! - The store keeps only the SHA-256 of each session id with its expiry time (by the
//!   injected clock) and the SHA-256 of the token it was signed in with
//!   ([`SignInStore`]), so that agents stay signed in across a collector restart, and
//!   on every collector of one database, while the database holds nothing an attacker
//!   could present. Signing out deletes the row.
//! - A session lasts only as long as its token: one whose token is not among this
//!   collector's configured `api_tokens` or `agent_tokens` is refused, and a collector
//!   that starts without a token deletes every sign-in made with it, so that putting
//!   the token back later revives none. (Refused, not deleted, at request time: while
//!   collectors are restarted one by one with a new token, one that does not have it
//!   yet must not sign out the agents who used it on another.)
//! - Each collector caches what it read for [`CACHE_MS`] (by the injected clock), since
//!   the live stream checks its agent at every message. A sign-out on another
//!   collector reaches the cache at once through [`crate::peers`]; the cache's short
//!   life covers a message lost while a collector's listener reconnects.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::model::StoreError;
use crate::peers::PeerMessage;
use crate::store::Store;

pub const COOKIE_NAME: &str = "footpath_desk";

/// How long a collector trusts a sign-in it read from the store, in milliseconds.
pub const CACHE_MS: i64 = 5_000;

/// One signed-in agent's session, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSignIn {
    /// The SHA-256 (hex) of the session id that the agent's cookie holds.
    pub session_sha256: String,
    /// The SHA-256 (hex) of the token the agent signed in with.
    pub token_sha256: String,
    pub expires_ms: i64,
}

/// The desk's sign-ins, a part of every [`Store`]: hashes only (see the module's
/// notes). Every collector on one database reads the same rows.
pub trait SignInStore {
    /// Saves a new sign-in, and deletes those expired by `now_ms`.
    fn save_sign_in(&self, sign_in: &StoredSignIn, now_ms: i64) -> Result<(), StoreError>;

    /// The sign-in whose session id hashes to `session_sha256`, expired or not.
    fn sign_in(&self, session_sha256: &str) -> Result<Option<StoredSignIn>, StoreError>;

    /// Deletes one sign-in (a sign-out); whether it existed.
    fn delete_sign_in(&self, session_sha256: &str) -> Result<bool, StoreError>;

    /// Deletes the sign-ins expired by `now_ms` and those made with a token whose
    /// hash is not in `token_sha256s`; how many.
    fn delete_sign_ins_except(
        &self,
        token_sha256s: &[String],
        now_ms: i64,
    ) -> Result<usize, StoreError>;

    /// Every sign-in kept, expired ones included until the next sign-in.
    fn sign_ins(&self) -> Result<Vec<StoredSignIn>, StoreError>;
}

/// What a collector read from the store, and when.
#[derive(Debug, Clone)]
struct Cached {
    sign_in: StoredSignIn,
    read_ms: i64,
}

/// The signed-in agents' sessions of one collector: the store's rows behind a short
/// cache.
pub struct AgentSessions {
    store: Arc<dyn Store>,
    /// The SHA-256 (hex) of every token that may sign in with this configuration.
    allowed_tokens: HashSet<String>,
    /// By the hash of the session id.
    cache: Mutex<HashMap<String, Cached>>,
}

impl AgentSessions {
    /// The sign-ins of `store`, after deleting those expired by `now_ms` and those
    /// made with a token that is not one of `tokens`. Blocks on the store: called
    /// where the collector starts, not on an async task.
    pub fn load<'a>(
        store: Arc<dyn Store>,
        now_ms: i64,
        tokens: impl IntoIterator<Item = &'a String>,
    ) -> Result<AgentSessions, StoreError> {
        let allowed_tokens: HashSet<String> = tokens.into_iter().map(|t| digest(t)).collect();
        let allowed: Vec<String> = allowed_tokens.iter().cloned().collect();
        let dropped = store.delete_sign_ins_except(&allowed, now_ms)?;
        if dropped > 0 {
            tracing::info!(
                dropped,
                "desk sessions ended: expired, or their token is no longer configured"
            );
        }
        Ok(AgentSessions {
            store,
            allowed_tokens,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Starts a session for an agent who presented `token` (already checked), lasting
    /// until `expires_ms`, and returns its id once it is stored.
    pub async fn create(
        &self,
        token: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<String, StoreError> {
        let mut bytes = [0_u8; 32];
        // ThreadRng is a CSPRNG seeded (and reseeded) from the operating system.
        rand::rng().fill_bytes(&mut bytes);
        let id = hex::encode(bytes);
        let sign_in = StoredSignIn {
            session_sha256: digest(&id),
            token_sha256: digest(token),
            expires_ms,
        };
        let saved = sign_in.clone();
        self.blocking(move |store| store.save_sign_in(&saved, now_ms))
            .await?;
        let mut cache = self.lock();
        cache.retain(|_, cached| cached.sign_in.expires_ms > now_ms);
        cache.insert(
            sign_in.session_sha256.clone(),
            Cached {
                sign_in,
                read_ms: now_ms,
            },
        );
        Ok(id)
    }

    /// The sign-in of `id` if it has not expired by `now_ms` and its token may still
    /// sign in on this collector.
    async fn valid_sign_in(
        &self,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<StoredSignIn>, StoreError> {
        Ok(self.stored_sign_in(id, now_ms).await?.filter(|sign_in| {
            sign_in.expires_ms > now_ms && self.allowed_tokens.contains(&sign_in.token_sha256)
        }))
    }

    /// Whether the cache holds `id`'s sign-in at `now_ms`: then asking about it costs
    /// no store read.
    pub fn is_cached(&self, id: &str, now_ms: i64) -> bool {
        self.lock()
            .get(&digest(id))
            .is_some_and(|cached| (cached.read_ms..cached.read_ms + CACHE_MS).contains(&now_ms))
    }

    /// Whether a sign-in of `id` is stored (through the cache), valid or not.
    pub async fn is_stored(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        Ok(self.stored_sign_in(id, now_ms).await?.is_some())
    }

    /// The sign-in of `id` as stored (through the cache), valid or not.
    async fn stored_sign_in(
        &self,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<StoredSignIn>, StoreError> {
        let key = digest(id);
        let cached = self
            .lock()
            .get(&key)
            .filter(|cached| (cached.read_ms..cached.read_ms + CACHE_MS).contains(&now_ms))
            .map(|cached| cached.sign_in.clone());
        let sign_in = match cached {
            Some(sign_in) => Some(sign_in),
            None => {
                let lookup = key.clone();
                let found = self.blocking(move |store| store.sign_in(&lookup)).await?;
                let mut cache = self.lock();
                match &found {
                    Some(sign_in) => {
                        cache.insert(
                            key,
                            Cached {
                                sign_in: sign_in.clone(),
                                read_ms: now_ms,
                            },
                        );
                    }
                    None => {
                        cache.remove(&key);
                    }
                }
                found
            }
        };
        Ok(sign_in)
    }

    /// Whether `id` names a session that has not expired by `now_ms` and whose token
    /// may still sign in.
    pub async fn is_valid(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        Ok(self.valid_sign_in(id, now_ms).await?.is_some())
    }

    /// Whether `id` names a valid session (see [`AgentSessions::is_valid`]) that was
    /// signed in with one of `tokens`: the desk's administrators are those who signed
    /// in with an API token rather than an agent's.
    pub async fn signed_in_with_one_of<'a>(
        &self,
        id: &str,
        now_ms: i64,
        tokens: impl IntoIterator<Item = &'a String>,
    ) -> Result<bool, StoreError> {
        let wanted: HashSet<String> = tokens.into_iter().map(|token| digest(token)).collect();
        Ok(self
            .valid_sign_in(id, now_ms)
            .await?
            .is_some_and(|sign_in| wanted.contains(&sign_in.token_sha256)))
    }

    /// Ends the session `id` on every collector: deleted from the store, and the
    /// other collectors told to forget what they cached. Only a session that is
    /// stored is deleted: sign-out is open to anyone, and a made-up cookie must cost a
    /// read (often none, through the cache), not a write and a message to every
    /// collector. Whether a session ended.
    pub async fn remove(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        if self.stored_sign_in(id, now_ms).await?.is_none() {
            return Ok(false);
        }
        let key = digest(id);
        self.forget(&key);
        let message = PeerMessage::DeskSignedOut {
            session_sha256: key.clone(),
        };
        self.blocking(move |store| {
            store.delete_sign_in(&key)?;
            store.tell_peers(&message)
        })
        .await?;
        Ok(true)
    }

    /// Forgets the cached sign-in with this hash (signed out on another collector).
    pub fn forget(&self, session_sha256: &str) {
        self.lock().remove(session_sha256);
    }

    /// Forgets every cached sign-in (messages from other collectors may be lost).
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        // A panic while holding the lock leaves a consistent map: every update is one
        // insert, remove or retain.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs a store call on the blocking pool: the store blocks (and the PostgreSQL
    /// client panics on an async task's thread).
    async fn blocking<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || operation(store.as_ref()))
            .await
            .map_err(|error| StoreError::WriterFailed(format!("a store call failed: {error}")))?
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

/// The value of the desk's cookie in the request, if it has the shape of a session id
/// ([`AgentSessions::create`]: 64 lower-case hex digits). Any other value is no
/// session, so it is never looked up.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim())
        .filter(|value| {
            value.len() == 64
                && value
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
        .map(str::to_owned)
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

    fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        Arc::new(crate::store::SqliteStore::open(dir.path().join("desk.sqlite3")).unwrap())
    }

    #[tokio::test]
    async fn sessions_expire_survive_restarts_and_end_on_sign_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let tokens = vec![TOKEN_A.to_owned(), TOKEN_B.to_owned()];
        let sessions = AgentSessions::load(Arc::clone(&store), 1_000, &tokens).unwrap();
        let id = sessions.create(TOKEN_A, 1_000, 5_000).await.unwrap();
        assert_eq!(id.len(), 64);
        assert!(sessions.is_valid(&id, 4_999).await.unwrap());
        assert!(!sessions.is_valid(&id, 5_000).await.unwrap());
        assert!(!sessions.is_valid("not-a-session", 1_000).await.unwrap());
        let other = sessions.create(TOKEN_A, 1_000, 5_000).await.unwrap();
        assert_ne!(other, id, "ids are random");

        // The store holds hashes only, and a restart keeps the session.
        let saved = format!("{:?}", store.sign_ins().unwrap());
        assert!(!saved.contains(&id), "{saved}");
        assert!(!saved.contains(TOKEN_A), "{saved}");
        assert!(saved.contains(&digest(TOKEN_A)), "{saved}");
        assert!(saved.contains(&digest(&id)), "{saved}");
        let reloaded = AgentSessions::load(Arc::clone(&store), 2_000, &tokens).unwrap();
        assert!(reloaded.is_valid(&id, 2_000).await.unwrap());
        // Only a stored session is deleted (and the other collectors told): a made-up
        // id, or one signed out already, ends nothing.
        let made_up = "f".repeat(64);
        assert!(!reloaded.remove(&made_up, 2_000).await.unwrap());
        assert!(reloaded.remove(&id, 2_000).await.unwrap());
        assert!(
            !reloaded.remove(&id, 2_000).await.unwrap(),
            "a second sign-out"
        );
        assert!(!reloaded.is_valid(&id, 2_000).await.unwrap());
        assert!(!AgentSessions::load(Arc::clone(&store), 2_000, &tokens)
            .unwrap()
            .is_valid(&id, 2_000)
            .await
            .unwrap());
        assert!(reloaded.is_valid(&other, 2_000).await.unwrap());
    }

    #[tokio::test]
    async fn a_session_ends_with_its_token() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let both = vec![TOKEN_A.to_owned(), TOKEN_B.to_owned()];
        let sessions = AgentSessions::load(Arc::clone(&store), 1_000, &both).unwrap();
        let by_a = sessions.create(TOKEN_A, 1_000, 9_000).await.unwrap();
        let by_b = sessions.create(TOKEN_B, 1_000, 9_000).await.unwrap();
        drop(sessions);

        // A collector that has only token B refuses A's session without deleting it:
        // another collector may have A configured.
        let only_b = vec![TOKEN_B.to_owned()];
        let partial = AgentSessions {
            store: Arc::clone(&store),
            allowed_tokens: only_b.iter().map(|token| digest(token)).collect(),
            cache: Mutex::default(),
        };
        assert!(!partial.is_valid(&by_a, 2_000).await.unwrap());
        assert_eq!(store.sign_ins().unwrap().len(), 2);

        // Restarted with token A removed: A's session is deleted; B's lives on.
        let reloaded = AgentSessions::load(Arc::clone(&store), 2_000, &only_b).unwrap();
        assert!(!reloaded.is_valid(&by_a, 2_000).await.unwrap());
        assert!(reloaded.is_valid(&by_b, 2_000).await.unwrap());
        let kept = store.sign_ins().unwrap();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(kept[0].token_sha256, digest(TOKEN_B));
        // Putting the token back does not revive the deleted session.
        let restored = AgentSessions::load(Arc::clone(&store), 2_000, &both).unwrap();
        assert!(!restored.is_valid(&by_a, 2_000).await.unwrap());
    }

    #[tokio::test]
    async fn a_sign_out_elsewhere_ends_the_session_here_when_the_cache_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let tokens = vec![TOKEN_A.to_owned()];
        // Two collectors' views of one database.
        let here = AgentSessions::load(Arc::clone(&store), 1_000, &tokens).unwrap();
        let there = AgentSessions::load(Arc::clone(&store), 1_000, &tokens).unwrap();
        let id = here.create(TOKEN_A, 1_000, 100_000).await.unwrap();
        assert!(
            there.is_valid(&id, 1_000).await.unwrap(),
            "signed in everywhere"
        );
        assert!(there.remove(&id, 1_000).await.unwrap());
        // Without the other collector's message, the cache holds for CACHE_MS.
        assert!(here.is_valid(&id, 1_000 + CACHE_MS - 1).await.unwrap());
        assert!(!here.is_valid(&id, 1_000 + CACHE_MS).await.unwrap());
        // With it, at once.
        let id = here.create(TOKEN_A, 1_000, 100_000).await.unwrap();
        assert!(there.remove(&id, 1_000).await.unwrap());
        here.forget(&digest(&id));
        assert!(!here.is_valid(&id, 1_000).await.unwrap());
    }

    #[test]
    fn cookies_and_tokens() {
        let mut headers = HeaderMap::new();
        let id = "0123456789abcdef".repeat(4);
        headers.insert(
            header::COOKIE,
            format!("a=1; footpath_desk={id} ; b=2").parse().unwrap(),
        );
        assert_eq!(session_cookie(&headers), Some(id.clone()));
        assert_eq!(session_cookie(&HeaderMap::new()), None);
        // Only the shape of a session id is one: nothing else reaches the store.
        for value in [
            "abc".to_owned(),
            id.to_uppercase(),
            format!("{id}0"),
            id[1..].to_owned(),
            format!("{}g", &id[1..]),
            String::new(),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::COOKIE,
                format!("footpath_desk={value}").parse().unwrap(),
            );
            assert_eq!(session_cookie(&headers), None, "{value:?}");
        }
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
