//! The HTTPS API server: TLS, routing, discovery, CRUD, watch and the request log.

use super::resources::ResourceDef;
use super::selectors::{FieldSelector, LabelSelector};
use super::spec::{ClusterSpec, Fault, Program};
use super::store::{EventType, SharedStore, StoreEvent};
use super::util::{
    ApiError, merge_patch, name_of, namespace_of, now_rfc3339, obj_mut, qualified, str_at,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};

pub type Body = BoxBody<Bytes, Infallible>;

/// The user name used in RBAC-style messages.
pub const USER: &str = "sim-user";

/// One request seen by the server.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    /// get/list/watch/create/update/patch/delete/deletecollection, or "" for non-resource paths.
    pub verb: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// HTTP status; 0 for requests that were never answered (hang fault).
    pub status: u16,
    pub at: Instant,
    /// Who made it: `sim-user` (the kubeconfig's token) or
    /// `system:serviceaccount:<ns>:<name>` (see `incluster.rs`); "" when unauthenticated.
    pub user: String,
}

pub(super) struct Dynamic {
    pub faults: Vec<Fault>,
    pub git_version: String,
}

/// State shared between the server, the controllers and [`super::SimCluster`].
pub(super) struct Shared {
    pub store: SharedStore,
    pub spec: ClusterSpec,
    pub dynamic: Mutex<Dynamic>,
    pub requests: Mutex<Vec<RequestRecord>>,
    pub programs: Mutex<Vec<(String, Program)>>,
    pub addr: SocketAddr,
    pub ca_pem: String,
    /// The simulated network plugin (see `network.rs`).
    pub network: super::network::Plugin,
}

impl Shared {
    pub fn dynamic(&self) -> std::sync::MutexGuard<'_, Dynamic> {
        self.dynamic.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn denied(&self, verb: &str, resource: &str, sub: &str) -> bool {
        let full = if sub.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}/{sub}")
        };
        self.spec
            .deny
            .iter()
            .any(|(v, r)| (v == "*" || v == verb) && (r == "*" || *r == full))
    }
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn text_response(code: u16, text: String) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_json())
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| Some((hex(*bytes.get(i + 1)?)? << 4) | hex(*bytes.get(i + 2)?)?))
            .flatten();
        match (bytes[i], decoded) {
            (_, Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// A parsed resource path.
#[derive(Debug, Clone, Default)]
struct Target {
    def: Option<ResourceDef>,
    namespace: String,
    name: String,
    sub: String,
    /// The path after `.../proxy` for the proxy subresource.
    proxy_path: String,
}

enum Route {
    Version,
    Health,
    LegacyVersions,
    GroupList,
    Group(String),
    ResourceList(String, String),
    Resource(Box<Target>),
    NotFound,
}

fn route(shared: &Shared, path: &str) -> Route {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let resources = shared.store.lock().resources().to_vec();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Route::Version,
        ["healthz" | "livez" | "readyz", ..] => return Route::Health,
        ["api"] => return Route::LegacyVersions,
        ["apis"] => return Route::GroupList,
        ["apis", g] => return Route::Group((*g).to_string()),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Route::NotFound,
    };
    let in_gv: Vec<&ResourceDef> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if in_gv.is_empty() {
        return Route::NotFound;
    }
    if rest.is_empty() {
        return Route::ResourceList(group.to_string(), version.to_string());
    }
    let find = |plural: &str, namespaced: Option<bool>| {
        in_gv
            .iter()
            .find(|r| r.plural == plural && namespaced.is_none_or(|n| r.namespaced == n))
            .map(|r| (*r).clone())
    };
    let mut t = Target::default();
    let tail: &[&str] = if rest.len() >= 3
        && rest[0] == "namespaces"
        && let Some(def) = find(rest[2], Some(true))
    {
        t.namespace = rest[1].to_string();
        t.def = Some(def);
        &rest[3..]
    } else if let Some(def) = find(rest[0], None) {
        t.def = Some(def);
        &rest[1..]
    } else {
        return Route::NotFound;
    };
    match tail {
        [] => {}
        [name] => t.name = (*name).to_string(),
        [name, sub] => {
            t.name = (*name).to_string();
            t.sub = (*sub).to_string();
        }
        [name, "proxy", rest @ ..] => {
            t.name = (*name).to_string();
            t.sub = "proxy".into();
            t.proxy_path = rest.join("/");
        }
        _ => return Route::NotFound,
    }
    if !t.sub.is_empty()
        && t.def
            .as_ref()
            .is_some_and(|d| !d.subresources.contains(&t.sub))
    {
        return Route::NotFound;
    }
    Route::Resource(Box::new(t))
}

fn verb_for(method: &Method, t: &Target, watch: bool) -> &'static str {
    match (method.as_str(), t.name.is_empty()) {
        ("GET", true) if watch => "watch",
        ("GET", true) => "list",
        ("GET", false) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "deletecollection",
        ("DELETE", false) => "delete",
        _ => "",
    }
}

