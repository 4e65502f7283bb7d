//! No credential reaches any output, for every subcommand: a kubeconfig with a planted
//! secret in each credential slot (token, token file, password, client key data and file,
//! auth-provider config, exec arguments and environment, the cluster's exec extension
//! config, a proxy password), a registry credential file, and an exec plugin that prints a
//! credential and then fails (or works, while the API server echoes every secret in its
//! error messages and version). stdout, stderr and every file written are searched.

mod support;

use std::path::{Path, PathBuf};
use support::binary::*;
use support::proxy::{Kind, Proxy};
use support::{ClusterSpec, Fault, SimCluster};

/// `(slot, secret)`: each value is planted in exactly one place.
const SLOTS: &[(&str, &str)] = &[
    ("token", "tok-SLOT-TOKEN-7f3a9c"),
    ("tokenFile contents", "tok-SLOT-TOKENFILE-2b8e41"),
    ("password", "pw-SLOT-PASSWORD-91cd"),
    ("client-key-data", "SLOTCLIENTKEYDATA4d2f00aa"),
    ("client-key file", "SLOTCLIENTKEYFILE8a1e77bb"),
    ("auth-provider id-token", "oidc-SLOT-IDTOKEN-55aa"),
    ("auth-provider client-secret", "oidc-SLOT-CLIENTSECRET-66bb"),
    ("exec argument", "arg-SLOT-EXECARG-3c4d"),
    ("exec env value", "env-SLOT-EXECENV-9e0f"),
    ("exec extension config", "ext-SLOT-EXTCONFIG-1a2b"),
    ("proxy-url password", "proxy-SLOT-PASSWORD-44ee"),
    ("plugin stdout token", PLUGIN_TOKEN),
    ("registry password", "reg-SLOT-REGISTRYPASS-5d6e"),
];

const PLUGIN_TOKEN: &str = "stdout-SLOT-PLUGINTOKEN-77cc";

fn secret(slot: &str) -> &'static str {
    SLOTS.iter().find(|(s, _)| *s == slot).unwrap().1
}

fn b64(data: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The planted files: kubeconfig, plugin, token file, key file, registry credentials.
struct Planted {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    docker_config: PathBuf,
    _proxy: Proxy,
}

/// `exit` is the plugin's exit status after printing its credential.
fn plant(sim: &SimCluster, exit: i32) -> Planted {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let proxy = Proxy::start(Kind::HttpConnect);
    std::fs::write(d.join("token"), secret("tokenFile contents")).unwrap();
    std::fs::write(
        d.join("client.key"),
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            secret("client-key file")
        ),
    )
    .unwrap();
    let plugin = d.join("plugin.sh");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\n\
             echo '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\
             \"status\":{{\"token\":\"{PLUGIN_TOKEN}\"}}}}'\n\
             echo \"refresh failed: args=$* env=$PLUGIN_ENV token={PLUGIN_TOKEN} \
             info=$KUBERNETES_EXEC_INFO\" >&2\nexit {exit}\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let key_data = b64(&format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        secret("client-key-data")
    ));
    let proxy_url = proxy.url.replace(
        "http://",
        &format!("http://user:{}@", secret("proxy-url password")),
    );
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: ctx\n\
         clusters:\n- name: sim\n  cluster:\n    server: {server:?}\n    \
         certificate-authority-data: {ca}\n    proxy-url: {proxy_url:?}\n    extensions:\n    \
         - name: client.authentication.k8s.io/exec\n      extension:\n        audience: {ext:?}\n\
         users:\n\
         - name: plugin-user\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      \
         command: {plugin:?}\n      args: [\"get-token\", \"--client-secret={arg}\"]\n      \
         env: [{{name: PLUGIN_ENV, value: {env:?}}}]\n      interactiveMode: Never\n      \
         provideClusterInfo: true\n\
         - name: token-user\n  user:\n    token: {token:?}\n\
         - name: file-user\n  user:\n    tokenFile: {token_file:?}\n\
         - name: basic-user\n  user:\n    username: admin\n    password: {password:?}\n\
         - name: key-user\n  user:\n    client-key-data: {key_data}\n\
         - name: keyfile-user\n  user:\n    client-key: {key_file:?}\n\
         - name: oidc-user\n  user:\n    auth-provider:\n      name: oidc\n      config:\n        \
         id-token: {id_token:?}\n        client-secret: {client_secret:?}\n\
         contexts:\n- name: ctx\n  context:\n    cluster: sim\n    user: plugin-user\n",
        server = sim.url(),
        ca = b64(&sim.ca_pem()),
        ext = secret("exec extension config"),
        arg = secret("exec argument"),
        env = secret("exec env value"),
        token = secret("token"),
        token_file = d.join("token"),
        password = secret("password"),
        key_file = d.join("client.key"),
        id_token = secret("auth-provider id-token"),
        client_secret = secret("auth-provider client-secret"),
    );
    let path = d.join("kubeconfig");
    std::fs::write(&path, kubeconfig).unwrap();
    let docker_config = d.join("config.json");
    std::fs::write(
        &docker_config,
        format!(
            "{{\"auths\":{{\"mirror.example\":{{\"auth\":\"{}\"}}}}}}",
            b64(&format!("robot:{}", secret("registry password")))
        ),
    )
    .unwrap();
    Planted {
        dir,
        kubeconfig: path,
        docker_config,
        _proxy: proxy,
    }
}

