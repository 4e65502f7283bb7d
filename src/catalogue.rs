//! The certificate scope catalogue in SCS's own format (scs-0003-v1, the format of
//! `Tests/scs-compatible-kaas.yaml` in SovereignCloudStack/standards): `name`, `uuid`,
//! `url`, `variables`, `scripts` (with their `testcases`), `modules` (whose `targets` map a
//! target name to testcase ids), `timeline` and `versions` (each `include`s modules).
//!
//! The built-in catalogue is `standards/scs-compatible-kaas.yaml`, embedded at build time;
//! `--catalogue FILE` replaces it. Keys SCS's loader does not know are rejected where it
//! rejects them (the file, scripts, testcases, modules, versions, include descriptors);
//! every other inconsistency is an error naming the file and entry. The version in force at
//! a date comes from the timeline. The catalogue is data: which check implements a testcase
//! id is the binary's knowledge (`checks::IMPLEMENTED`), looked up by the runner.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub const BUILTIN_NAME: &str = "standards/scs-compatible-kaas.yaml (built in)";
const BUILTIN: &str = include_str!("../standards/scs-compatible-kaas.yaml");

/// The target whose testcases decide the certificate (scs-0003-v1: "the certification of a
/// subject always depends on a designated main target").
pub const MAIN_TARGET: &str = "main";
/// `--target all`: every target of the version.
pub const ALL_TARGETS: &str = "all";

/// A version's state on a date (scs-0003-v1 "validity codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    /// Can be certified against.
    Effective,
    /// Can be certified against, but is about to expire.
    Warn,
    /// Can be tested against, not certified.
    Draft,
    /// Can be tested against, not certified (also every version the timeline does not list).
    Deprecated,
}

impl Validity {
    pub fn as_str(self) -> &'static str {
        match self {
            Validity::Effective => "effective",
            Validity::Warn => "warn",
            Validity::Draft => "draft",
            Validity::Deprecated => "deprecated",
        }
    }

    /// Whether a subject can be certified against a version in this state.
    pub fn certifiable(self) -> bool {
        matches!(self, Validity::Effective | Validity::Warn)
    }
}

/// How long a testcase result stays valid (scs-0003-v1; SCS's default is `week`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifetime {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

/// The whole file. Field names and the keys allowed are SCS's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    /// Where it was read from (a path, or [`BUILTIN_NAME`]), for messages.
    #[serde(skip)]
    pub source: String,
    pub name: String,
    pub uuid: String,
    pub url: String,
    /// Descriptor of a prerequisite scope (`name`, `url`); SCS's runner does not use it yet.
    #[serde(default)]
    pub prerequisite: Option<serde_json::Value>,
    /// Variables the scripts' `args` use: a name, or a one-entry map `name: default`.
    #[serde(default)]
    pub variables: Vec<Variable>,
    pub scripts: Vec<Script>,
    pub modules: Vec<Module>,
    pub timeline: Vec<TimelineEntry>,
    pub versions: Vec<Version>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Variable {
    Name(String),
    WithDefault(BTreeMap<String, serde_json::Value>),
}

/// A script and the testcases it reports; without `executable` a manual check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    #[serde(default)]
    pub executable: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub args: Option<String>,
    pub testcases: Vec<ScriptTestcase>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptTestcase {
    pub id: String,
    #[serde(default)]
    pub lifetime: Option<Lifetime>,
    #[serde(default)]
    pub section: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

/// One module (usually one version of one standard): target name -> testcase ids.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Module {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
    pub targets: BTreeMap<String, Vec<String>>,
}

/// From `date` on (until the next entry's date), these versions have these states.
/// SCS's loader checks no keys here, nor does this one.
#[derive(Debug, Clone, Deserialize)]
pub struct TimelineEntry {
    pub date: jiff::civil::Date,
    pub versions: BTreeMap<String, Validity>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    pub version: String,
    pub include: Vec<Include>,
    /// Allowed by SCS's loader, which replaces it by the union of the modules' targets.
    #[serde(default)]
    pub targets: Option<serde_json::Value>,
    #[serde(default)]
    pub stabilized_at: Option<jiff::civil::Date>,
}

