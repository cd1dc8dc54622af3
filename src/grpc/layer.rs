//! The metrics layer: every Touchpoint RPC counted once, by its FINAL status, in
//! `touchpoint_grpc_requests_total{rpc,code}` with its duration in
//! `touchpoint_grpc_request_duration_seconds{rpc}`.
//!
//! The status is read where the client reads it: the `grpc-status` of a trailers-only
//! response (rejections), else of the trailers at the end of the body — so a streaming call
//! (`DecideBatch`) that fails half-way counts its error, not "OK when the stream opened". A
//! call whose response is dropped before its end was abandoned by the client (RST_STREAM) or
//! by tonic's `grpc-timeout` timer: it counts as `DEADLINE_EXCEEDED` when the caller's
//! deadline had (nearly) passed, else as `CANCELLED`.
//!
//! It also enforces the caller's `grpc-timeout` on response bodies: tonic's own timer covers
//! only the wait for the response headers, so a stream (`DecideBatch`) would run on past its
//! deadline. At the deadline the body ends with `DEADLINE_EXCEEDED` in its trailers and the
//! rest of the stream (with its in-flight work) is dropped.
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::Frame;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::body::Body;

/// Adds `Metrics` around the routes.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsLayer;

impl<S> tower_layer::Layer<S> for MetricsLayer {
    type Service = Metrics<S>;
    fn layer(&self, inner: S) -> Metrics<S> {
        Metrics { inner }
    }
}

/// The service `MetricsLayer` makes.
#[derive(Debug, Clone)]
pub struct Metrics<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower_service::Service<Request<Body>> for Metrics<S>
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
        // The clone is not ready; the instance `poll_ready` was called on is.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(rpc) = rpc_name(req.uri().path()) else { return Box::pin(inner.call(req)) };
        let mut call = Call { rpc, start: Instant::now(), deadline: grpc_timeout(req.headers()), done: false };
        let response = inner.call(req);
        Box::pin(async move {
            // If this future is dropped here, `call`'s drop counts the abandoned call.
            let response = response.await;
            Ok(match response {
                Ok(r) => match status_of(r.headers()) {
                    Some(code) => {
                        call.finish(code);
                        r
                    }
                    None => {
                        let deadline =
                            call.deadline.map(|d| Box::pin(tokio::time::sleep_until((call.start + d).into())));
                        r.map(|body| Body::new(Observed { inner: Some(body), call, deadline }))
                    }
                },
                Err(e) => {
                    // tonic's error recovery turns this into a status the client sees.
                    call.finish(Code::Unknown);
                    return Err(e);
                }
            })
        })
    }
}

/// One call being measured; counted exactly once (on finish, or when dropped unfinished).
struct Call {
    rpc: &'static str,
    start: Instant,
    deadline: Option<Duration>,
    done: bool,
}

impl Call {
    fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let elapsed = self.start.elapsed();
        metrics::counter!("touchpoint_grpc_requests_total", "rpc" => self.rpc, "code" => super::code_label(code))
            .increment(1);
        metrics::histogram!("touchpoint_grpc_request_duration_seconds", "rpc" => self.rpc)
            .record(elapsed.as_secs_f64());
    }

    /// What an unfinished call ended as.
    fn abandoned_code(&self) -> Code {
        abandoned_code(self.start.elapsed(), self.deadline)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.done {
            let code = self.abandoned_code();
            self.finish(code);
        }
    }
}

/// A call the client stopped waiting for: past (or within a tenth of, at most 20 ms) its
/// deadline it is the client's `DEADLINE_EXCEEDED` — the client's timer started before ours,
/// when it sent the call — otherwise the client cancelled it.
fn abandoned_code(elapsed: Duration, deadline: Option<Duration>) -> Code {
    match deadline {
        Some(d) if elapsed + (d / 10).clamp(Duration::from_millis(1), Duration::from_millis(20)) >= d => {
            Code::DeadlineExceeded
        }
        _ => Code::Cancelled,
    }
}

/// A response body that counts its call when the trailers (or the end) arrive, and ends it
/// with `DEADLINE_EXCEEDED` at the caller's deadline.
struct Observed {
    /// None once the deadline ended the body.
    inner: Option<Body>,
    call: Call,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = &mut this.inner else { return Poll::Ready(None) };
        // What is ready goes out (an answer made in time is never replaced); the deadline ends
        // only a body that is still waiting for its next frame.
        let polled = Pin::new(inner).poll_frame(cx);
        if polled.is_pending()
            && let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.inner = None;
            this.call.finish(Code::DeadlineExceeded);
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from(Code::DeadlineExceeded as i32));
            trailers.insert("grpc-message", http::HeaderValue::from_static("deadline exceeded"));
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.call.finish(status_of(trailers).unwrap_or(Code::Unknown));
                }
            }
            Poll::Ready(Some(Err(_))) => this.call.finish(Code::Internal),
            Poll::Ready(None) => this.call.finish(Code::Ok),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.as_ref().map(|b| b.size_hint()).unwrap_or_default()
    }
}

/// The `grpc-status` in `headers`, when there is one.
fn status_of(headers: &HeaderMap) -> Option<Code> {
    let v = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(Code::from_i32(v))
}

/// The method name of a Touchpoint RPC (a bounded label set); None for health, reflection
/// and unknown paths.
pub(crate) fn rpc_name(path: &str) -> Option<&'static str> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    if !service.starts_with("touchpoint.v1.") {
        return None;
    }
    super::limits::RPCS.iter().map(|&(name, _)| name).find(|name| *name == method)
}

/// The caller's `grpc-timeout` (at most 8 digits and a unit, per the gRPC spec), without
/// overflow on any input.
pub(crate) fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    super::convert::parse_grpc_timeout(headers.get("grpc-timeout")?.to_str().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_names_are_bounded() {
        assert_eq!(rpc_name("/touchpoint.v1.Decisions/Decide"), Some("Decide"));
        assert_eq!(rpc_name("/touchpoint.v1.Decisions/Nope"), None);
        assert_eq!(rpc_name("/grpc.health.v1.Health/Check"), None);
        assert_eq!(rpc_name("garbage"), None);
    }

    #[test]
    fn timeouts_parse_without_overflow() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&m)
        };
        assert_eq!(h("250m"), Some(Duration::from_millis(250)));
        assert_eq!(h("99999999H"), Some(Duration::from_secs(99_999_999 * 3600)));
        assert_eq!(h("999999999H"), None);
        assert_eq!(h("m"), None);
        assert_eq!(h("5x"), None);
    }

    #[test]
    fn abandoned_calls_are_deadlines_only_near_the_deadline() {
        let ms = Duration::from_millis;
        assert_eq!(abandoned_code(ms(5), None), Code::Cancelled);
        assert_eq!(abandoned_code(ms(10), Some(ms(100))), Code::Cancelled);
        assert_eq!(abandoned_code(ms(95), Some(ms(100))), Code::DeadlineExceeded);
        assert_eq!(abandoned_code(ms(120), Some(ms(100))), Code::DeadlineExceeded);
    }
}