/// One subcommand's invocation: name, arguments, extra environment.
type Invocation = (&'static str, Vec<String>, Vec<(String, String)>);

/// Every subcommand with the planted files.
fn subcommands(p: &Planted) -> Vec<Invocation> {
    let kc = p.kubeconfig.display().to_string();
    let dc = p.docker_config.display().to_string();
    let out = |name: &str| p.dir.path().join(name).display().to_string();
    let results = p.dir.path().join("results");
    std::fs::create_dir_all(&results).unwrap();
    std::fs::write(results.join("done"), "/tmp/results/junit_01.xml").unwrap();
    let v = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        (
            "run",
            v(&[
                "run",
                "-k",
                &kc,
                "--offline",
                "--check",
                "node-distribution-check",
                "--check",
                "node-anti-affinity-check",
                "--image-pull-secret-file",
                &dc,
            ]),
            vec![],
        ),
        (
            "e2e",
            v(&[
                "e2e",
                "-k",
                &kc,
                "--conformance-image",
                "unpullable.example/conformance:v1",
                "--pod-start-timeout",
                "3s",
                "--image-pull-secret-file",
                &dc,
            ]),
            vec![],
        ),
        ("delete", v(&["delete", "-k", &kc]), vec![]),
        ("status", v(&["status", "-k", &kc]), vec![]),
        (
            "retrieve",
            v(&["retrieve", "-k", &kc, "--output-dir", &out("retrieved")]),
            vec![],
        ),
        (
            "images",
            v(&["images", "-k", &kc, "--image-pull-secret-file", &dc]),
            vec![],
        ),
        (
            "gen",
            v(&["gen", "-k", &kc, "--image-pull-secret-file", &dc]),
            vec![],
        ),
        ("list", v(&["list"]), vec![]),
        (
            "e2e-collect",
            v(&[
                "e2e-collect",
                "--results-dir",
                &results.display().to_string(),
                "--configmap",
                "results",
            ]),
            vec![("KUBECONFIG".to_string(), kc.clone())],
        ),
    ]
}

/// Every file under `dir`, as text.
fn files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    out
}