fn not_found_path() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// Entry point for every HTTP request.
pub(super) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let full_path = req.uri().path().to_string();
    let prefix = shared.spec.path_prefix.as_str();
    let path = match full_path.strip_prefix(prefix) {
        Some(rest) if !prefix.is_empty() && rest.starts_with('/') => rest.to_string(),
        _ if prefix.is_empty() => full_path.clone(),
        // Outside the prefix nothing is served (the proxy in front answers 404).
        _ => "/__outside-the-path-prefix__".to_string(),
    };
    let query_str = req.uri().query().unwrap_or("").to_string();
    let query = parse_query(&query_str);
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let route = route(&shared, &path);
    let mut record = RequestRecord {
        method: method.to_string(),
        path: path.clone(),
        query: query_str.clone(),
        verb: String::new(),
        resource: String::new(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
        status: 0,
        at: Instant::now(),
        user: String::new(),
    };
    if let Route::Resource(t) = &route {
        record.verb = verb_for(&method, t, watch).to_string();
        record.resource = t.def.as_ref().map(|d| d.plural.clone()).unwrap_or_default();
        record.subresource = t.sub.clone();
        record.namespace = t.namespace.clone();
        record.name = t.name.clone();
    }

    let fault = shared
        .dynamic()
        .faults
        .iter()
        .find(|f| path.starts_with(f.path_prefix()))
        .cloned();
    let push = |mut r: RequestRecord, status: u16| {
        r.status = status;
        shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r);
    };
    match fault {
        Some(Fault::Hang { .. }) => {
            push(record, 0);
            return std::future::pending().await;
        }
        Some(Fault::Status { code, .. }) => {
            push(record, code);
            return Ok(error_response(&ApiError::for_code(code)));
        }
        Some(Fault::StatusMessage { code, message, .. }) => {
            push(record, code);
            let reason = ApiError::for_code(code).reason;
            return Ok(error_response(&ApiError::new(code, reason, message)));
        }
        None => {}
    }

    let token = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    record.user = match token {
        Some(t) if t == shared.spec.token => USER.to_string(),
        Some(t) => super::incluster::service_account_of(&shared, &t).unwrap_or_default(),
        None => String::new(),
    };
    if record.user.is_empty() {
        push(record, 401);
        return Ok(error_response(&ApiError::unauthorized()));
    }

    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            push(record, 400);
            return Ok(error_response(&ApiError::bad_request(format!(
                "failed to read body: {e}"
            ))));
        }
    };

    let resp = match route {
        Route::Version => Ok(version_response(&shared)),
        Route::Health => Ok(text_response(200, "ok".into())),
        Route::LegacyVersions => Ok(json_response(
            200,
            &json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}],
            }),
        )),
        Route::GroupList => Ok(json_response(200, &group_list(&shared))),
        Route::Group(g) => group_list(&shared)["groups"]
            .as_array()
            .and_then(|gs| gs.iter().find(|x| x["name"] == g.as_str()).cloned())
            .map(|mut g| {
                g["kind"] = "APIGroup".into();
                g["apiVersion"] = "v1".into();
                json_response(200, &g)
            })
            .ok_or_else(not_found_path),
        Route::ResourceList(g, v) => Ok(json_response(200, &resource_list(&shared, &g, &v))),
        Route::Resource(t) => {
            let user = record.user.clone();
            resource_request(
                &shared,
                &method,
                *t,
                &query,
                watch,
                &content_type,
                &body,
                &user,
            )
            .await
        }
        Route::NotFound => Err(not_found_path()),
    };
    let resp = resp.unwrap_or_else(|e| error_response(&e));
    push(record, resp.status().as_u16());
    Ok(resp)
}

