//! Benchmark: the whole suite costs no more than its slowest check.
//!
//! Drives the real (release) binary against the simulated cluster with injected latencies
//! and prints, per check and for the whole run: wall time, API requests by verb, and peak
//! resident memory of the process; then the ratio (whole suite) / (slowest check alone),
//! at two latency scales to show that the number of requests does not grow with the time
//! spent waiting (watch, not poll), and how long `list` takes.
//!
//!     cargo bench --bench suite                 # scales 0.1 and 0.2 of the latencies
//!     cargo bench --bench suite -- 0.25 0.5     # other scales
//!
//! Exits 1 when a target is missed, so it can gate a CI job.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::loadbalancer::{CloudLb, LbBehaviour, emulate_agnhost, emulate_nginx};
use support::storage::{ProvisionerSpec, storage_class};
use support::{ClusterSpec, SimCluster};

/// Realistic latencies of a real cloud (seconds), before scaling.
const POD_START: f64 = 4.0;
const PVC_BIND: f64 = 8.0;
const LB_ADDRESS: f64 = 30.0;

/// Targets from the issue.
const MAX_RATIO: f64 = 1.2;
const MAX_LIST_MS: f64 = 20.0;
const MAX_RSS_MB: f64 = 50.0;

/// Every testcase of the built-in v1 (the certificate and the testcases beside it) but
/// `cncf-k8s-conformance`: its time is the upstream suite's, and it runs alone by design.
const CHECKS: &[&str] = &[
    "version-policy-check",
    "node-distribution-check",
    "node-anti-affinity-check",
    "default-storage-class-check",
    "kaas-networking-check",
    "lb-service-check",
    "lb-ip-preservation-check",
];
const CSI: &str = "cinder.csi.openstack.org";

struct Measurement {
    wall: Duration,
    requests: BTreeMap<String, usize>,
    peak_rss_kb: i64,
    exit: i32,
}

