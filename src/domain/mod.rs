//! The pure domain: journeys, profiles, offers, decisions and input limits. No I/O here.
//!
//! Nothing in this module imports tokio, tonic, prost or redis; times are milliseconds
//! since the Unix epoch passed in by the caller, so every function is deterministic.
pub mod analytics;
pub mod arbitration;
pub mod contact;
pub mod decision;
pub mod event;
pub mod experiment;
pub mod features;
pub mod funnel;
pub mod journey;
pub mod limits;
pub mod model;
pub mod offer;
pub mod outcome;
pub mod policy;
pub mod profile;
pub mod results;
pub mod rules;
pub mod stats;
pub mod thompson;
pub mod trees;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// One day in milliseconds.
pub const MS_PER_DAY: Millis = 86_400_000;
