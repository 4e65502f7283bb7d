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

/// How far a data set is known to be complete: it can rule out a release (or CVE)
/// published on a day only if it covers that day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// Complete up to and including this day: the fetch day for online data, else the
    /// newest date in the data (its newest release, its newest CVE record). `None`: the
    /// data holds nothing dated.
    pub until: Option<Date>,
    /// What the data is, for messages, e.g. `the bundled snapshot standards/data/...`.
    pub what: String,
    /// Known gaps (e.g. CVE records that could not be fetched): the data then rules out
    /// nothing.
    pub gaps: Option<String>,
    /// How to get data that covers more, for messages.
    pub fresher: &'static str,
}

/// How to get fresher release data.
pub const FRESHER_RELEASES: &str = "run online (set GITHUB_TOKEN against GitHub's rate limit) \
    or pass a current --release-data file";
/// How to get fresher CVE data.
pub const FRESHER_CVES: &str = "run online or pass a current --cve-data file";

impl Coverage {
    fn new(what: impl Into<String>, until: Option<Date>, fresher: &'static str) -> Self {
        Coverage {
            until,
            what: what.into(),
            gaps: None,
            fresher,
        }
    }

    /// Whether everything published up to and including `day` is in the data.
    pub fn covers(&self, day: Date) -> bool {
        self.gaps.is_none() && self.until.is_some_and(|until| until >= day)
    }

    /// Why the data does not cover `day`, with how to get fresher data; one line.
    pub fn shortfall(&self, day: Date) -> String {
        let reason = match (&self.gaps, self.until) {
            (Some(gaps), _) => format!("{} is incomplete ({gaps})", self.what),
            (None, Some(until)) => format!("{} ends on {until}, before {day}", self.what),
            (None, None) => format!("{} holds nothing dated", self.what),
        };
        format!("{reason}; to decide, {}", self.fresher)
    }
}

