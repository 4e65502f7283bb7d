//! Kubeconfig `exec` credential plugins, run the way kubectl (client-go) runs them, instead
//! of by the client library, which prints a failing plugin's whole stdout (the credential),
//! its arguments and its `KUBERNETES_EXEC_INFO` in its error, lets the plugin's stderr reach
//! the terminal raw, and does not tell the plugin whether stdin is a terminal.
//!
//! Rules and sources (client-go, `staging/src/k8s.io/client-go/...`):
//! - validation (`tools/clientcmd/validation.go`, `validateAuthInfo`): `command` and
//!   `apiVersion` must be set, every `env` entry needs a name, `interactiveMode` must be
//!   `Never`, `IfAvailable` or `Always`; an empty `interactiveMode` is an error naming the
//!   user entry. Only `client.authentication.k8s.io/v1beta1` (and `v1alpha1`) entries default
//!   to `IfAvailable` (`tools/clientcmd/api/v1/defaults.go`, `SetDefaults_ExecConfig`), so a
//!   `v1` entry without it is refused.
//! - `spec.interactive` (`plugin/pkg/client/auth/exec/exec.go`, `isInteractive`): `Never`
//!   false; `IfAvailable` whether stdin is a terminal; `Always` true, and an error ("standard
//!   input is not a terminal") before the plugin runs when it is not.
//! - running (`refreshCredsLocked`): the environment is ours plus the entry's `env`, plus
//!   `KUBERNETES_EXEC_INFO` (the ExecCredential with `spec.interactive` and, with
//!   `provideClusterInfo`, `spec.cluster`); stdin only when interactive; the output must be
//!   an ExecCredential of the configured apiVersion with a `status` holding a token or a
//!   client certificate and key (both or neither); `expirationTimestamp` makes it expire.
//! - a 401 answer makes the next request run the plugin again (`roundTripper.RoundTrip`).
//!
//! Where this differs from client-go, on purpose: a non-interactive plugin's stderr is
//! captured (client-go passes it through) so that a failure can name the plugin, its exit
//! status and its stderr, redacted, in the one error line and the reports. An interactive
//! plugin talks to the person at the terminal directly, as with kubectl. The plugin's stdout
//! is never shown.

