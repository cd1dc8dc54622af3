//! One integration-test binary: real Redis, real gRPC over real sockets.
mod harness;
mod store_suite;