/// A module id, or a descriptor `ref` (+ `parameters`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Include {
    Id(String),
    Descriptor(IncludeDescriptor),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncludeDescriptor {
    #[serde(rename = "ref")]
    pub module: String,
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
}

impl Include {
    pub fn module(&self) -> &str {
        match self {
            Include::Id(id) => id,
            Include::Descriptor(d) => &d.module,
        }
    }
}

/// A testcase of a scope version, as a run selects it.
#[derive(Debug, Clone, Serialize)]
pub struct Testcase {
    pub id: String,
    /// The module that lists it in this version (SCS's term; usually a standard version,
    /// e.g. `scs-0210-v2`).
    pub module: String,
    pub module_name: String,
    /// The version's target that holds it; only [`MAIN_TARGET`] decides the certificate.
    pub target: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<Lifetime>,
}

impl Testcase {
    /// Whether it belongs to the certificate (target `main`).
    pub fn certificate(&self) -> bool {
        self.target == MAIN_TARGET
    }
}

/// A version of the scope as of a reference date: its state then and its testcases.
#[derive(Debug, Clone)]
pub struct Scope {
    pub version: String,
    pub validity: Validity,
    /// The testcases of every target, in catalogue order (scripts, then testcases).
    pub testcases: Vec<Testcase>,
}

#[derive(Debug, thiserror::Error)]
#[error("catalogue {file}: {problem}")]
pub struct CatalogueError {
    pub file: String,
    pub problem: String,
}

