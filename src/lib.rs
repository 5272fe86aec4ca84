//! Assent: records what people agreed to, confirms by double opt-in,
//! handles unsubscribing, and proves it all later.

pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod context;
pub mod db;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod exports;
pub mod ledger;
pub mod mail;
pub mod metrics;
pub mod openapi;
pub mod pow;
pub mod rate_limit;
pub mod registry;
pub mod render;
pub mod routes;
pub mod shutdown;
pub mod signup_writer;
pub mod startup;
pub mod telemetry;
pub mod tokens;
pub mod webhooks;
