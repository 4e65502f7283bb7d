//! scs-kaas-check: conformance checks for the Sovereign Cloud Stack KaaS standards.
//!
//! Layers, top to bottom (a module imports only from layers below it):
//! - `cli` (the command-line contract, the only module that knows clap) and `app`
//!   (dispatch, `list`, `delete`);
//! - `runner` (orchestration of `run`) and `incluster` (runs inside the cluster, `gen`,
//!   `status`, `retrieve`), both reading the plain `settings`;
//! - `checks` (one module per standard, producing `outcome`s) and `report` (JUnit, YAML);
//! - `catalogue` (certificate scopes, data), `outcome` (results, verdicts, exit codes);
//! - `cluster` (connection, scratch namespaces, cleanup, waits, object builders),
//!   `console` (stdout/stderr, redaction) and `signals`.

pub mod app;
pub mod catalogue;
pub mod checks;
pub mod cli;
pub mod cluster;
pub mod console;
pub mod incluster;
pub mod outcome;
pub mod report;
pub mod runner;
pub mod settings;
pub mod signals;
