//! Kubeconfig resolution, like kubectl: `--kubeconfig`, else `KUBECONFIG` (colon-separated,
//! merged, missing files ignored), else `~/.kube/config`, else the in-cluster service account.
//!
//! kubectl's (client-go's) rules that the client library does not apply are applied here,
//! each naming its source in `staging/src/k8s.io/client-go/`:
//! - merging `KUBECONFIG` files (`tools/clientcmd/loader.go`, `LoadingRules.Load`, mergo
//!   without overwriting by empty values): the first file that sets a non-empty
//!   `current-context` wins; an empty one does not hide a later file's;
//! - the selected user's `exec` entry is validated and run by [`super::exec`];
//! - `insecure-skip-tls-verify: true` together with a certificate authority is refused
//!   (`transport/transport.go`, `TLSConfigFor`);
//! - a context that cannot be chosen is an error listing the contexts there are;
//! - without `proxy-url`, the proxy comes from the environment as in Go's
//!   `net/http.ProxyFromEnvironment` (`golang.org/x/net/http/httpproxy`): `HTTPS_PROXY` (or
//!   `HTTP_PROXY` for `http://` servers), not for loopback hosts, and not for hosts
//!   `NO_PROXY` names (the client library matched `NO_PROXY` against the proxy instead).
//!
//! Every credential slot of the kubeconfig is collected for the redactor ([`secrets_of`]).

use super::exec::{self, ExecPlugin};
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
    /// The client configuration, without the `exec` plugin (see `exec`).
    pub config: kube::Config,
    /// The user's exec credential plugin, run by this suite instead of the client library.
    pub exec: Option<ExecPlugin>,
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
    let mut kubeconfig = Kubeconfig::from_yaml(&text)
        .and_then(|_| Kubeconfig::read_from(path))
        .map_err(|e| {
            err(format!(
                "kubeconfig {} is malformed: {}",
                path.display(),
                one_line(&e)
            ))
        })?;
    // `current-context: ""` sets nothing (client-go merges with mergo, which never lets an
    // empty value override), so a later KUBECONFIG file's context still counts.
    if kubeconfig.current_context.as_deref() == Some("") {
        kubeconfig.current_context = None;
    }
    Ok(kubeconfig)
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

/// The subject name of the in-cluster configuration (the suite runs in a pod of the cluster
/// it checks: no kubeconfig, the pod's ServiceAccount).
pub const IN_CLUSTER_SUBJECT: &str = "in-cluster";

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
        name: IN_CLUSTER_SUBJECT.into(),
        config,
        exec: None,
        secrets,
    })
}

async fn from_kubeconfig(source: Source, context: Option<&str>) -> Result<Subject, ConfigError> {
    let kubeconfig = source.kubeconfig;
    let known: Vec<&str> = kubeconfig
        .contexts
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let contexts = if known.is_empty() {
        "none".to_string()
    } else {
        known.join(", ")
    };
    let name = match context
        .map(str::to_string)
        .or(kubeconfig.current_context.clone())
    {
        Some(name) if known.contains(&name.as_str()) => name,
        Some(name) => {
            let which = if context.is_some() {
                "context"
            } else {
                "current-context"
            };
            return Err(err(format!(
                "{which} {name:?} not found in {} (contexts: {contexts})",
                source.describe
            )));
        }
        None => {
            return Err(err(format!(
                "{} sets no current-context; pass --context (contexts: {contexts})",
                source.describe
            )));
        }
    };
    let selected = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.context.clone())
        .unwrap_or_default();
    if let Some(cluster) = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == selected.cluster)
        .and_then(|c| c.cluster.as_ref())
        && cluster.insecure_skip_tls_verify == Some(true)
        && (cluster.certificate_authority.is_some() || cluster.certificate_authority_data.is_some())
    {
        // kubectl: "specifying a root certificates file with the insecure flag is not allowed"
        return Err(err(format!(
            "{} cluster {:?}: specifying a root certificates file with the insecure flag is not \
             allowed (insecure-skip-tls-verify: true together with certificate-authority; \
             remove one of them)",
            source.describe, selected.cluster
        )));
    }
    let user = selected.user.clone().unwrap_or_default();
    let has_proxy_url = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == selected.cluster)
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.proxy_url.as_deref())
        .is_some_and(|u| !u.is_empty());
    let secrets = secrets_of(&kubeconfig);
    let options = KubeConfigOptions {
        context: Some(name.clone()),
        cluster: None,
        user: None,
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| {
            err(format!(
                "{} context {name:?} is unusable: {}",
                source.describe,
                one_line(&e)
            ))
        })?;
    if !has_proxy_url {
        config.proxy_url = env_proxy(&config.cluster_url)
            .map_err(|e| err(format!("{} context {name:?}: {e}", source.describe)))?;
    }
    let exec = match config.auth_info.exec.take() {
        Some(entry) => Some(
            ExecPlugin::from_config(&user, &entry)
                .map_err(|e| err(format!("{}: {e}", source.describe)))?,
        ),
        None => None,
    };
    Ok(Subject {
        name,
        config,
        exec,
        secrets,
    })
}

