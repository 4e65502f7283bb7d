//! The results of an in-cluster run: stored by the run inside the cluster in a ConfigMap
//! of its own namespace (or handed to Sonobuoy), and read back by the outer process.

use super::*;

/// The lines a run printed for SCS's runner, handed to the outer process.
pub struct Lines {
    /// `<testcase>: PASS|FAIL|ABORT`, one a line.
    pub verdicts: String,
    /// `ERROR: ...` and `WARNING: ...`, one a line.
    pub diagnostics: String,
}

/// Stores the run's results in ConfigMap `name` of the client's default namespace (the
/// service account's namespace when running in a pod). Returns a line for stderr.
pub async fn export_results(
    client: &kube::Client,
    request_timeout: Duration,
    name: &str,
    output_dir: &Path,
    lines: &Lines,
    exit_code: u8,
) -> Result<String, ApiError> {
    let mut data = BTreeMap::new();
    for file in ["junit.xml", "report.yaml"] {
        if let Ok(text) = std::fs::read_to_string(output_dir.join(file)) {
            data.insert(file.to_string(), text);
        }
    }
    data.insert(VERDICTS_KEY.into(), lines.verdicts.clone());
    data.insert(DIAGNOSTICS_KEY.into(), lines.diagnostics.clone());
    data.insert(EXIT_CODE_KEY.into(), exit_code.to_string());
    let mut logs: Vec<(String, String)> = std::fs::read_dir(output_dir.join("logs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(e.path()).ok()?;
            Some((file, text))
        })
        .collect();
    logs.sort();
    let fixed: usize = data.values().map(String::len).sum();
    let total: usize = fixed + logs.iter().map(|(_, t)| t.len()).sum::<usize>();
    if total > CONFIGMAP_BUDGET && !logs.is_empty() {
        let share = CONFIGMAP_BUDGET.saturating_sub(fixed) / logs.len();
        for (_, text) in &mut logs {
            *text = cut_front(text, share);
        }
    }
    data.extend(logs);
    store_configmap(client, request_timeout, name, data).await
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

/// The results of an in-cluster run as read from its ConfigMap.
pub struct Results {
    data: BTreeMap<String, String>,
}

impl Results {
    pub fn exit_code(&self) -> u8 {
        self.data
            .get(EXIT_CODE_KEY)
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(EXIT_ABORT)
    }

    /// Writes junit.xml, report.yaml and logs/<testcase>.log into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir.join("logs"))?;
        for (key, text) in &self.data {
            let path = match key.as_str() {
                "junit.xml" | "report.yaml" => dir.join(key),
                k if k.ends_with(".log") && !k.contains('/') => dir.join("logs").join(k),
                _ => continue,
            };
            std::fs::write(path, text)?;
        }
        Ok(())
    }

    /// The in-cluster run's verdict lines, printed on stdout like a local run's, and its
    /// `ERROR:`/`WARNING:` lines on stderr.
    pub fn print_verdicts(&self) {
        for line in self
            .data
            .get(VERDICTS_KEY)
            .into_iter()
            .flat_map(|v| v.lines())
        {
            if let Some((id, verdict)) = line.split_once(": ") {
                console::verdict(id, verdict);
            }
        }
        for line in self
            .data
            .get(DIAGNOSTICS_KEY)
            .into_iter()
            .flat_map(|v| v.lines())
        {
            console::relay_diagnostic(line);
        }
    }

    /// `N testcases: ...` from the verdict lines.
    pub fn summary(&self) -> String {
        let lines: Vec<&str> = self
            .data
            .get(VERDICTS_KEY)
            .map(|v| v.lines().collect())
            .unwrap_or_default();
        let count = |v: &str| lines.iter().filter(|l| l.ends_with(v)).count();
        format!(
            "{} verdicts: {} passed, {} failed, {} aborted",
            lines.len(),
            count(": PASS"),
            count(": FAIL"),
            count(": ABORT")
        )
    }
}

pub(super) async fn read_results(
    cluster: &Cluster,
    namespace: &str,
) -> Result<Option<Results>, ApiError> {
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), namespace);
    let cm = cluster
        .call(
            &format!("read configmap {namespace}/{RESULTS_CONFIGMAP}"),
            api.get_opt(RESULTS_CONFIGMAP),
        )
        .await?;
    Ok(cm.map(|cm| Results {
        data: cm.data.unwrap_or_default(),
    }))
}
