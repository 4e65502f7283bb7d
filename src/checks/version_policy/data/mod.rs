//! The data the version policy is decided on: end-of-life dates of the branches, the
//! published releases, and critical CVEs with their affected version ranges.
//!
//! Each comes from a user-given file, the bundled snapshot, or (releases and CVEs) the
//! network. Parsing never panics: broken entries are skipped with a warning, broken
//! files are an error naming the file.
//!
//! This file: where the data comes from and how it is loaded (files, bundled snapshot,
//! network, with fallbacks and warnings). Parsing is in [`parse`], the HTTP fetches in
//! [`fetch`].

mod fetch;
mod parse;

pub use fetch::*;
pub use parse::*;

use super::version::{Branch, KubeVersion};
use futures::{StreamExt, stream};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bundled EOL dates (`standards/data/k8s-eol.yaml`).
pub const BUNDLED_EOL: &str = include_str!("../../../../standards/data/k8s-eol.yaml");
/// Bundled release snapshot in the GitHub releases API shape.
pub const BUNDLED_RELEASES: &str = include_str!("../../../../standards/data/k8s-releases.json");
/// Bundled CVE JSON 5.x records.
pub const BUNDLED_CVES: &str = include_str!("../../../../standards/data/k8s-cves.json");

pub const DEFAULT_RELEASE_URL: &str = "https://api.github.com/repos/kubernetes/kubernetes/releases";
pub const DEFAULT_CVE_FEED_URL: &str =
    "https://kubernetes.io/docs/reference/issues-security/official-cve-feed/index.json";
pub const DEFAULT_CVE_RECORD_URL: &str = "https://cveawg.mitre.org/api/cve/";

/// Releases per page requested from the GitHub API.
pub const RELEASES_PER_PAGE: usize = 100;
/// At most this many release pages are fetched.
pub const MAX_RELEASE_PAGES: u32 = 10;
/// CVE records fetched at the same time.
pub const CVE_FETCH_CONCURRENCY: usize = 8;
/// Per-request timeout of the online fetches.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
const USER_AGENT: &str = concat!("scs-kaas-check/", env!("CARGO_PKG_VERSION"));

/// Products (lower case) whose CVE `affected` entries count for a cluster when the vendor
/// is Kubernetes. An entry whose product is `Kubernetes` counts whatever its vendor.
/// Components released with the Kubernetes version (so a cluster's version tells whether
/// they are affected); add-ons with their own versions (ingress-nginx, CSI drivers, ...)
/// are deliberately absent.
pub const KUBERNETES_PRODUCTS: &[&str] = &[
    "kubernetes",
    "kube-apiserver",
    "kubelet",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "kubectl",
];

/// Why data could not be read or parsed; one line each.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid EOL data: {0}")]
    Eol(String),
    #[error("invalid release data: {0}")]
    Releases(String),
    #[error("invalid CVE data: {0}")]
    Cves(String),
    #[error("GET {url}: {message}")]
    Http { url: String, message: String },
}

/// Where the data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataOptions {
    /// Use only bundled data and given files; no network.
    pub offline: bool,
    pub eol_file: Option<PathBuf>,
    pub release_file: Option<PathBuf>,
    pub cve_file: Option<PathBuf>,
    /// GitHub releases API endpoint of kubernetes/kubernetes (without query).
    pub release_url: String,
    /// The official Kubernetes CVE feed (JSON Feed).
    pub cve_feed_url: String,
    /// Prefix of CVE JSON 5.x records; the CVE id is appended.
    pub cve_record_url: String,
}

impl Default for DataOptions {
    fn default() -> Self {
        DataOptions {
            offline: false,
            eol_file: None,
            release_file: None,
            cve_file: None,
            release_url: DEFAULT_RELEASE_URL.into(),
            cve_feed_url: DEFAULT_CVE_FEED_URL.into(),
            cve_record_url: DEFAULT_CVE_RECORD_URL.into(),
        }
    }
}

/// The loaded data; `Err` holds why a kind of data is unavailable.
#[derive(Debug, Clone)]
pub struct LoadedData {
    pub eol: Result<EolData, String>,
    pub releases: Result<ReleaseData, String>,
    pub cves: Result<Vec<Cve>, String>,
    /// One line each: fallbacks, skipped entries, failed fetches.
    pub warnings: Vec<String>,
    /// Where each kind of data came from, e.g. `EOL data: bundled standards/data/k8s-eol.yaml`.
    pub sources: Vec<String>,
}

