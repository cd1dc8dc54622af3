//! `[auth]`: API keys (stored as SHA-256 hashes) with roles, from the config file and/or a
//! secrets file named by `auth.keys_file`, and client-certificate subjects mapped to roles.
//!
//! Both are read whenever the config is (start, SIGHUP, `Admin.Reload`), so keys rotate
//! without a restart. Which role each gRPC method needs is `grpc::auth`'s business.
use super::{Problem, Problems};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// What a caller may do; each gRPC method needs exactly one (see `grpc::auth::METHODS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Decide, DecideBatch, GetAssignment.
    Decide,
    /// RecordEvents, RecordOutcome.
    Ingest,
    /// Every method of the Profiles service.
    Profiles,
    /// Experiment results and reports.
    Analyst,
    /// Reload, GetStatus.
    Admin,
}

impl Role {
    /// Every role, in documentation order.
    pub const ALL: [Role; 5] = [Role::Decide, Role::Ingest, Role::Profiles, Role::Analyst, Role::Admin];

    /// The role's name in the config and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Role::Decide => "decide",
            Role::Ingest => "ingest",
            Role::Profiles => "profiles",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }

    /// The role named `s`, if any.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of roles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    /// Every role.
    pub fn all() -> Roles {
        Role::ALL.into_iter().collect()
    }

    /// Whether the set holds `role`.
    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Role> for Roles {
    fn from_iter<I: IntoIterator<Item = Role>>(iter: I) -> Self {
        Roles(iter.into_iter().fold(0, |bits, r| bits | r.bit()))
    }
}

/// `[[auth.keys]]` (and `[[keys]]` in the keys file): one API key, by the SHA-256 of its text.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct KeyConfig {
    /// Who holds the key (logged, never the key).
    pub id: String,
    /// Hex SHA-256 of the key text (`touchpoint keys new` prints it).
    pub sha256: String,
    /// Roles granted.
    pub roles: Vec<String>,
}

/// `[[auth.clients]]`: a TLS client certificate subject (CN or DNS SAN) and its roles.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ClientConfig {
    /// The certificate's subject common name or one of its DNS subject alternative names.
    pub subject: String,
    /// Roles granted.
    pub roles: Vec<String>,
}

/// `[auth]` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct AuthConfig {
    /// Authentication is on unless this is explicitly `false` (the server then logs a warning).
    pub enabled: bool,
    /// A TOML file of `[[keys]]` entries (relative to the config file), read on every reload.
    pub keys_file: Option<String>,
    /// Health checks without a key.
    pub allow_health: bool,
    /// Reflection without a key (by default any valid key may use it).
    pub allow_reflection: bool,
    /// API keys.
    pub keys: Vec<KeyConfig>,
    /// Client certificate subjects (with `[server.tls] client_ca_file`).
    pub clients: Vec<ClientConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            keys_file: None,
            allow_health: true,
            allow_reflection: false,
            keys: vec![],
            clients: vec![],
        }
    }
}

/// The keys file's format.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    keys: Vec<KeyConfig>,
}

/// A usable API key.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// Who holds it.
    pub id: String,
    /// SHA-256 of the key text.
    pub sha256: [u8; 32],
    /// Roles granted.
    pub roles: Roles,
}

/// A client certificate subject and its roles.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// CN or DNS SAN, compared exactly.
    pub subject: String,
    /// Roles granted.
    pub roles: Roles,
}

/// The compiled `[auth]` section.
#[derive(Debug, Clone, Default)]
pub struct AuthPolicy {
    /// False only when the config says `enabled = false`.
    pub enabled: bool,
    /// Health checks without a key.
    pub allow_health: bool,
    /// Reflection without a key.
    pub allow_reflection: bool,
    /// Keys from the file and the keys file.
    pub keys: Vec<ApiKey>,
    /// Certificate subjects.
    pub clients: Vec<ClientIdentity>,
    /// Set when auth is on with no key and no client: a server must not start (or reload)
    /// with it (`Config::check_serving`); tools that only read the policy do not mind.
    pub(crate) unconfigured: Option<super::ConfigError>,
}