/// The loaded data; `Err` holds why a kind of data is unavailable.
#[derive(Debug, Clone)]
pub struct LoadedData {
    pub eol: Result<EolData, String>,
    pub releases: Result<ReleaseData, String>,
    pub cves: Result<Vec<Cve>, String>,
    /// How far the release data is complete.
    pub release_coverage: Coverage,
    /// How far the CVE data is complete.
    pub cve_coverage: Coverage,
    /// One line each: skipped entries, records that could not be fetched.
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

/// The end-of-life data (a file or the bundled one) and where it comes from. Local only,
/// so the branch can be judged before anything is fetched.
pub fn load_eol(opts: &DataOptions) -> (Result<EolData, String>, String) {
    match &opts.eol_file {
        Some(path) => (
            from_file(path, EolData::parse_yaml),
            format!("EOL data: file {}", path.display()),
        ),
        None => (
            EolData::bundled().map_err(|e| e.to_string()),
            "EOL data: bundled standards/data/k8s-eol.yaml".into(),
        ),
    }
}

/// Loads all data. Files given by the user always win (a broken file makes that data
/// unavailable rather than silently replacing it); `offline` uses bundled data for the
/// rest. An online fetch that fails makes that data unavailable, naming the failure: it
/// never falls back silently to the bundled snapshot (`--offline` chooses that).
pub async fn load(opts: &DataOptions, reference_date: Date, http: &reqwest::Client) -> LoadedData {
    let mut warnings = Vec::new();
    let (eol, eol_source) = load_eol(opts);
    let mut sources = vec![eol_source];
    let (releases, release_coverage) =
        load_releases(opts, reference_date, http, &mut warnings, &mut sources).await;
    let (cves, cve_coverage) = load_cves(opts, http, &mut warnings, &mut sources).await;
    LoadedData {
        eol,
        releases,
        cves,
        release_coverage,
        cve_coverage,
        warnings,
        sources,
    }
}

/// Today (UTC): online data is complete up to the day it was fetched.
fn today() -> Date {
    Timestamp::now().to_zoned(TimeZone::UTC).date()
}

/// Why an online fetch failed, with what to do instead.
fn fetch_failed(what: &str, error: impl std::fmt::Display, file_flag: &str) -> String {
    let text = error.to_string();
    let rate_limit = if text.contains("403") || text.contains("429") {
        " (GitHub limits unauthenticated requests: set GITHUB_TOKEN)"
    } else {
        ""
    };
    format!(
        "{what} could not be fetched: {text}{rate_limit}; pass {file_flag} FILE, or --offline \
         to judge by the bundled snapshot"
    )
}

fn bundled_releases(
    warnings: &mut Vec<String>,
    sources: &mut Vec<String>,
) -> (Result<ReleaseData, String>, Coverage) {
    const WHAT: &str = "the bundled snapshot standards/data/k8s-releases.json";
    match ReleaseData::bundled() {
        Ok((data, parse_warnings)) => {
            let newest = data
                .newest_date()
                .map_or_else(|| "empty".to_string(), |d| format!("newest release {d}"));
            sources.push(format!(
                "release data: bundled standards/data/k8s-releases.json ({newest})"
            ));
            warnings.extend(parse_warnings);
            let coverage = Coverage::new(WHAT, data.newest_date(), FRESHER_RELEASES);
            (Ok(data), coverage)
        }
        Err(e) => (
            Err(e.to_string()),
            Coverage::new(WHAT, None, FRESHER_RELEASES),
        ),
    }
}

async fn load_releases(
    opts: &DataOptions,
    reference_date: Date,
    http: &reqwest::Client,
    warnings: &mut Vec<String>,
    sources: &mut Vec<String>,
) -> (Result<ReleaseData, String>, Coverage) {
    if let Some(path) = &opts.release_file {
        sources.push(format!("release data: file {}", path.display()));
        let data = from_file(path, ReleaseData::parse_json).map(|(data, parse_warnings)| {
            warnings.extend(parse_warnings);
            data
        });
        let until = data.as_ref().ok().and_then(ReleaseData::newest_date);
        let what = format!("the release file {}", path.display());
        return (data, Coverage::new(what, until, FRESHER_RELEASES));
    }
    if opts.offline {
        return bundled_releases(warnings, sources);
    }
    let coverage = Coverage::new(
        format!("the release list of {}", opts.release_url),
        Some(today()),
        FRESHER_RELEASES,
    );
    let data = match fetch_releases(http, &opts.release_url, reference_date).await {
        Ok((data, fetch_warnings)) if !data.releases.is_empty() => {
            sources.push(format!("release data: {}", opts.release_url));
            warnings.extend(fetch_warnings);
            Ok(data)
        }
        Ok(_) => Err(fetch_failed(
            "release data",
            format!("{} listed no final releases", opts.release_url),
            "--release-data",
        )),
        Err(e) => Err(fetch_failed("release data", e, "--release-data")),
    };
    (data, coverage)
}

/// Coverage of CVE records from a file or the bundled set: up to the newest record date.
fn record_coverage(what: String, cves: &Result<Vec<Cve>, String>) -> Coverage {
    let until = cves
        .as_ref()
        .ok()
        .and_then(|list| list.iter().filter_map(|c| c.updated).max());
    Coverage::new(what, until, FRESHER_CVES)
}

fn bundled_cve_data(
    warnings: &mut Vec<String>,
    sources: &mut Vec<String>,
) -> (Result<Vec<Cve>, String>, Coverage) {
    let cves = match bundled_cves() {
        Ok((cves, parse_warnings)) => {
            sources.push(format!(
                "CVE data: bundled standards/data/k8s-cves.json ({} records)",
                cves.len()
            ));
            warnings.extend(parse_warnings);
            Ok(cves)
        }
        Err(e) => Err(e.to_string()),
    };
    let coverage = record_coverage(
        "the bundled CVE data standards/data/k8s-cves.json".into(),
        &cves,
    );
    (cves, coverage)
}

async fn load_cves(
    opts: &DataOptions,
    http: &reqwest::Client,
    warnings: &mut Vec<String>,
    sources: &mut Vec<String>,
) -> (Result<Vec<Cve>, String>, Coverage) {
    if let Some(path) = &opts.cve_file {
        sources.push(format!("CVE data: file {}", path.display()));
        let cves = from_file(path, parse_cve_records).map(|(cves, parse_warnings)| {
            warnings.extend(parse_warnings);
            cves
        });
        let coverage = record_coverage(format!("the CVE file {}", path.display()), &cves);
        return (cves, coverage);
    }
    if opts.offline {
        return bundled_cve_data(warnings, sources);
    }
    let mut coverage = Coverage::new(
        format!(
            "the CVE feed {} with records from {}",
            opts.cve_feed_url, opts.cve_record_url
        ),
        Some(today()),
        FRESHER_CVES,
    );
    let ids = match fetch_cve_ids(http, &opts.cve_feed_url).await {
        Ok(ids) if !ids.is_empty() => ids,
        Ok(_) => {
            let e = format!("{} lists no CVE ids", opts.cve_feed_url);
            return (Err(fetch_failed("CVE data", e, "--cve-data")), coverage);
        }
        Err(e) => return (Err(fetch_failed("CVE data", e, "--cve-data")), coverage),
    };
    let (cves, fetch_warnings, failed) = fetch_cve_records(http, &opts.cve_record_url, &ids).await;
    if failed > 0 && failed == ids.len() {
        let first = fetch_warnings.first().cloned().unwrap_or_default();
        let e = format!(
            "none of the {failed} CVE records could be fetched from {} ({first})",
            opts.cve_record_url
        );
        return (Err(fetch_failed("CVE data", e, "--cve-data")), coverage);
    }
    if failed > 0 {
        let missing: Vec<&str> = fetch_warnings
            .iter()
            .filter_map(|w| w.strip_prefix("CVE data: cannot fetch "))
            .filter_map(|w| w.split(':').next())
            .collect();
        coverage.gaps = Some(format!(
            "{failed} of {} records could not be fetched: {}",
            ids.len(),
            missing.join(", ")
        ));
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
    (Ok(cves), coverage)
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
    async fn failed_fetches_make_the_data_unavailable_instead_of_falling_back() {
        let (base, _) = serve(|_| (500, "oops".into())).await;
        let data = load(&online(&base), date("2026-04-18"), &client()).await;
        let release_error = data.releases.expect_err("no fallback to the snapshot");
        assert!(
            release_error.starts_with(&format!(
                "release data could not be fetched: GET {base}/releases?per_page=100&page=1: \
                 HTTP status 500"
            )),
            "{release_error}"
        );
        assert!(
            release_error.ends_with(
                "; pass --release-data FILE, or --offline to judge by the bundled snapshot"
            ),
            "{release_error}"
        );
        let cve_error = data.cves.expect_err("no fallback to the bundled records");
        assert!(
            cve_error.contains("feed.json") && cve_error.contains("500"),
            "{cve_error}"
        );
        assert!(
            data.sources
                .iter()
                .all(|s| !s.contains("bundled standards/data/k8s-releases")),
            "{:?}",
            data.sources
        );
        assert!(!release_error.contains('\n'));
    }

    #[tokio::test]
    async fn rate_limits_and_objects_instead_of_lists_are_named() {
        let (base, _) = serve(|path| {
            if path.starts_with("/releases") {
                (403, r#"{"message":"API rate limit exceeded"}"#.into())
            } else {
                (200, r#"{"message":"not a list"}"#.into())
            }
        })
        .await;
        let data = load(&online(&base), date("2026-04-18"), &client()).await;
        let e = data.releases.unwrap_err();
        assert!(e.contains("403") && e.contains("set GITHUB_TOKEN"), "{e}");
        let opts = DataOptions {
            release_url: format!("{base}/list"),
            ..online(&base)
        };
        let data = load(&opts, date("2026-04-18"), &client()).await;
        let e = data.releases.unwrap_err();
        assert!(e.contains("not a JSON array of releases"), "{e}");
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
            let (cves, coverage) = load_cves(&opts, &http, &mut warnings, &mut sources).await;
            assert!(sources[0].contains("3 CVE ids") && sources[0].contains("1 not fetched"));
            // A record that could not be fetched leaves a gap: nothing can be ruled out.
            assert_eq!(
                coverage.gaps.as_deref(),
                Some("1 of 3 records could not be fetched: CVE-2099-0102")
            );
            assert!(!coverage.covers(date("2000-01-01")));
            (cves.unwrap(), warnings)
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
        // The snapshot covers up to its newest release, the records up to the newest one.
        assert_eq!(bundled.release_coverage.until, Some(date("2026-04-15")));
        assert_eq!(bundled.cve_coverage.until, Some(date("2024-11-22")));
        assert_eq!(
            bundled.release_coverage.shortfall(date("2026-10-17")),
            "the bundled snapshot standards/data/k8s-releases.json ends on 2026-04-15, before \
             2026-10-17; to decide, run online (set GITHUB_TOKEN against GitHub's rate limit) \
             or pass a current --release-data file"
        );
        assert_eq!(bundled.sources.len(), 3);
    }
}
