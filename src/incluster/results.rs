//! The results of an in-cluster run: stored by the run inside the cluster as a bundle of
//! ConfigMaps of its own namespace (`cluster::bundle`: compressed, split, manifest with a
//! digest written last; or handed to Sonobuoy), and read back by the outer process, `status`
//! and `retrieve`, which say whether they are complete.

use super::*;
use crate::cluster::bundle::{self, Found};

/// The lines a run printed for SCS's runner, handed to the outer process.
pub struct Lines {
    /// `<testcase>: PASS|FAIL|ABORT`, one a line.
    pub verdicts: String,
    /// `ERROR: ...` and `WARNING: ...`, one a line.
    pub diagnostics: String,
}

/// Every file under `dir`, keyed by its path relative to `dir` (`/`-separated).
fn files_under(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if let (Ok(rel), Ok(bytes)) = (path.strip_prefix(dir), std::fs::read(&path)) {
                let key = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                out.insert(key, String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    out
}

/// Stores the run's results (every file of `output_dir`: `junit.xml`, `report.yaml`, the
/// check logs, the upstream e2e files) with its verdict lines and exit code as bundle
/// `name` in the client's default namespace (the service account's namespace when running
/// in a pod). Returns a line for stderr; `Err` when they cannot be stored, which the caller
/// must report loudly.
pub async fn export_results(
    client: &kube::Client,
    request_timeout: Duration,
    name: &str,
    output_dir: &Path,
    lines: &Lines,
    exit_code: u8,
) -> Result<String, ApiError> {
    let plain = BTreeMap::from([
        (VERDICTS_KEY.to_string(), lines.verdicts.clone()),
        (DIAGNOSTICS_KEY.to_string(), lines.diagnostics.clone()),
        (EXIT_CODE_KEY.to_string(), exit_code.to_string()),
    ]);
    bundle::store(
        client,
        request_timeout,
        name,
        files_under(output_dir),
        plain,
    )
    .await
}

/// Sonobuoy plugin contract: the results file in the results directory, then `done`
/// holding its path.
pub fn write_sonobuoy(dir: &Path, output_dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let junit = dir.join("junit.xml");
    std::fs::copy(output_dir.join("junit.xml"), &junit)?;
    std::fs::write(dir.join("done"), junit.display().to_string())?;
    Ok(junit)
}

/// The complete results of an in-cluster run as read from its ConfigMaps.
pub struct Results {
    bundle: bundle::Bundle,
}

/// What the results ConfigMaps of a run hold.
pub enum Stored {
    /// Nothing stored (yet).
    Nothing,
    Complete(Results),
    /// Something, but not all: why, and the verdict lines if the manifest has them.
    Incomplete {
        why: String,
        verdicts: String,
    },
}

/// A relative path that stays inside the directory it is joined to.
fn safe_relative(key: &str) -> Option<PathBuf> {
    let path = Path::new(key);
    path.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        .then(|| path.to_path_buf())
}

impl Results {
    pub fn exit_code(&self) -> u8 {
        self.bundle
            .plain
            .get(EXIT_CODE_KEY)
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(EXIT_ABORT)
    }

    /// Writes every stored file (junit.xml, report.yaml, logs/<testcase>.log, the upstream
    /// e2e files) into `dir`, under its relative path.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (key, text) in &self.bundle.files {
            let Some(rel) = safe_relative(key) else {
                continue;
            };
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, text)?;
        }
        Ok(())
    }

    /// Files shortened to fit (logs only; reports never are).
    pub fn shortened(&self) -> &[String] {
        &self.bundle.shortened
    }

    fn verdicts(&self) -> &str {
        self.bundle
            .plain
            .get(VERDICTS_KEY)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The in-cluster run's verdict lines, printed on stdout like a local run's, and its
    /// `ERROR:`/`WARNING:` lines on stderr.
    pub fn print_verdicts(&self) {
        for line in self.verdicts().lines() {
            if let Some((id, verdict)) = line.split_once(": ") {
                console::verdict(id, verdict);
            }
        }
        for line in self
            .bundle
            .plain
            .get(DIAGNOSTICS_KEY)
            .into_iter()
            .flat_map(|v| v.lines())
        {
            console::relay_diagnostic(line);
        }
    }

    /// `N verdicts: ...` from the verdict lines, and whether logs were shortened.
    pub fn summary(&self) -> String {
        let mut summary = verdict_summary(self.verdicts());
        if !self.bundle.shortened.is_empty() {
            summary.push_str(&format!(
                " (complete; logs shortened to fit: {})",
                self.bundle.shortened.join(", ")
            ));
        }
        summary
    }
}

/// `N verdicts: P passed, F failed, A aborted` of verdict lines.
pub(super) fn verdict_summary(verdicts: &str) -> String {
    let lines: Vec<&str> = verdicts.lines().collect();
    let count = |v: &str| lines.iter().filter(|l| l.ends_with(v)).count();
    format!(
        "{} verdicts: {} passed, {} failed, {} aborted",
        lines.len(),
        count(": PASS"),
        count(": FAIL"),
        count(": ABORT")
    )
}

pub(super) async fn read_results(cluster: &Cluster, namespace: &str) -> Result<Stored, ApiError> {
    let found = bundle::read(
        &cluster.client,
        cluster.request_timeout,
        namespace,
        RESULTS_CONFIGMAP,
    )
    .await?;
    Ok(match found {
        Found::Nothing => Stored::Nothing,
        Found::Complete(bundle) => Stored::Complete(Results { bundle }),
        Found::Incomplete { why, plain } => Stored::Incomplete {
            why,
            verdicts: plain.get(VERDICTS_KEY).cloned().unwrap_or_default(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_paths_stay_inside_the_output_directory() {
        assert!(safe_relative("junit.xml").is_some());
        assert!(safe_relative("cncf-k8s-conformance/junit_01.xml").is_some());
        assert!(safe_relative("../x").is_none());
        assert!(safe_relative("/etc/passwd").is_none());
        assert!(safe_relative("a/../../x").is_none());
    }
}
