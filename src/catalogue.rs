//! The certificate scope catalogue: scope versions, their standards and testcases.
//!
//! The built-in catalogue is `standards/scs-compatible-kaas.yaml`, embedded at build time;
//! `--catalogue FILE` replaces it. Every inconsistency is an error naming the file and entry.
//! The catalogue is data: whoever builds a run's plan checks that each testcase names a
//! check this binary has (see `runner`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

pub const BUILTIN_NAME: &str = "standards/scs-compatible-kaas.yaml (built in)";
const BUILTIN: &str = include_str!("../standards/scs-compatible-kaas.yaml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Mandatory,
    Recommended,
    Informational,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Mandatory => "mandatory",
            Level::Recommended => "recommended",
            Level::Informational => "informational",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeState {
    Effective,
    Draft,
    Deprecated,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    /// Where it was read from (a path, or [`BUILTIN_NAME`]), for messages.
    #[serde(skip)]
    pub source: String,
    pub name: String,
    #[serde(default)]
    pub url: Option<String>,
    pub versions: Vec<ScopeVersion>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeVersion {
    pub version: String,
    pub state: ScopeState,
    pub standards: Vec<Standard>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Standard {
    /// e.g. `scs-0210-v2`
    pub id: String,
    pub name: String,
    pub url: String,
    pub testcases: Vec<TestcaseEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestcaseEntry {
    pub id: String,
    pub level: Level,
    /// Name of the implementing check (see `scs-kaas-check list`).
    pub check: String,
    pub description: String,
}

/// A testcase as selected for a run: the entry plus the standard it belongs to.
#[derive(Debug, Clone, Serialize)]
pub struct Testcase {
    pub id: String,
    pub standard: String,
    pub standard_name: String,
    pub level: Level,
    pub check: String,
    pub description: String,
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

    fn validate(&self) -> Result<(), String> {
        if self.versions.is_empty() {
            return Err("no scope versions".into());
        }
        let mut versions = BTreeSet::new();
        for (vi, version) in self.versions.iter().enumerate() {
            let vpath = format!("versions[{vi}] (version {})", version.version);
            if !versions.insert(version.version.as_str()) {
                return Err(format!("{vpath}: duplicate scope version"));
            }
            let mut standards = BTreeSet::new();
            let mut testcases = BTreeSet::new();
            for (si, standard) in version.standards.iter().enumerate() {
                let spath = format!("{vpath}.standards[{si}] (id {})", standard.id);
                if !standards.insert(standard.id.as_str()) {
                    return Err(format!("{spath}: duplicate standard id"));
                }
                for (ti, tc) in standard.testcases.iter().enumerate() {
                    let tpath = format!("{spath}.testcases[{ti}] (id {})", tc.id);
                    if !testcases.insert(tc.id.as_str()) {
                        return Err(format!(
                            "{tpath}: duplicate testcase id in this scope version"
                        ));
                    }
                    if !valid_id(&tc.id) {
                        return Err(format!(
                            "{tpath}: testcase ids are lowercase letters, digits and '-'"
                        ));
                    }
                }
            }
        }
        if self.default_version().is_none() {
            return Err("no scope version has state `effective`".into());
        }
        Ok(())
    }

    /// The newest effective scope version (the last one listed).
    pub fn default_version(&self) -> Option<&ScopeVersion> {
        self.versions
            .iter()
            .rev()
            .find(|v| v.state == ScopeState::Effective)
    }

    pub fn version(&self, name: Option<&str>) -> Result<&ScopeVersion, String> {
        match name {
            None => self
                .default_version()
                .ok_or_else(|| "no effective scope version".to_string()),
            Some(name) => self
                .versions
                .iter()
                .find(|v| v.version == name)
                .ok_or_else(|| {
                    let known: Vec<&str> =
                        self.versions.iter().map(|v| v.version.as_str()).collect();
                    format!(
                        "unknown scope version {name:?} (known: {})",
                        known.join(", ")
                    )
                }),
        }
    }
}

impl ScopeVersion {
    pub fn testcases(&self) -> Vec<Testcase> {
        self.standards
            .iter()
            .flat_map(|s| {
                s.testcases.iter().map(move |t| Testcase {
                    id: t.id.clone(),
                    standard: s.id.clone(),
                    standard_name: s.name.clone(),
                    level: t.level,
                    check: t.check.clone(),
                    description: t.description.clone(),
                })
            })
            .collect()
    }

    /// The testcases `--check`/`--skip` select, in catalogue order. Unknown ids are errors.
    pub fn select(&self, only: &[String], skip: &[String]) -> Result<Vec<Testcase>, String> {
        let all = self.testcases();
        for id in only.iter().chain(skip) {
            if !all.iter().any(|t| &t.id == id) {
                let known: Vec<&str> = all.iter().map(|t| t.id.as_str()).collect();
                return Err(format!(
                    "unknown check id {id:?} in scope version {} (known: {})",
                    self.version,
                    known.join(", ")
                ));
            }
        }
        Ok(all
            .into_iter()
            .filter(|t| only.is_empty() || only.contains(&t.id))
            .filter(|t| !skip.contains(&t.id))
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

    #[test]
    fn builtin_catalogue_is_valid() {
        let c = Catalogue::load(None).unwrap();
        let v = c.version(None).unwrap();
        assert_eq!(v.state, ScopeState::Effective);
        assert!(v.testcases().iter().any(|t| t.id == "version-policy-check"));
    }

    fn catalogue(testcases: &str) -> String {
        format!(
            "name: t\nversions:\n  - version: v1\n    state: effective\n    standards:\n      \
             - id: scs-0210-v2\n        name: n\n        url: u\n        testcases:\n{testcases}"
        )
    }

    const VP: &str = "          - id: version-policy-check\n            level: mandatory\n            \
                      check: version-policy\n            description: d\n";

    #[test]
    fn duplicate_testcase_is_named() {
        let err = Catalogue::parse(&catalogue(&format!("{VP}{VP}")), "c.yaml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("catalogue c.yaml: "), "{msg}");
        assert!(msg.contains("testcases[1] (id version-policy-check): duplicate testcase id"));
    }

    #[test]
    fn unknown_keys_and_levels_are_errors() {
        let text = catalogue(&VP.replace("level: mandatory", "level: optional"));
        let msg = Catalogue::parse(&text, "c.yaml").unwrap_err().to_string();
        assert!(msg.contains("malformed"), "{msg}");
        assert!(!msg.contains('\n'));
        let text = catalogue(&format!("{VP}            colour: red\n"));
        assert!(Catalogue::parse(&text, "c.yaml").is_err());
    }

    #[test]
    fn selection() {
        let c = Catalogue::parse(&catalogue(VP), "c.yaml").unwrap();
        let v = c.version(Some("v1")).unwrap();
        assert_eq!(v.select(&[], &[]).unwrap().len(), 1);
        assert!(
            v.select(&[], &["version-policy-check".into()])
                .unwrap()
                .is_empty()
        );
        let err = v.select(&["nope".into()], &[]).unwrap_err();
        assert!(err.contains("unknown check id \"nope\""), "{err}");
        assert!(
            c.version(Some("v9"))
                .unwrap_err()
                .contains("unknown scope version")
        );
    }
}