/// A compliant cluster whose cloud takes its time.
fn cluster(scale: f64) -> SimCluster {
    let seconds = |s: f64| Duration::from_secs_f64(s * scale);
    let sim = SimCluster::start(ClusterSpec {
        // The newest patch in tests/fixtures/releases.json: version-policy-check passes.
        git_version: "v1.34.3".into(),
        pod_start_delay: seconds(POD_START),
        storage_classes: vec![storage_class("standard", CSI).default_class().build()],
        provisioners: vec![ProvisionerSpec::csi(CSI).taking(seconds(PVC_BIND))],
        cloud_lb: Some(CloudLb {
            behaviour: LbBehaviour::PacketForwarding,
            provision_delay: seconds(LB_ADDRESS),
        }),
        ..Default::default()
    });
    sim.register_shell_image("docker.io/library/busybox");
    emulate_agnhost(&sim, "registry.k8s.io/e2e-test-images/agnhost");
    emulate_nginx(&sim, "docker.io/nginxinc/nginx-unprivileged");
    sim
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary with `args`, waiting with wait4 to learn its peak RSS.
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which std does not know of
fn run(args: &[&str]) -> (Duration, i64, i32) {
    let started = Instant::now();
    let child = Command::new(support::binary::BIN)
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child with valid pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    let wall = started.elapsed();
    let exit = std::process::ExitStatus::from_raw(status)
        .code()
        .unwrap_or(-1);
    (wall, usage.ru_maxrss, exit)
}

fn measure(scale: f64, checks: &[&str]) -> Measurement {
    let sim = cluster(scale);
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = sim.kubeconfig_path();
    let out = dir.path().join("out");
    let (releases, cves) = (fixture("releases.json"), fixture("cves.json"));
    let mut args = vec![
        "run",
        "-k",
        kubeconfig.to_str().unwrap(),
        "--offline",
        "--output-dir",
        out.to_str().unwrap(),
        "--reference-date",
        "2026-06-01",
        "--release-data",
        &releases,
        "--cve-data",
        &cves,
    ];
    for check in checks {
        args.extend(["--check", check]);
    }
    sim.clear_requests();
    let (wall, peak_rss_kb, exit) = run(&args);
    let mut requests = BTreeMap::new();
    for r in sim.requests() {
        let verb = if r.verb.is_empty() {
            format!("{} (non-resource)", r.method)
        } else {
            r.verb.clone()
        };
        *requests.entry(verb).or_insert(0) += 1;
    }
    Measurement {
        wall,
        requests,
        peak_rss_kb,
        exit,
    }
}

fn total(requests: &BTreeMap<String, usize>) -> usize {
    requests.values().sum()
}

fn fmt_requests(requests: &BTreeMap<String, usize>) -> String {
    requests
        .iter()
        .map(|(v, n)| format!("{v} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() {
    let scales: Vec<f64> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .filter_map(|a| a.parse().ok())
        .collect();
    let scales = if scales.is_empty() {
        vec![0.1, 0.2]
    } else {
        scales
    };
    let mut missed = Vec::new();
    let mut totals_by_scale: Vec<BTreeMap<String, usize>> = Vec::new();

    for &scale in &scales {
        println!(
            "== latency scale {scale}: pod start {:.1}s",
            POD_START * scale
        );
        println!(
            "{:<28} {:>9} {:>9} {:>8}  requests by verb",
            "run", "wall s", "peak MB", "exit"
        );
        let mut slowest = Duration::ZERO;
        let mut per_check = BTreeMap::new();
        for check in CHECKS {
            let m = measure(scale, &[check]);
            println!(
                "{:<28} {:>9.3} {:>9.1} {:>8}  {} (total {})",
                check,
                m.wall.as_secs_f64(),
                m.peak_rss_kb as f64 / 1024.0,
                m.exit,
                fmt_requests(&m.requests),
                total(&m.requests)
            );
            slowest = slowest.max(m.wall);
            per_check.insert(check.to_string(), total(&m.requests));
            if m.exit != 0 {
                missed.push(format!(
                    "scale {scale}: {check} exited {} (the cluster is compliant)",
                    m.exit
                ));
            }
        }
        let whole = measure(scale, CHECKS);
        println!(
            "{:<28} {:>9.3} {:>9.1} {:>8}  {} (total {})",
            "whole suite",
            whole.wall.as_secs_f64(),
            whole.peak_rss_kb as f64 / 1024.0,
            whole.exit,
            fmt_requests(&whole.requests),
            total(&whole.requests)
        );
        per_check.insert("whole suite".into(), total(&whole.requests));
        if whole.exit != 0 {
            missed.push(format!(
                "scale {scale}: the whole suite exited {}",
                whole.exit
            ));
        }
        let ratio = whole.wall.as_secs_f64() / slowest.as_secs_f64();
        println!("ratio whole / slowest alone: {ratio:.3} (target <= {MAX_RATIO})");
        if ratio > MAX_RATIO {
            missed.push(format!("scale {scale}: ratio {ratio:.3} > {MAX_RATIO}"));
        }
        let rss_mb = whole.peak_rss_kb as f64 / 1024.0;
        if rss_mb > MAX_RSS_MB {
            missed.push(format!(
                "scale {scale}: peak RSS {rss_mb:.1} MB > {MAX_RSS_MB} MB"
            ));
        }
        totals_by_scale.push(per_check);
        println!();
    }

    // Requests must not grow with the time spent waiting: compare the scales.
    if totals_by_scale.len() >= 2 {
        println!(
            "== requests per run across scales {scales:?} (watch, not poll: these must not grow)"
        );
        for name in totals_by_scale[0].keys() {
            let counts: Vec<usize> = totals_by_scale.iter().map(|t| t[name]).collect();
            let grew = counts.windows(2).any(|w| w[1] > w[0] + 2);
            println!(
                "{name:<28} {counts:?}{}",
                if grew { "  <- grows with latency" } else { "" }
            );
            if grew {
                missed.push(format!("{name}: requests grow with latency {counts:?}"));
            }
        }
        println!();
    }

    // `list` latency.
    let mut times: Vec<f64> = (0..30)
        .map(|_| {
            let started = Instant::now();
            let status = Command::new(support::binary::BIN)
                .arg("list")
                .stdout(Stdio::null())
                .status()
                .expect("list runs");
            assert!(status.success());
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "== `list`: median {median:.2} ms, max {:.2} ms over {} runs (target < {MAX_LIST_MS} ms)",
        times[times.len() - 1],
        times.len()
    );
    if median >= MAX_LIST_MS {
        missed.push(format!("list median {median:.2} ms >= {MAX_LIST_MS} ms"));
    }

    if missed.is_empty() {
        println!("\nall targets met");
    } else {
        println!("\ntargets missed:\n  {}", missed.join("\n  "));
        std::process::exit(1);
    }
}
