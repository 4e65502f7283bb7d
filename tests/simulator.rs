//! End-to-end tests of the simulator with a real kube-rs client.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::watcher;
use kube::{Client, Config};
use serde_json::json;
mod support;
use std::path::Path;
use std::time::Duration;
use support::{ApiGroupSpec, ClusterSpec, Fault, NodeSpec, ProgramResult, SimCluster};

const WAIT: Duration = Duration::from_secs(10);

async fn client_for(path: &Path) -> Result<Client, kube::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = kube::config::Kubeconfig::read_from(path).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kubeconfig -> config");
    Client::try_from(config)
}

async fn client(sim: &SimCluster) -> Client {
    client_for(&sim.kubeconfig_path()).await.expect("client")
}

fn api_code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn create_ns(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

fn pod(name: &str, image: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "main", "image": image}]},
    }))
    .unwrap()
}

fn anti_affinity_deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "web", "image": "nginx:1.27"}],
                    "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": {"app": name}}, "topologyKey": "kubernetes.io/hostname"}
                    ]}},
                },
            },
        },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_and_discovery() {
    let sim = SimCluster::start(ClusterSpec {
        extra_api_groups: vec![
            ApiGroupSpec::new("policy.networking.k8s.io", "v1alpha1").resource(
                "adminnetworkpolicies",
                "AdminNetworkPolicy",
                false,
            ),
        ],
        ..ClusterSpec::default()
    });
    let client = client(&sim).await;
    let v = client.apiserver_version().await.expect("version");
    assert_eq!(v.git_version, "v1.34.2");
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "34"));
    sim.set_git_version("v1.33.7");
    let v = client.apiserver_version().await.expect("version");
    assert_eq!(v.minor, "33");

    let groups = client.list_api_groups().await.expect("groups");
    assert!(groups.groups.iter().any(|g| g.name == "apps"));
    let core = client.list_core_api_resources("v1").await.expect("core");
    assert!(
        core.resources
            .iter()
            .any(|r| r.name == "pods" && r.namespaced && r.kind == "Pod")
    );
    let apps = client
        .list_api_group_resources("apps/v1")
        .await
        .expect("apps");
    assert!(apps.resources.iter().any(|r| r.name == "deployments"));
    let anp = client
        .list_api_group_resources("policy.networking.k8s.io/v1alpha1")
        .await
        .expect("extra group");
    assert_eq!(anp.resources[0].name, "adminnetworkpolicies");
    assert!(
        groups
            .groups
            .iter()
            .any(|g| g.name == "policy.networking.k8s.io")
    );
    let nodes = sim.objects("nodes");
    assert_eq!(nodes.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_crud_selectors_and_errors() {
    let sim = SimCluster::start(ClusterSpec::default());
    let client = client(&sim).await;
    let api = Api::<Namespace>::all(client.clone());
    for (name, team) in [("a1", "x"), ("a2", "x"), ("b1", "y")] {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"team": team}}}))
                .unwrap();
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create");
    }
    let list = api
        .list(&ListParams::default().labels("team=x"))
        .await
        .expect("list");
    let mut names: Vec<String> = list
        .items
        .iter()
        .map(|n| n.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a1", "a2"]);
    let list = api
        .list(&ListParams::default().labels("team in (x,y),team!=x"))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 1);
    let got = api.get("a1").await.expect("get");
    assert_eq!(got.status.unwrap().phase.as_deref(), Some("Active"));

    // 409
    let dup: Namespace = serde_json::from_value(json!({"metadata": {"name": "a1"}})).unwrap();
    let err = api.create(&PostParams::default(), &dup).await.unwrap_err();
    assert_eq!(api_code(&err), 409);
    // 404
    let err = api.get("nope").await.unwrap_err();
    assert_eq!(api_code(&err), 404);
    let kube::Error::Api(s) = &err else {
        unreachable!()
    };
    assert_eq!(s.message, "namespaces \"nope\" not found");
    // 409 Conflict on stale update
    let mut stale = api.get("a2").await.unwrap();
    api.patch(
        "a2",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})),
    )
    .await
    .expect("patch");
    stale
        .metadata
        .labels
        .get_or_insert_default()
        .insert("y".into(), "2".into());
    let err = api
        .replace("a2", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 409);
    // 404 when creating into a missing namespace
    let err = Api::<ConfigMap>::namespaced(client.clone(), "missing")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 404);

    // delete (namespace_termination = 0: gone right away)
    api.delete("b1", &DeleteParams::default())
        .await
        .expect("delete");
    assert_eq!(api_code(&api.get("b1").await.unwrap_err()), 404);
    // deletecollection with a label selector
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("team=x"),
    )
    .await
    .expect("deletecollection");
    assert!(
        api.list(&ListParams::default().labels("team"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_rbac_errors() {
    let sim = SimCluster::start(ClusterSpec {
        deny: vec![("create".into(), "namespaces".into())],
        ..ClusterSpec::default()
    });
    let bad = sim.write_kubeconfig("bad-token", "wrong", None);
    let err = client_for(&bad)
        .await
        .unwrap()
        .apiserver_version()
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 401);

    let foreign = sim.write_kubeconfig(
        "foreign-ca",
        &sim.token(),
        Some(&SimCluster::foreign_ca_pem()),
    );
    let res = client_for(&foreign)
        .await
        .unwrap()
        .apiserver_version()
        .await;
    assert!(
        !matches!(res, Ok(_) | Err(kube::Error::Api(_))),
        "TLS must fail: {res:?}"
    );

    let client = client(&sim).await;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "foo"}})).unwrap();
    let err = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 403);
    let kube::Error::Api(s) = &err else {
        unreachable!()
    };
    assert_eq!(
        s.message,
        "namespaces is forbidden: User \"sim-user\" cannot create resource \"namespaces\" in API group \"\" at the cluster scope"
    );
    assert_eq!(s.reason, "Forbidden");

    let ssar = |verb: &str, resource: &str| -> SelfSubjectAccessReview {
        serde_json::from_value(
            json!({"spec": {"resourceAttributes": {"verb": verb, "resource": resource}}}),
        )
        .unwrap()
    };
    let api = Api::<SelfSubjectAccessReview>::all(client.clone());
    let r = api
        .create(&PostParams::default(), &ssar("create", "namespaces"))
        .await
        .unwrap();
    assert!(!r.status.unwrap().allowed);
    let r = api
        .create(&PostParams::default(), &ssar("list", "namespaces"))
        .await
        .unwrap();
    assert!(r.status.unwrap().allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_added_modified_deleted() {
    let sim = SimCluster::start(ClusterSpec::default());
    let client = client(&sim).await;
    let api = Api::<ConfigMap>::namespaced(client.clone(), "default");
    let cfg = watcher::Config::default().labels("watched=yes");
    let mut stream = watcher(api.clone(), cfg).boxed();
    // Initial list completes.
    loop {
        match tokio::time::timeout(WAIT, stream.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(watcher::Event::InitDone) => break,
            Some(_) => {}
            None => panic!("stream ended"),
        }
    }
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "w", "labels": {"watched": "yes"}}, "data": {"k": "1"}}),
    )
    .unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    // A change made through with_store is seen by watchers, too.
    sim.with_store(|s| {
        s.modify("configmaps", "default", "w", |o| {
            o["data"]["k"] = "3".into()
        })
    })
    .expect("modify");
    api.delete("w", &DeleteParams::default()).await.unwrap();

    let mut seen = Vec::new();
    while seen.len() < 4 {
        let ev = tokio::time::timeout(WAIT, stream.try_next())
            .await
            .expect("timely event")
            .expect("ok")
            .expect("some");
        match ev {
            watcher::Event::Apply(cm) => seen.push(format!("apply:{}", cm.data.unwrap()["k"])),
            watcher::Event::Delete(_) => seen.push("delete".into()),
            _ => {}
        }
    }
    assert_eq!(seen, ["apply:1", "apply:2", "apply:3", "delete"]);
    let watches = sim
        .requests()
        .iter()
        .filter(|r| r.verb == "watch" && r.resource == "configmaps")
        .count();
    assert!(watches >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_reaches_running() {
    let sim = SimCluster::start(ClusterSpec::default());
    let client = client(&sim).await;
    let api = Api::<Pod>::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &pod("p1", "nginx:1.27"))
        .await
        .unwrap();
    let p = tokio::time::timeout(
        WAIT,
        await_condition(api.clone(), "p1", conditions::is_pod_running()),
    )
    .await
    .expect("in time")
    .expect("ok")
    .expect("exists");
    let status = p.status.unwrap();
    assert!(status.pod_ip.unwrap().starts_with("10.244."));
    let node = p.spec.unwrap().node_name.unwrap();
    assert!(node.starts_with("worker-"), "{node}");
    let reasons: Vec<String> = sim
        .events_for("default", "p1")
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or("").to_string())
        .collect();
    for r in ["Scheduled", "Pulled", "Created", "Started"] {
        assert!(reasons.iter().any(|x| x == r), "{reasons:?}");
    }
    // No polling: the waiter watched instead of GETting in a loop.
    let gets = sim
        .requests()
        .iter()
        .filter(|r| r.verb == "get" && r.resource == "pods")
        .count();
    assert!(gets <= 1, "{gets} GETs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_with_anti_affinity_uses_distinct_workers() {
    let sim = SimCluster::start(ClusterSpec::default());
    let client = client(&sim).await;
    let api = Api::<Deployment>::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &anti_affinity_deployment("web", 3))
        .await
        .unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(api.clone(), "web", conditions::is_deployment_completed()),
    )
    .await
    .expect("in time")
    .expect("ok");
    let d = api.get("web").await.unwrap();
    assert_eq!(d.status.unwrap().ready_replicas, Some(3));
    let pods = Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    let mut nodes: Vec<String> = pods
        .items
        .iter()
        .map(|p| p.spec.clone().unwrap().node_name.unwrap())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["worker-1", "worker-2", "worker-3"]);
    // Deleting the deployment deletes its pods.
    api.delete("web", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sim.objects("pods").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordoned_worker_leaves_one_pod_pending() {
    let mut spec = ClusterSpec::default();
    spec.nodes.retain(|n| n.name != "worker-3");
    spec.nodes
        .push(NodeSpec::worker("worker-3").zone("zone-3").cordoned());
    let sim = SimCluster::start(spec);
    let client = client(&sim).await;
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &anti_affinity_deployment("web", 3))
        .await
        .unwrap();
    let events = Api::<Event>::namespaced(client.clone(), "default");
    let deadline = tokio::time::Instant::now() + WAIT;
    let ev = loop {
        let list = events
            .list(&ListParams::default().fields("reason=FailedScheduling"))
            .await
            .unwrap();
        if let Some(e) = list.items.into_iter().next() {
            break e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no FailedScheduling event"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let msg = ev.message.unwrap();
    assert_eq!(
        msg,
        "0/6 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't match pod anti-affinity rules, \
         3 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. \
         preemption: 0/6 nodes are available: 6 Preemption is not helpful for scheduling."
    );
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(ev.involved_object.kind.as_deref(), Some("Pod"));
    let pending: Vec<_> = sim
        .objects("pods")
        .into_iter()
        .filter(|p| p["spec"]["nodeName"].is_null())
        .collect();
    assert_eq!(pending.len(), 1);
    let cond = &pending[0]["status"]["conditions"][0];
    assert_eq!(cond["reason"], "Unschedulable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpullable_image_reports_errimagepull() {
    let sim = SimCluster::start(ClusterSpec {
        unpullable_images: vec!["registry.invalid/nope:1".into()],
        ..ClusterSpec::default()
    });
    let client = client(&sim).await;
    let api = Api::<Pod>::namespaced(client.clone(), "default");
    api.create(
        &PostParams::default(),
        &pod("bad", "registry.invalid/nope:1"),
    )
    .await
    .unwrap();
    let waiting_reason = |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone())
    };
    tokio::time::timeout(
        WAIT,
        await_condition(api.clone(), "bad", move |p: Option<&Pod>| {
            waiting_reason(p).as_deref() == Some("ImagePullBackOff")
        }),
    )
    .await
    .expect("in time")
    .expect("ok");
    let p = api.get("bad").await.unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    let evs = sim.events_for("default", "bad");
    assert!(evs.iter().any(|e| {
        e["reason"] == "Failed"
            && e["type"] == "Warning"
            && e["message"]
                .as_str()
                .unwrap()
                .starts_with("Failed to pull image \"registry.invalid/nope:1\": ")
    }));
    assert!(evs.iter().any(|e| e["message"] == "Error: ErrImagePull"));
    let err = api.logs("bad", &LogParams::default()).await.unwrap_err();
    assert_eq!(api_code(&err), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_removes_contents() {
    let sim = SimCluster::start(ClusterSpec {
        namespace_termination: Duration::from_millis(500),
        ..ClusterSpec::default()
    });
    let client = client(&sim).await;
    create_ns(&client, "doomed").await;
    let pods = Api::<Pod>::namespaced(client.clone(), "doomed");
    pods.create(&PostParams::default(), &pod("p", "nginx"))
        .await
        .unwrap();
    let nsapi = Api::<Namespace>::all(client.clone());
    let uid = nsapi.get("doomed").await.unwrap().metadata.uid.unwrap();
    nsapi
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let ns = nsapi.get("doomed").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    // Deleting it again while it terminates: 409, like the namespace registry.
    let err = nsapi
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 409);
    assert!(
        err.to_string()
            .contains("The system is ensuring all content is removed")
    );
    let err = pods
        .create(&PostParams::default(), &pod("q", "nginx"))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 403);
    tokio::time::timeout(
        WAIT,
        await_condition(nsapi.clone(), "doomed", conditions::is_deleted(&uid)),
    )
    .await
    .expect("in time")
    .expect("ok");
    assert!(
        sim.objects("pods")
            .iter()
            .all(|p| p["metadata"]["namespace"] != "doomed")
    );
    // A namespace added behind the API's back is visible.
    sim.with_store(|s| {
        s.create(
            "namespaces",
            json!({"metadata": {"name": "leftover", "labels": {"scs": "test"}}}),
        )
    })
    .unwrap();
    assert!(nsapi.get("leftover").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_status_and_hang() {
    let sim = SimCluster::start(ClusterSpec {
        faults: vec![Fault::Status {
            path_prefix: "/version".into(),
            code: 500,
        }],
        ..ClusterSpec::default()
    });
    let client = client(&sim).await;
    let err = client.apiserver_version().await.unwrap_err();
    assert_eq!(api_code(&err), 500);
    sim.set_faults(vec![Fault::Hang {
        path_prefix: "/api/v1/namespaces".into(),
    }]);
    let api = Api::<Namespace>::all(client.clone());
    let res =
        tokio::time::timeout(Duration::from_millis(500), api.list(&ListParams::default())).await;
    assert!(res.is_err(), "must hang");
    assert!(client.apiserver_version().await.is_ok());
    sim.set_faults(vec![]);
    assert!(api.list(&ListParams::default()).await.is_ok());
    assert!(
        sim.requests()
            .iter()
            .any(|r| r.status == 0 && r.path == "/api/v1/namespaces")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_drive_job_completion_and_logs() {
    let sim = SimCluster::start(ClusterSpec::default());
    sim.register_program("busybox", |ctx| match ctx.shell_script().as_deref() {
        Some("echo hello") => ProgramResult::ok("hello\n"),
        other => ProgramResult::fail(1, format!("unknown script {other:?}\n")),
    });
    let client = client(&sim).await;
    let jobs = Api::<Job>::namespaced(client.clone(), "default");
    for (name, script) in [("ok", "echo hello"), ("bad", "exit 1")] {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "c", "image": "busybox:1.36", "command": ["sh", "-c", script]}
            ]}}},
        }))
        .unwrap();
        jobs.create(&PostParams::default(), &job).await.unwrap();
    }
    tokio::time::timeout(
        WAIT,
        await_condition(jobs.clone(), "ok", conditions::is_job_completed()),
    )
    .await
    .expect("in time")
    .expect("ok");
    let failed = |j: Option<&Job>| {
        j.and_then(|j| j.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Failed" && c.status == "True"))
    };
    tokio::time::timeout(WAIT, await_condition(jobs.clone(), "bad", failed))
        .await
        .expect("in time")
        .expect("ok");
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    let list = pods
        .list(&ListParams::default().labels("job-name=ok"))
        .await
        .unwrap();
    let p = &list.items[0];
    assert_eq!(
        p.status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
    let log = pods
        .logs(p.metadata.name.as_deref().unwrap(), &LogParams::default())
        .await
        .unwrap();
    assert_eq!(log, "hello\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_list_watcher_and_sendinitialevents() {
    let sim = SimCluster::start(ClusterSpec::default());
    let client = client(&sim).await;
    let api = Api::<Namespace>::all(client.clone());
    let mut stream = watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut initial = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, stream.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(watcher::Event::InitApply(ns)) => initial.push(ns.metadata.name.unwrap()),
            Some(watcher::Event::InitDone) => break,
            Some(_) => {}
            None => panic!("stream ended"),
        }
    }
    assert!(initial.contains(&"kube-system".to_string()), "{initial:?}");
    create_ns(&client, "later").await;
    loop {
        match tokio::time::timeout(WAIT, stream.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(watcher::Event::Apply(ns)) if ns.metadata.name.as_deref() == Some("later") => {
                break;
            }
            Some(_) => {}
            None => panic!("stream ended"),
        }
    }
    assert!(
        sim.requests()
            .iter()
            .any(|r| r.verb == "watch" && r.query.contains("sendInitialEvents=true"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_json_patch_and_apply() {
    let sim = SimCluster::start(ClusterSpec::default());
    let client = client(&sim).await;
    let api = Api::<ConfigMap>::namespaced(client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "dry"}, "data": {"a": "1"}})).unwrap();
    let created = api
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &cm,
        )
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert_eq!(api_code(&api.get("dry").await.unwrap_err()), 404);
    let nsapi = Api::<Namespace>::all(client.clone());
    nsapi
        .delete(
            "default",
            &DeleteParams {
                dry_run: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(nsapi.get("default").await.is_ok());

    // Server-side apply creates, then patches.
    let pp = PatchParams::apply("sim-test");
    api.patch("applied", &pp, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}})))
        .await
        .unwrap();
    api.patch("applied", &pp, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"b": "2"}})))
        .await
        .unwrap();
    let cm = api.get("applied").await.unwrap();
    let data = cm.data.unwrap();
    assert_eq!(data.get("a").map(String::as_str), Some("1"));
    assert_eq!(data.get("b").map(String::as_str), Some("2"));
    // Status subresource only changes status.
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("s", "nginx"))
        .await
        .unwrap();
    let p = pods
        .patch_status(
            "s",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"message": "hi"}, "metadata": {"labels": {"ignored": "yes"}}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(p.status.unwrap().message.as_deref(), Some("hi"));
    assert!(
        !p.metadata
            .labels
            .unwrap_or_default()
            .contains_key("ignored")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_spread_selectors_and_tolerations() {
    let sim = SimCluster::start(ClusterSpec::default());
    let client = client(&sim).await;
    let api = Api::<Deployment>::namespaced(client.clone(), "default");
    let spread: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "spread"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "spread"}}, "template": {
            "metadata": {"labels": {"app": "spread"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}], "topologySpreadConstraints": [{
                "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "spread"}}}]}}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &spread).await.unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(api.clone(), "spread", conditions::is_deployment_completed()),
    )
    .await
    .expect("in time")
    .expect("ok");
    let mut per_zone = std::collections::BTreeMap::new();
    for p in sim.objects("pods") {
        let node = p["spec"]["nodeName"].as_str().unwrap().to_string();
        let n = sim.object("nodes", "", &node).unwrap();
        let zone = n["metadata"]["labels"]["topology.kubernetes.io/zone"]
            .as_str()
            .unwrap()
            .to_string();
        *per_zone.entry(zone).or_insert(0) += 1;
    }
    assert_eq!(per_zone.len(), 3, "{per_zone:?}");
    assert!(
        per_zone.values().all(|c| (1..=2).contains(c)),
        "{per_zone:?}"
    );

    // nodeSelector + toleration lands on a control-plane node.
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    let cp: Pod = serde_json::from_value(json!({
        "metadata": {"name": "cp"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}],
            "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
            "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &cp).await.unwrap();
    let p = tokio::time::timeout(
        WAIT,
        await_condition(pods.clone(), "cp", conditions::is_pod_running()),
    )
    .await
    .expect("in time")
    .expect("ok")
    .unwrap();
    assert!(
        p.spec
            .unwrap()
            .node_name
            .unwrap()
            .starts_with("control-plane-")
    );

    // An unsatisfiable selector stays pending until a matching node appears.
    let gpu: Pod = serde_json::from_value(json!({
        "metadata": {"name": "gpu"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}], "nodeSelector": {"gpu": "yes"}},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &gpu).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        pods.get("gpu")
            .await
            .unwrap()
            .spec
            .unwrap()
            .node_name
            .is_none()
    );
    sim.with_store(|s| {
        s.modify("nodes", "", "worker-2", |n| {
            n["metadata"]["labels"]["gpu"] = "yes".into();
        })
    })
    .unwrap();
    let p = tokio::time::timeout(
        WAIT,
        await_condition(pods.clone(), "gpu", conditions::is_pod_running()),
    )
    .await
    .expect("in time")
    .expect("ok")
    .unwrap();
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("worker-2"));
}

/// The intended use: a plain `#[test]` that starts the simulator and runs a child process.
#[test]
fn plain_test_with_child_processes() {
    let sim = SimCluster::start(ClusterSpec::default());
    let ca = sim.dir().join("ca.pem");
    std::fs::write(&ca, sim.ca_pem()).unwrap();
    for http in ["--http1.1", "--http2"] {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--fail-with-body", http, "--cacert"])
            .arg(&ca)
            .args(["-H", &format!("Authorization: Bearer {}", sim.token())])
            .arg(format!(
                "{}/api/v1/namespaces?labelSelector=kubernetes.io%2Fmetadata.name%3Ddefault",
                sim.url()
            ))
            .output();
        let Ok(out) = out else {
            eprintln!("curl not available, skipping");
            return;
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(list["kind"], "NamespaceList");
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
    }
    // JSON patch (RFC 6902) over curl.
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail-with-body", "-X", "PATCH", "--cacert"])
        .arg(&ca)
        .args(["-H", &format!("Authorization: Bearer {}", sim.token())])
        .args(["-H", "Content-Type: application/json-patch+json"])
        .args([
            "--data",
            r#"[{"op":"add","path":"/metadata/labels/patched","value":"yes"}]"#,
        ])
        .arg(format!("{}/api/v1/namespaces/default", sim.url()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let ns = sim.object("namespaces", "", "default").unwrap();
    assert_eq!(ns["metadata"]["labels"]["patched"], "yes");
    // kubectl, if installed, can read through the kubeconfig.
    if let Ok(out) = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(sim.kubeconfig_path())
        .args(["get", "nodes", "-o", "name"])
        .output()
    {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn program_exit_in_deployment_is_crashloop_not_churn() {
    let sim = SimCluster::start(ClusterSpec::default());
    sim.register_program("crashy", |ctx| {
        ProgramResult::fail(2, format!("{} says bye\n", ctx.container_name))
    });
    let client = client(&sim).await;
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "crash"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "crash"}}, "template": {
            "metadata": {"labels": {"app": "crash"}},
            "spec": {"containers": [{"name": "c", "image": "crashy:1"}]}}},
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    let deadline = tokio::time::Instant::now() + WAIT;
    let name = loop {
        let list = pods
            .list(&ListParams::default().labels("app=crash"))
            .await
            .unwrap();
        let crashing = list.items.iter().find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.state
                            .as_ref()
                            .and_then(|s| s.waiting.as_ref())
                            .and_then(|w| w.reason.as_deref())
                            == Some("CrashLoopBackOff")
                    })
                })
        });
        if let Some(p) = crashing {
            assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
            break p.metadata.name.clone().unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no CrashLoopBackOff"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = sim.objects("pods");
    assert_eq!(all.len(), 1, "the pod is not replaced");
    assert_eq!(all[0]["metadata"]["name"], name.as_str());
    assert_eq!(
        pods.logs(&name, &LogParams::default()).await.unwrap(),
        "c says bye\n"
    );
    assert!(
        sim.events_for("default", &name)
            .iter()
            .any(|e| e["reason"] == "BackOff")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_runs_on_every_eligible_node() {
    let mut spec = ClusterSpec::default();
    spec.nodes.push(NodeSpec::worker("worker-4").cordoned());
    let sim = SimCluster::start(spec);
    let client = client(&sim).await;
    let api =
        Api::<k8s_openapi::api::apps::v1::DaemonSet>::namespaced(client.clone(), "kube-system");
    let ds = serde_json::from_value(json!({
        "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {
            "metadata": {"labels": {"app": "agent"}},
            "spec": {"containers": [{"name": "a", "image": "agent:1"}]}}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &ds).await.unwrap();
    let ready = |d: Option<&k8s_openapi::api::apps::v1::DaemonSet>| {
        d.and_then(|d| d.status.as_ref())
            .is_some_and(|s| s.desired_number_scheduled == 4 && s.number_ready == 4)
    };
    tokio::time::timeout(WAIT, await_condition(api.clone(), "agent", ready))
        .await
        .expect("in time")
        .expect("ok");
    let mut nodes: Vec<String> = sim
        .objects("pods")
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap().to_string())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["worker-1", "worker-2", "worker-3", "worker-4"]);
}

/// Service accounts are authorized by RBAC: a ClusterRole granting `list` on pods does not
/// grant `watch`, a RoleBinding grants only in its namespace, SelfSubjectAccessReviews
/// answer by the same rules, and the administrator's kubeconfig is not limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_accounts_are_authorized_by_rbac() {
    let sim = SimCluster::start(ClusterSpec::default());
    let token = "sa-token-for-rbac-test";
    sim.with_store(|s| {
        for obj in [
            ("namespaces", json!({"metadata": {"name": "team"}})),
            ("secrets", json!({"metadata": {"name": "t", "namespace": "team",
                "annotations": {"kubernetes.io/service-account.name": "bot"}},
                "type": "kubernetes.io/service-account-token",
                "data": {"token": support::incluster::base64(token.as_bytes())}})),
            ("clusterroles", json!({"metadata": {"name": "pod-lister"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]})),
            ("clusterrolebindings", json!({"metadata": {"name": "bot-lists"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pod-lister"},
                "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": "team"}]})),
            ("roles", json!({"metadata": {"name": "cm", "namespace": "team"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create"]}]})),
            ("rolebindings", json!({"metadata": {"name": "cm", "namespace": "team"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm"},
                "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": "team"}]})),
        ] {
            s.create(obj.0, obj.1).expect("seed");
        }
    });
    let kubeconfig = sim.write_kubeconfig("bot", token, None);
    let bot = client_for(&kubeconfig).await.expect("client");
    let pods: Api<Pod> = Api::all(bot.clone());
    pods.list(&ListParams::default())
        .await
        .expect("list is granted");
    let err = pods
        .watch(&kube::api::WatchParams::default(), "0")
        .await
        .err()
        .expect("watch is not granted");
    assert_eq!(api_code(&err), 403);
    assert!(
        err.to_string()
            .contains("User \"system:serviceaccount:team:bot\" cannot watch resource \"pods\""),
        "{err}"
    );
    let cms_team: Api<ConfigMap> = Api::namespaced(bot.clone(), "team");
    cms_team
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap(),
        )
        .await
        .expect("the Role grants create in its namespace");
    let cms_default: Api<ConfigMap> = Api::namespaced(bot.clone(), "default");
    let err = cms_default.get("kube-root-ca.crt").await.unwrap_err();
    assert_eq!(api_code(&err), 403);
    bot.apiserver_version()
        .await
        .expect("discovery is granted to everyone");
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "spec": {"resourceAttributes": {"verb": "watch", "resource": "pods"}}
    }))
    .unwrap();
    let answer = Api::<SelfSubjectAccessReview>::all(bot)
        .create(&PostParams::default(), &review)
        .await
        .expect("reviews are granted to everyone");
    assert!(!answer.status.unwrap().allowed);
    // The administrator is not limited.
    let admin: Api<Pod> = Api::all(client(&sim).await);
    let watching = admin.watch(&kube::api::WatchParams::default(), "0").await;
    assert!(watching.is_ok(), "the administrator may watch");
}