fn read_file(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|source| DataError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn from_file<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, DataError>,
) -> Result<T, String> {
    read_file(path)
        .and_then(|text| parse(&text))
        .map_err(|e| format!("{} ({})", e, path.display()))
}

/// Loads all data. Files given by the user always win (a broken file makes that data
/// unavailable rather than silently replacing it); `offline` uses bundled data for the
/// rest; online failures fall back to the bundled data with a warning.
pub async fn load(opts: &DataOptions, reference_date: Date, http: &reqwest::Client) -> LoadedData {
    let mut warnings = Vec::new();
    let mut sources = Vec::new();

    let eol = match &opts.eol_file {
        Some(path) => {
            sources.push(format!("EOL data: file {}", path.display()));
            from_file(path, EolData::parse_yaml)
        }
        None => {
            sources.push("EOL data: bundled standards/data/k8s-eol.yaml".into());
            EolData::bundled().map_err(|e| e.to_string())
        }
    };

    let releases = load_releases(opts, reference_date, http, &mut warnings, &mut sources).await;
    let cves = load_cves(opts, http, &mut warnings, &mut sources).await;

    LoadedData {
        eol,
        releases,
        cves,
        warnings,
        sources,
    }
}

/// Beyond this many days after its newest release, the bundled snapshot is called stale.
const SNAPSHOT_STALE_DAYS: i32 = 31;

fn bundled_releases(
    reference_date: Date,
    warnings: &mut Vec<String>,
    sources: &mut Vec<String>,
) -> Result<ReleaseData, String> {
    match ReleaseData::bundled() {
        Ok((data, parse_warnings)) => {
            let newest = data
                .newest_date()
                .map_or_else(|| "empty".to_string(), |d| format!("newest release {d}"));
            if let Some(last) = data.newest_date()
                && let Ok(age) = last.until(reference_date)
                && age.get_days() > SNAPSHOT_STALE_DAYS
            {
                warnings.push(format!(
                    "release data: the bundled snapshot ends on {last}, {} days before the \
                     reference date {reference_date}; patches published since are unknown to \
                     this run (run online or pass --release-data)",
                    age.get_days()
                ));
            }
            sources.push(format!(
                "release data: bundled standards/data/k8s-releases.json ({newest})"
            ));
            warnings.extend(parse_warnings);
            Ok(data)
        }
        Err(e) => Err(e.to_string()),
    }
}

async fn load_releases(
    opts: &DataOptions,
    reference_date: Date,
    http: &reqwest::Client,
    warnings: &mut Vec<String>,
    sources: &mut Vec<String>,
) -> Result<ReleaseData, String> {
    if let Some(path) = &opts.release_file {
        sources.push(format!("release data: file {}", path.display()));
        return from_file(path, ReleaseData::parse_json).map(|(data, parse_warnings)| {
            warnings.extend(parse_warnings);
            data
        });
    }
    if opts.offline {
        return bundled_releases(reference_date, warnings, sources);
    }
    match fetch_releases(http, &opts.release_url, reference_date).await {
        Ok((data, fetch_warnings)) if !data.releases.is_empty() => {
            sources.push(format!("release data: {}", opts.release_url));
            warnings.extend(fetch_warnings);
            Ok(data)
        }
        Ok(_) => {
            warnings.push(format!(
                "release data: {} listed no final releases; using the bundled snapshot",
                opts.release_url
            ));
            bundled_releases(reference_date, warnings, sources)
        }
        Err(e) => {
            warnings.push(format!("release data: {e}; using the bundled snapshot"));
            bundled_releases(reference_date, warnings, sources)
        }
    }
}

fn bundled_cve_data(
    warnings: &mut Vec<String>,
    sources: &mut Vec<String>,
) -> Result<Vec<Cve>, String> {
    match bundled_cves() {
        Ok((cves, parse_warnings)) => {
            sources.push(format!(
                "CVE data: bundled standards/data/k8s-cves.json ({} records)",
                cves.len()
            ));
            warnings.extend(parse_warnings);
            Ok(cves)
        }
        Err(e) => Err(e.to_string()),
    }
}

