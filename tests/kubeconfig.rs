//! kubectl's (client-go's) kubeconfig rules against the simulated cluster: merging several
//! KUBECONFIG files, choosing a context, exec plugins (interactive mode, API versions,
//! failures), insecure-skip-tls-verify with a CA, proxy-url through local proxies, and what
//! already held (path prefixes, tls-server-name, IP SANs, relative paths).

mod support;

use std::path::{Path, PathBuf};
use support::binary::*;
use support::proxy::{Kind, Proxy};
use support::{ClusterSpec, SimCluster};

const READ_ONLY: [&str; 2] = ["--check", "node-distribution-check"];

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A kubeconfig with cluster `sim` (`cluster_extra` appended to its cluster entry), user
/// `user` (`user_yaml` as its body, indented by 4) and context `ctx` joining them.
fn kubeconfig(sim: &SimCluster, cluster_extra: &str, user_yaml: &str, current: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: {current:?}\nclusters:\n- name: sim\n  \
         cluster:\n    server: {:?}\n    certificate-authority-data: {}\n{cluster_extra}\
         users:\n- name: user\n  user:\n{user_yaml}contexts:\n- name: ctx\n  context:\n    \
         cluster: sim\n    user: user\n",
        sim.url(),
        b64(&sim.ca_pem())
    )
}

fn token_user(sim: &SimCluster) -> String {
    format!("    token: {:?}\n", sim.token())
}

fn run_with(path: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "-k", path.to_str().unwrap(), "--offline"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&READ_ONLY);
    scs(&args)
}

