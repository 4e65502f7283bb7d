//! Before any check: is the API reachable, are we authenticated, what version is it, and
//! may we create namespaces?

use super::config::{ConnectOptions, Subject, one_line};
use super::errors::{ApiError, call};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};
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

/// A client for `subject`, with the request timeout as its connect timeout. An error is a
/// configuration problem (the context cannot make a client), named in one line.
pub fn connect(subject: Subject, timeout: Duration) -> Result<Connection, String> {
    let host = api_host(&subject.config.cluster_url);
    let mut kube_config = subject.config;
    kube_config.connect_timeout = Some(timeout);
    let unusable =
        |e: kube::Error| format!("context {:?} is unusable: {}", subject.name, one_line(&e));
    let mut once = kube_config.clone();
    once.default_retry = false;
    let no_retry = Client::try_from(once).map_err(unusable)?;
    let client = Client::try_from(kube_config).map_err(unusable)?;
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

/// Why [`connect_one`] could not connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The kubeconfig or the options are unusable (a usage error).
    Config(String),
    /// The API server did not answer `/version` (unreachable, TLS, 401, 5xx).
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
    let timeout = options.request_timeout;
    let connection = connect(subject, timeout).map_err(ConnectError::Config)?;
    let info = connection
        .server_info(timeout)
        .await
        .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    Ok((connection.client, info))
}
