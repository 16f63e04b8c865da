//! snapkeep: consistent, verified, rotated SQLite backups. See SPEC.md for the contract and
//! DESIGN.md for the shape; `job::run_backup` is where one run is put together.

pub mod archive;
pub mod auth;
pub mod cancel;
pub mod catalog;
pub mod cli;
pub mod compress;
pub mod config;
pub mod daemon;
pub mod drive;
pub mod error;
pub mod fsutil;
pub mod http;
pub mod job;
pub mod logging;
pub mod names;
pub mod notify;
pub mod offsite;
pub mod progress;
pub mod remote_cli;
pub mod restore;
pub mod retention;
pub mod rotate;
pub mod schedule;
pub mod snapshot;
pub mod status;