use kube::config::{ExecAuthCluster, ExecConfig, ExecInteractiveMode};
use std::io::{IsTerminal, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// The environment variable that carries the ExecCredential input to the plugin.
const EXEC_INFO_ENV: &str = "KUBERNETES_EXEC_INFO";

/// How much of a failing plugin's stderr the error message keeps, in characters.
const STDERR_LIMIT: usize = 2000;

/// The API versions whose entries default to `interactiveMode: IfAvailable`.
const DEFAULTS_TO_IF_AVAILABLE: &[&str] = &[
    "client.authentication.k8s.io/v1beta1",
    "client.authentication.k8s.io/v1alpha1",
];

/// One user entry's exec plugin, validated.
#[derive(Debug, Clone)]
pub struct ExecPlugin {
    /// The kubeconfig user entry (for messages).
    pub user: String,
    pub command: String,
    pub args: Vec<String>,
    /// `(name, value)` added to the plugin's environment.
    pub env: Vec<(String, String)>,
    pub api_version: String,
    pub interactive_mode: ExecInteractiveMode,
    /// `spec.cluster` of the input, with `provideClusterInfo`.
    pub cluster: Option<ExecAuthCluster>,
}

/// Why a plugin gave no credential. Its text names the plugin and the user entry and never
/// holds the plugin's stdout; stderr is redacted.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ExecError(pub String);

/// What a plugin returned.
#[derive(Clone)]
pub struct Credential {
    /// Bearer token (empty with a client certificate).
    pub token: String,
    /// PEM client certificate and key, when the plugin returned them.
    pub client_certificate: Option<(String, String)>,
    /// When the credential expires (`None`: until a 401).
    pub expires: Option<jiff::Timestamp>,
}

impl ExecPlugin {
    /// The plugin of user entry `user`, checked with client-go's rules; `Err` is kubectl's
    /// message for the first rule broken.
    pub fn from_config(user: &str, exec: &ExecConfig) -> Result<ExecPlugin, String> {
        let command = exec.command.clone().unwrap_or_default();
        if command.is_empty() {
            return Err(format!(
                "command must be specified for {user} to use exec authentication plugin"
            ));
        }
        let api_version = exec.api_version.clone().unwrap_or_default();
        if api_version.is_empty() {
            return Err(format!(
                "apiVersion must be specified for {user} to use exec authentication plugin"
            ));
        }
        let mut env = Vec::new();
        for entry in exec.env.iter().flatten() {
            match entry.get("name").filter(|n| !n.is_empty()) {
                Some(name) => env.push((
                    name.clone(),
                    entry.get("value").cloned().unwrap_or_default(),
                )),
                None => {
                    return Err(format!(
                        "env variable name must be specified for {user} to use exec \
                         authentication plugin"
                    ));
                }
            }
        }
        let interactive_mode = match &exec.interactive_mode {
            Some(mode) => mode.clone(),
            None if DEFAULTS_TO_IF_AVAILABLE.contains(&api_version.as_str()) => {
                ExecInteractiveMode::IfAvailable
            }
            None => {
                return Err(format!(
                    "interactiveMode must be specified for {user} to use exec authentication \
                     plugin"
                ));
            }
        };
        Ok(ExecPlugin {
            user: user.to_string(),
            command,
            args: exec.args.clone().unwrap_or_default(),
            env,
            api_version,
            interactive_mode,
            cluster: if exec.provide_cluster_info {
                exec.cluster.clone()
            } else {
                None
            },
        })
    }

    /// What to call the plugin in messages: its command and user entry.
    fn name(&self) -> String {
        format!("exec plugin {:?} of user {:?}", self.command, self.user)
    }

    /// `spec.interactive` for a stdin that is (or is not) a terminal; `Err` for `Always`
    /// without a terminal.
    pub fn interactive(&self, stdin_is_terminal: bool) -> Result<bool, ExecError> {
        match self.interactive_mode {
            ExecInteractiveMode::Never => Ok(false),
            ExecInteractiveMode::IfAvailable => Ok(stdin_is_terminal),
            ExecInteractiveMode::Always if stdin_is_terminal => Ok(true),
            ExecInteractiveMode::Always => Err(ExecError(format!(
                "{} cannot support interactive mode: standard input is not a terminal \
                 (interactiveMode: Always)",
                self.name()
            ))),
        }
    }

    /// The `KUBERNETES_EXEC_INFO` value.
    fn exec_info(&self, interactive: bool) -> String {
        let mut spec = serde_json::json!({ "interactive": interactive });
        if let Some(cluster) = &self.cluster {
            spec["cluster"] = serde_json::to_value(cluster).unwrap_or_default();
        }
        serde_json::json!({
            "apiVersion": self.api_version,
            "kind": "ExecCredential",
            "spec": spec,
        })
        .to_string()
    }

    /// Runs the plugin once and reads its credential. Blocks until the plugin exits.
    pub fn run(&self) -> Result<Credential, ExecError> {
        let interactive = self.interactive(std::io::stdin().is_terminal())?;
        let mut cmd = Command::new(&self.command);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(EXEC_INFO_ENV, self.exec_info(interactive))
            .stdout(Stdio::piped());
        if interactive {
            cmd.stdin(Stdio::inherit()).stderr(Stdio::inherit());
        } else {
            cmd.stdin(Stdio::null()).stderr(Stdio::piped());
        }
        let mut child = cmd.spawn().map_err(|e| {
            ExecError(match e.kind() {
                std::io::ErrorKind::NotFound => {
                    format!("{}: executable {} not found", self.name(), self.command)
                }
                _ => format!("{} cannot be started: {e}", self.name()),
            })
        })?;
        // Read stderr on its own thread so that neither pipe can fill up and block the plugin.
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                let _ = pipe.read_to_end(&mut text);
                String::from_utf8_lossy(&text).into_owned()
            })
        });
        let mut stdout = Vec::new();
        if let Some(mut pipe) = child.stdout.take() {
            let _ = pipe.read_to_end(&mut stdout);
        }
        let status = child
            .wait()
            .map_err(|e| ExecError(format!("{} could not be waited for: {e}", self.name())))?;
        let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        // Whatever the plugin printed as a credential stays secret, also when it failed
        // afterwards and echoes it on stderr.
        let parsed = parse(&stdout);
        if let Ok(cred) = &parsed {
            crate::console::register_secrets(cred.secrets());
        }
        if !status.success() {
            let how = match status.code() {
                Some(code) => format!("exit status {code}"),
                None => format!("{status}"),
            };
            return Err(ExecError(format!(
                "{} failed with {how}{}",
                self.name(),
                stderr_note(&stderr, interactive)
            )));
        }
        let cred = parsed.map_err(|why| {
            ExecError(format!(
                "{} returned no usable credential: {why}",
                self.name()
            ))
        })?;
        if cred.api_version != self.api_version {
            return Err(ExecError(format!(
                "{} is configured to use API version {}, plugin returned version {}",
                self.name(),
                self.api_version,
                if cred.api_version.is_empty() {
                    "(none)"
                } else {
                    &cred.api_version
                }
            )));
        }
        cred.into_credential()
            .map_err(|why| ExecError(format!("{} {why}", self.name())))
    }
}

