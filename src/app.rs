//! Dispatch of the parsed command line, and the small subcommands `list` and `delete`
//! (`run` and `gen` are in `runner`, the in-cluster commands in `incluster`).

use crate::catalogue::{Catalogue, Testcase};
use crate::checks::{self, upstream_e2e::collect};
use crate::cli::{Cli, Command, DeleteArgs, ListArgs, ListFormat};
use crate::cluster::Cluster;
use crate::cluster::config;
use crate::cluster::preflight;
use crate::console;
use crate::outcome::{EXIT_ABORT, EXIT_OK, EXIT_USAGE, Level};
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

/// `list`: every testcase of the scope version with its module, target, whether it counts
/// for the certificate, and the check of this binary that implements it.
fn list(args: &ListArgs) -> u8 {
    let catalogue = match Catalogue::load(args.catalogue.catalogue.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            console::critical(&e.to_string());
            return EXIT_USAGE;
        }
    };
    let date = args
        .catalogue
        .reference_date
        .unwrap_or_else(crate::settings::today_utc);
    let scope = match catalogue.scope(args.catalogue.scope_version.as_deref(), date) {
        Ok(v) => v,
        Err(e) => {
            console::critical(&e);
            return EXIT_USAGE;
        }
    };
    let implemented = |t: &Testcase| checks::implementing(&t.id);
    let text = match args.format {
        ListFormat::Json => {
            let doc = serde_json::json!({
                "catalogue": catalogue.name,
                "scope_version": scope.version,
                "validity": scope.validity,
                "reference_date": date.to_string(),
                "testcases": scope.testcases.iter().map(|t| serde_json::json!({
                    "id": t.id,
                    "module": t.module,
                    "module_name": t.module_name,
                    "target": t.target,
                    "certificate": t.certificate(),
                    "check": implemented(t).map(|i| i.check.name),
                    "level": implemented(t).map(|i| i.level),
                    "description": t.description,
                    "url": t.url,
                    "section": t.section,
                    "lifetime": t.lifetime,
                })).collect::<Vec<_>>(),
            });
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        }
        ListFormat::Text => {
            let rows: Vec<[String; 5]> = scope
                .testcases
                .iter()
                .map(|t| {
                    let counts = if t.certificate() {
                        "certificate"
                    } else {
                        "beside"
                    };
                    let check = match implemented(t) {
                        Some(i) if i.level == Level::Mandatory => i.check.name.to_string(),
                        Some(i) => format!("{} ({})", i.check.name, i.level.as_str()),
                        None => "not-implemented".to_string(),
                    };
                    [
                        t.id.clone(),
                        t.module.clone(),
                        t.target.clone(),
                        counts.to_string(),
                        check,
                    ]
                })
                .collect();
            let header = ["TESTCASE", "MODULE", "TARGET", "COUNTS", "CHECK"].map(String::from);
            let widths: Vec<usize> = (0..5)
                .map(|i| {
                    rows.iter()
                        .chain([&header])
                        .map(|r| r[i].len())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |r: &[String; 5], description: &str| {
                let cells: Vec<String> = r
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:w$}"))
                    .collect();
                format!("{}  {description}", cells.join("  "))
                    .trim_end()
                    .to_string()
            };
            let title = format!(
                "{} {} ({} on {date}; target main is the certificate)",
                catalogue.name,
                scope.version,
                scope.validity.as_str()
            );
            std::iter::once(title)
                .chain(std::iter::once(line(&header, "DESCRIPTION")))
                .chain(
                    rows.iter()
                        .zip(&scope.testcases)
                        .map(|(r, t)| line(r, &t.description)),
                )
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
            console::critical(&format!("cannot start the async runtime: {e}"));
            return EXIT_ABORT;
        }
    };
    runtime.block_on(async {
        let subjects = match config::resolve(&options).await {
            Ok(s) => s,
            Err(e) => {
                console::critical(&e.to_string());
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
                    console::critical(&reason);
                    return EXIT_USAGE;
                }
                Err(preflight::ConnectError::Unreachable(reason)) => {
                    console::critical(&reason);
                    code = EXIT_ABORT;
                    continue;
                }
            };
            if let Err(e) = connection.server_info(timeout).await {
                console::critical(&e.to_string());
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
                    console::problem(&e.to_string());
                    code = EXIT_ABORT;
                }
            }
        }
        code
    })
}
