//! Crypto-shredding of the log streams: every user has one random key (ChaCha20-Poly1305,
//! 256 bits) under a random key id; the personal part of each journey- and decision-log entry
//! is sealed with it. Erasing the user destroys the key, so the entries stay in the streams
//! (trimmed by length as before) but can no longer be read by anyone.
//!
//! Stored as `kid:key-hex` in the user's `:k` key (what writers need) and as `kid -> key-hex`
//! in the keyring hash of the log shard (what an export needs: it knows only the `kid` field
//! of an entry). A sealed value is base64 of nonce (12 bytes) || ciphertext || tag, with the
//! key id as associated data.
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// One user's sealing key.
#[derive(Clone)]
pub struct UserKey {
    /// Random id (hex), stored in clear in every entry it seals.
    pub kid: String,
    key: [u8; 32],
}

impl std::fmt::Debug for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserKey({})", self.kid)
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    SystemRandom::new().fill(&mut b).expect("the system RNG answers");
    b
}

impl UserKey {
    /// A fresh random key with a fresh random id.
    pub fn generate() -> Self {
        Self { kid: hex::encode(random::<16>()), key: random() }
    }

    /// The `:k` value: `kid:key-hex`.
    pub fn stored(&self) -> String {
        format!("{}:{}", self.kid, hex::encode(self.key))
    }

    /// A key read back from `:k` (`kid:key-hex`), or from the keyring (`kid`, `key-hex`).
    pub fn parse(stored: &str) -> Option<Self> {
        let (kid, key) = stored.split_once(':')?;
        Self::from_parts(kid, key)
    }

    /// A key from its id and its hex bytes (a keyring entry).
    pub fn from_parts(kid: &str, key_hex: &str) -> Option<Self> {
        let key: [u8; 32] = hex::decode(key_hex).ok()?.try_into().ok()?;
        Some(Self { kid: kid.to_string(), key })
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &self.key).expect("a 256-bit key"))
    }

    /// `plaintext` sealed: base64 of `seal_raw`.
    pub fn seal(&self, plaintext: &[u8]) -> String {
        STANDARD.encode(self.seal_raw(plaintext))
    }

    /// `plaintext` sealed: nonce || ciphertext || tag (a random nonce per value), raw bytes
    /// (the decision log's `bin` field: binary-safe, a third smaller than base64).
    pub fn seal_raw(&self, plaintext: &[u8]) -> Vec<u8> {
        // A random nonce from the thread's CSPRNG (ChaCha, seeded from the OS): a system call
        // per value cost ~2 µs of a decision (issue 9's profile). Keys still come from the OS.
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + CHACHA20_POLY1305.tag_len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let (head, body) = out.split_at_mut(NONCE_LEN);
        let tag = self
            .aead()
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(head.try_into().expect("nonce length")),
                Aad::from(self.kid.as_bytes()),
                body,
            )
            .expect("sealing a value in memory");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// The plaintext of a value sealed with this key (`seal`, base64); None when it does not
    /// open (damaged, or another key).
    pub fn open(&self, sealed: &str) -> Option<Vec<u8>> {
        self.open_raw(&STANDARD.decode(sealed).ok()?)
    }

    /// The plaintext of a value sealed with `seal_raw`; None when it does not open.
    pub fn open_raw(&self, raw: &[u8]) -> Option<Vec<u8>> {
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = body.to_vec();
        let plain = self.aead().open_in_place(nonce, Aad::from(self.kid.as_bytes()), &mut buf).ok()?;
        Some(plain.to_vec())
    }
}

/// Users' keys read with their profile (`load_user`), so the write that follows seals without
/// another round trip. Bounded: emptied when it reaches `KeyCache::MAX` users. A key cached
/// here is only used as `known` (the write script checks it is still the user's), so a key
/// erased by another server is never stored again.
#[derive(Default)]
pub struct KeyCache(std::sync::Mutex<std::collections::HashMap<String, Option<UserKey>>>);

impl KeyCache {
    /// Users remembered at most.
    pub const MAX: usize = 100_000;

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Option<UserKey>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// What was read of a user's key: `Some(None)` when the user had none.
    pub fn get(&self, user: &str) -> Option<Option<UserKey>> {
        self.lock().get(user).cloned()
    }
    /// Remembers a user's key (None: the user has none yet).
    pub fn put(&self, user: &str, key: Option<UserKey>) {
        let mut m = self.lock();
        if m.len() >= Self::MAX {
            m.clear();
        }
        m.insert(user.to_string(), key);
    }
    /// Forgets a user's key (erased, or found stale).
    pub fn evict(&self, user: &str) {
        self.lock().remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_with_its_key() {
        let k = UserKey::generate();
        let sealed = k.seal(b"alice@example.com");
        assert!(!sealed.contains("alice"));
        assert_eq!(k.open(&sealed).unwrap(), b"alice@example.com");
        let again = UserKey::parse(&k.stored()).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), b"alice@example.com");
        let other = UserKey::generate();
        assert!(other.open(&sealed).is_none(), "another key does not open it");
        let same_bytes_other_id = UserKey { kid: other.kid.clone(), key: k.key };
        assert!(same_bytes_other_id.open(&sealed).is_none(), "the key id is bound as associated data");
        assert_ne!(k.seal(b"x"), k.seal(b"x"), "a fresh nonce per value");
        let raw = k.seal_raw(b"alice@example.com");
        assert_eq!(raw.len(), 12 + 17 + 16, "nonce, ciphertext, tag");
        assert_eq!(k.open_raw(&raw).as_deref(), Some(&b"alice@example.com"[..]));
        assert_eq!(k.open(&STANDARD.encode(&raw)).as_deref(), Some(&b"alice@example.com"[..]), "one format");
        assert_eq!(UserKey::generate().open_raw(&raw), None, "another key does not open it");
        assert!(k.open("not base64!").is_none() && k.open("AAAA").is_none());
        assert!(UserKey::parse("no-colon").is_none() && UserKey::parse("id:zz").is_none());
    }
}