/// The secrets among an exec entry's arguments: the value of each `--flag=value` and every
/// argument that is not a flag (plugins take secrets both ways; flag names are not secret).
pub fn argument_secrets<'a>(args: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    args.into_iter()
        .filter_map(|a| match a.split_once('=') {
            Some((flag, value)) if flag.starts_with('-') => Some(value.to_string()),
            _ if a.starts_with('-') => None,
            _ => Some(a.clone()),
        })
        .collect()
}

/// Every string inside a JSON value (leaves), and the value's compact text.
pub fn json_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(map) => {
            out.push(value.to_string());
            map.values().for_each(|v| json_strings(v, out));
        }
        other => out.push(other.to_string()),
    }
}

/// ` ; its stderr: ...` (redacted, control characters escaped, bounded), or where it went.
fn stderr_note(stderr: &str, interactive: bool) -> String {
    if interactive {
        return " (its stderr went to the terminal)".into();
    }
    let text = crate::console::terminal_line(stderr.trim());
    if text.is_empty() {
        return " and printed nothing on stderr".into();
    }
    let mut cut: String = text.chars().take(STDERR_LIMIT).collect();
    if cut.len() < text.len() {
        cut.push_str(" [...]");
    }
    format!("; its stderr: {cut}")
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ExecCredentialDoc {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    status: Option<StatusDoc>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StatusDoc {
    #[serde(default)]
    token: String,
    #[serde(default)]
    client_certificate_data: String,
    #[serde(default)]
    client_key_data: String,
    #[serde(default)]
    expiration_timestamp: Option<String>,
}

impl ExecCredentialDoc {
    fn secrets(&self) -> Vec<String> {
        self.status
            .iter()
            .flat_map(|s| [s.token.clone(), s.client_key_data.clone()])
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// client-go's checks of a returned ExecCredential.
    fn into_credential(self) -> Result<Credential, ExecError> {
        let Some(status) = self.status else {
            return Err(ExecError("didn't return a status field".into()));
        };
        if status.token.is_empty()
            && status.client_certificate_data.is_empty()
            && status.client_key_data.is_empty()
        {
            return Err(ExecError("didn't return a token or cert/key pair".into()));
        }
        if status.client_certificate_data.is_empty() != status.client_key_data.is_empty() {
            return Err(ExecError(
                "returned only certificate or key, not both".into(),
            ));
        }
        let expires = match status.expiration_timestamp.as_deref() {
            None | Some("") => None,
            Some(t) => Some(t.parse::<jiff::Timestamp>().map_err(|e| {
                ExecError(format!(
                    "returned a malformed expirationTimestamp {t:?}: {e}"
                ))
            })?),
        };
        Ok(Credential {
            token: status.token,
            client_certificate: (!status.client_certificate_data.is_empty())
                .then_some((status.client_certificate_data, status.client_key_data)),
            expires,
        })
    }
}

/// The plugin's stdout as an ExecCredential (JSON, or YAML as client-go's decoder accepts).
/// The error never quotes the output.
fn parse(stdout: &[u8]) -> Result<ExecCredentialDoc, String> {
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Err("it printed nothing on stdout".into());
    }
    serde_saphyr::from_slice::<ExecCredentialDoc>(stdout)
        .map_err(|_| "its stdout is not an ExecCredential (JSON or YAML)".into())
}

/// A plugin with its last credential; hands out tokens and runs the plugin again when the
/// credential expired or the API answered 401. Shared by every clone of the client.
#[derive(Clone)]
pub struct ExecAuth {
    plugin: Arc<ExecPlugin>,
    cached: Arc<Mutex<Option<Credential>>>,
}

impl ExecAuth {
    pub fn new(plugin: ExecPlugin) -> Self {
        ExecAuth {
            plugin: Arc::new(plugin),
            cached: Arc::default(),
        }
    }

    /// The current credential, running the plugin when there is none or it expired.
    /// Blocks while the plugin runs (one run at a time).
    pub fn credential(&self) -> Result<Credential, ExecError> {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cred) = cached.as_ref()
            && cred.expires.is_none_or(|t| jiff::Timestamp::now() < t)
        {
            return Ok(cred.clone());
        }
        let cred = self.plugin.run()?;
        *cached = Some(cred.clone());
        Ok(cred)
    }

    /// Forgets `token` after the API rejected it (401), unless it was replaced already.
    fn rejected(&self, token: &str) {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if cached.as_ref().is_some_and(|c| c.token == token) {
            *cached = None;
        }
    }

    /// [`ExecAuth::credential`] without stalling the async runtime it is called from.
    pub fn credential_blocking(&self) -> Result<Credential, ExecError> {
        let get = || self.credential();
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(get)
            }
            _ => get(),
        }
    }
}