/// The problem of a config that would serve nobody.
pub(crate) const NO_KEYS: &str = "authentication is on but no API key is configured: add \
[[auth.keys]] entries (make one with `touchpoint keys new --id NAME --role decide`), name a \
keys file with auth.keys_file, or set auth.enabled = false to serve without authentication \
(never in production)";

/// SHA-256 of a key's text: what the config stores.
pub fn key_hash(key: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(key.as_bytes()).into()
}

/// Compiles `[auth]`, reading `keys_file` relative to `base`.
pub(crate) fn compile(a: &AuthConfig, base: &Path, p: &mut Problems) -> AuthPolicy {
    let mut keys = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, k) in a.keys.iter().enumerate() {
        let entry = format!("auth.keys[{i}]");
        if let Some(key) = p.take(key(k, &entry)) {
            if !seen.insert(key.id.clone()) {
                p.add(format!("{entry}.id"), format!("key id {:?} is used twice", key.id));
            }
            keys.push(key);
        }
    }
    if let Some(file) = &a.keys_file {
        let path = base.join(file);
        let from_file = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {file}: {e}"))
            .and_then(|src| toml::from_str::<KeysFile>(&src).map_err(|e| format!("{file}: {}", e.message())));
        match from_file {
            Err(m) => p.add("auth.keys_file", m),
            Ok(f) => {
                for (i, k) in f.keys.iter().enumerate() {
                    match key(k, &format!("keys[{i}]")) {
                        Err((at, m)) => p.add("auth.keys_file", format!("{file}: {at}: {m}")),
                        Ok(key) => {
                            if !seen.insert(key.id.clone()) {
                                p.add("auth.keys_file", format!("{file}: key id {:?} is used twice", key.id));
                            }
                            keys.push(key);
                        }
                    }
                }
            }
        }
    }
    for (i, k) in keys.iter().enumerate() {
        if keys[..i].iter().any(|o| o.sha256 == k.sha256) {
            p.add("auth.keys", format!("keys {:?} has the same hash as another key", k.id));
        }
    }
    let mut clients = Vec::new();
    for (i, c) in a.clients.iter().enumerate() {
        let entry = format!("auth.clients[{i}]");
        if c.subject.trim().is_empty() {
            p.add(format!("{entry}.subject"), "must name a certificate subject (CN or DNS name)");
        }
        if let Some(roles) = p.take(roles(&c.roles, &entry)) {
            clients.push(ClientIdentity { subject: c.subject.clone(), roles });
        }
    }
    AuthPolicy {
        enabled: a.enabled,
        allow_health: a.allow_health,
        allow_reflection: a.allow_reflection,
        keys,
        clients,
        unconfigured: None,
    }
}

/// The problem of a policy that would serve nobody (set on the policy by the load).
pub(crate) fn unconfigured(a: &AuthConfig, policy: &AuthPolicy) -> Option<Problem> {
    (a.enabled && policy.keys.is_empty() && policy.clients.is_empty()).then(|| Problem {
        line: None,
        entry: "auth".into(),
        message: NO_KEYS.into(),
    })
}

fn key(k: &KeyConfig, entry: &str) -> Result<ApiKey, (String, String)> {
    if k.id.trim().is_empty() {
        return Err((format!("{entry}.id"), "must name the key's holder".into()));
    }
    let mut sha256 = [0u8; 32];
    if hex::decode_to_slice(k.sha256.trim(), &mut sha256).is_err() {
        return Err((
            format!("{entry}.sha256"),
            "must be the key's SHA-256 as 64 hex digits (`touchpoint keys new` prints it); never the key itself".into(),
        ));
    }
    Ok(ApiKey { id: k.id.clone(), sha256, roles: roles(&k.roles, entry)? })
}

