//! scs-0210-v2 Kubernetes version policy (`version-policy-check`): the cluster runs a
//! supported branch, a recent patch, and no patch with a critical CVE whose fix has been
//! out too long; over several clusters of one offering, every supported branch is offered.
//!
//! `version` parses versions, `data` loads end-of-life, release and CVE data (bundled,
//! from files, or online), `policy` decides the requirements.

pub mod data;
pub mod policy;
pub mod version;

use super::{CheckContext, CheckDef};
use crate::outcome::{CheckOutcome, Requirement};
use data::{DataOptions, LoadedData};
use version::KubeVersion;

pub const CHECK: CheckDef = CheckDef {
    name: "version-policy",
    summary: "Kubernetes version policy (scs-0210-v2)",
    writes: false,
    exclusive: false,
    uses_e2e: super::no_e2e,
    run: |ctx| Box::pin(run(ctx)),
};

/// Publishes a stage's results.
fn publish(ctx: &CheckContext, outcome: CheckOutcome) {
    let mut decisions = ctx.decisions.lock();
    for warning in outcome.warnings {
        decisions.warn(warning);
    }
    for (key, value) in outcome.facts {
        decisions.fact(key, value);
    }
    for requirement in outcome.requirements {
        decisions.decide(requirement);
    }
}

async fn run(ctx: &CheckContext) -> CheckOutcome {
    let ids = [
        policy::SUPPORTED_BRANCH,
        policy::PATCH_RECENCY,
        policy::CVE_RECENCY,
    ];
    ctx.plan(ids);
    for info in ctx.offering.iter().flatten() {
        ctx.plan(ids.map(|id| format!("{id}@{}", info.subject)));
    }
    ctx.plan([policy::OFFERING]);
    if !ctx.options.offering {
        ctx.decide(policy::offering_not_applicable());
    }
    let files = &ctx.options.data;
    let options = DataOptions {
        offline: files.offline,
        eol_file: files.eol.clone(),
        release_file: files.releases.clone(),
        cve_file: files.cves.clone(),
        ..Default::default()
    };
    let date = ctx.options.reference_date;
    let version = &ctx.subject.info.git_version;
    ctx.log.info(format!(
        "cluster {} runs {version}",
        ctx.subject.info.subject
    ));
    // The branch is judged from local data at once; releases and CVEs may take a while.
    let (eol, eol_source) = data::load_eol(&options);
    ctx.log.info(&eol_source);
    let (first, parsed) = policy::evaluate_branch(version, date, &eol);
    publish(ctx, first);
    ctx.log.info(format!(
        "loading release and CVE data{}",
        if files.offline { " (offline)" } else { "" }
    ));
    let data = data::load(&options, date, &ctx.options.http).await;
    for source in &data.sources {
        ctx.log.info(source);
    }
    let mut rest = CheckOutcome {
        warnings: data.warnings.clone(),
        ..Default::default()
    };
    rest.facts
        .insert("data-sources".into(), serde_json::json!(data.sources));
    if let Some(parsed) = parsed {
        rest.absorb(policy::evaluate_releases(parsed, date, &data));
    }
    publish(ctx, rest);
    if !ctx.options.offering {
        return CheckOutcome::default();
    }
    // The further clusters of the offering: their own requirements, then the coverage.
    let mut versions = Vec::new();
    let mut unusable = Vec::new();
    let subjects =
        std::iter::once(Ok(ctx.subject.info.clone())).chain(ctx.offering.iter().cloned());
    for (i, subject) in subjects.enumerate() {
        match subject {
            Ok(info) => {
                if i > 0 {
                    for mut req in policy::evaluate(&info.git_version, date, &data).requirements {
                        req.id = format!("{}@{}", req.id, info.subject);
                        ctx.decide(req);
                    }
                }
                match KubeVersion::parse(&info.git_version) {
                    Ok(v) => versions.push(v),
                    Err(e) => unusable.push(format!("{}: {e}", info.subject)),
                }
            }
            Err(reason) => unusable.push(reason),
        }
    }
    ctx.decide(offering(&versions, &unusable, date, &data));
    CheckOutcome::default()
}

fn offering(
    versions: &[KubeVersion],
    unusable: &[String],
    date: jiff::civil::Date,
    data: &LoadedData,
) -> Requirement {
    if !unusable.is_empty() {
        return Requirement::abort(
            policy::OFFERING,
            format!(
                "the offering's versions are not all known: {}",
                unusable.join("; ")
            ),
        );
    }
    match (&data.eol, &data.releases) {
        (Ok(eol), Ok(releases)) => policy::evaluate_offering(versions, date, eol, releases),
        (Err(e), _) | (_, Err(e)) => Requirement::abort(policy::OFFERING, e.clone()),
    }
}
