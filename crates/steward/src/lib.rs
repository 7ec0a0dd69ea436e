//! Steward: personal data of a cloud communications provider, with the privacy
//! statement's promises kept in code. See `docs/ARCHITECTURE.md` for the map.
//!
//! Layers, top to bottom: transport (`api`, `cli`) → domain operations (one
//! module per concern: `tenants`, `accounts`, `subjects`, `consent`,
//! `processing`, `audit`), which check role, tenant, purpose and consent through
//! `access` and `processing`, and write through `core::Tx` → storage
//! (`steward-store`, `steward-blobs`) and keys (`keys`, `steward-crypto`).

pub mod access;
pub mod accounts;
pub mod analytics;
pub mod api;
pub mod audit;
pub mod backup;
pub mod broker;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod config;
pub mod consent;
pub mod contacts;
pub mod core;
pub mod crm;
pub mod dashboard;
pub mod directory;
pub mod error;
pub mod files;
pub mod ingest;
pub mod instance;
pub mod jobs;
pub mod keys;
pub mod media;
pub mod processing;
pub mod recordings;
pub mod registry;
pub mod retention;
pub mod rights;
pub mod schema;
pub mod subjects;
pub mod tenants;
pub mod web;

pub use crate::core::Steward;
pub use crate::error::{Error, Result};
