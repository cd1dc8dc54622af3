//! Authentication and authorisation of every call: a tower layer in front of all routes (a
//! tonic interceptor does not see the method's path), so handlers never deal with it.
//!
//! A caller presents an API key as `authorization: Bearer <key>` (or `x-api-key: <key>`); the
//! key's SHA-256 is compared in constant time with every configured hash. Without a key, a
//! client certificate (mutual TLS) whose subject CN or DNS name is listed in `[[auth.clients]]`
//! identifies the caller. Each method needs one role, from the one table `METHODS`; a method not
//! in it is denied. The policy is read from the current config snapshot on every call, so keys
//! rotate with a reload.
use super::tls::TlsConnectInfo;
use crate::config::{AuthPolicy, Role, Roles, key_hash};
use crate::engine::Engine;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::Status;
use tonic::body::Body;

/// Which role each method needs, by gRPC path. `Service/*` covers every method of a service
/// (so an RPC added to Profiles is a `profiles` call). Everything else is denied.
pub const METHODS: &[(&str, Role)] = &[
    ("/touchpoint.v1.Decisions/Decide", Role::Decide),
    ("/touchpoint.v1.Decisions/DecideBatch", Role::Decide),
    ("/touchpoint.v1.Experiments/GetAssignment", Role::Decide),
    ("/touchpoint.v1.Decisions/RecordEvents", Role::Ingest),
    ("/touchpoint.v1.Decisions/RecordOutcome", Role::Ingest),
    ("/touchpoint.v1.Profiles/*", Role::Profiles),
    ("/touchpoint.v1.Experiments/GetExperimentResults", Role::Analyst),
    ("/touchpoint.v1.Analytics/*", Role::Analyst),
    ("/touchpoint.v1.Admin/Reload", Role::Admin),
    ("/touchpoint.v1.Admin/GetStatus", Role::Admin),
];

const HEALTH: &str = "/grpc.health.v1.Health/";
const REFLECTION: [&str; 2] = ["/grpc.reflection.v1.ServerReflection/", "/grpc.reflection.v1alpha.ServerReflection/"];

/// What a path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, reflection when the config allows it).
    Open,
    /// Any authenticated caller, whatever its roles (reflection by default).
    Authenticated,
    /// A caller with this role.
    Role(Role),
    /// Not a known method: denied.
    Denied,
}

/// What `path` needs under `policy`.
pub fn access(policy: &AuthPolicy, path: &str) -> Access {
    if path.starts_with(HEALTH) {
        return if policy.allow_health { Access::Open } else { Access::Authenticated };
    }
    if REFLECTION.iter().any(|r| path.starts_with(r)) {
        return if policy.allow_reflection { Access::Open } else { Access::Authenticated };
    }
    role_for(path).map_or(Access::Denied, Access::Role)
}

/// The role `path` needs, from `METHODS`.
pub fn role_for(path: &str) -> Option<Role> {
    METHODS.iter().find_map(|&(pattern, role)| {
        let hit = match pattern.strip_suffix('*') {
            Some(service) => path.strip_prefix(service).is_some_and(|m| !m.is_empty() && !m.contains('/')),
            None => path == pattern,
        };
        hit.then_some(role)
    })
}

/// Who made an authorised call (in the request's extensions, for logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key id or the certificate subject; empty with authentication off or on open paths.
    pub id: String,
}

/// The key a request presents, if any.
fn presented_key(headers: &http::HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, key) = v.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then_some(key.trim()).filter(|k| !k.is_empty());
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|k| !k.is_empty())
}

/// The key whose hash matches, comparing with every key in constant time (no early exit).
fn find_key<'a>(policy: &'a AuthPolicy, key: &str) -> Option<(&'a str, Roles)> {
    use subtle::ConstantTimeEq;
    let hash = key_hash(key);
    let mut found = None;
    for k in &policy.keys {
        if bool::from(k.sha256.ct_eq(&hash)) {
            found = Some((k.id.as_str(), k.roles));
        }
    }
    found
}

