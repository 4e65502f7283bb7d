//! RBAC authorization of service accounts, as the API server's RBAC authorizer decides it
//! (kubernetes `plugin/pkg/auth/authorizer/rbac`): a request of
//! `system:serviceaccount:<ns>:<name>` is allowed when a rule of a ClusterRole bound by a
//! ClusterRoleBinding, or of a Role/ClusterRole bound by a RoleBinding in the request's
//! namespace, covers its verb, API group, resource (`pods/log` for subresources) and name.
//! Subjects match by ServiceAccount (name and namespace) or by the groups every service
//! account is in (`system:serviceaccounts`, `system:serviceaccounts:<ns>`,
//! `system:authenticated`). The default bindings every authenticated user has are built in:
//! `system:basic-user` (creating SelfSubjectAccessReviews and -RulesReviews) and
//! `system:discovery`/`system:public-info-viewer` (GET on discovery paths and `/version`,
//! which the server answers before any resource check here).
//!
//! The kubeconfig's user (`sim-user`) is not subject to RBAC (a cluster admin), only to
//! `ClusterSpec::deny`. Not modelled: privilege-escalation prevention when creating roles
//! and bindings (`escalate`/`bind`), aggregated ClusterRoles.

use super::store::Store;
use super::util::{namespace_of, str_at};
use serde_json::Value;

/// The namespace and name of a service account user, if `user` is one.
pub(super) fn service_account(user: &str) -> Option<(&str, &str)> {
    user.strip_prefix("system:serviceaccount:")?.split_once(':')
}

fn list<'a>(rule: &'a Value, key: &str) -> Vec<&'a str> {
    rule.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn covers(values: &[&str], wanted: &str) -> bool {
    values.iter().any(|v| *v == "*" || *v == wanted)
}

/// Whether `rule` allows the request.
fn rule_allows(
    rule: &Value,
    verb: &str,
    group: &str,
    resource: &str,
    sub: &str,
    name: &str,
) -> bool {
    let full = if sub.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{sub}")
    };
    let resources = list(rule, "resources");
    let names = list(rule, "resourceNames");
    covers(&list(rule, "verbs"), verb)
        && covers(&list(rule, "apiGroups"), group)
        && (covers(&resources, &full)
            || (!sub.is_empty() && resources.contains(&format!("*/{sub}").as_str())))
        && (names.is_empty() || names.contains(&name))
}

fn subject_matches(binding: &Value, sa_ns: &str, sa_name: &str) -> bool {
    binding
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|s| match str_at(s, "kind") {
            "ServiceAccount" => str_at(s, "name") == sa_name && str_at(s, "namespace") == sa_ns,
            "Group" => {
                let g = str_at(s, "name");
                g == "system:serviceaccounts"
                    || g == "system:authenticated"
                    || g == format!("system:serviceaccounts:{sa_ns}")
            }
            _ => false,
        })
}

/// The rules of the role a binding refers to (`ns`: the binding's namespace).
fn role_rules<'a>(store: &'a Store, binding: &Value, ns: &str) -> Vec<&'a Value> {
    let name = str_at(binding, "roleRef.name");
    let role = match str_at(binding, "roleRef.kind") {
        "ClusterRole" => store.get("clusterroles", "", name),
        "Role" => store.get("roles", ns, name),
        _ => None,
    };
    role.and_then(|r| r.get("rules"))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// Whether service account `user` may `verb` the resource (in `namespace`, "" for
/// cluster-scoped or all-namespace requests).
#[allow(clippy::too_many_arguments)]
pub(super) fn allowed(
    store: &Store,
    user: &str,
    verb: &str,
    group: &str,
    resource: &str,
    sub: &str,
    namespace: &str,
    name: &str,
) -> bool {
    let Some((sa_ns, sa_name)) = service_account(user) else {
        return true;
    };
    // system:basic-user, bound to every authenticated user.
    if verb == "create"
        && matches!(
            (group, resource),
            (
                "authorization.k8s.io",
                "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
            ) | ("authentication.k8s.io", "selfsubjectreviews")
        )
    {
        return true;
    }
    let allows = |rules: Vec<&Value>| {
        rules
            .iter()
            .any(|r| rule_allows(r, verb, group, resource, sub, name))
    };
    let cluster_wide = store
        .iter("clusterrolebindings")
        .filter(|b| subject_matches(b, sa_ns, sa_name))
        .any(|b| allows(role_rules(store, b, "")));
    cluster_wide
        || (!namespace.is_empty()
            && store
                .iter("rolebindings")
                .filter(|b| namespace_of(b) == namespace && subject_matches(b, sa_ns, sa_name))
                .any(|b| allows(role_rules(store, b, namespace))))
}
