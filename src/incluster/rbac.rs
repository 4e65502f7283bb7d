//! The least RBAC each check needs when it runs inside the cluster, derived from the API
//! calls the check (and the shared helpers it uses) really makes. The README's RBAC table
//! is this table ([`describe`]; a test compares them), and the in-cluster scenarios run
//! under it with the simulator enforcing RBAC, failing on any refused call.
//!
//! Writing checks create their scratch namespaces at run time, so their rights on
//! namespaced objects cannot be bound per namespace in advance (a RoleBinding needs the
//! namespace to exist, and creating RoleBindings at run time would need `bind`/`escalate`):
//! they are granted by the run's ClusterRole. Everything the runner itself needs in its own
//! namespace (the results ConfigMap) is a namespaced Role.

use crate::checks::{self, upstream_e2e};
use k8s_openapi::api::rbac::v1::PolicyRule;

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

const WATCH: &[&str] = &["list", "watch"];

/// Rights the runner needs whatever is selected: `/version` (preflight), and listing
/// namespaces and PersistentVolumes for the final safety-net sweep of its run's labels
/// (what it finds belongs to a writing check, whose rights cover deleting it).
pub fn base_rules() -> Vec<PolicyRule> {
    vec![
        PolicyRule {
            non_resource_urls: Some(vec!["/version".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        },
        rule(&[""], &["namespaces", "persistentvolumes"], &["list"]),
    ]
}

/// Rights of every writing check: its scratch namespace (created; deleted and watched until
/// gone), the write-access preflight (a SelfSubjectAccessReview) and Events to explain
/// pods, claims and Services.
pub fn writing_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            &[""],
            &["namespaces"],
            &["create", "delete", "list", "watch"],
        ),
        rule(
            &["authorization.k8s.io"],
            &["selfsubjectaccessreviews"],
            &["create"],
        ),
        rule(&[""], &["events"], &["list"]),
    ]
}

/// Rights of a check that runs the upstream e2e suite: it creates a ServiceAccount, a
/// ClusterRole granting every right and its binding, and a Job, then follows the pod,
/// waits for the results bundle and reads it, and deletes the cluster-scoped RBAC (found
/// by label in the final sweep); it watches the Job's Events for pods admission refuses.
/// Granting rights it does not hold needs `escalate` and `bind` on ClusterRoles: in
/// effect cluster-admin, which the upstream e2e suite needs anyway.
pub fn e2e_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            &["rbac.authorization.k8s.io"],
            &["clusterroles"],
            &["create", "delete", "list", "escalate", "bind"],
        ),
        rule(
            &["rbac.authorization.k8s.io"],
            &["clusterrolebindings"],
            &["create", "delete", "list"],
        ),
        rule(&[""], &["serviceaccounts"], &["create"]),
        rule(&["batch"], &["jobs"], &["create"]),
        rule(&[""], &["pods"], &["get", "list", "watch"]),
        rule(&[""], &["configmaps", "pods/log"], &["get"]),
        // The Job's `FailedCreate` events: a pod admission refuses ABORTs at once.
        rule(&[""], &["events"], &["watch"]),
    ]
}

/// Rights added with `--image-pull-secret-file`: the run inside puts the registry
/// credentials into each namespace it creates (`cluster::workload`'s pull secret).
pub fn pull_secret_rules() -> Vec<PolicyRule> {
    vec![rule(&[""], &["secrets"], &["create"])]
}

/// The rules of check `check` itself, from the API calls it makes (and the shared helpers
/// it uses: waits list and watch, `pods::wait_finished` reads the pod, cleanup reads a
/// volume's claim before deleting the volume).
pub fn own_rules(check: &str) -> Vec<PolicyRule> {
    match check {
        // GET /version (base rules) and public release data: nothing in the cluster.
        "version-policy" => vec![],
        "node-distribution" => vec![rule(&[""], &["nodes"], &["list"])],
        "node-anti-affinity" => vec![
            rule(&[""], &["nodes"], &["list"]),
            // Created, and watched for the condition `ReplicaFailure` while its pods are
            // awaited; the FailedCreate events of the pods admission refuses
            // (cluster::admission) are found through the Deployment's ReplicaSets.
            rule(&["apps"], &["deployments"], &["create", "list", "watch"]),
            rule(&["apps"], &["replicasets"], &["list"]),
            rule(&[""], &["pods"], WATCH),
        ],
        "default-storage-class" => vec![
            rule(&["storage.k8s.io"], &["storageclasses"], &["list"]),
            rule(&[""], &["nodes"], &["list"]),
            rule(
                &[""],
                &["persistentvolumeclaims"],
                &["create", "get", "list", "watch"],
            ),
            rule(
                &[""],
                &["pods"],
                &["create", "delete", "get", "list", "watch"],
            ),
            rule(&[""], &["pods/log"], &["get"]),
            rule(
                &[""],
                &["persistentvolumes"],
                &["get", "list", "watch", "delete"],
            ),
            // The fsGroupPolicy of the PV's driver, when the writer cannot write.
            rule(&["storage.k8s.io"], &["csidrivers"], &["get"]),
        ],
        "network-policy" => vec![
            rule(&[""], &["pods"], &["create", "list", "watch"]),
            rule(&[""], &["pods/proxy"], &["get"]),
            rule(
                &["networking.k8s.io"],
                &["networkpolicies"],
                &["create", "delete", "list"],
            ),
            rule(&["networking.k8s.io"], &["ingressclasses"], &["list"]),
        ],
        // Pods and pods/log: the probe pod of `--lb-probe-from cluster`; configmaps: the
        // nginx configuration of `--lb-annotation` runs.
        "lb-service" | "lb-ip-preservation" => vec![
            rule(&[""], &["services"], &["create", "delete", "list", "watch"]),
            // As for node-anti-affinity: a backend refused by admission (cluster::admission).
            rule(&["apps"], &["deployments"], &["create", "list", "watch"]),
            rule(&["apps"], &["replicasets"], &["list"]),
            rule(&[""], &["pods"], &["create", "list", "watch"]),
            rule(&[""], &["pods/log"], &["get"]),
            rule(&[""], &["configmaps"], &["create"]),
            rule(&[""], &["nodes"], &["list"]),
        ],
        _ => vec![],
    }
}

