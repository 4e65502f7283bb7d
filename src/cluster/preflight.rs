//! Before any check: is the API reachable, are we authenticated, what version is it, and
//! may we create namespaces?

use super::config::{ConnectOptions, Subject, one_line};
use super::errors::{ApiError, call};
use super::exec::{ExecAuth, ExecAuthLayer};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};
use kube::client::ClientBuilder;
use std::time::Duration;

/// What the preflight learned about a cluster.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// The subject (context) name.
    pub subject: String,
    /// API server host and port (never credentials).
    pub host: String,
    pub git_version: String,
    pub platform: String,
}

/// Whether this identity may create the scratch namespaces writing checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteAccess {
    Allowed,
    Denied(String),
    /// The review itself failed; writing checks try anyway and report what they meet.
    Unknown(String),
}

/// Host (and port) of the API server URL, for reports.
pub fn api_host(uri: &http::Uri) -> String {
    uri.authority()
        .map(|a| a.to_string())
        .unwrap_or_else(|| uri.to_string())
}

/// A client for one subject, not yet known to answer.
pub struct Connection {
    pub client: Client,
    /// The same connection without kube's retries of 429/503/504: for requests whose error
    /// answers are the finding (the pod proxy's `503 error trying to reach service: ...`),
    /// which a retry would turn into a time-out.
    pub no_retry: Client,
    /// The subject (context) name.
    pub name: String,
    /// API server host and port.
    pub host: String,
}

/// A client for `subject`, with the request timeout as its connect timeout. Runs the
/// subject's exec credential plugin first (see [`super::exec`]): a plugin that gives no
/// credential is [`ConnectError::Unreachable`] (authentication, ABORT), a context that
/// cannot make a client [`ConnectError::Config`] (usage). Errors are one line each.
pub fn connect(subject: Subject, timeout: Duration) -> Result<Connection, ConnectError> {
    use base64::Engine;
    let host = api_host(&subject.config.cluster_url);
    let mut kube_config = subject.config;
    kube_config.connect_timeout = Some(timeout);
    let auth = subject.exec.map(ExecAuth::new);
    if let Some(auth) = &auth {
        let credential = auth
            .credential_blocking()
            .map_err(|e| ConnectError::Unreachable(format!("context {:?}: {e}", subject.name)))?;
        // A client certificate from the plugin is the TLS identity of this client.
        if let Some((cert, key)) = credential.client_certificate {
            let b64 = base64::engine::general_purpose::STANDARD;
            kube_config.auth_info.client_certificate_data = Some(b64.encode(cert));
            kube_config.auth_info.client_key_data = Some(b64.encode(key).into());
        }
    }
    let unusable = |e: kube::Error| {
        ConnectError::Config(format!(
            "context {:?} is unusable: {}",
            subject.name,
            one_line(&e)
        ))
    };
    let build = |config: kube::Config| -> Result<Client, ConnectError> {
        let builder = ClientBuilder::try_from(config).map_err(unusable)?;
        Ok(match &auth {
            Some(auth) => builder.with_layer(&ExecAuthLayer(auth.clone())).build(),
            None => builder.build(),
        })
    };
    let mut once = kube_config.clone();
    once.default_retry = false;
    let no_retry = build(once)?;
    let client = build(kube_config)?;
    Ok(Connection {
        client,
        no_retry,
        name: subject.name,
        host,
    })
}

impl Connection {
    /// Reads `/version`. Any failure (refused, TLS, 401, 5xx, no answer) is an error naming it.
    pub async fn server_info(&self, timeout: Duration) -> Result<ServerInfo, ApiError> {
        let what = format!("read the server version from {}", self.host);
        let info = call(&what, timeout, self.client.apiserver_version()).await?;
        Ok(ServerInfo {
            subject: self.name.clone(),
            host: self.host.clone(),
            git_version: info.git_version,
            platform: info.platform,
        })
    }
}

/// Asks the API (SelfSubjectAccessReview) whether namespaces may be created.
pub async fn write_access(client: &Client, timeout: Duration) -> WriteAccess {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some("create".into()),
                resource: Some("namespaces".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    match call(
        "ask whether namespaces may be created (SelfSubjectAccessReview)",
        timeout,
        api.create(&PostParams::default(), &review),
    )
    .await
    {
        Ok(answer) => match answer.status {
            Some(status) if status.allowed => WriteAccess::Allowed,
            Some(status) => {
                let why = status
                    .reason
                    .filter(|r| !r.is_empty())
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                WriteAccess::Denied(format!(
                    "this identity may not create namespaces{why}; checks that create workloads \
                     need that right"
                ))
            }
            None => WriteAccess::Denied("the access review returned no answer".into()),
        },
        Err(e) => WriteAccess::Denied(format!(
            "cannot tell whether namespaces may be created: {e}"
        )),
    }
}

/// Why [`connect`] or [`connect_one`] could not connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The kubeconfig or the options are unusable (a usage error).
    Config(String),
    /// No credential (an exec plugin failed) or the API server did not answer `/version`
    /// (unreachable, TLS, 401, 5xx): the run cannot decide anything (ABORT).
    Unreachable(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Config(m) | ConnectError::Unreachable(m) => f.write_str(m),
        }
    }
}

/// Connects to the one cluster `options` name and reads its version. Registers the
/// subject's credentials with the redactor first. Several clusters are a usage error.
pub async fn connect_one(options: &ConnectOptions) -> Result<(Client, ServerInfo), ConnectError> {
    let connection = connection_to_one(options).await?;
    let info = connection
        .server_info(options.request_timeout)
        .await
        .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    Ok((connection.client, info))
}

/// [`connect_one`] without reading the version: the client for the one cluster `options`
/// name (its credentials registered with the redactor). Sends no request, except to an
/// exec credential plugin.
pub async fn connection_to_one(options: &ConnectOptions) -> Result<Connection, ConnectError> {
    let subjects = super::config::resolve(options)
        .await
        .map_err(|e| ConnectError::Config(e.to_string()))?;
    for subject in &subjects {
        crate::console::register_secrets(subject.secrets.iter().cloned());
    }
    let mut subjects = subjects.into_iter();
    let (Some(subject), None) = (subjects.next(), subjects.next()) else {
        return Err(ConnectError::Config("give exactly one cluster".into()));
    };
    connect(subject, options.request_timeout)
}
