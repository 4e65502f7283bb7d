//! The least RBAC each check needs when it runs inside the cluster, derived from the API
//! calls the check (and the shared helpers it uses) really makes. README "Rights" mirrors
//! this table.
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

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["get", "list", "watch", "create", "delete"];

/// Rights the runner needs whatever is selected: `/version` (preflight), and listing
/// namespaces and PersistentVolumes for the final safety-net sweep of its run's labels.
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

/// Rights of every writing check: its scratch namespace (created, watched until deleted),
/// the write-access preflight (a SelfSubjectAccessReview) and Events to explain pods.
fn writing_rules() -> Vec<PolicyRule> {
    vec![
        rule(&[""], &["namespaces"], WRITE),
        rule(
            &["authorization.k8s.io"],
            &["selfsubjectaccessreviews"],
            &["create"],
        ),
        rule(&[""], &["events"], &["list"]),
    ]
}

/// Rights of a check that runs the upstream e2e suite: it creates a namespace with a
/// ServiceAccount, a ClusterRole granting every right and its binding, and a Job, then
/// follows the pod and reads the results ConfigMap. Granting rights it does not hold needs
/// `escalate` and `bind` on ClusterRoles: in effect cluster-admin, which the upstream e2e
/// suite needs anyway.
fn e2e_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            &["rbac.authorization.k8s.io"],
            &["clusterroles"],
            &[
                "get", "list", "watch", "create", "delete", "escalate", "bind",
            ],
        ),
        rule(
            &["rbac.authorization.k8s.io"],
            &["clusterrolebindings"],
            WRITE,
        ),
        rule(&[""], &["serviceaccounts"], WRITE),
        rule(&["batch"], &["jobs"], WRITE),
        rule(&[""], &["pods", "configmaps"], READ),
        rule(&[""], &["pods/log"], &["get"]),
    ]
}

/// The rules check `check` needs (beyond [`base_rules`]) with these e2e settings.
pub fn rules_for(check: &str, e2e: &upstream_e2e::Settings) -> Vec<PolicyRule> {
    let mut rules = match check {
        // GET /version (base rules) and public release data: nothing in the cluster.
        "version-policy" => vec![],
        "node-distribution" => vec![rule(&[""], &["nodes"], READ)],
        "node-anti-affinity" => vec![
            rule(&[""], &["nodes"], READ),
            rule(&["apps"], &["deployments"], WRITE),
            // The FailedCreate events of pods admission refuses (cluster::admission).
            rule(&["apps"], &["replicasets"], &["list"]),
            rule(&[""], &["pods"], READ),
        ],
        "default-storage-class" => vec![
            rule(&["storage.k8s.io"], &["storageclasses"], READ),
            rule(&[""], &["nodes"], READ),
            rule(&[""], &["persistentvolumeclaims", "pods"], WRITE),
            rule(&[""], &["pods/log"], &["get"]),
            rule(
                &[""],
                &["persistentvolumes"],
                &["get", "list", "watch", "delete"],
            ),
        ],
        "network-policy" => vec![
            rule(&[""], &["pods", "services"], WRITE),
            rule(&[""], &["pods/proxy"], &["get", "create"]),
            rule(
                &["networking.k8s.io"],
                &["networkpolicies"],
                &[
                    "get", "list", "watch", "create", "delete", "update", "patch",
                ],
            ),
            rule(&["networking.k8s.io"], &["ingressclasses"], &["list"]),
            rule(&["apps"], &["deployments"], WRITE),
        ],
        "lb-service" | "lb-ip-preservation" => vec![
            rule(
                &[""],
                &["services"],
                &["get", "list", "watch", "create", "delete", "patch"],
            ),
            rule(&["apps"], &["deployments"], WRITE),
            rule(&["apps"], &["replicasets"], &["list"]),
            rule(&[""], &["pods", "configmaps"], WRITE),
            rule(
                &[""],
                &["pods/log", "pods/proxy", "services/proxy"],
                &["get"],
            ),
            rule(&[""], &["nodes"], READ),
        ],
        _ => vec![],
    };
    let def = checks::find(check);
    if def.is_some_and(|c| c.writes) {
        rules.extend(writing_rules());
    }
    if def.is_some_and(|c| (c.uses_e2e)(e2e)) {
        rules.extend(e2e_rules());
    }
    rules
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