fn version_response(shared: &Shared) -> Response<Body> {
    let git = shared.dynamic().git_version.clone();
    let mut parts = git.trim_start_matches('v').split('.');
    let major = parts.next().unwrap_or("").to_string();
    let minor = parts.next().unwrap_or("").to_string();
    json_response(
        200,
        &json!({
            "major": major,
            "minor": minor,
            "emulationMajor": major,
            "emulationMinor": minor,
            "gitVersion": git,
            "gitCommit": "0123456789abcdef0123456789abcdef01234567",
            "gitTreeState": "clean",
            "buildDate": "2025-11-11T00:00:00Z",
            "goVersion": "go1.24.9",
            "compiler": "gc",
            "platform": "linux/amd64",
        }),
    )
}

fn group_list(shared: &Shared) -> Value {
    let store = shared.store.lock();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for r in store.resources().iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) if !vs.contains(&r.version) => vs.push(r.version.clone()),
            Some(_) => {}
            None => groups.push((r.group.clone(), vec![r.version.clone()])),
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({
                "name": g,
                "versions": versions,
                "preferredVersion": versions[0],
            })
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(shared: &Shared, group: &str, version: &str) -> Value {
    let store = shared.store.lock();
    let mut out = Vec::new();
    for r in store
        .resources()
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        out.push(json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
            "shortNames": r.short_names,
        }));
        for s in &r.subresources {
            let verbs = match s.as_str() {
                "log" => json!(["get"]),
                "proxy" => json!(["create", "delete", "get", "patch", "update"]),
                "finalize" => json!(["update"]),
                _ => json!(["get", "patch", "update"]),
            };
            out.push(json!({
                "name": format!("{}/{s}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": verbs,
            }));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out})
}

fn forbidden(def: &ResourceDef, t: &Target, verb: &str, user: &str) -> ApiError {
    let res = if t.sub.is_empty() {
        def.plural.clone()
    } else {
        format!("{}/{}", def.plural, t.sub)
    };
    let subject = if t.name.is_empty() {
        qualified(&def.group, &def.plural)
    } else {
        format!("{} \"{}\"", qualified(&def.group, &def.plural), t.name)
    };
    let scope = if t.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", t.namespace)
    };
    ApiError::forbidden(
        &def.group,
        &def.plural,
        &t.name,
        format!(
            "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{res}\" in API group \"{}\" {scope}",
            def.group
        ),
    )
}

/// Only JSON bodies are understood (protobuf/CBOR get 415, YAML only for apply patches).
fn check_content_type(content_type: &str, verb: &str) -> Result<(), ApiError> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    if matches!(verb, "create" | "update") && !ct.is_empty() && !ct.contains("json") {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json (got {ct:?})"
            ),
        ));
    }
    Ok(())
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request was in an unknown format: {e}"
        ))
    })?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ))
    }
}

fn selectors(query: &HashMap<String, String>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let ls = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    let fs = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    Ok((ls, fs))
}

