//! `lb-service-check`: a plain LoadBalancer Service gets an address and answers HTTP.

use super::probe::{ProbeError, Vantage, probe};
use super::*;

pub(super) async fn run(ctx: &CheckContext) -> CheckOutcome {
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
    let result = service_check_body(ctx, &namespace, service, &mut outcome).await;
    outcome.requirements.extend(result);
    release_services(ctx, &namespace, &[service.to_string()], &mut outcome).await;
    outcome
}

async fn service_check_body(
    ctx: &CheckContext,
    namespace: &str,
    service: &str,
    outcome: &mut CheckOutcome,
) -> Vec<Requirement> {
    if let Err(e) = create_backend(ctx, namespace, BackendKind::Netexec).await {
        return vec![Requirement::abort("", e)];
    }
    if let Err(e) = create_service(ctx, namespace, service, BackendKind::Netexec, None, &[]).await {
        return vec![Requirement::abort("", e)];
    }
    ctx.log.info(format!(
        "Service {service} (type LoadBalancer, no optional fields) created; waiting up to {} for an address",
        human_duration(ctx.options.workload.lb_timeout)
    ));
    let (address, backends) = futures::join!(
        wait_address(ctx, namespace, service),
        wait_backends(ctx, namespace, BackendKind::Netexec)
    );
    let address = match address {
        Ok((address, took)) => {
            outcome
                .facts
                .insert("address".into(), json!(address.host.clone()));
            ctx.log
                .info(format!("Service {service} got address {}", address.host));
            let assigned = Requirement::pass(
                "address-assigned",
                format!(
                    "Service {service} got the external address {} after {}",
                    address.host,
                    human_duration(took)
                ),
            );
            (assigned, address)
        }
        Err(failed) => {
            return vec![
                failed,
                Requirement::not_applicable("reachable", "the Service got no external address"),
            ];
        }
    };
    let (assigned, address) = address;
    if let Err(r) = backends {
        return vec![assigned, r.with_id("reachable")];
    }
    let probe = probe(ctx, namespace, "probe", &address, "/clientip").await;
    outcome
        .facts
        .insert("vantage".into(), json!(probe.vantage.describe()));
    let reachable = match &probe.result {
        Ok(body) => Requirement::pass(
            "reachable",
            format!(
                "GET {} answered HTTP 200 from {} after {} attempt(s) (the backend saw {})",
                address.url("/clientip"),
                probe.vantage.describe(),
                probe.attempts,
                body.trim()
            ),
        ),
        Err(ProbeError::Environment(e)) => Requirement::abort("reachable", e.clone()),
        Err(ProbeError::Unreachable(e)) => Requirement::fail(
            "reachable",
            format!(
                "GET {} did not answer from {} within {} ({} attempt(s)); last error: {e}{}",
                address.url("/clientip"),
                probe.vantage.describe(),
                human_duration(ctx.options.workload.lb_timeout),
                probe.attempts,
                match probe.vantage {
                    Vantage::Suite => {
                        "; if the address is only reachable from a private network, run with \
                         --lb-probe-from cluster"
                    }
                    Vantage::Cluster => "",
                }
            ),
        )
        .with_details(probe.details.clone()),
    };
    vec![assigned, reachable]
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