/// The rules check `check` needs (beyond [`base_rules`]) with these e2e settings.
pub fn rules_for(check: &str, e2e: &upstream_e2e::Settings) -> Vec<PolicyRule> {
    let mut rules = own_rules(check);
    let def = checks::find(check);
    if def.is_some_and(|c| c.writes) {
        rules.extend(writing_rules());
    }
    if def.is_some_and(|c| (c.uses_e2e)(e2e)) {
        rules.extend(e2e_rules());
    }
    rules
}

/// Rules as the README writes them: `` `resource.group` verb, verb `` per rule, `; `
/// between rules, `none` for no rule.
pub fn describe(rules: &[PolicyRule]) -> String {
    if rules.is_empty() {
        return "none".into();
    }
    rules
        .iter()
        .map(|r| {
            let groups = r.api_groups.clone().unwrap_or_default();
            let group = groups.first().map(String::as_str).unwrap_or("");
            let targets: Vec<String> = r
                .resources
                .iter()
                .flatten()
                .map(|res| match group {
                    "" => format!("`{res}`"),
                    g => format!("`{res}.{g}`"),
                })
                .chain(
                    r.non_resource_urls
                        .iter()
                        .flatten()
                        .map(|u| format!("`{u}`")),
                )
                .collect();
            format!("{} {}", targets.join(", "), r.verbs.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The ClusterRole rules of a run of `checks`: the base rules plus each check's, merged
/// where group and resources are equal.
pub fn cluster_rules(checks: &[&str], e2e: &upstream_e2e::Settings) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = base_rules();
    for check in checks {
        for r in rules_for(check, e2e) {
            match out.iter_mut().find(|o| {
                o.api_groups == r.api_groups
                    && o.resources == r.resources
                    && o.non_resource_urls == r.non_resource_urls
            }) {
                Some(o) => {
                    for v in r.verbs {
                        if !o.verbs.contains(&v) {
                            o.verbs.push(v);
                        }
                    }
                }
                None => out.push(r),
            }
        }
    }
    out
}

/// The namespaced Role of the run's own namespace: writing the results ConfigMap.
pub fn namespace_rules() -> Vec<PolicyRule> {
    vec![rule(&[""], &["configmaps"], &["get", "create", "update"])]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e2e_args(extra: &[&str]) -> upstream_e2e::Settings {
        let mut settings = upstream_e2e::Settings::default();
        if let ["--networking", mode] = extra {
            settings.networking = mode.parse().unwrap();
        }
        settings
    }

    #[test]
    fn every_check_has_an_entry() {
        for check in checks::names() {
            let rules = rules_for(check, &e2e_args(&[]));
            if check != "version-policy" {
                assert!(!rules.is_empty(), "{check} has no rules");
            }
        }
    }

    #[test]
    fn upstream_e2e_runs_may_grant_rights() {
        let grants = |check: &str, extra: &[&str]| {
            rules_for(check, &e2e_args(extra))
                .iter()
                .any(|r| r.verbs.contains(&"escalate".to_string()))
        };
        assert!(grants("cncf-conformance", &[]));
        assert!(!grants("network-policy", &[]));
        assert!(grants("network-policy", &["--networking", "both"]));
    }

    /// The README lists exactly the rights of this table.
    #[test]
    fn the_readme_lists_exactly_these_rights() {
        let readme = include_str!("../../README.md");
        let mut expected = vec![
            format!("Always: {}.", describe(&base_rules())),
            format!(
                "Every writing check additionally: {}.",
                describe(&writing_rules())
            ),
            format!(
                "Checks that run the upstream e2e suite additionally: {}.",
                describe(&e2e_rules())
            ),
            format!(
                "With `--image-pull-secret-file` additionally: {}.",
                describe(&pull_secret_rules())
            ),
            format!(
                "In its own namespace (Role `scs-kaas-check-results`): {}.",
                describe(&namespace_rules())
            ),
        ];
        expected.extend(
            checks::names()
                .into_iter()
                .filter(|c| !own_rules(c).is_empty() || *c == "version-policy")
                .map(|c| format!("| {c} | {} |", describe(&own_rules(c)))),
        );
        let missing: Vec<String> = expected
            .into_iter()
            .filter(|l| !readme.contains(l.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "README.md lacks the lines\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn rules_merge() {
        let rules = cluster_rules(&["node-distribution", "node-anti-affinity"], &e2e_args(&[]));
        let nodes: Vec<_> = rules
            .iter()
            .filter(|r| r.resources.as_deref() == Some(&["nodes".to_string()][..]))
            .collect();
        assert_eq!(nodes.len(), 1);
    }
}