#[allow(clippy::too_many_arguments)]
async fn resource_request(
    shared: &Arc<Shared>,
    method: &Method,
    t: Target,
    query: &HashMap<String, String>,
    watch: bool,
    content_type: &str,
    body: &[u8],
    user: &str,
) -> Result<Response<Body>, ApiError> {
    let def = t.def.clone().ok_or_else(not_found_path)?;
    let verb = verb_for(method, &t, watch);
    if verb.is_empty() || (!def.verbs.iter().any(|v| v == verb) && t.sub.is_empty()) {
        return Err(ApiError::method_not_allowed());
    }
    if shared.denied(verb, &def.plural, &t.sub) {
        return Err(forbidden(&def, &t, verb, USER));
    }
    let granted = super::rbac::allowed(
        &shared.store.lock(),
        user,
        verb,
        &def.group,
        &def.plural,
        &t.sub,
        &t.namespace,
        &t.name,
    );
    if !granted {
        return Err(forbidden(&def, &t, verb, user));
    }
    let (ls, fs) = selectors(query)?;
    // dryRun comes as a query parameter, or in the DeleteOptions body for deletes.
    let dry = query.get("dryRun").is_some_and(|v| v == "All")
        || (matches!(verb, "delete" | "deletecollection")
            && serde_json::from_slice::<Value>(body).is_ok_and(|o| {
                o.get("dryRun")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|x| x == "All"))
            }));
    check_content_type(content_type, verb)?;
    match verb {
        "list" => {
            let store = shared.store.lock();
            let items: Vec<Value> = store
                .iter(&def.plural)
                .filter(|o| t.namespace.is_empty() || namespace_of(o) == t.namespace)
                .filter(|o| ls.matches(o) && fs.matches(o))
                .cloned()
                .collect();
            Ok(json_response(
                200,
                &json!({
                    "kind": format!("{}List", def.kind),
                    "apiVersion": def.api_version(),
                    "metadata": {"resourceVersion": store.resource_version().to_string()},
                    "items": items,
                }),
            ))
        }
        "watch" => start_watch(shared, def, t, query, ls, fs),
        "get"
            if t.sub == "log"
                && matches!(query.get("follow").map(String::as_str), Some("true" | "1"))
                && shared
                    .store
                    .lock()
                    .get("pods", &t.namespace, &t.name)
                    .is_some() =>
        {
            super::incluster::follow_log(shared, &t.namespace, &t.name, query)
        }
        "get" if t.sub == "log" => pod_log(shared, &def, &t, query),
        "get" if t.sub == "proxy" => {
            super::network::pod_proxy(shared, &t.namespace, &t.name, &t.proxy_path, query).await
        }
        "get" => {
            let store = shared.store.lock();
            store
                .get(&def.plural, &t.namespace, &t.name)
                .map(|o| json_response(200, o))
                .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, &t.name))
        }
        "create" => {
            let obj = parse_body(body)?;
            if def.plural == "selfsubjectaccessreviews" {
                return Ok(json_response(201, &access_review(shared, user, obj)));
            }
            create(shared, &def, &t, obj, dry)
        }
        "update" => {
            let obj = parse_body(body)?;
            update(shared, &def, &t, obj, dry)
        }
        "patch" => patch(shared, &def, &t, content_type, body, dry),
        "delete" => delete(shared, &def, &t, dry),
        "deletecollection" => {
            let victims: Vec<Value> = {
                let store = shared.store.lock();
                store
                    .iter(&def.plural)
                    .filter(|o| t.namespace.is_empty() || namespace_of(o) == t.namespace)
                    .filter(|o| ls.matches(o) && fs.matches(o))
                    .cloned()
                    .collect()
            };
            let mut items = Vec::new();
            for v in victims {
                let t2 = Target {
                    def: Some(def.clone()),
                    namespace: namespace_of(&v).to_string(),
                    name: name_of(&v).to_string(),
                    sub: String::new(),
                    proxy_path: String::new(),
                };
                if let Ok(resp_obj) = delete_object(shared, &def, &t2, dry) {
                    items.push(resp_obj);
                }
            }
            let rv = shared.store.lock().resource_version();
            Ok(json_response(
                200,
                &json!({
                    "kind": format!("{}List", def.kind),
                    "apiVersion": def.api_version(),
                    "metadata": {"resourceVersion": rv.to_string()},
                    "items": items,
                }),
            ))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn check_namespace(
    store: &super::store::Store,
    def: &ResourceDef,
    ns: &str,
    name: &str,
) -> Result<(), ApiError> {
    let Some(nsobj) = store.get("namespaces", "", ns) else {
        return Err(ApiError::not_found("", "namespaces", ns));
    };
    if str_at(nsobj, "status.phase") == "Terminating" {
        return Err(ApiError::forbidden(
            &def.group,
            &def.plural,
            name,
            format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                qualified(&def.group, &def.plural)
            ),
        ));
    }
    Ok(())
}

