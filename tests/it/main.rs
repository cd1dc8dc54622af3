//! One integration-test binary: real Redis, real gRPC over real sockets.
mod boundary;
mod cli;
mod decisioning;
mod experiments;
mod grpc_e2e;
mod harness;
mod overload;
mod store_suite;
mod tls;