fn roles(names: &[String], entry: &str) -> Result<Roles, (String, String)> {
    let all = || Role::ALL.map(Role::name).join(", ");
    if names.is_empty() {
        return Err((format!("{entry}.roles"), format!("must grant at least one role of {}", all())));
    }
    let mut set = Vec::new();
    for (i, n) in names.iter().enumerate() {
        match Role::parse(n) {
            Some(r) => set.push(r),
            None => return Err((format!("{entry}.roles[{i}]"), format!("unknown role {n:?}; roles are {}", all()))),
        }
    }
    Ok(set.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load(auth: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_toml(auth, "t.toml", std::iter::empty())
    }

    fn hash_hex(key: &str) -> String {
        hex::encode(key_hash(key))
    }

    #[test]
    fn keys_compile_with_their_roles() {
        let src = format!(
            "[auth]\n[[auth.keys]]\nid = \"web\"\nsha256 = \"{}\"\nroles = [\"decide\", \"ingest\"]\n",
            hash_hex("k1")
        );
        let c = load(&src).unwrap();
        assert!(c.auth.enabled);
        assert_eq!(c.auth.keys.len(), 1);
        assert_eq!(c.auth.keys[0].sha256, key_hash("k1"));
        assert!(c.auth.keys[0].roles.contains(Role::Ingest));
        assert!(!c.auth.keys[0].roles.contains(Role::Admin));
        assert!(c.check_serving().is_ok());
    }

    #[test]
    fn bad_entries_name_the_entry_and_line() {
        let src = "[auth]\n[[auth.keys]]\nid = \"a\"\nsha256 = \"plain-key\"\nroles = [\"decide\"]\n\
                   [[auth.keys]]\nid = \"b\"\nsha256 = \"00\"\nroles = [\"root\"]\n";
        let e = load(src).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("t.toml:4: auth.keys[0].sha256: must be the key's SHA-256"), "{text}");
        assert!(text.contains("auth.keys[1].sha256"), "{text}");
        let src = format!("[[auth.keys]]\nid = \"a\"\nsha256 = \"{}\"\nroles = [\"root\"]\n", hash_hex("x"));
        let text = load(&src).unwrap_err().to_string();
        assert!(text.contains("t.toml:4: auth.keys[0].roles[0]: unknown role \"root\""), "{text}");
    }

    #[test]
    fn no_keys_is_refused_for_serving_unless_disabled() {
        let c = load("").unwrap();
        let e = c.check_serving().unwrap_err().to_string();
        assert!(e.contains("auth.enabled = false") && e.contains("touchpoint keys new"), "{e}");
        let c = load("[auth]\nenabled = false\n").unwrap();
        assert!(!c.auth.enabled);
        assert!(c.check_serving().is_ok());
    }

    #[test]
    fn the_keys_file_is_read_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let keys = format!("[[keys]]\nid = \"ops\"\nsha256 = \"{}\"\nroles = [\"admin\"]\n", hash_hex("k2"));
        std::fs::write(dir.path().join("keys.toml"), keys).unwrap();
        std::fs::write(dir.path().join("c.toml"), "[auth]\nkeys_file = \"keys.toml\"\n").unwrap();
        let c = Config::load(&dir.path().join("c.toml"), std::iter::empty()).unwrap();
        assert_eq!(c.auth.keys[0].id, "ops");
        assert!(c.auth.keys[0].roles.contains(Role::Admin));
        std::fs::write(dir.path().join("keys.toml"), "[[keys]]\nid = \"ops\"\n").unwrap();
        let e = Config::load(&dir.path().join("c.toml"), std::iter::empty()).unwrap_err().to_string();
        assert!(e.contains("auth.keys_file: keys.toml"), "{e}");
        std::fs::remove_file(dir.path().join("keys.toml")).unwrap();
        let e = Config::load(&dir.path().join("c.toml"), std::iter::empty()).unwrap_err().to_string();
        assert!(e.contains("c.toml:2: auth.keys_file: cannot read keys.toml"), "{e}");
    }
}