/// Decides one call: the caller, or the status to answer. Pure, for tests.
pub fn authorize(
    policy: &AuthPolicy,
    path: &str,
    headers: &http::HeaderMap,
    peer_names: &[String],
) -> Result<Caller, Status> {
    if !policy.enabled {
        return Ok(Caller { id: String::new() });
    }
    let need = access(policy, path);
    if need == Access::Open {
        return Ok(Caller { id: String::new() });
    }
    let (id, roles) = match presented_key(headers) {
        Some(key) => {
            find_key(policy, key).ok_or_else(|| deny("unknown_key", Status::unauthenticated("unknown API key")))?
        }
        None => policy
            .clients
            .iter()
            .find(|c| peer_names.contains(&c.subject))
            .map(|c| (c.subject.as_str(), c.roles))
            .ok_or_else(|| {
                deny("missing_key", Status::unauthenticated("missing API key: send `authorization: Bearer <key>`"))
            })?,
    };
    match need {
        Access::Open | Access::Authenticated => {}
        Access::Denied => return Err(deny("unknown_method", Status::permission_denied("method not allowed"))),
        Access::Role(role) if !roles.contains(role) => {
            return Err(deny("role", Status::permission_denied(format!("this call needs the `{role}` role"))));
        }
        Access::Role(_) => {}
    }
    Ok(Caller { id: id.to_string() })
}

fn deny(reason: &'static str, status: Status) -> Status {
    metrics::counter!("touchpoint_auth_denied_total", "reason" => reason).increment(1);
    status
}

/// The layer `serve` puts in front of every route.
#[derive(Clone)]
pub struct AuthLayer {
    engine: Arc<Engine>,
}

impl AuthLayer {
    /// Reads the policy from `engine`'s current snapshot on every call.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, engine: self.engine.clone() }
    }
}

/// See `AuthLayer`.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    engine: Arc<Engine>,
}

impl<S> tower::Service<http::Request<Body>> for AuthService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::Either<futures::future::Ready<Result<Self::Response, Self::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        use futures::future::{Either, ready};
        let policy = self.engine.snapshot().config.auth.clone();
        let peer = req.extensions().get::<TlsConnectInfo>().map(|i| i.peer_names.clone()).unwrap_or_default();
        match authorize(&policy, req.uri().path(), req.headers(), &peer) {
            Ok(caller) => {
                // An audit line for administrative calls (reloads change what every caller gets).
                if role_for(req.uri().path()) == Some(Role::Admin) {
                    tracing::info!(caller = %caller.id, method = req.uri().path(), "admin call");
                }
                req.extensions_mut().insert(caller);
                Either::Right(self.inner.call(req))
            }
            Err(status) => Either::Left(ready(Ok(status.into_http()))),
        }
    }
}

/// Adds the API key to every call of a client (the CLI, the bench, the demo, tests).
#[derive(Clone)]
pub struct ApiKey(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl ApiKey {
    /// A key to send; `None` (or an empty key) sends nothing. A key that cannot be a header
    /// value is refused.
    pub fn new(key: Option<&str>) -> Result<Self, String> {
        match key.map(str::trim).filter(|k| !k.is_empty()) {
            None => Ok(ApiKey(None)),
            Some(k) => format!("Bearer {k}")
                .parse()
                .map(|v| ApiKey(Some(v)))
                .map_err(|_| "the API key must be printable ASCII".to_string()),
        }
    }
}

impl tonic::service::Interceptor for ApiKey {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A channel that sends an API key with every call.
pub type KeyedChannel = tonic::service::interceptor::InterceptedService<tonic::transport::Channel, ApiKey>;

/// `channel` sending `key` with every call.
pub fn keyed(channel: tonic::transport::Channel, key: ApiKey) -> KeyedChannel {
    tonic::service::interceptor::InterceptedService::new(channel, key)
}

/// A fresh random API key (256 bits from the OS, hex, prefixed `tpk_`).
pub fn new_key() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("tpk_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests;