/// A tower layer adding `Authorization: Bearer <token from the plugin>` to every request.
#[derive(Clone)]
pub struct ExecAuthLayer(pub ExecAuth);

impl<S> tower_layer::Layer<S> for ExecAuthLayer {
    type Service = ExecAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ExecAuthService {
            auth: self.0.clone(),
            inner,
        }
    }
}

/// See [`ExecAuthLayer`].
pub struct ExecAuthService<S> {
    auth: ExecAuth,
    inner: S,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B, ResBody> tower_service::Service<http::Request<B>> for ExecAuthService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = BoxError;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let token = match self.auth.credential_blocking() {
            Ok(c) => c.token,
            Err(e) => return Box::pin(std::future::ready(Err(e.into()))),
        };
        if !token.is_empty()
            && let Ok(mut value) = http::HeaderValue::from_str(&format!("Bearer {token}"))
        {
            value.set_sensitive(true);
            req.headers_mut().insert(http::header::AUTHORIZATION, value);
        }
        let auth = self.auth.clone();
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await.map_err(Into::into)?;
            if response.status() == http::StatusCode::UNAUTHORIZED {
                auth.rejected(&token);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(api_version: &str, mode: Option<ExecInteractiveMode>) -> ExecConfig {
        ExecConfig {
            api_version: Some(api_version.into()),
            command: Some("plugin".into()),
            args: Some(vec![
                "get-token".into(),
                "--client-secret=hunter2-secret".into(),
                "--verbose".into(),
            ]),
            env: None,
            drop_env: None,
            install_hint: None,
            interactive_mode: mode,
            provide_cluster_info: false,
            cluster: None,
            other: Default::default(),
        }
    }

    #[test]
    fn v1_entries_need_an_interactive_mode() {
        let e = ExecPlugin::from_config("eks", &config("client.authentication.k8s.io/v1", None))
            .unwrap_err();
        assert_eq!(
            e,
            "interactiveMode must be specified for eks to use exec authentication plugin"
        );
        let p =
            ExecPlugin::from_config("eks", &config("client.authentication.k8s.io/v1beta1", None))
                .unwrap();
        assert_eq!(p.interactive_mode, ExecInteractiveMode::IfAvailable);
    }

    #[test]
    fn interactive_follows_the_terminal() {
        let plugin = |mode| {
            ExecPlugin::from_config("u", &config("client.authentication.k8s.io/v1", Some(mode)))
                .unwrap()
        };
        assert!(
            !plugin(ExecInteractiveMode::Never)
                .interactive(true)
                .unwrap()
        );
        assert!(
            plugin(ExecInteractiveMode::IfAvailable)
                .interactive(true)
                .unwrap()
        );
        assert!(
            !plugin(ExecInteractiveMode::IfAvailable)
                .interactive(false)
                .unwrap()
        );
        assert!(
            plugin(ExecInteractiveMode::Always)
                .interactive(true)
                .unwrap()
        );
        let e = plugin(ExecInteractiveMode::Always)
            .interactive(false)
            .unwrap_err();
        assert!(e.0.contains("standard input is not a terminal"), "{e}");
        assert!(e.0.contains("\"plugin\" of user \"u\""), "{e}");
    }

    #[test]
    fn argument_values_are_secrets_flags_are_not() {
        let c = config("client.authentication.k8s.io/v1", None);
        assert_eq!(
            argument_secrets(c.args.iter().flatten()),
            vec!["get-token", "hunter2-secret"]
        );
    }

    #[test]
    fn returned_credentials_are_checked_like_client_go() {
        let doc = |s: &str| parse(s.as_bytes()).and_then(|d| d.into_credential().map_err(|e| e.0));
        assert_eq!(
            doc(r#"{"apiVersion":"v","kind":"ExecCredential"}"#)
                .err()
                .unwrap(),
            "didn't return a status field"
        );
        assert_eq!(
            doc(r#"{"apiVersion":"v","status":{}}"#).err().unwrap(),
            "didn't return a token or cert/key pair"
        );
        assert_eq!(
            doc(r#"{"apiVersion":"v","status":{"clientKeyData":"k"}}"#)
                .err()
                .unwrap(),
            "returned only certificate or key, not both"
        );
        let c = doc(
            "apiVersion: v\nstatus:\n  token: t0k\n  expirationTimestamp: 2030-01-01T00:00:00Z\n",
        )
        .ok()
        .unwrap();
        assert_eq!(c.token, "t0k");
        assert!(c.expires.is_some());
        let e = parse(b"not json: [").err().unwrap();
        assert!(!e.contains("not json"), "{e}");
    }
}