/// A plugin script that logs each call's `KUBERNETES_EXEC_INFO` to `calls` and then runs
/// `body`.
fn plugin(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("plugin.sh");
    let calls = dir.join("calls");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$KUBERNETES_EXEC_INFO\" >> {:?}\n{body}\n",
            calls
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A kubeconfig (`kc` in `dir`) whose user runs [`plugin`] with `body` as a
/// `client.authentication.k8s.io/v1` plugin with `interactiveMode` `mode`; returns the
/// plugin's and the kubeconfig's paths.
fn plugin_kubeconfig(
    sim: &SimCluster,
    dir: &Path,
    body: &str,
    mode: Option<&str>,
) -> (PathBuf, PathBuf) {
    let plugin = plugin(dir, body);
    let user = exec_user(&plugin, "client.authentication.k8s.io/v1", mode);
    let path = write(dir, "kc", &kubeconfig(sim, "", &user, "ctx"));
    (plugin, path)
}

fn calls(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn exec_user(plugin: &Path, api_version: &str, mode: Option<&str>) -> String {
    let mode = mode
        .map(|m| format!("      interactiveMode: {m}\n"))
        .unwrap_or_default();
    format!(
        "    exec:\n      apiVersion: {api_version}\n      command: {:?}\n{mode}",
        plugin
    )
}

fn credential(token: &str, extra: &str) -> String {
    format!(
        "echo '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\
         \"status\":{{\"token\":\"{token}\"{extra}}}}}'"
    )
}

#[test]
fn an_empty_current_context_does_not_hide_a_later_files() {
    let sim = SimCluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    // The first file sets `current-context: ""` and holds an unrelated context; the second
    // names the simulator's. kubectl picks the second file's context.
    let first = write(
        dir.path(),
        "first",
        "apiVersion: v1\nkind: Config\ncurrent-context: \"\"\nclusters:\n- name: other\n  \
         cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: other\n  context:\n    \
         cluster: other\n    user: other\nusers:\n- name: other\n  user:\n    token: x\n",
    );
    let second = write(
        dir.path(),
        "second",
        &kubeconfig(&sim, "", &token_user(&sim), "ctx"),
    );
    let joined = format!("{}:{}", first.display(), second.display());
    let out = scs_with(
        &["run", "--offline", "--check", "node-distribution-check"],
        |cmd| {
            cmd.env("KUBECONFIG", &joined);
        },
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.verdict("node-distribution-check").as_deref(),
        Some("PASS")
    );
    assert!(sim.requests().iter().any(|r| r.path == "/version"));
}

#[test]
fn no_context_to_choose_lists_the_contexts() {
    let sim = SimCluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "kc",
        &kubeconfig(&sim, "", &token_user(&sim), ""),
    );
    let out = run_with(&path, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.errors().len(), 1, "{}", out.stderr);
    assert!(
        out.errors()[0].contains("sets no current-context; pass --context (contexts: ctx)"),
        "{}",
        out.stderr
    );
    let named = write(
        dir.path(),
        "kc2",
        &kubeconfig(&sim, "", &token_user(&sim), "gone"),
    );
    let out = run_with(&named, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.errors()[0].contains("current-context \"gone\" not found")
            && out.errors()[0].contains("(contexts: ctx)"),
        "{}",
        out.stderr
    );
}

#[test]
fn insecure_skip_tls_verify_with_a_ca_is_refused_like_kubectl() {
    let sim = SimCluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "kc",
        &kubeconfig(
            &sim,
            "    insecure-skip-tls-verify: true\n",
            &token_user(&sim),
            "ctx",
        ),
    );
    let out = run_with(&path, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.errors().len(), 1, "{}", out.stderr);
    assert!(
        out.errors()[0].contains(
            "cluster \"sim\": specifying a root certificates file with the insecure flag is \
             not allowed"
        ),
        "{}",
        out.stderr
    );
    assert!(sim.requests().is_empty(), "nothing may be sent");
    // Without the CA, insecure-skip-tls-verify connects (the simulator's CA is unknown).
    let insecure = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: ctx\nclusters:\n- name: sim\n  cluster:\n    \
         server: {:?}\n    insecure-skip-tls-verify: true\nusers:\n- name: user\n  user:\n{}\
         contexts:\n- name: ctx\n  context:\n    cluster: sim\n    user: user\n",
        sim.url(),
        token_user(&sim)
    );
    let out = run_with(&write(dir.path(), "insecure", &insecure), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

fn through_proxy(kind: Kind) {
    let sim = SimCluster::start(ClusterSpec::default());
    let proxy = Proxy::start(kind);
    let dir = tempfile::tempdir().unwrap();
    // An https:// proxy is verified with the cluster's CA bundle, as client-go does.
    let ca = format!("{}{}", sim.ca_pem(), proxy.ca_pem);
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: ctx\nclusters:\n- name: sim\n  cluster:\n    \
         server: {:?}\n    certificate-authority-data: {}\n    proxy-url: {:?}\n\
         users:\n- name: user\n  user:\n{}contexts:\n- name: ctx\n  context:\n    cluster: sim\n    \
         user: user\n",
        sim.url(),
        b64(&ca),
        proxy.url,
        token_user(&sim)
    );
    let out = run_with(&write(dir.path(), "kc", &text), &[]);
    assert_eq!(out.code, 0, "{kind:?}: {}", out.stderr);
    assert_eq!(
        out.verdict("node-distribution-check").as_deref(),
        Some("PASS")
    );
    let target = sim.url().trim_start_matches("https://").to_string();
    assert!(
        proxy.tunnels().contains(&target),
        "{kind:?}: no tunnel to {target}: {:?}",
        proxy.tunnels()
    );
}

#[test]
fn proxy_url_http_connect() {
    through_proxy(Kind::HttpConnect);
}

#[test]
fn proxy_url_https_connect() {
    through_proxy(Kind::HttpsConnect);
}

#[test]
fn proxy_url_socks5() {
    through_proxy(Kind::Socks5);
}

