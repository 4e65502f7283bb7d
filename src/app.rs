//! Dispatch of the parsed command line, and the small subcommands `list` and `delete`
//! (`run` and `gen` are in `runner`, the in-cluster commands in `incluster`).

use crate::catalogue::Catalogue;
use crate::checks::upstream_e2e::collect;
use crate::cli::{Cli, Command, DeleteArgs, ListArgs, ListFormat};
use crate::cluster::Cluster;
use crate::cluster::config;
use crate::cluster::preflight;
use crate::console;
use crate::outcome::{EXIT_ABORT, EXIT_OK, EXIT_USAGE};
use crate::runner;

/// Runs the parsed command; returns the process exit code.
pub fn main(cli: Cli) -> u8 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Run(args) => runner::run(args.into_config()),
        Command::List(args) => list(&args),
        Command::Delete(args) => delete(args),
        Command::Gen(args) => runner::gen_manifests(args.into_config()),
        Command::Images(args) => runner::images(args.run.into_config(), args.kubernetes_version),
        Command::Status(args) => crate::incluster::status(&args.cluster.into_options()),
        Command::Retrieve(args) => crate::incluster::retrieve(&args.into_options()),
        Command::E2e(args) => runner::run(args.into_config()),
        Command::E2eCollect(args) => collect::collect(&args.into_options()),
    }
}

fn list(args: &ListArgs) -> u8 {
    let catalogue = match Catalogue::load(args.catalogue.catalogue.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            console::error(&e.to_string());
            return EXIT_USAGE;
        }
    };
    let scope = match catalogue.version(args.catalogue.scope_version.as_deref()) {
        Ok(v) => v,
        Err(e) => {
            console::error(&e);
            return EXIT_USAGE;
        }
    };
    let testcases = scope.testcases();
    let text = match args.format {
        ListFormat::Json => {
            let doc = serde_json::json!({
                "catalogue": catalogue.name,
                "scope_version": scope.version,
                "testcases": testcases.iter().map(|t| serde_json::json!({
                    "id": t.id,
                    "standard": t.standard,
                    "level": t.level,
                    "check": t.check,
                    "description": t.description,
                })).collect::<Vec<_>>(),
            });
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        }
        ListFormat::Text => {
            let width = |f: fn(&crate::catalogue::Testcase) -> usize| {
                testcases.iter().map(f).max().unwrap_or(0)
            };
            let (w_id, w_std) = (width(|t| t.id.len()), width(|t| t.standard.len()));
            testcases
                .iter()
                .map(|t| {
                    format!(
                        "{:w_id$}  {:w_std$}  {:13}  {}",
                        t.id,
                        t.standard,
                        t.level.as_str(),
                        t.description
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    println!("{text}");
    EXIT_OK
}

fn delete(args: DeleteArgs) -> u8 {
    let run_id = args.run_id;
    let options = args.cluster.into_options();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            console::error(&format!("cannot start the async runtime: {e}"));
            return EXIT_ABORT;
        }
    };
    runtime.block_on(async {
        let subjects = match config::resolve(&options).await {
            Ok(s) => s,
            Err(e) => {
                console::error(&e.to_string());
                return EXIT_USAGE;
            }
        };
        for subject in &subjects {
            console::register_secrets(subject.secrets.iter().cloned());
        }
        let mut code = EXIT_OK;
        for subject in subjects {
            let timeout = options.request_timeout;
            let connection = match preflight::connect(subject, timeout) {
                Ok(c) => c,
                Err(preflight::ConnectError::Config(reason)) => {
                    console::error(&reason);
                    return EXIT_USAGE;
                }
                Err(preflight::ConnectError::Unreachable(reason)) => {
                    console::error(&reason);
                    code = EXIT_ABORT;
                    continue;
                }
            };
            if let Err(e) = connection.server_info(timeout).await {
                console::error(&e.to_string());
                code = EXIT_ABORT;
                continue;
            }
            let name = connection.name;
            let cluster = Cluster::new(connection.client, String::new(), timeout, false);
            let swept = match cluster.sweep(run_id.as_deref(), true).await {
                Ok(mut lines) => cluster
                    .sweep_rbac(run_id.as_deref(), true)
                    .await
                    .map(|more| {
                        lines.extend(more);
                        lines
                    }),
                Err(e) => Err(e),
            };
            match swept {
                Ok(lines) if lines.is_empty() => {
                    console::note(&format!("{}: nothing to delete", name))
                }
                Ok(lines) => lines
                    .iter()
                    .for_each(|l| console::note(&format!("{}: {l}", name))),
                Err(e) => {
                    console::error(&e.to_string());
                    code = EXIT_ABORT;
                }
            }
        }
        code
    })
}