/// Runs every subcommand; asserts no planted secret in any output. Returns each one's
/// output by name.
fn assert_nothing_leaks(p: &Planted) -> Vec<(&'static str, Output)> {
    let mut results = Vec::new();
    for (name, args, env) in subcommands(p) {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = scs_with(&refs, |cmd| {
            for (k, v) in &env {
                cmd.env(k, v);
            }
        });
        out.assert_clean_exit();
        let mut texts = vec![
            ("stdout".to_string(), out.stdout.clone()),
            ("stderr".to_string(), out.stderr.clone()),
        ];
        for dir in [out.out_dir.clone(), p.dir.path().join("retrieved")] {
            texts.extend(
                files(&dir)
                    .into_iter()
                    .map(|(path, text)| (path.display().to_string(), text)),
            );
        }
        // A process that was not given the registry credentials cannot know them (only an
        // API server echoing them could show them there): that slot counts where given.
        let given_registry = args.iter().any(|a| a == "--image-pull-secret-file");
        for (slot, value) in SLOTS {
            if *slot == "registry password" && !given_registry {
                continue;
            }
            for (what, text) in &texts {
                assert!(
                    !text.contains(value),
                    "`{name}`: the {slot} secret leaked into {what}:\n{text}"
                );
            }
        }
        results.push((name, out));
    }
    results
}

#[test]
fn a_failing_exec_plugin_leaks_nothing_in_any_subcommand() {
    let sim = SimCluster::start(ClusterSpec::default());
    let planted = plant(&sim, 1);
    let outputs = assert_nothing_leaks(&planted);
    for (name, out) in &outputs {
        let expected = match *name {
            "gen" | "list" => 0,
            _ => 3,
        };
        assert_eq!(out.code, expected, "`{name}`: {}", out.stderr);
        if expected == 3 {
            // The command cannot run: one CRITICAL line; `run` and `e2e` also give each
            // testcase's ABORT reason as an ERROR line. Every one names the plugin.
            let mut lines = out.criticals();
            lines.extend(out.errors());
            assert!(!out.criticals().is_empty(), "`{name}`: {}", out.stderr);
            for line in lines {
                assert!(
                    line.contains(
                        "of user \"plugin-user\" failed with exit status 1; its stderr: \
                     refresh failed: args=[REDACTED] --client-secret=[REDACTED] env=[REDACTED] \
                     token=[REDACTED] info="
                    ),
                    "`{name}`: {line}"
                );
            }
        }
    }
    let run = &outputs.iter().find(|(n, _)| *n == "run").unwrap().1;
    assert_eq!(
        run.verdict("node-distribution-check").as_deref(),
        Some("ABORT")
    );
    assert!(
        run.junit_message("node-distribution-check")
            .contains("failed with exit status 1")
    );
    assert!(sim.requests().is_empty(), "no credential, no request");
}

#[test]
fn an_api_server_echoing_every_secret_leaks_nothing_in_any_subcommand() {
    // The plugin works; the API server (or a proxy in front of it) puts every planted value
    // into its answers: the version and the Status messages of nodes, namespaces and jobs.
    let echo: String = SLOTS
        .iter()
        .map(|(slot, value)| format!("{slot}={value}"))
        .collect::<Vec<_>>()
        .join(" ");
    let faults = ["/api/v1/nodes", "/api/v1/namespaces", "/apis/batch"]
        .into_iter()
        .map(|prefix| Fault::StatusMessage {
            path_prefix: prefix.into(),
            code: 403,
            message: format!("denied: {echo}"),
        })
        .collect();
    let sim = SimCluster::start(ClusterSpec {
        token: PLUGIN_TOKEN.into(),
        git_version: format!("v1.34.2+{PLUGIN_TOKEN}"),
        faults,
        ..Default::default()
    });
    let planted = plant(&sim, 0);
    let outputs = assert_nothing_leaks(&planted);
    let run = &outputs.iter().find(|(n, _)| *n == "run").unwrap().1;
    assert_eq!(run.code, 3, "{}", run.stderr);
    let message = run.junit_message("node-distribution-check");
    assert!(message.contains("403"), "{message}");
    assert!(message.contains("token=[REDACTED]"), "{message}");
    assert!(
        sim.requests().iter().any(|r| r.user == "sim-user"),
        "the plugin's token was used"
    );
}