/// `core.MaxSecretSize`: the most a ConfigMap's or Secret's data may hold.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// The API server's size validation of ConfigMaps and Secrets (kubernetes
/// `pkg/apis/core/validation`: `ValidateConfigMap` adds up the values of `data` and the
/// decoded bytes of `binaryData`, `ValidateSecret` those of `data`, and over
/// `core.MaxSecretSize` = 1 MiB the object is invalid: 422 with a `TooLong` cause for the
/// whole object).
fn validate_size(def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    if !matches!(def.plural.as_str(), "configmaps" | "secrets") {
        return Ok(());
    }
    let sum = |key: &str, decode: bool| -> usize {
        obj.get(key)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(_, v)| {
                let s = v.as_str().unwrap_or_default();
                if decode {
                    // base64: 3 bytes per 4 characters, less the padding.
                    s.len() / 4 * 3 - s.chars().rev().take_while(|c| *c == '=').count()
                } else {
                    s.len()
                }
            })
            .sum()
    };
    let secret = def.plural == "secrets";
    let total = if secret {
        sum("data", true)
    } else {
        sum("data", false) + sum("binaryData", true)
    };
    if total <= MAX_DATA_BYTES {
        return Ok(());
    }
    let field = if secret { "data" } else { "[]" };
    let mut e = ApiError::invalid(
        &def.group,
        &def.kind,
        name_of(obj),
        &format!("{field}: Too long: may not be more than {MAX_DATA_BYTES} bytes"),
    );
    e.details["causes"] = json!([{
        "reason": "FieldValueTooLong",
        "message": format!("Too long: may not be more than {MAX_DATA_BYTES} bytes"),
        "field": field,
    }]);
    Err(e)
}

fn create(
    shared: &Arc<Shared>,
    def: &ResourceDef,
    t: &Target,
    mut obj: Value,
    dry: bool,
) -> Result<Response<Body>, ApiError> {
    if !t.name.is_empty() {
        return Err(ApiError::method_not_allowed());
    }
    if def.namespaced {
        let body_ns = namespace_of(&obj);
        if !body_ns.is_empty() && body_ns != t.namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        obj_mut(&mut obj, "metadata").insert("namespace".into(), t.namespace.clone().into());
    }
    let mut store = shared.store.lock();
    if def.namespaced {
        check_namespace(&store, def, &t.namespace, name_of(&obj))?;
    }
    if def.plural == "pods"
        && let Some(reason) = &shared.spec.pod_admission
    {
        let name = name_of(&obj).to_string();
        return Err(ApiError::forbidden(
            "",
            "pods",
            &name,
            format!("pods \"{name}\" is forbidden: {reason}"),
        ));
    }
    validate_size(def, &obj)?;
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("uid");
    }
    if def.has_status()
        && let Some(o) = obj.as_object_mut()
    {
        // Like the real API server: status is reset on create.
        o.remove("status");
    }
    let created = store.create_opts(&def.plural, obj, dry)?;
    Ok(json_response(201, &created))
}

fn target_body_check(def: &ResourceDef, t: &Target, obj: &mut Value) -> Result<(), ApiError> {
    let body_name = name_of(obj);
    if !body_name.is_empty() && body_name != t.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            t.name
        )));
    }
    let meta = obj_mut(obj, "metadata");
    meta.insert("name".into(), t.name.clone().into());
    if def.namespaced {
        meta.insert("namespace".into(), t.namespace.clone().into());
    }
    Ok(())
}

