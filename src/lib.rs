//! Touchpoint: a next-best-action engine (library: domain, engine, stores, gRPC layer).
pub mod config;
pub mod domain;
pub mod store;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
