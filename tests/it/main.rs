//! One integration-test binary: real Redis, real gRPC over real sockets.
mod analytics;
mod archive;
mod auth;
mod boundary;
mod certs;
mod cli;
mod decisioning;
mod experiments;
mod fuzz;
mod grpc_e2e;
mod harness;
mod overload;
mod safety;
mod store_suite;
mod tls;