/// Combine a new body with the current object according to the subresource rules:
/// `status` only changes status; the main resource keeps the current status.
fn apply_subresource(def: &ResourceDef, t: &Target, current: &Value, mut new: Value) -> Value {
    if t.sub == "status" {
        let mut out = current.clone();
        out["status"] = new.get("status").cloned().unwrap_or(Value::Null);
        if let Some(rv) = new.get("metadata").and_then(|m| m.get("resourceVersion")) {
            out["metadata"]["resourceVersion"] = rv.clone();
        }
        out
    } else {
        if def.has_status()
            && let Some(s) = current.get("status")
        {
            new["status"] = s.clone();
        }
        new
    }
}

fn update(
    shared: &Arc<Shared>,
    def: &ResourceDef,
    t: &Target,
    mut obj: Value,
    dry: bool,
) -> Result<Response<Body>, ApiError> {
    target_body_check(def, t, &mut obj)?;
    let mut store = shared.store.lock();
    let current = store
        .get(&def.plural, &t.namespace, &t.name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, &t.name))?;
    let obj = apply_subresource(def, t, &current, obj);
    validate_size(def, &obj)?;
    let updated = store.update_opts(&def.plural, obj, true, dry)?;
    Ok(json_response(200, &updated))
}

fn patch(
    shared: &Arc<Shared>,
    def: &ResourceDef,
    t: &Target,
    content_type: &str,
    body: &[u8],
    dry: bool,
) -> Result<Response<Body>, ApiError> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    let apply = ct == "application/apply-patch+yaml";
    let json_patch = ct == "application/json-patch+json";
    if !matches!(
        ct,
        "application/merge-patch+json" | "application/strategic-merge-patch+json"
    ) && !apply
        && !json_patch
    {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {ct:?})"
            ),
        ));
    }
    let patch: Value = if json_patch {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?
    } else {
        parse_body(body)?
    };
    let mut store = shared.store.lock();
    let Some(current) = store.get(&def.plural, &t.namespace, &t.name).cloned() else {
        if apply && t.sub.is_empty() {
            let mut obj = patch;
            target_body_check(def, t, &mut obj)?;
            if def.namespaced {
                check_namespace(&store, def, &t.namespace, &t.name)?;
            }
            let created = store.create_opts(&def.plural, obj, dry)?;
            return Ok(json_response(201, &created));
        }
        return Err(ApiError::not_found(&def.group, &def.plural, &t.name));
    };
    let mut merged = current.clone();
    if json_patch {
        super::util::json_patch(&mut merged, &patch).map_err(|e| {
            ApiError::invalid(&def.group, &def.kind, &t.name, &format!("<patch>: {e}"))
        })?;
    } else {
        merge_patch(&mut merged, &patch);
    }
    target_body_check(def, t, &mut merged)?;
    let obj = apply_subresource(def, t, &current, merged);
    validate_size(def, &obj)?;
    let updated = store.update_opts(&def.plural, obj, true, dry)?;
    Ok(json_response(200, &updated))
}

fn delete(
    shared: &Arc<Shared>,
    def: &ResourceDef,
    t: &Target,
    dry: bool,
) -> Result<Response<Body>, ApiError> {
    if !t.sub.is_empty() {
        return Err(ApiError::method_not_allowed());
    }
    delete_object(shared, def, t, dry).map(|o| json_response(200, &o))
}

fn delete_object(
    shared: &Arc<Shared>,
    def: &ResourceDef,
    t: &Target,
    dry: bool,
) -> Result<Value, ApiError> {
    let mut store = shared.store.lock();
    if dry {
        return store
            .get(&def.plural, &t.namespace, &t.name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, &t.name));
    }
    if def.plural == "namespaces" {
        let Some(ns) = store.get("namespaces", "", &t.name).cloned() else {
            return Err(ApiError::not_found("", "namespaces", &t.name));
        };
        if str_at(&ns, "status.phase") == "Terminating" {
            // The namespace registry (kubernetes pkg/registry/core/namespace/storage) answers
            // a delete of a namespace whose finalizers still run with 409 Conflict.
            let mut e = ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on namespaces \"{}\": The system is ensuring \
                     all content is removed from this namespace.  Upon completion, this \
                     namespace will automatically be purged by the system.",
                    t.name
                ),
            );
            e.details = json!({"name": t.name, "kind": "namespaces"});
            return Err(e);
        }
        let wait = shared.spec.namespace_termination;
        let name = t.name.clone();
        let terminating = store
            .modify("namespaces", "", &name, |o| {
                obj_mut(o, "metadata").insert("deletionTimestamp".into(), now_rfc3339().into());
                obj_mut(o, "status").insert("phase".into(), "Terminating".into());
            })
            .unwrap_or(ns);
        if wait.is_zero() {
            store.purge_namespace(&name);
        } else {
            let st = shared.store.clone();
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                st.lock().purge_namespace(&name);
            });
        }
        return Ok(terminating);
    }
    store
        .delete(&def.plural, &t.namespace, &t.name)
        .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, &t.name))
}

