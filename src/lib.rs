//! Touchpoint: a next-best-action engine (library: domain, engine, stores, gRPC layer).
#![warn(missing_docs)]
pub mod archive;
pub mod config;
pub mod console;
pub mod domain;
pub mod engine;
pub mod grpc;
pub mod hillstrom;
pub mod io;
pub mod sim;
pub mod store;
pub mod telemetry;

/// The crate version (`CARGO_PKG_VERSION`), reported as the server version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
