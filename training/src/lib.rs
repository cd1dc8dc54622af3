//! The offline trainer: journey logs and feature tables in, evaluated model artifacts out.
pub mod data;
pub mod irls;
pub mod journey;
pub mod metrics;
pub mod progress;
pub mod table;
pub mod train;
