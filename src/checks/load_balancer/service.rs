//! `lb-service-check`: a plain LoadBalancer Service gets an address and answers HTTP.

use super::probe::{Probe, ProbeError, Vantage, probe};
use super::*;

const IDS: [&str; 2] = ["address-assigned", "reachable"];

pub(super) async fn run(ctx: &CheckContext) -> CheckOutcome {
    ctx.plan(IDS);
    let cluster = ctx.cluster();
    let namespace = match cluster
        .scratch_namespace(&ctx.testcase.id, "lb-service")
        .await
    {
        Ok(ns) => ns,
        Err(e) => return CheckOutcome::aborted("", e.to_string()),
    };
    ctx.log.info(format!("created namespace {namespace}"));
    let mut outcome = CheckOutcome::default();
    let service = "echo";
    if let Err(abort) = service_check_body(ctx, &namespace, service).await {
        outcome.push(abort);
    }
    release_services(ctx, &namespace, &[service.to_string()], &mut outcome).await;
    outcome
}

/// Decides and publishes both requirements; `Err` is a testcase-level abort (nothing could
/// be set up).
async fn service_check_body(
    ctx: &CheckContext,
    namespace: &str,
    service: &str,
) -> Result<(), Requirement> {
    create_backend(ctx, namespace, BackendKind::Netexec)
        .await
        .map_err(|e| Requirement::abort("", e))?;
    create_service(ctx, namespace, service, BackendKind::Netexec, None, &[])
        .await
        .map_err(|e| Requirement::abort("", e))?;
    ctx.log.info(format!(
        "Service {service} (type LoadBalancer, no optional fields) created; waiting up to {} for an address",
        human_duration(ctx.options.workload.lb_timeout)
    ));
    let address = async {
        let address = wait_address(ctx, namespace, service).await;
        match &address {
            Ok((address, took)) => {
                ctx.decisions
                    .lock()
                    .fact("address", json!(address.host.clone()));
                ctx.log
                    .info(format!("Service {service} got address {}", address.host));
                ctx.decide(Requirement::pass(
                    IDS[0],
                    format!(
                        "Service {service} got the external address {} after {}",
                        address.host,
                        human_duration(*took)
                    ),
                ));
            }
            Err(failed) => {
                ctx.decide(failed.clone());
                // A load balancer without an address cannot be probed.
                ctx.not_attempted(&IDS[1..], "the Service got no external address");
            }
        }
        address.ok().map(|(address, _)| address)
    };
    let (address, backends) =
        futures::join!(address, wait_backends(ctx, namespace, BackendKind::Netexec));
    let Some(address) = address else {
        return Ok(());
    };
    if let Err(r) = backends {
        ctx.decide(r.with_id(IDS[1]));
        return Ok(());
    }
    let probe = probe(ctx, namespace, "probe", &address, "/clientip").await;
    ctx.decisions
        .lock()
        .fact("vantage", json!(probe.vantage.describe()));
    let reachable = match &probe.result {
        Ok(()) if probe.answers.len() as u32 == probe.sampled => Requirement::pass(
            IDS[1],
            format!(
                "GET {} answered HTTP 200 from {} after {} attempt(s); {} (the backend saw {})",
                address.url("/clientip"),
                probe.vantage.describe(),
                probe.attempts,
                probe.ratio(),
                backend_saw(&probe)
            ),
        ),
        Ok(()) => Requirement::fail(
            IDS[1],
            format!(
                "GET {} answered from {}, but only {}: traffic does not reliably reach \
                 the pods (the backend saw {})",
                address.url("/clientip"),
                probe.vantage.describe(),
                probe.ratio(),
                backend_saw(&probe)
            ),
        )
        .with_details(probe.details.clone()),
        Err(ProbeError::Environment(e)) | Err(ProbeError::Bypassed(e)) => {
            Requirement::abort(IDS[1], e.clone())
        }
        Err(ProbeError::Unreachable(e)) => Requirement::fail(
            IDS[1],
            format!(
                "GET {} did not answer from {} within {} ({} attempt(s)); last error: {e}{}",
                address.url("/clientip"),
                probe.vantage.describe(),
                human_duration(ctx.options.workload.lb_timeout),
                probe.attempts,
                match probe.vantage {
                    Vantage::Suite if address.bypassed_in_cluster() => {
                        "; if the address is only reachable from a private network, run the \
                         suite on a machine in that network (--lb-probe-from cluster cannot \
                         help: from inside the cluster kube-proxy bypasses the load balancer \
                         of an ipMode VIP address)"
                    }
                    Vantage::Suite => {
                        "; if the address is only reachable from a private network, run with \
                         --lb-probe-from cluster"
                    }
                    Vantage::Cluster | Vantage::SuiteInPod => "",
                }
            ),
        )
        .with_details(probe.details.clone()),
    };
    ctx.decide(reachable);
    Ok(())
}

/// The answers' bodies (agnhost's `ip:port`), distinct, in order.
fn backend_saw(probe: &Probe) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for a in &probe.answers {
        let body = a.body.trim();
        if !seen.contains(&body) {
            seen.push(body);
        }
    }
    seen.join(", ")
}

trait WithId {
    fn with_id(self, id: &str) -> Self;
}

impl WithId for Requirement {
    fn with_id(mut self, id: &str) -> Self {
        self.id = id.to_string();
        self
    }
}