#[test]
fn path_prefixes_of_rancher_style_proxies_are_kept() {
    let prefix = "/k8s/clusters/c-m-4xk2p9zq";
    let sim = SimCluster::start(ClusterSpec {
        path_prefix: prefix.into(),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let text = kubeconfig(&sim, "", &token_user(&sim), "ctx").replace(
        &format!("{:?}", sim.url()),
        &format!("\"{}{prefix}\"", sim.url()),
    );
    let out = run_with(&write(dir.path(), "kc", &text), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(sim.requests().iter().any(|r| r.path == "/api/v1/nodes"));
    // Without the prefix the same server answers 404: the prefix is what made it work.
    let out = run_with(
        &write(
            dir.path(),
            "bare",
            &kubeconfig(&sim, "", &token_user(&sim), "ctx"),
        ),
        &[],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
}

#[test]
fn tls_server_name_is_the_name_verified() {
    let sim = SimCluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    // The certificate names 127.0.0.1 (an IP SAN) and localhost.
    let good = kubeconfig(
        &sim,
        "    tls-server-name: localhost\n",
        &token_user(&sim),
        "ctx",
    );
    let out = run_with(&write(dir.path(), "good", &good), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let wrong = kubeconfig(
        &sim,
        "    tls-server-name: api.other.example\n",
        &token_user(&sim),
        "ctx",
    );
    let out = run_with(&write(dir.path(), "wrong", &wrong), &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.errors()[0].contains("TLS handshake failed"),
        "{}",
        out.stderr
    );
    // A DNS name in the server URL verifies against the DNS SAN.
    let by_name = kubeconfig(&sim, "", &token_user(&sim), "ctx")
        .replace("https://127.0.0.1", "https://localhost");
    let out = run_with(&write(dir.path(), "by-name", &by_name), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn relative_paths_are_relative_to_the_kubeconfig() {
    let sim = SimCluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("conf");
    std::fs::create_dir_all(&sub).unwrap();
    write(&sub, "ca.crt", &sim.ca_pem());
    write(&sub, "token", &sim.token());
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: ctx\nclusters:\n- name: sim\n  cluster:\n    \
         server: {:?}\n    certificate-authority: ca.crt\nusers:\n- name: user\n  user:\n    \
         tokenFile: token\ncontexts:\n- name: ctx\n  context:\n    cluster: sim\n    user: user\n",
        sim.url()
    );
    let path = write(&sub, "kubeconfig", &text);
    // The binary runs in a fresh home, not in `conf/`.
    let out = run_with(&path, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn exec_plugin_v1_without_interactive_mode_is_refused_naming_the_user() {
    let sim = SimCluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = plugin_kubeconfig(&sim, dir.path(), &credential(&sim.token(), ""), None);
    let out = run_with(&path, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.errors().len(), 1, "{}", out.stderr);
    assert!(
        out.errors()[0].contains(
            "interactiveMode must be specified for user to use exec authentication plugin"
        ),
        "{}",
        out.stderr
    );
    assert!(calls(dir.path()).is_empty(), "the plugin must not run");
    // v1beta1 entries default to IfAvailable, as in kubectl.
    let beta = plugin_v1beta1(dir.path(), &sim.token());
    let text = kubeconfig(
        &sim,
        "",
        &exec_user(&beta, "client.authentication.k8s.io/v1beta1", None),
        "ctx",
    );
    let out = run_with(&write(dir.path(), "kc-beta", &text), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

fn plugin_v1beta1(dir: &Path, token: &str) -> PathBuf {
    let path = dir.join("beta.sh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho '{{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\
             \"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{token}\"}}}}'\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn exec_plugin_is_told_whether_stdin_is_a_terminal() {
    let sim = SimCluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = plugin_kubeconfig(
        &sim,
        dir.path(),
        &credential(&sim.token(), ""),
        Some("IfAvailable"),
    );
    // stdin is /dev/null here: not interactive.
    let out = run_with(&path, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let seen = calls(dir.path());
    assert_eq!(seen.len(), 1, "one run for the whole session: {seen:?}");
    assert_eq!(seen[0]["spec"]["interactive"], false, "{seen:?}");
    assert_eq!(seen[0]["apiVersion"], "client.authentication.k8s.io/v1");
    // On a terminal (script(1) gives the binary a pseudo-terminal as stdin): interactive.
    std::fs::remove_file(dir.path().join("calls")).unwrap();
    let command = format!(
        "{BIN} run -k {} --offline --check node-distribution-check --output-dir {}",
        path.display(),
        dir.path().join("out").display()
    );
    let status = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("KUBECONFIG")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("script(1) from util-linux");
    assert!(status.success());
    let seen = calls(dir.path());
    assert_eq!(seen[0]["spec"]["interactive"], true, "{seen:?}");
}

#[test]
fn exec_plugin_always_interactive_without_a_terminal_fails_before_it_runs() {
    let sim = SimCluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = plugin_kubeconfig(
        &sim,
        dir.path(),
        &credential(&sim.token(), ""),
        Some("Always"),
    );
    let out = run_with(&path, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.errors().len(), 1, "{}", out.stderr);
    assert!(
        out.errors()[0]
            .contains("cannot support interactive mode: standard input is not a terminal"),
        "{}",
        out.stderr
    );
    assert!(calls(dir.path()).is_empty(), "the plugin must not run");
    assert!(sim.requests().is_empty());
}

#[test]
fn exec_plugin_failing_at_run_time_is_an_abort_naming_plugin_status_and_stderr() {
    let sim = SimCluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let (plugin, path) = plugin_kubeconfig(
        &sim,
        dir.path(),
        "echo 'error: refresh token expired; run `login`' >&2\nexit 4",
        Some("Never"),
    );
    let out = run_with(&path, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.errors().len(), 1, "{}", out.stderr);
    let expected = format!(
        "exec plugin {:?} of user \"user\" failed with exit status 4; its stderr: error: \
         refresh token expired; run `login`",
        plugin.display().to_string()
    );
    assert!(out.errors()[0].ends_with(&expected), "{}", out.stderr);
    assert_eq!(
        out.verdict("node-distribution-check").as_deref(),
        Some("ABORT")
    );
    assert!(
        out.junit_message("node-distribution-check")
            .contains("exit status 4")
    );
}

#[test]
fn exec_credentials_run_again_when_expired() {
    let sim = SimCluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    // Already expired when returned: every request needs a fresh run (client-go re-runs an
    // expired credential before the request).
    let (_, path) = plugin_kubeconfig(
        &sim,
        dir.path(),
        &credential(
            &sim.token(),
            ",\"expirationTimestamp\":\"2020-01-01T00:00:00Z\"",
        ),
        Some("Never"),
    );
    let out = run_with(&path, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let runs = calls(dir.path()).len();
    let requests = sim.requests().len();
    assert!(
        runs >= requests,
        "{runs} plugin runs for {requests} requests"
    );
}

#[test]
fn proxy_from_the_environment_is_used_except_for_loopback() {
    let sim = SimCluster::start(ClusterSpec::default());
    let proxy = Proxy::start(Kind::HttpConnect);
    let dir = tempfile::tempdir().unwrap();
    let port = sim.url().rsplit_once(':').unwrap().1.to_string();
    // A name that resolves nowhere: only the proxy (which ends every tunnel on this
    // machine) can reach it, and no name lookup happens here. The certificate names
    // localhost. (NO_PROXY is unit-tested: exempting this name would need a lookup.)
    let text = kubeconfig(
        &sim,
        "    tls-server-name: localhost\n",
        &token_user(&sim),
        "ctx",
    )
    .replace("https://127.0.0.1", "https://api.cluster.invalid");
    let path = write(dir.path(), "kc", &text);
    let run = |env: &[(&str, &str)]| {
        let args = [
            "run",
            "-k",
            path.to_str().unwrap(),
            "--offline",
            "--check",
            "node-distribution-check",
            "--request-timeout",
            "5s",
        ];
        scs_with(&args, |cmd| {
            for (k, v) in env {
                cmd.env(k, v);
            }
        })
    };
    let out = run(&[("HTTPS_PROXY", &proxy.url)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        proxy
            .tunnels()
            .contains(&format!("api.cluster.invalid:{port}"))
    );
    // Loopback servers are never proxied from the environment (Go's rule).
    let local = write(
        dir.path(),
        "local",
        &kubeconfig(&sim, "", &token_user(&sim), "ctx"),
    );
    let out = scs_with(
        &[
            "run",
            "-k",
            local.to_str().unwrap(),
            "--offline",
            "--check",
            "node-distribution-check",
        ],
        |cmd| {
            cmd.env("HTTPS_PROXY", "http://127.0.0.1:9");
        },
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
}