impl Catalogue {
    /// The built-in catalogue, or the given file.
    pub fn load(path: Option<&Path>) -> Result<Catalogue, CatalogueError> {
        match path {
            None => Self::parse(BUILTIN, BUILTIN_NAME),
            Some(path) => {
                let name = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| CatalogueError {
                    file: name.clone(),
                    problem: format!("cannot read it: {e}"),
                })?;
                Self::parse(&text, &name)
            }
        }
    }

    pub fn parse(text: &str, file: &str) -> Result<Catalogue, CatalogueError> {
        let error = |problem: String| CatalogueError {
            file: file.to_string(),
            problem,
        };
        let mut catalogue: Catalogue = serde_saphyr::from_str(text).map_err(|e| {
            let text = e.to_string();
            let one_line: Vec<&str> = text.lines().map(str::trim).collect();
            error(format!("malformed: {}", one_line.join(" ")))
        })?;
        catalogue.validate().map_err(error)?;
        catalogue.source = file.to_string();
        Ok(catalogue)
    }

    /// The checks SCS's loader makes (duplicates, references), plus valid testcase ids and
    /// each testcase in at most one target of a version.
    fn validate(&self) -> Result<(), String> {
        let mut testcases = BTreeMap::new();
        for (si, script) in self.scripts.iter().enumerate() {
            for (ti, tc) in script.testcases.iter().enumerate() {
                let path = format!("scripts[{si}].testcases[{ti}] (id {})", tc.id);
                if let Some(first) = testcases.insert(tc.id.as_str(), si) {
                    return Err(format!(
                        "{path}: duplicate testcase id (also in scripts[{first}])"
                    ));
                }
                if !valid_id(&tc.id) {
                    return Err(format!(
                        "{path}: testcase ids are lowercase letters, digits and '-'"
                    ));
                }
            }
        }
        let mut modules = BTreeMap::new();
        for (mi, module) in self.modules.iter().enumerate() {
            let path = format!("modules[{mi}] (id {})", module.id);
            if modules.insert(module.id.as_str(), module).is_some() {
                return Err(format!("{path}: duplicate module id"));
            }
            for (target, ids) in &module.targets {
                if let Some(id) = ids.iter().find(|id| !testcases.contains_key(id.as_str())) {
                    return Err(format!(
                        "{path}.targets.{target}: testcase {id:?} is listed in no script"
                    ));
                }
            }
        }
        if self.versions.is_empty() {
            return Err("no versions".into());
        }
        let mut versions = BTreeSet::new();
        for (vi, version) in self.versions.iter().enumerate() {
            let path = format!("versions[{vi}] (version {})", version.version);
            if !versions.insert(version.version.as_str()) {
                return Err(format!("{path}: duplicate version"));
            }
            let mut seen: BTreeMap<&str, String> = BTreeMap::new();
            for (ii, include) in version.include.iter().enumerate() {
                let Some(module) = modules.get(include.module()) else {
                    return Err(format!(
                        "{path}.include[{ii}]: unknown module {:?}",
                        include.module()
                    ));
                };
                for (target, ids) in &module.targets {
                    for id in ids {
                        let here = format!("target {target} of module {}", module.id);
                        if let Some(before) = seen.insert(id, here.clone()) {
                            return Err(format!(
                                "{path}: testcase {id} is in {before} and in {here}; the \
                                 testcases of a version's modules must be pairwise different"
                            ));
                        }
                    }
                }
            }
        }
        for (ei, entry) in self.timeline.iter().enumerate() {
            if let Some(name) = entry
                .versions
                .keys()
                .find(|v| !versions.contains(v.as_str()))
            {
                return Err(format!(
                    "timeline[{ei}] (date {}): unknown version {name:?}",
                    entry.date
                ));
            }
        }
        Ok(())
    }

    /// The timeline entry in force on `date`: the one with the latest date not after it.
    fn timeline_on(&self, date: jiff::civil::Date) -> Option<&TimelineEntry> {
        self.timeline
            .iter()
            .filter(|e| e.date <= date)
            .max_by_key(|e| e.date)
    }

    /// A version's state on `date`; versions the timeline does not list are deprecated.
    pub fn validity(&self, version: &str, date: jiff::civil::Date) -> Validity {
        self.timeline_on(date)
            .and_then(|e| e.versions.get(version).copied())
            .unwrap_or(Validity::Deprecated)
    }

    /// The version in force on `date`: of the versions that can be certified against then
    /// (`effective` or `warn`), the one stabilized last (on a tie, listed first). `Err` says
    /// what the timeline lists instead.
    pub fn in_force(&self, date: jiff::civil::Date) -> Result<&Version, String> {
        let listed = self.timeline_on(date);
        let certifiable = self
            .versions
            .iter()
            .filter(|v| self.validity(&v.version, date).certifiable());
        // `max_by_key` keeps the last of equal keys; reversed, that is the first listed.
        if let Some(v) = certifiable.rev().max_by_key(|v| v.stabilized_at) {
            return Ok(v);
        }
        let states = match listed {
            None => format!("the timeline starts after {date}"),
            Some(e) => format!(
                "the timeline entry of {} lists {}",
                e.date,
                e.versions
                    .iter()
                    .map(|(v, s)| format!("{v}: {}", s.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Err(format!(
            "no version of {} is in force (effective or warn) on {date}: {states}; choose \
             one with --scope-version (versions: {})",
            self.name,
            self.version_names().join(", ")
        ))
    }

    fn version_names(&self) -> Vec<&str> {
        self.versions.iter().map(|v| v.version.as_str()).collect()
    }

    /// `name`, or without it the version in force on `date`, with its testcases.
    pub fn scope(&self, name: Option<&str>, date: jiff::civil::Date) -> Result<Scope, String> {
        let version = match name {
            None => self.in_force(date)?,
            Some(name) => self
                .versions
                .iter()
                .find(|v| v.version == name)
                .ok_or_else(|| {
                    format!(
                        "unknown scope version {name:?} (versions: {})",
                        self.version_names().join(", ")
                    )
                })?,
        };
        // Which module and target hold each testcase of this version.
        let mut placed: BTreeMap<&str, (&Module, &str)> = BTreeMap::new();
        for include in &version.include {
            if let Some(module) = self.modules.iter().find(|m| m.id == include.module()) {
                for (target, ids) in &module.targets {
                    for id in ids {
                        placed.insert(id, (module, target));
                    }
                }
            }
        }
        let testcases = self
            .scripts
            .iter()
            .flat_map(|s| &s.testcases)
            .filter_map(|tc| {
                let (module, target) = placed.get(tc.id.as_str())?;
                Some(Testcase {
                    id: tc.id.clone(),
                    module: module.id.clone(),
                    module_name: module.name.clone().unwrap_or_else(|| module.id.clone()),
                    target: target.to_string(),
                    description: tc.description.clone().unwrap_or_default(),
                    url: tc.url.clone(),
                    section: tc.section.clone(),
                    lifetime: tc.lifetime,
                })
            })
            .collect();
        Ok(Scope {
            version: version.version.clone(),
            validity: self.validity(&version.version, date),
            testcases,
        })
    }
}

impl Scope {
    /// The targets of this version, `main` first.
    pub fn targets(&self) -> Vec<&str> {
        let mut targets: Vec<&str> = self.testcases.iter().map(|t| t.target.as_str()).collect();
        targets.sort_by_key(|t| (*t != MAIN_TARGET, *t));
        targets.dedup();
        targets
    }

    /// The testcases a run selects, in catalogue order: the ones named in `ids` (of any
    /// target), or without ids those of `targets` (empty: `main`; `all`: every target);
    /// minus `skip`. Unknown ids and targets are errors naming the known ones.
    pub fn select(
        &self,
        ids: &[String],
        targets: &[String],
        skip: &[String],
    ) -> Result<Vec<Testcase>, String> {
        for id in ids.iter().chain(skip) {
            if !self.testcases.iter().any(|t| &t.id == id) {
                let known: Vec<&str> = self.testcases.iter().map(|t| t.id.as_str()).collect();
                return Err(format!(
                    "unknown testcase id {id:?} in scope version {} (known: {})",
                    self.version,
                    known.join(", ")
                ));
            }
        }
        let known = self.targets();
        if let Some(t) = targets
            .iter()
            .find(|t| *t != ALL_TARGETS && !known.contains(&t.as_str()))
        {
            return Err(format!(
                "unknown target {t:?} in scope version {} (targets: {}, or {ALL_TARGETS})",
                self.version,
                known.join(", ")
            ));
        }
        let wanted = |t: &Testcase| {
            if !ids.is_empty() {
                ids.contains(&t.id)
            } else if targets.is_empty() {
                t.certificate()
            } else {
                targets.iter().any(|x| x == ALL_TARGETS || *x == t.target)
            }
        };
        Ok(self
            .testcases
            .iter()
            .filter(|t| wanted(t) && !skip.contains(&t.id))
            .cloned()
            .collect())
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> jiff::civil::Date {
        s.parse().unwrap()
    }

    /// A small catalogue: v1 effective from 2024-11-26 (draft before), v2 draft from
    /// 2026-01-01 and effective from 2026-03-01.
    const SMALL: &str = "\
name: t
uuid: 00000000-0000-0000-0000-000000000000
url: https://example.com/t.yaml
variables:
  - kubeconfig
  - execution_mode: parallel
scripts:
- executable: ./scs-kaas-check
  args: run -k {kubeconfig} {testcases}
  testcases:
  - id: version-policy-check
    section: light
    lifetime: week
  - id: node-distribution-check
  - id: default-storage-class-check
modules:
  - id: scs-0210-v2
    name: Kubernetes version policy
    targets:
      main: [version-policy-check]
  - id: scs-0214-v2
    targets:
      preview: [node-distribution-check]
  - id: scs-0211-v1
    targets:
      extension: [default-storage-class-check]
timeline:
  - date: 2026-03-01
    versions:
      v2: effective
      v1: deprecated
  - date: 2026-01-01
    versions:
      v2: draft
      v1: effective
  - date: 2024-11-26
    versions:
      v1: effective
versions:
  - version: v2
    stabilized_at: 2026-02-01
    include: [scs-0210-v2, scs-0214-v2, scs-0211-v1]
  - version: v1
    stabilized_at: 2024-11-26
    include:
      - scs-0210-v2
      - ref: scs-0214-v2
";

    fn small() -> Catalogue {
        Catalogue::parse(SMALL, "c.yaml").unwrap()
    }

    #[test]
    fn the_timeline_picks_the_version_in_force() {
        let c = small();
        assert_eq!(c.in_force(date("2025-06-01")).unwrap().version, "v1");
        // v2 is only a draft in January: v1 is still the one in force.
        assert_eq!(c.in_force(date("2026-01-15")).unwrap().version, "v1");
        assert_eq!(c.validity("v2", date("2026-01-15")), Validity::Draft);
        assert_eq!(c.in_force(date("2026-03-01")).unwrap().version, "v2");
        assert_eq!(c.validity("v1", date("2026-03-01")), Validity::Deprecated);
        // A version about to expire (`warn`) can still be certified against.
        let warned = SMALL.replace("      v1: deprecated", "      v1: warn");
        let c2 = Catalogue::parse(&warned, "c.yaml").unwrap();
        assert_eq!(
            c2.in_force(date("2026-03-01")).unwrap().version,
            "v2",
            "newest wins"
        );
        let only_v1 = warned.replace("      v2: effective\n", "      v2: draft\n");
        let c3 = Catalogue::parse(&only_v1, "c.yaml").unwrap();
        assert_eq!(c3.in_force(date("2026-03-01")).unwrap().version, "v1");
        assert_eq!(c3.validity("v1", date("2026-03-01")), Validity::Warn);
        // Before the first entry nothing is in force.
        let err = c.in_force(date("2024-01-01")).unwrap_err();
        assert!(
            err.contains("the timeline starts after 2024-01-01"),
            "{err}"
        );
        assert!(err.contains("--scope-version (versions: v2, v1)"), "{err}");
    }

    #[test]
    fn a_scope_places_each_testcase_in_its_module_and_target() {
        let c = small();
        let scope = c.scope(None, date("2025-06-01")).unwrap();
        assert_eq!(scope.version, "v1");
        assert_eq!(scope.validity, Validity::Effective);
        let placed: Vec<(&str, &str, &str)> = scope
            .testcases
            .iter()
            .map(|t| (t.id.as_str(), t.module.as_str(), t.target.as_str()))
            .collect();
        assert_eq!(
            placed,
            [
                ("version-policy-check", "scs-0210-v2", "main"),
                ("node-distribution-check", "scs-0214-v2", "preview"),
            ]
        );
        assert_eq!(scope.testcases[0].module_name, "Kubernetes version policy");
        assert_eq!(scope.testcases[1].module_name, "scs-0214-v2");
        assert_eq!(scope.testcases[0].lifetime, Some(Lifetime::Week));
        let v2 = c.scope(Some("v2"), date("2025-06-01")).unwrap();
        assert_eq!(v2.validity, Validity::Deprecated, "not yet listed");
        assert_eq!(v2.targets(), ["main", "extension", "preview"]);
    }

    #[test]
    fn selection_by_target_and_id() {
        let scope = small().scope(Some("v2"), date("2026-03-01")).unwrap();
        let ids = |s: Vec<Testcase>| s.into_iter().map(|t| t.id).collect::<Vec<_>>();
        assert_eq!(
            ids(scope.select(&[], &[], &[]).unwrap()),
            ["version-policy-check"]
        );
        assert_eq!(
            ids(scope.select(&[], &["all".into()], &[]).unwrap()).len(),
            3
        );
        assert_eq!(
            ids(scope.select(&[], &["extension".into()], &[]).unwrap()),
            ["default-storage-class-check"]
        );
        assert_eq!(
            ids(scope
                .select(&["default-storage-class-check".into()], &[], &[])
                .unwrap()),
            ["default-storage-class-check"]
        );
        assert!(
            scope
                .select(&[], &[], &["version-policy-check".into()])
                .unwrap()
                .is_empty()
        );
        let err = scope.select(&["nope".into()], &[], &[]).unwrap_err();
        assert!(err.contains("unknown testcase id \"nope\""), "{err}");
        let err = scope.select(&[], &["beta".into()], &[]).unwrap_err();
        assert!(
            err.contains("unknown target \"beta\" in scope version v2 (targets: main, extension, preview, or all)"),
            "{err}"
        );
        let err = small().scope(Some("v9"), date("2026-03-01")).unwrap_err();
        assert!(err.contains("unknown scope version \"v9\""), "{err}");
    }

    fn problem(text: &str) -> String {
        let msg = Catalogue::parse(text, "c.yaml").unwrap_err().to_string();
        assert!(msg.starts_with("catalogue c.yaml: "), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        msg
    }

    #[test]
    fn inconsistencies_are_named() {
        let msg = problem(&SMALL.replace(
            "  - id: default-storage-class-check\n",
            "  - id: default-storage-class-check\n  - id: version-policy-check\n",
        ));
        assert!(
            msg.contains(
                "scripts[0].testcases[3] (id version-policy-check): duplicate testcase id"
            ),
            "{msg}"
        );
        let msg = problem(&SMALL.replace("      - ref: scs-0214-v2", "      - ref: scs-0299-v1"));
        assert!(
            msg.contains("versions[1] (version v1).include[1]: unknown module \"scs-0299-v1\""),
            "{msg}"
        );
        let msg = problem(&SMALL.replace(
            "      v1: effective\nversions",
            "      v3: effective\nversions",
        ));
        assert!(
            msg.contains("timeline[2] (date 2024-11-26): unknown version \"v3\""),
            "{msg}"
        );
        let msg = problem(&SMALL.replace("main: [version-policy-check]", "main: [typo-check]"));
        assert!(
            msg.contains("modules[0] (id scs-0210-v2).targets.main: testcase \"typo-check\" is listed in no script"),
            "{msg}"
        );
        let msg = problem(&SMALL.replace(
            "preview: [node-distribution-check]",
            "preview: [node-distribution-check, version-policy-check]",
        ));
        assert!(msg.contains("testcase version-policy-check is in target main of module scs-0210-v2 and in target preview of module scs-0214-v2"), "{msg}");
    }

    #[test]
    fn unknown_keys_are_rejected_where_scs_rejects_them() {
        for (what, text) in [
            (
                "file",
                SMALL.replace("name: t\n", "name: t\nstate: effective\n"),
            ),
            (
                "script",
                SMALL.replace("  args: run", "  timeout: 3h\n  args: run"),
            ),
            (
                "testcase",
                SMALL.replace("    section: light\n", "    level: mandatory\n"),
            ),
            (
                "module",
                SMALL.replace(
                    "    name: Kubernetes version policy\n",
                    "    check: version-policy\n",
                ),
            ),
            (
                "version",
                SMALL.replace("    stabilized_at: 2024-11-26\n", "    state: effective\n"),
            ),
            (
                "include",
                SMALL.replace(
                    "      - ref: scs-0214-v2",
                    "      - ref: scs-0214-v2\n        level: x",
                ),
            ),
            (
                "lifetime",
                SMALL.replace("lifetime: week", "lifetime: fortnight"),
            ),
            ("validity", SMALL.replace("v1: deprecated", "v1: retired")),
        ] {
            let msg = problem(&text);
            assert!(msg.contains("malformed"), "{what}: {msg}");
        }
        // Where SCS checks no keys (timeline entries), neither does this loader.
        let text = SMALL.replace(
            "  - date: 2024-11-26\n",
            "  - date: 2024-11-26\n    note: first\n",
        );
        assert!(Catalogue::parse(&text, "c.yaml").is_ok());
    }

    #[test]
    fn builtin_catalogue_is_scs_v1() {
        let c = Catalogue::load(None).unwrap();
        let scope = c.scope(None, date("2026-08-01")).unwrap();
        assert_eq!(scope.version, "v1");
        assert_eq!(scope.validity, Validity::Effective);
        let main: Vec<&str> = scope
            .testcases
            .iter()
            .filter(|t| t.certificate())
            .map(|t| t.id.as_str())
            .collect();
        assert_eq!(
            main,
            [
                "cncf-k8s-conformance",
                "version-policy-check",
                "kaas-networking-check"
            ]
        );
        // v1 was a draft before 2024-11-26: nothing was in force then.
        assert!(c.in_force(date("2024-06-01")).is_err());
    }
}
