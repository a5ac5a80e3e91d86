//! What rustls serves: the current key pair, swapped by the reloader, and a session cache that
//! is emptied with each swap.

use std::sync::{Arc, PoisonError, RwLock};

use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
};
use rustls::sign::CertifiedKey;

/// Serves whichever key pair is current; [`super::Reloader`] replaces it. Keeps the TLS sessions made
/// with it, for resumption, and forgets them when the key pair is replaced.
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
    sessions: Arc<SessionCache>,
}

impl CertResolver {
    pub fn new(key: CertifiedKey) -> Self {
        Self {
            current: RwLock::new(Arc::new(key)),
            sessions: Arc::new(SessionCache::new(SESSION_CACHE_SIZE)),
        }
    }

    /// The key pair new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Where the server keeps the sessions clients may resume.
    pub fn sessions(&self) -> Arc<SessionCache> {
        self.sessions.clone()
    }

    /// Serves `key` from now on, and forgets the sessions made with the previous one.
    pub(super) fn replace(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        self.sessions.clear();
    }
}

/// Sessions kept for resumption; rustls' default size.
const SESSION_CACHE_SIZE: usize = 256;

/// The server's TLS session cache, emptied when the certificate is replaced: a resumed session
/// skips the certificate, so a client resuming one made before a rotation would go on trusting
/// the previous certificate. After a rotation, its resumption attempt falls back to a full
/// handshake with the new one. (Handshakes still in flight at the swap may store a few sessions
/// of the previous certificate: two TLS 1.3 tickets, or one TLS 1.2 session, each.)
#[derive(Debug)]
pub struct SessionCache {
    size: usize,
    sessions: RwLock<Arc<ServerSessionMemoryCache>>,
}

impl SessionCache {
    /// An empty cache of at most `size` sessions.
    pub fn new(size: usize) -> Self {
        Self {
            size,
            sessions: RwLock::new(ServerSessionMemoryCache::new(size)),
        }
    }

    pub fn clear(&self) {
        *self
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner) = ServerSessionMemoryCache::new(self.size);
    }

    fn sessions(&self) -> Arc<ServerSessionMemoryCache> {
        self.sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl StoresServerSessions for SessionCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.sessions().put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.sessions().get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.sessions().take(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clearing_the_session_cache_forgets_every_session() {
        let cache = SessionCache::new(4);
        assert!(cache.put(b"one".to_vec(), b"session one".to_vec()));
        assert!(cache.put(b"two".to_vec(), b"session two".to_vec()));
        assert_eq!(cache.get(b"one"), Some(b"session one".to_vec()));
        cache.clear();
        assert_eq!(cache.get(b"one"), None);
        assert_eq!(cache.take(b"two"), None);
        // Still a working cache afterwards.
        assert!(cache.put(b"three".to_vec(), b"session three".to_vec()));
        assert_eq!(cache.take(b"three"), Some(b"session three".to_vec()));
        assert_eq!(cache.get(b"three"), None, "taken");
    }
}