async fn load_cves(
    opts: &DataOptions,
    http: &reqwest::Client,
    warnings: &mut Vec<String>,
    sources: &mut Vec<String>,
) -> Result<Vec<Cve>, String> {
    if let Some(path) = &opts.cve_file {
        sources.push(format!("CVE data: file {}", path.display()));
        return from_file(path, parse_cve_records).map(|(cves, parse_warnings)| {
            warnings.extend(parse_warnings);
            cves
        });
    }
    if opts.offline {
        return bundled_cve_data(warnings, sources);
    }
    let ids = match fetch_cve_ids(http, &opts.cve_feed_url).await {
        Ok(ids) if !ids.is_empty() => ids,
        Ok(_) => {
            warnings.push(format!(
                "CVE data: {} lists no CVE ids; using the bundled records",
                opts.cve_feed_url
            ));
            return bundled_cve_data(warnings, sources);
        }
        Err(e) => {
            warnings.push(format!("CVE data: {e}; using the bundled records"));
            return bundled_cve_data(warnings, sources);
        }
    };
    let (cves, fetch_warnings, failed) = fetch_cve_records(http, &opts.cve_record_url, &ids).await;
    if failed > 0 && failed == ids.len() {
        warnings.extend(fetch_warnings.into_iter().take(3));
        warnings.push(format!(
            "CVE data: none of the {failed} CVE records could be fetched from {}; using the bundled records",
            opts.cve_record_url
        ));
        return bundled_cve_data(warnings, sources);
    }
    warnings.extend(fetch_warnings);
    sources.push(format!(
        "CVE data: {} ({} CVE ids) and records from {} ({} about Kubernetes{})",
        opts.cve_feed_url,
        ids.len(),
        opts.cve_record_url,
        cves.len(),
        if failed > 0 {
            format!(", {failed} not fetched")
        } else {
            String::new()
        }
    ));
    Ok(cves)
}

/// `text` with runs of whitespace (newlines included) folded into single spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
pub(super) mod testutil {
    use super::*;
    use serde_json::json;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A CVE JSON 5.x record of kube-apiserver with these versions and metrics.
    pub fn record(id: &str, versions: Value, metrics: Value) -> Value {
        json!({
            "dataType": "CVE_RECORD",
            "dataVersion": "5.1",
            "cveMetadata": {"cveId": id, "state": "PUBLISHED"},
            "containers": {"cna": {
                "affected": [{"vendor": "Kubernetes", "product": "kube-apiserver", "versions": versions}],
                "metrics": metrics
            }}
        })
    }

    pub fn date(s: &str) -> Date {
        s.parse().expect("test date")
    }

    pub fn v(s: &str) -> KubeVersion {
        KubeVersion::parse(s).expect("test version")
    }

    pub type Seen = Arc<Mutex<Vec<String>>>;

    /// Serves canned responses: `handler(path)` gives status and body.
    pub async fn serve(
        handler: impl Fn(&str) -> (u16, String) + Send + Sync + 'static,
    ) -> (String, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let seen: Seen = Arc::default();
        let handler = Arc::new(handler);
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => request.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let request = String::from_utf8_lossy(&request);
                    let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
                    log.lock().expect("log").push(path.clone());
                    let (status, body) = handler(&path);
                    let response = format!(
                        "HTTP/1.1 {status} Canned\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        (format!("http://{address}"), seen)
    }

    pub fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder().build().expect("client")
    }

