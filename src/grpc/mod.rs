//! The gRPC layer: generated types, error mapping, `serve` with its limits and metrics layers.
//! Only this module sees protobuf types.
use crate::engine::{self, Engine};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::{Code, Status};

pub mod accept;
pub mod auth;
pub mod convert;
pub mod json;
pub mod layer;
pub mod limits;
mod report;
mod services;
pub mod tls;

pub mod pb {
    //! Generated from proto/touchpoint/v1.
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("touchpoint.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/touchpoint_descriptor.bin"));
}

/// The one mapping from engine errors to gRPC status. Internal causes are logged, not leaked.
impl From<engine::Error> for Status {
    fn from(e: engine::Error) -> Self {
        match e {
            engine::Error::InvalidArgument(f) => Status::invalid_argument(f.to_string()),
            engine::Error::NotFound(m) => Status::not_found(m),
            engine::Error::Unavailable(m) => {
                let reason = engine::degraded::classify_unavailable(&m);
                engine::degraded::warn_limited(reason, "store unavailable", &m);
                Status::unavailable(format!("{reason}: store unavailable, retry later"))
            }
            engine::Error::OutOfMemory(m) => {
                let reason = engine::degraded::STORE_OOM;
                engine::degraded::warn_limited(reason, "store out of memory", &m);
                Status::resource_exhausted(format!("{reason}: store out of memory, nothing written, retry later"))
            }
            e @ engine::Error::Contention(_) => Status::aborted(e.to_string()),
            engine::Error::Config(e) => {
                tracing::warn!(error = %e, "config rejected");
                Status::failed_precondition(format!(
                    "config rejected, still serving the previous one: {}",
                    without_directories(&e)
                ))
            }
            engine::Error::Corrupt(m) => {
                engine::degraded::warn_limited(engine::degraded::STORE_CORRUPT, "corrupt stored data", &m);
                Status::internal("internal error")
            }
            engine::Error::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// A config error's text with the file named by its base name only: where the server's files
/// live is not the caller's business.
fn without_directories(e: &crate::config::ConfigError) -> String {
    let text = e.to_string();
    match std::path::Path::new(&e.source_name).file_name().and_then(|n| n.to_str()) {
        Some(base) if !e.source_name.is_empty() => {
            let mut text = text.replace(&e.source_name, base);
            if let Some(dir) = std::path::Path::new(&e.source_name).parent().and_then(|d| d.to_str())
                && !dir.is_empty()
            {
                text = text.replace(dir, "");
            }
            text
        }
        _ => text,
    }
}

fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The Touchpoint services (not health or reflection).
fn touchpoint_routes(engine: Arc<Engine>) -> tonic::service::Routes {
    let s = services::Services::new(engine);
    tonic::service::Routes::new(pb::decisions_server::DecisionsServer::new(s.clone()))
        .add_service(pb::profiles_server::ProfilesServer::new(s.clone()))
        .add_service(pb::experiments_server::ExperimentsServer::new(s.clone()))
        .add_service(pb::analytics_server::AnalyticsServer::new(s.clone()))
        .add_service(pb::admin_server::AdminServer::new(s))
}

/// The Touchpoint services behind the same layers as `serve` (metrics, auth, shedding by
/// class with limits of the same sizes), as one service to call in process: the HTTP/JSON
/// door (`json.rs`) sends its transcoded calls here.
pub(crate) fn layered_services(
    engine: Arc<Engine>,
) -> tower::util::BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    std::convert::Infallible,
> {
    let l = engine.snapshot().config.file.server.limits.clone();
    let svc = tower::ServiceBuilder::new()
        .layer(layer::MetricsLayer)
        .layer(auth::AuthLayer::new(engine.clone()))
        .layer(limits::ShedLayer::new(&l))
        .service(touchpoint_routes(engine));
    tower::util::BoxCloneSyncService::new(svc)
}

/// Serves every Touchpoint service plus health and reflection (v1 and v1alpha) on `listener`
/// until `shutdown` resolves, then drains in-flight calls. Every call goes through the auth
/// layer; with `[server.tls]`, connections are TLS (the certificate follows reloads). The
/// engine's `[server.limits]` (as loaded at start) bound connections, streams and calls per
/// class; every RPC is counted by its final status (`layer`).
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in services::NAMES {
        health.set_service_status(name, tonic_health::ServingStatus::Serving).await;
    }
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().expect("descriptor sets are valid");
    let reflection_v1alpha = reflection().build_v1alpha().expect("descriptor sets are valid");
    let auth = engine.snapshot().config.auth.clone();
    if !auth.enabled {
        tracing::warn!("authentication is OFF (auth.enabled = false): any caller may call every method");
    }
    let tls = engine.snapshot().config.tls.clone();
    let l = engine.snapshot().config.file.server.limits.clone();
    // Outermost first: every call is counted (denied and shed ones too), then authenticated
    // (an unknown caller never takes a slot of a class), then shed by class before any work.
    let router = limits::apply(tonic::transport::Server::builder(), &l)
        .layer(layer::MetricsLayer)
        .layer(auth::AuthLayer::new(engine.clone()))
        .layer(limits::ShedLayer::new(&l))
        .add_routes(touchpoint_routes(engine.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let conns = accept::incoming(listener, &l);
    match tls {
        Some(tls) => {
            tracing::info!(client_certificates = tls.client_auth, "serving gRPC over TLS");
            router.serve_with_incoming_shutdown(tls::incoming(conns, engine, tls.config), shutdown).await
        }
        None => router.serve_with_incoming_shutdown(conns, shutdown).await,
    }
}
