//! Kubeconfig resolution, like kubectl: `--kubeconfig`, else `KUBECONFIG` (colon-separated,
//! merged, missing files ignored), else `~/.kube/config`, else the in-cluster service account.

use kube::config::{KubeConfigOptions, Kubeconfig};
use secrecy::ExposeSecret;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which cluster(s) to connect to, and how patiently.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Kubeconfig files (`--kubeconfig`); empty: `KUBECONFIG`, `~/.kube/config`, in-cluster.
    pub kubeconfig: Vec<PathBuf>,
    /// Contexts (`--context`); empty: the current context.
    pub context: Vec<String>,
    /// How long one API request may take.
    pub request_timeout: Duration,
}

/// One cluster to check: a kubeconfig context (or the in-cluster service account).
pub struct Subject {
    /// Context name, or `in-cluster`.
    pub name: String,
    pub config: kube::Config,
    /// Credential material to keep out of every output.
    pub secrets: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// Where the kubeconfig came from, for messages.
struct Source {
    kubeconfig: Kubeconfig,
    describe: String,
}

/// The subjects the arguments name: one, or several for an offering run.
pub async fn resolve(args: &ConnectOptions) -> Result<Vec<Subject>, ConfigError> {
    let kubeconfigs = &args.kubeconfig;
    let contexts = &args.context;
    let pairs: Vec<(Option<&Path>, Option<&str>)> = match (kubeconfigs.len(), contexts.len()) {
        (0 | 1, _) if contexts.len() <= 1 => {
            vec![(
                kubeconfigs.first().map(PathBuf::as_path),
                contexts.first().map(String::as_str),
            )]
        }
        (0 | 1, _) => contexts
            .iter()
            .map(|c| (kubeconfigs.first().map(PathBuf::as_path), Some(c.as_str())))
            .collect(),
        (n, 0) => (0..n)
            .map(|i| (Some(kubeconfigs[i].as_path()), None))
            .collect(),
        (n, m) if n == m => (0..n)
            .map(|i| (Some(kubeconfigs[i].as_path()), Some(contexts[i].as_str())))
            .collect(),
        (n, m) => {
            return Err(err(format!(
                "{n} --kubeconfig and {m} --context given: give one kubeconfig with several \
                 contexts, several kubeconfigs, or as many contexts as kubeconfigs"
            )));
        }
    };
    let mut subjects = Vec::new();
    for (path, context) in pairs {
        subjects.push(subject(path, context).await?);
    }
    Ok(subjects)
}

async fn subject(path: Option<&Path>, context: Option<&str>) -> Result<Subject, ConfigError> {
    let source = match path {
        Some(path) => Some(Source {
            kubeconfig: read_file(path)?,
            describe: format!("kubeconfig {}", path.display()),
        }),
        None => from_env_or_home()?,
    };
    let Some(source) = source else {
        if context.is_some() {
            return Err(err(
                "--context given, but there is no kubeconfig (no --kubeconfig, KUBECONFIG unset, \
                 no ~/.kube/config)",
            ));
        }
        return in_cluster();
    };
    from_kubeconfig(source, context).await
}

fn read_file(path: &Path) -> Result<Kubeconfig, ConfigError> {
    if !path.exists() {
        return Err(err(format!("kubeconfig {} does not exist", path.display())));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(format!("cannot read kubeconfig {}: {e}", path.display())))?;
    // Parse first to name the problem precisely; then read it the kube way (relative paths).
    Kubeconfig::from_yaml(&text)
        .and_then(|_| Kubeconfig::read_from(path))
        .map_err(|e| {
            err(format!(
                "kubeconfig {} is malformed: {}",
                path.display(),
                one_line(&e)
            ))
        })
}

fn from_env_or_home() -> Result<Option<Source>, ConfigError> {
    if let Some(value) = std::env::var_os("KUBECONFIG") {
        let paths: Vec<PathBuf> = std::env::split_paths(&value)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if !paths.is_empty() {
            let existing: Vec<&PathBuf> = paths.iter().filter(|p| p.exists()).collect();
            if existing.is_empty() {
                return Err(err(format!(
                    "none of the files in KUBECONFIG exist: {}",
                    paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let mut merged = Kubeconfig::default();
            for path in &existing {
                merged = merged.merge(read_file(path)?).map_err(|e| {
                    err(format!(
                        "cannot merge kubeconfig {}: {}",
                        path.display(),
                        one_line(&e)
                    ))
                })?;
            }
            return Ok(Some(Source {
                kubeconfig: merged,
                describe: format!(
                    "KUBECONFIG ({})",
                    existing
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":")
                ),
            }));
        }
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match home.map(|h| h.join(".kube").join("config")) {
        Some(path) if path.exists() => Ok(Some(Source {
            kubeconfig: read_file(&path)?,
            describe: format!("kubeconfig {}", path.display()),
        })),
        _ => Ok(None),
    }
}

fn in_cluster() -> Result<Subject, ConfigError> {
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
        return Err(err(
            "no kubeconfig: --kubeconfig not given, KUBECONFIG not set, ~/.kube/config does not \
             exist, and not running in a pod",
        ));
    }
    let config = kube::Config::incluster()
        .map_err(|e| err(format!("in-cluster configuration failed: {}", one_line(&e))))?;
    let secrets = config
        .auth_info
        .token_file
        .as_ref()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .map(|t| t.trim().to_string())
        .into_iter()
        .collect();
    Ok(Subject {
        name: "in-cluster".into(),
        config,
        secrets,
    })
}

async fn from_kubeconfig(source: Source, context: Option<&str>) -> Result<Subject, ConfigError> {
    let kubeconfig = source.kubeconfig;
    let name = match context {
        Some(name) => {
            if !kubeconfig.contexts.iter().any(|c| c.name == name) {
                let known: Vec<&str> = kubeconfig
                    .contexts
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect();
                return Err(err(format!(
                    "context {name:?} not found in {} (contexts: {})",
                    source.describe,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            }
            name.to_string()
        }
        None => match &kubeconfig.current_context {
            Some(c) if !c.is_empty() => c.clone(),
            _ => {
                return Err(err(format!(
                    "{} has no current-context; pass --context",
                    source.describe
                )));
            }
        },
    };
    let secrets = secrets_of(&kubeconfig);
    let options = KubeConfigOptions {
        context: Some(name.clone()),
        cluster: None,
        user: None,
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| {
            err(format!(
                "{} context {name:?} is unusable: {}",
                source.describe,
                one_line(&e)
            ))
        })?;
    Ok(Subject {
        name,
        config,
        secrets,
    })
}

/// Every credential in the kubeconfig (not just the selected user's): none may be printed.
fn secrets_of(kubeconfig: &Kubeconfig) -> Vec<String> {
    let mut secrets = Vec::new();
    for auth in kubeconfig
        .auth_infos
        .iter()
        .filter_map(|a| a.auth_info.as_ref())
    {
        for secret in [&auth.token, &auth.password, &auth.client_key_data]
            .into_iter()
            .flatten()
        {
            secrets.push(secret.expose_secret().to_string());
        }
        if let Some(file) = &auth.token_file
            && let Ok(token) = std::fs::read_to_string(file)
        {
            secrets.push(token.trim().to_string());
        }
    }
    secrets.retain(|s| s.len() >= 6);
    secrets
}

/// An error and its sources on one line, without repeats.
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&dyn std::error::Error> = Some(e);
    while let Some(e) = current {
        let text = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}
