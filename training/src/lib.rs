//! The offline trainer: journey logs and feature tables in, evaluated model artifacts out.
pub mod bench;
pub mod data;
pub mod decisions;
pub mod gbdt;
pub mod irls;
pub mod journey;
pub mod metrics;
pub mod ope;
pub mod policy_eval;
pub mod progress;
pub mod report;
pub mod responses;
pub mod table;
pub mod train;
pub mod uplift;
