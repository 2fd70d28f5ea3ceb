//! The SDK's logic without a browser: the commands, callbacks, consent, ids, sessions
//! shared across tabs, event encoding and the retry backoff. What it needs from the page comes through [`Platform`] and
//! [`Host`]; `web` implements them on `host.js`, the tests with fakes.

mod consent;
mod host;
mod ids;
mod options;
mod retry;
mod sdk;
mod session;
mod text;
mod tracker;

pub use consent::{decide, Consent, Signals, CONSENT_COOKIE, OPT_OUT_COOKIE};
pub use host::{Func, Host, Timer};
pub use ids::{is_uuid, uuid_v4, uuid_v7};
pub use options::{Options, PageviewMode};
pub use retry::{retry_delay_ms, MAX_BACKOFF_MS, MAX_RETRY_AFTER_MS};
pub use sdk::{Command, Sdk, VISITOR_COOKIE};
pub use session::{SessionRecord, SESSION_KEY};
#[cfg(test)]
pub use text::cat;
pub use text::{digits, split};
pub use tracker::{Notice, Tracked, Tracker};

/// What the core needs from its surroundings. The browser implementation uses
/// `Date.now()`, `crypto.getRandomValues` and `localStorage`; tests use a fake.
pub trait Platform {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Fills `buf` with cryptographically strong random bytes.
    fn fill_random(&self, buf: &mut [u8]);
    /// Storage shared by every tab of this site (`localStorage`). Failures (private
    /// mode, quota) read as absent values and ignored writes: tracking goes on, only
    /// without cross-tab sharing.
    fn load(&self, key: &str) -> Option<String>;
    fn save(&self, key: &str, value: &str);
    fn remove(&self, key: &str);
}

#[cfg(test)]
pub(crate) mod fake {
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::rc::Rc;

    use super::Platform;

    /// A platform with a settable clock, a counting random source and a storage map
    /// that several fakes can share, as tabs share `localStorage`.
    #[derive(Clone)]
    pub struct FakePlatform {
        pub now: Rc<Cell<i64>>,
        pub storage: Rc<RefCell<HashMap<String, String>>>,
        counter: Rc<Cell<u8>>,
    }

    impl FakePlatform {
        pub fn new(now: i64) -> FakePlatform {
            FakePlatform {
                now: Rc::new(Cell::new(now)),
                storage: Rc::default(),
                counter: Rc::new(Cell::new(0)),
            }
        }

        /// A second tab: same storage and clock, its own random stream.
        pub fn other_tab(&self) -> FakePlatform {
            FakePlatform {
                counter: Rc::new(Cell::new(100)),
                ..self.clone()
            }
        }

        pub fn advance(&self, ms: i64) {
            self.now.set(self.now.get() + ms);
        }
    }

    impl Platform for FakePlatform {
        fn now_ms(&self) -> i64 {
            self.now.get()
        }
        fn fill_random(&self, buf: &mut [u8]) {
            for b in buf {
                self.counter.set(self.counter.get().wrapping_add(1));
                *b = self.counter.get();
            }
        }
        fn load(&self, key: &str) -> Option<String> {
            self.storage.borrow().get(key).cloned()
        }
        fn save(&self, key: &str, value: &str) {
            self.storage
                .borrow_mut()
                .insert(key.to_owned(), value.to_owned());
        }
        fn remove(&self, key: &str) {
            self.storage.borrow_mut().remove(key);
        }
    }
}