fn access_review(shared: &Shared, user: &str, mut obj: Value) -> Value {
    let attrs = obj
        .get("spec")
        .and_then(|s| s.get("resourceAttributes"))
        .cloned();
    let allowed = match attrs {
        Some(a) => {
            !shared.denied(
                str_at(&a, "verb"),
                str_at(&a, "resource"),
                str_at(&a, "subresource"),
            ) && super::rbac::allowed(
                &shared.store.lock(),
                user,
                str_at(&a, "verb"),
                str_at(&a, "group"),
                str_at(&a, "resource"),
                str_at(&a, "subresource"),
                str_at(&a, "namespace"),
                str_at(&a, "name"),
            )
        }
        None => true,
    };
    obj["kind"] = "SelfSubjectAccessReview".into();
    obj["apiVersion"] = "authorization.k8s.io/v1".into();
    obj_mut(&mut obj, "metadata").insert("creationTimestamp".into(), Value::Null);
    let mut status = json!({"allowed": allowed});
    if allowed {
        status["reason"] = "allowed by simulated RBAC".into();
    }
    obj["status"] = status;
    obj
}

fn pod_log(
    shared: &Shared,
    def: &ResourceDef,
    t: &Target,
    query: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let options = super::incluster::LogOptions::parse(query)?;
    let store = shared.store.lock();
    let pod = store
        .get("pods", &t.namespace, &t.name)
        .ok_or_else(|| ApiError::not_found(&def.group, "pods", &t.name))?;
    if store.pod_log(&t.namespace, &t.name).is_some() {
        let lines = store.pod_log_lines(&t.namespace, &t.name);
        return Ok(text_response(200, options.render(&lines)));
    }
    let statuses = pod
        .get("status")
        .and_then(|s| s.get("containerStatuses"))
        .and_then(Value::as_array);
    let started = statuses.is_some_and(|cs| {
        cs.iter()
            .any(|c| c.get("state").and_then(|s| s.get("waiting")).is_none())
    });
    if started {
        return Ok(text_response(200, String::new()));
    }
    let container = pod
        .get("spec")
        .and_then(|s| s.get("containers"))
        .and_then(|c| c.get(0))
        .map(name_of_container)
        .unwrap_or_default();
    let reason = statuses
        .and_then(|cs| cs.first())
        .map(|c| str_at(c, "state.waiting.reason"))
        .filter(|r| !r.is_empty())
        .unwrap_or("ContainerCreating");
    let why = if reason == "ContainerCreating" {
        reason.to_string()
    } else {
        "trying and failing to pull image".to_string()
    };
    Err(ApiError::bad_request(format!(
        "container \"{container}\" in pod \"{}\" is waiting to start: {why}",
        t.name
    )))
}

fn name_of_container(c: &Value) -> String {
    str_at(c, "name").to_string()
}

struct WatchFilter {
    resource: String,
    namespace: String,
    ls: LabelSelector,
    fs: FieldSelector,
}

impl WatchFilter {
    fn matches(&self, o: &Value) -> bool {
        (self.namespace.is_empty() || namespace_of(o) == self.namespace)
            && self.ls.matches(o)
            && self.fs.matches(o)
    }