/// The extension of a kubeconfig cluster whose `config` client-go hands to exec plugins in
/// `spec.cluster.config` (`client.authentication.k8s.io/exec`).
const EXEC_EXTENSION: &str = "client.authentication.k8s.io/exec";

/// Every credential in the kubeconfig (not just the selected user's): none may be printed.
/// Slots: `token`, the contents of `tokenFile`, `password`, `client-key-data` (as written and
/// decoded) and the contents of `client-key`, the `exec` arguments and environment values,
/// the `auth-provider` config values, the clusters' `client.authentication.k8s.io/exec`
/// extension (handed to plugins in `KUBERNETES_EXEC_INFO`) and the password of a
/// `proxy-url`. Client certificates are public by design (the server sees them in every
/// handshake) and are not collected.
pub fn secrets_of(kubeconfig: &Kubeconfig) -> Vec<String> {
    use base64::Engine;
    let mut secrets = Vec::new();
    let read = |file: &str| std::fs::read_to_string(file).ok();
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
        let mut keys: Vec<String> = auth
            .client_key
            .as_deref()
            .and_then(read)
            .into_iter()
            .collect();
        if let Some(data) = &auth.client_key_data
            && let Ok(pem) =
                base64::engine::general_purpose::STANDARD.decode(data.expose_secret().trim())
        {
            keys.push(String::from_utf8_lossy(&pem).into_owned());
        }
        for key in keys {
            // The key and each of its base64 lines (an error may quote a line).
            secrets.extend(
                key.lines()
                    .filter(|l| !l.starts_with("-----"))
                    .map(str::to_string),
            );
            secrets.push(key.trim().to_string());
        }
        if let Some(token) = auth.token_file.as_deref().and_then(read) {
            secrets.push(token.trim().to_string());
        }
        if let Some(provider) = &auth.auth_provider {
            secrets.extend(provider.config.values().cloned());
        }
        if let Some(entry) = &auth.exec {
            secrets.extend(exec::argument_secrets(entry.args.iter().flatten()));
            secrets.extend(
                entry
                    .env
                    .iter()
                    .flatten()
                    .filter_map(|e| e.get("value").cloned()),
            );
        }
    }
    for cluster in kubeconfig
        .clusters
        .iter()
        .filter_map(|c| c.cluster.as_ref())
    {
        for extension in cluster.extensions.iter().flatten() {
            if extension.name == EXEC_EXTENSION {
                exec::json_strings(&extension.extension, &mut secrets);
            }
        }
        if let Some(password) = cluster
            .proxy_url
            .as_deref()
            .and_then(|u| u.parse::<http::Uri>().ok())
            .and_then(|u| u.authority().map(|a| a.as_str().to_string()))
            .and_then(|a| a.split_once('@').map(|(userinfo, _)| userinfo.to_string()))
            .and_then(|userinfo| userinfo.split_once(':').map(|(_, p)| p.to_string()))
        {
            secrets.push(password);
        }
    }
    secrets.retain(|s| s.trim().len() >= 6);
    secrets.sort();
    secrets.dedup();
    secrets
}

/// The proxy for `target` from the environment, by Go's rules (see the module comment).
fn env_proxy(target: &http::Uri) -> Result<Option<http::Uri>, String> {
    proxy_for(target, |name| std::env::var(name).ok())
}