/// Logs carry the time of each line: `timestamps=true` prefixes it, `sinceTime` (seconds)
/// returns the lines written at or after it; ConfigMaps over 1 MiB are refused with 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_logs_have_timestamps_and_configmaps_a_size_limit() {
    let sim = SimCluster::start(ClusterSpec::default());
    let client = client(&sim).await;
    create_ns(&client, "logs").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "logs");
    pods.create(&PostParams::default(), &pod("p", "nginx"))
        .await
        .unwrap();
    sim.with_store(|s| s.set_pod_log("logs", "p", "one\n"));
    std::thread::sleep(Duration::from_millis(1100));
    sim.with_store(|s| s.set_pod_log("logs", "p", "one\ntwo\n"));
    let params = LogParams {
        timestamps: true,
        ..Default::default()
    };
    let log = pods.logs("p", &params).await.unwrap();
    let lines: Vec<(jiff::Timestamp, &str)> = log
        .lines()
        .map(|l| {
            let (at, text) = l.split_once(' ').unwrap();
            (at.parse().unwrap(), text)
        })
        .collect();
    assert_eq!(
        lines.iter().map(|l| l.1).collect::<Vec<_>>(),
        ["one", "two"]
    );
    let since = jiff::Timestamp::from_second(lines[1].0.as_second()).unwrap();
    let later = pods
        .logs(
            "p",
            &LogParams {
                since_time: Some(since),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(later, "two\n");

    let cms: Api<ConfigMap> = Api::namespaced(client, "logs");
    let big: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "big"}, "data": {"a": "x".repeat(1024 * 1024 + 1)}}),
    )
    .unwrap();
    let err = cms.create(&PostParams::default(), &big).await.unwrap_err();
    assert_eq!(api_code(&err), 422);
    assert!(
        err.to_string().contains(
            "ConfigMap \"big\" is invalid: []: Too long: may not be more than 1048576 bytes"
        ),
        "{err}"
    );
    let fits: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "fits"}, "data": {"a": "x".repeat(1024 * 1024)}}),
    )
    .unwrap();
    cms.create(&PostParams::default(), &fits)
        .await
        .expect("exactly 1 MiB fits");
}