    pub fn page(tags: impl Iterator<Item = String>, published: &str) -> String {
        Value::Array(
            tags.map(|tag| {
                json!({"tag_name": tag, "published_at": published, "draft": false, "prerelease": false})
            })
            .collect(),
        )
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use serde_json::json;

    fn online(base: &str) -> DataOptions {
        DataOptions {
            release_url: format!("{base}/releases"),
            cve_feed_url: format!("{base}/feed.json"),
            cve_record_url: format!("{base}/cve/"),
            ..DataOptions::default()
        }
    }

    #[tokio::test]
    async fn server_errors_fall_back_to_bundled_data_with_a_warning() {
        let (base, _) = serve(|_| (500, "oops".into())).await;
        let data = load(&online(&base), date("2026-04-18"), &client()).await;
        let releases = data.releases.expect("bundled releases");
        assert_eq!(releases, ReleaseData::bundled().unwrap().0);
        assert_eq!(data.cves.expect("bundled CVEs").len(), 4);
        let release_warning = data
            .warnings
            .iter()
            .find(|w| w.starts_with("release data:"))
            .expect("a release warning");
        assert!(release_warning.contains(&format!("GET {base}/releases?per_page=100&page=1")));
        assert!(release_warning.contains("500"));
        assert!(release_warning.contains("using the bundled snapshot"));
        assert!(
            data.warnings
                .iter()
                .any(|w| w.contains("feed.json") && w.contains("500"))
        );
        assert!(
            data.sources
                .iter()
                .any(|s| s.contains("bundled standards/data/k8s-releases.json"))
        );
        assert!(data.warnings.iter().all(|w| !w.contains('\n')));
    }

    #[tokio::test]
    async fn online_cves_from_feed_and_records() {
        let (base, seen) = serve(|path| match path {
            "/feed.json" => (
                200,
                json!({"items": [
                    {"id": "CVE-2099-0100", "external_url": "https://www.cve.org/cverecord?id=CVE-2099-0100"},
                    {"id": "CVE-2099-0101"},
                    {"id": "CVE-2099-0102"}
                ]})
                .to_string(),
            ),
            "/cve/CVE-2099-0100" => (
                200,
                record(
                    "CVE-2099-0100",
                    json!([{"version": "1.30.0", "lessThan": "1.30.3", "status": "affected"}]),
                    json!([{"cvssV3_1": {"baseScore": 8.1}}]),
                )
                .to_string(),
            ),
            "/cve/CVE-2099-0101" => (
                200,
                json!({"cveMetadata": {"cveId": "CVE-2099-0101"}, "containers": {"cna": {
                    "affected": [{"vendor": "x", "product": "y", "versions": []}]}}})
                .to_string(),
            ),
            _ => (404, "{}".into()),
        })
        .await;
        let opts = DataOptions {
            release_file: None,
            ..online(&base)
        };
        let http = client();
        let (cves, warnings) = {
            let mut warnings = Vec::new();
            let mut sources = Vec::new();
            let cves = load_cves(&opts, &http, &mut warnings, &mut sources)
                .await
                .unwrap();
            assert!(sources[0].contains("3 CVE ids") && sources[0].contains("1 not fetched"));
            (cves, warnings)
        };
        assert_eq!(cves.len(), 1);
        assert_eq!(cves[0].id, "CVE-2099-0100");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("CVE-2099-0102") && warnings[0].contains("404"));
        assert_eq!(seen.lock().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn offline_and_files() {
        let dir = std::env::temp_dir().join(format!("vp-data-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let eol = dir.join("eol.yaml");
        std::fs::write(&eol, "- branch: \"1.99\"\n  end-of-life: 2030-01-01\n").unwrap();
        let releases = dir.join("releases.json");
        std::fs::write(&releases, "not json").unwrap();
        let opts = DataOptions {
            offline: true,
            eol_file: Some(eol.clone()),
            release_file: Some(releases.clone()),
            cve_file: Some(dir.join("missing.json")),
            // Unroutable: offline must not touch the network.
            release_url: "http://127.0.0.1:9/".into(),
            ..DataOptions::default()
        };
        let data = load(&opts, date("2026-04-18"), &client()).await;
        assert_eq!(data.eol.unwrap().newest(), Some(Branch::new(1, 99)));
        let release_error = data.releases.unwrap_err();
        assert!(
            release_error.contains("invalid release data"),
            "{release_error}"
        );
        assert!(release_error.contains("releases.json"));
        assert!(data.cves.unwrap_err().contains("cannot read"));
        let _ = std::fs::remove_dir_all(&dir);

        let bundled = load(
            &DataOptions {
                offline: true,
                ..DataOptions::default()
            },
            date("2026-04-18"),
            &client(),
        )
        .await;
        assert!(bundled.eol.is_ok() && bundled.releases.is_ok() && bundled.cves.is_ok());
        assert!(bundled.warnings.is_empty(), "{:?}", bundled.warnings);
        assert_eq!(bundled.sources.len(), 3);
    }
}