/// [`env_proxy`] with the environment read through `lookup`.
fn proxy_for(
    target: &http::Uri,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<http::Uri>, String> {
    let var = |names: [&str; 2]| {
        names
            .into_iter()
            .find_map(|n| lookup(n).filter(|v| !v.trim().is_empty()))
    };
    let https = target.scheme_str() != Some("http");
    let names = if https {
        ["HTTPS_PROXY", "https_proxy"]
    } else {
        ["HTTP_PROXY", "http_proxy"]
    };
    let Some(proxy) = var(names) else {
        return Ok(None);
    };
    let host = target
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_ascii_lowercase();
    let port = target.port_u16().unwrap_or(if https { 443 } else { 80 });
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback || var(["NO_PROXY", "no_proxy"]).is_some_and(|n| no_proxy_matches(&n, &host, port))
    {
        return Ok(None);
    }
    // Go takes a proxy without a scheme as http://.
    let proxy = if proxy.contains("://") {
        proxy
    } else {
        format!("http://{proxy}")
    };
    proxy
        .parse::<http::Uri>()
        .map(Some)
        .map_err(|e| format!("the proxy in {} is not a URL: {e}", names[0]))
}

/// Whether `NO_PROXY` (`no_proxy`) exempts `host:port`: `*`; an IP address or CIDR range;
/// a domain, which also covers its subdomains (`.domain` and `*.domain` only the
/// subdomains); each optionally with `:port`.
pub fn no_proxy_matches(no_proxy: &str, host: &str, port: u16) -> bool {
    let ip = host.parse::<std::net::IpAddr>().ok();
    no_proxy
        .split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            if entry.is_empty() {
                return false;
            }
            if let (Some(ip), Some((net, bits))) = (ip, entry.split_once('/')) {
                return cidr_contains(net, bits, ip);
            }
            let (name, entry_port) = match entry.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h, p.parse::<u16>().ok()),
                _ => (entry.as_str(), None),
            };
            if entry_port.is_some_and(|p| p != port) {
                return false;
            }
            let name = name.trim_matches(['[', ']']);
            if let (Some(ip), Ok(other)) = (ip, name.parse::<std::net::IpAddr>()) {
                return ip == other;
            }
            let name = name.trim_start_matches('*');
            match name.strip_prefix('.') {
                Some(_) => host.ends_with(name),
                None => host == name || host.ends_with(&format!(".{name}")),
            }
        })
}

fn cidr_contains(net: &str, bits: &str, ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    let (a, b, width) = match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => (u32::from(n) as u128, u32::from(i) as u128, 32),
        (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
        _ => return false,
    };
    if bits > width {
        return false;
    }
    let shift = width - bits;
    bits == 0 || (a >> shift) == (b >> shift)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_follows_go() {
        let m = no_proxy_matches;
        assert!(m("*", "api.example.com", 443));
        assert!(m("example.com", "api.example.com", 443));
        assert!(m("example.com", "example.com", 443));
        assert!(!m(".example.com", "example.com", 443));
        assert!(m("*.example.com", "api.example.com", 443));
        assert!(!m("example.com", "notexample.com", 443));
        assert!(m("10.0.0.0/8, other", "10.1.2.3", 6443));
        assert!(!m("10.0.0.0/8", "11.1.2.3", 6443));
        assert!(m("192.0.2.7", "192.0.2.7", 6443));
        assert!(m("api.example.com:6443", "api.example.com", 6443));
        assert!(!m("api.example.com:443", "api.example.com", 6443));
        assert!(m("fd00::/8", "fd00::1", 443));
        assert!(!m("", "api.example.com", 443));
    }

    #[test]
    fn the_environment_proxy_follows_go() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let target: http::Uri = "https://api.example.com:6443".parse().unwrap();
        let proxy = |pairs| {
            proxy_for(&target, env(pairs))
                .unwrap()
                .map(|u| u.to_string())
        };
        assert_eq!(
            proxy(&[("HTTPS_PROXY", "proxy.corp:3128")]).as_deref(),
            Some("http://proxy.corp:3128/")
        );
        assert_eq!(
            proxy(&[("https_proxy", "socks5://127.0.0.1:1080")]).as_deref(),
            Some("socks5://127.0.0.1:1080/")
        );
        assert_eq!(
            proxy(&[("HTTPS_PROXY", "p:1"), ("NO_PROXY", "example.com")]),
            None
        );
        assert_eq!(
            proxy(&[("HTTP_PROXY", "p:1")]),
            None,
            "https targets use HTTPS_PROXY"
        );
        let local: http::Uri = "https://127.0.0.1:6443".parse().unwrap();
        assert_eq!(
            proxy_for(&local, env(&[("HTTPS_PROXY", "p:1")])).unwrap(),
            None,
            "loopback is never proxied"
        );
    }
}