    /// The watch event type to send for a store event, if any.
    fn translate(&self, ev: &StoreEvent) -> Option<&'static str> {
        if ev.resource != self.resource {
            return None;
        }
        let new = self.matches(&ev.object);
        match ev.etype {
            EventType::Added => new.then_some("ADDED"),
            EventType::Deleted => new.then_some("DELETED"),
            EventType::Modified => {
                let old = ev.old.as_ref().is_some_and(|o| self.matches(o));
                match (old, new) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        }
    }
}

fn watch_line(etype: &str, obj: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": etype, "object": obj})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark(def: &ResourceDef, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    watch_line(
        "BOOKMARK",
        &json!({"kind": def.kind, "apiVersion": def.api_version(), "metadata": meta}),
    )
}

fn start_watch(
    shared: &Arc<Shared>,
    def: ResourceDef,
    t: Target,
    query: &HashMap<String, String>,
    ls: LabelSelector,
    fs: FieldSelector,
) -> Result<Response<Body>, ApiError> {
    let filter = WatchFilter {
        resource: def.plural.clone(),
        namespace: t.namespace.clone(),
        ls,
        fs,
    };
    let rv_param = query.get("resourceVersion").cloned().unwrap_or_default();
    let send_initial = query.get("sendInitialEvents").is_some_and(|v| v == "true");
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), |s| {
            Duration::from_secs(s.min(86_400))
        });

    let mut initial: Vec<Bytes> = Vec::new();
    let rx: broadcast::Receiver<Arc<StoreEvent>>;
    {
        let store = shared.store.lock();
        let from_scratch = rv_param.is_empty() || rv_param == "0" || send_initial;
        if from_scratch {
            for o in store.iter(&def.plural).filter(|o| filter.matches(o)) {
                initial.push(watch_line("ADDED", o));
            }
            if send_initial {
                initial.push(bookmark(&def, store.resource_version(), true));
            }
            rx = store.subscribe();
        } else {
            let rv: u64 = rv_param.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resource version: {rv_param}"))
            })?;
            match store.subscribe_from(rv) {
                Ok((replay, r)) => {
                    for ev in replay {
                        if let Some(et) = filter.translate(&ev) {
                            initial.push(watch_line(et, &ev.object));
                        }
                    }
                    rx = r;
                }
                Err(_) => {
                    let gone = ApiError::new(
                        410,
                        "Expired",
                        format!(
                            "too old resource version: {rv} ({})",
                            store.resource_version()
                        ),
                    );
                    initial.push(watch_line("ERROR", &gone.to_json()));
                    let body = futures::stream::iter(
                        initial
                            .into_iter()
                            .map(|b| Ok::<_, Infallible>(Frame::data(b))),
                    );
                    return Ok(stream_response(StreamBody::new(body).boxed()));
                }
            }
        }
    }

    let (tx, out_rx) = mpsc::channel::<Bytes>(256);
    let store = shared.store.clone();
    tokio::spawn(watch_task(
        def, filter, initial, rx, tx, timeout, bookmarks, store,
    ));
    let stream = futures::stream::unfold(out_rx, |mut r| async move {
        r.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), r))
    });
    Ok(stream_response(StreamBody::new(stream).boxed()))
}

fn stream_response(body: Body) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(body)
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

#[allow(clippy::too_many_arguments)]
async fn watch_task(
    def: ResourceDef,
    filter: WatchFilter,
    initial: Vec<Bytes>,
    mut rx: broadcast::Receiver<Arc<StoreEvent>>,
    tx: mpsc::Sender<Bytes>,
    timeout: Duration,
    bookmarks: bool,
    store: SharedStore,
) {
    for line in initial {
        if tx.send(line).await.is_err() {
            return;
        }
    }
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = tx.closed() => break,
            _ = ticker.tick(), if bookmarks => {
                let rv = store.lock().resource_version();
                if tx.send(bookmark(&def, rv, false)).await.is_err() {
                    break;
                }
            }
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    if let Some(et) = filter.translate(&ev)
                        && tx.send(watch_line(et, &ev.object)).await.is_err()
                    {
                        break;
                    }
                }
                // Falling behind ends the watch; clients re-list, like after a real 410.
                Err(_) => break,
            }
        }
    }
}
