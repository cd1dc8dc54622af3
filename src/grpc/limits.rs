//! Shedding instead of queueing: a concurrency limit per method class (`[server.limits]`),
//! answered with RESOURCE_EXHAUSTED at once when full, and the HTTP/2 limits of the server
//! builder (`apply`).
//!
//! A call holds its class's slot until its response body ends (a `DecideBatch` stream holds
//! it while it streams). Health and reflection are never limited.
use super::layer::rpc_name;
use crate::config::LimitsConfig;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;

/// Every Touchpoint RPC by method name, with its class: the shedding classes and the metrics
/// layer's bounded `rpc` labels (`layer::rpc_name`) both come from this one list.
pub const RPCS: [(&str, Class); 16] = [
    ("Decide", Class::Interactive),
    ("GetAssignment", Class::Interactive),
    ("DecideBatch", Class::Batch),
    ("RecordEvents", Class::Ingest),
    ("RecordOutcome", Class::Ingest),
    ("GetProfile", Class::Profiles),
    ("PutProfile", Class::Profiles),
    ("DeleteProfile", Class::Profiles),
    ("GetJourney", Class::Profiles),
    ("SetConsent", Class::Profiles),
    ("Reload", Class::Admin),
    ("GetStatus", Class::Admin),
    ("GetExperimentResults", Class::Admin),
    ("GetFunnel", Class::Admin),
    ("GetOfferPerformance", Class::Admin),
    ("GetKpis", Class::Admin),
];

/// A method class sharing one concurrency limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `Decide`, `GetAssignment`.
    Interactive,
    /// `DecideBatch`.
    Batch,
    /// `RecordEvents`, `RecordOutcome`.
    Ingest,
    /// `GetProfile`, `PutProfile`, `DeleteProfile`, `GetJourney`, `SetConsent`.
    Profiles,
    /// `Reload`, `GetStatus`, `GetExperimentResults`, the `Analytics` reads (on a cluster a
    /// report reads every slot's counters).
    Admin,
}

impl Class {
    const ALL: [Class; 5] = [Class::Interactive, Class::Batch, Class::Ingest, Class::Profiles, Class::Admin];

    /// The label and config key of the class.
    pub fn name(self) -> &'static str {
        match self {
            Class::Interactive => "interactive",
            Class::Batch => "batch",
            Class::Ingest => "ingest",
            Class::Profiles => "profiles",
            Class::Admin => "admin",
        }
    }

    /// The class of an RPC by its method name.
    pub fn of(rpc: &str) -> Option<Class> {
        RPCS.iter().find(|(name, _)| *name == rpc).map(|&(_, class)| class)
    }

    fn limit(self, l: &LimitsConfig) -> u32 {
        match self {
            Class::Interactive => l.interactive,
            Class::Batch => l.batch,
            Class::Ingest => l.ingest,
            Class::Profiles => l.profiles,
            Class::Admin => l.admin,
        }
    }
}

/// At most one log line per second per slot: a limit that triggers under a flood would
/// otherwise write a line per refused call.
pub(crate) struct RateLimitedLog(AtomicU64);

impl RateLimitedLog {
    pub(crate) const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// True at most once per wall-clock second.
    pub(crate) fn allow(&self) -> bool {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.0.load(Ordering::Relaxed);
        last != now && self.0.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

static SHED_LOG: [RateLimitedLog; 5] = [const { RateLimitedLog::new() }; 5];

/// The per-class semaphores, shared by every connection of one server.
#[derive(Clone)]
pub struct ShedLayer {
    slots: Arc<[(Arc<Semaphore>, u32); 5]>,
}

impl ShedLayer {
    /// The class limits of `limits`.
    pub fn new(limits: &LimitsConfig) -> Self {
        let slot = |c: Class| {
            let n = c.limit(limits).max(1);
            (Arc::new(Semaphore::new(n as usize)), n)
        };
        Self { slots: Arc::new(Class::ALL.map(slot)) }
    }
}

impl<S> tower_layer::Layer<S> for ShedLayer {
    type Service = Shed<S>;
    fn layer(&self, inner: S) -> Shed<S> {
        Shed { inner, slots: self.slots.clone() }
    }
}

/// The service `ShedLayer` makes.
#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    slots: Arc<[(Arc<Semaphore>, u32); 5]>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower_service::Service<Request<Body>> for Shed<S>
where
    S: tower_service::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(class) = rpc_name(req.uri().path()).and_then(Class::of) else { return Box::pin(inner.call(req)) };
        let i = Class::ALL.iter().position(|c| *c == class).unwrap_or(0);
        let (semaphore, limit) = &self.slots[i];
        let Ok(permit) = semaphore.clone().try_acquire_owned() else {
            metrics::counter!("touchpoint_requests_shed_total", "class" => class.name()).increment(1);
            if SHED_LOG[i].allow() {
                tracing::warn!(class = class.name(), limit, "concurrency limit reached: shedding calls");
            }
            let status = tonic::Status::resource_exhausted(format!(
                "server busy: {} calls at their limit, retry with backoff",
                class.name()
            ));
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        let response = inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| Body::new(Held { inner, _permit: permit })))
        })
    }
}

/// A response body that keeps its call's slot until it ends or is dropped.
struct Held {
    inner: Body,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn millis(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// The HTTP/2 limits of `[server.limits]` on the server builder: streams per connection,
/// pending-accept resets (raised from h2's 20, which closes healthy connections whose
/// clients cancel on deadlines), keepalive PINGs.
pub fn apply<L>(builder: tonic::transport::Server<L>, l: &LimitsConfig) -> tonic::transport::Server<L> {
    builder
        .max_concurrent_streams(l.max_concurrent_streams)
        .http2_max_pending_accept_reset_streams(Some(l.max_pending_reset_streams as usize))
        .http2_keepalive_interval(millis(l.keepalive_interval_ms))
        .http2_keepalive_timeout(millis(l.keepalive_timeout_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_has_a_class() {
        for rpc in ["Decide", "GetAssignment", "DecideBatch", "RecordEvents", "GetStatus", "GetJourney"] {
            assert!(Class::of(rpc).is_some(), "{rpc}");
        }
        assert_eq!(Class::of("Decide"), Some(Class::Interactive));
        assert_eq!(Class::of("DecideBatch"), Some(Class::Batch));
        assert_eq!(Class::of("Check"), None);
    }
}
