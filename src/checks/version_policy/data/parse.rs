//! Parsing the version-policy data: end-of-life dates (YAML), releases (the GitHub
//! releases API shape) and CVE JSON 5.x records and the Kubernetes CVE feed.

use super::*;

/// One branch and its last supported day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EolEntry {
    pub branch: Branch,
    pub end_of_life: Date,
}

/// End-of-life dates, sorted by branch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EolData {
    pub entries: Vec<EolEntry>,
}

#[derive(Deserialize)]
struct RawEolEntry {
    branch: String,
    #[serde(rename = "end-of-life")]
    end_of_life: String,
}

impl EolData {
    /// Parses the YAML list of `{branch: "1.34", end-of-life: 2026-10-27}`.
    pub fn parse_yaml(text: &str) -> Result<Self, DataError> {
        let raw: Vec<RawEolEntry> =
            serde_saphyr::from_str(text).map_err(|e| DataError::Eol(one_line(&e.to_string())))?;
        let mut entries = Vec::with_capacity(raw.len());
        for entry in raw {
            let branch = Branch::parse(&entry.branch).ok_or_else(|| {
                DataError::Eol(format!("branch {:?} is not major.minor", entry.branch))
            })?;
            let end_of_life: Date = entry.end_of_life.trim().parse().map_err(|e| {
                DataError::Eol(format!(
                    "end-of-life {:?} of branch {branch}: {e}",
                    entry.end_of_life
                ))
            })?;
            entries.push(EolEntry {
                branch,
                end_of_life,
            });
        }
        entries.sort_by_key(|e| e.branch);
        if let Some(pair) = entries.windows(2).find(|w| w[0].branch == w[1].branch) {
            return Err(DataError::Eol(format!(
                "branch {} is listed twice",
                pair[0].branch
            )));
        }
        if entries.is_empty() {
            return Err(DataError::Eol("no branches listed".into()));
        }
        Ok(EolData { entries })
    }

    pub fn bundled() -> Result<Self, DataError> {
        Self::parse_yaml(BUNDLED_EOL)
    }

    pub fn end_of_life(&self, branch: Branch) -> Option<Date> {
        self.entries
            .iter()
            .find(|e| e.branch == branch)
            .map(|e| e.end_of_life)
    }

    /// Branches whose end of life is on or after `date`.
    pub fn supported_at(&self, date: Date) -> Vec<Branch> {
        self.entries
            .iter()
            .filter(|e| e.end_of_life >= date)
            .map(|e| e.branch)
            .collect()
    }

    pub fn oldest(&self) -> Option<Branch> {
        self.entries.first().map(|e| e.branch)
    }

    pub fn newest(&self) -> Option<Branch> {
        self.entries.last().map(|e| e.branch)
    }
}

/// One published final release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    pub version: KubeVersion,
    pub published_at: Timestamp,
}

impl Release {
    /// The publication day (UTC).
    pub fn published(&self) -> Date {
        self.published_at.to_zoned(TimeZone::UTC).date()
    }
}

/// Final releases, sorted by version, one per version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseData {
    pub releases: Vec<Release>,
}

/// The fields used of a GitHub release object.
#[derive(Deserialize)]
struct GhRelease {
    tag_name: String,
    #[serde(default)]
    published_at: Option<String>,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    prerelease: bool,
}

impl ReleaseData {
    /// Parses a JSON array shaped like the GitHub releases API. Drafts, pre-releases and
    /// tags other than `vX.Y.Z` are skipped silently; malformed entries are skipped with a
    /// warning.
    pub fn parse_json(text: &str) -> Result<(Self, Vec<String>), DataError> {
        let items: Vec<Value> =
            serde_json::from_str(text).map_err(|e| DataError::Releases(e.to_string()))?;
        let mut data = ReleaseData::default();
        let warnings = data.add_items(items);
        Ok((data, warnings))
    }

    pub fn bundled() -> Result<(Self, Vec<String>), DataError> {
        Self::parse_json(BUNDLED_RELEASES)
    }

    /// Adds GitHub release objects; returns warnings for malformed ones.
    pub(super) fn add_items(&mut self, items: Vec<Value>) -> Vec<String> {
        let mut warnings = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            match serde_json::from_value::<GhRelease>(item) {
                Ok(gh) => match release_from_gh(&gh) {
                    Ok(Some(release)) => self.releases.push(release),
                    Ok(None) => {}
                    Err(message) => warnings.push(format!(
                        "release data: skipped {:?}: {message}",
                        gh.tag_name
                    )),
                },
                Err(e) => warnings.push(format!("release data: skipped entry #{index}: {e}")),
            }
        }
        self.releases.sort_by_key(|r| r.version);
        // The same tag twice (e.g. overlapping pages): keep the first publication.
        self.releases.dedup_by(|later, earlier| {
            if later.version == earlier.version {
                earlier.published_at = earlier.published_at.min(later.published_at);
                true
            } else {
                false
            }
        });
        warnings
    }

    /// Releases published on or before `date` (the world as of the reference date).
    pub fn as_of(&self, date: Date) -> impl Iterator<Item = &Release> + '_ {
        self.releases.iter().filter(move |r| r.published() <= date)
    }

    /// Releases of `branch` published on or before `date`, by version.
    pub fn branch_as_of(&self, branch: Branch, date: Date) -> Vec<&Release> {
        self.as_of(date)
            .filter(|r| r.version.branch() == branch)
            .collect()
    }

    /// The newest branch with an `x.y.0` release published on or before `date`, with that
    /// release.
    pub fn newest_minor_as_of(&self, date: Date) -> Option<&Release> {
        self.as_of(date)
            .filter(|r| r.version.patch == 0)
            .max_by_key(|r| r.version)
    }

    /// The newest publication day in the data.
    pub fn newest_date(&self) -> Option<Date> {
        self.releases.iter().map(Release::published).max()
    }
}

/// `Ok(None)` for drafts, pre-releases and non-final tags.
fn release_from_gh(gh: &GhRelease) -> Result<Option<Release>, String> {
    if gh.draft || gh.prerelease {
        return Ok(None);
    }
    let Some(version) = KubeVersion::parse_release_tag(&gh.tag_name) else {
        return Ok(None);
    };
    let raw = gh
        .published_at
        .as_deref()
        .ok_or_else(|| "no published_at".to_string())?;
    let published_at = parse_timestamp(raw)?;
    Ok(Some(Release {
        version,
        published_at,
    }))
}

/// RFC 3339 timestamp, or a plain date (taken as 12:00 UTC).
pub(super) fn parse_timestamp(raw: &str) -> Result<Timestamp, String> {
    if let Ok(ts) = raw.parse::<Timestamp>() {
        return Ok(ts);
    }
    raw.parse::<Date>()
        .ok()
        .and_then(|d| d.at(12, 0, 0, 0).to_zoned(TimeZone::UTC).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| format!("published_at {raw:?} is not an RFC 3339 timestamp"))
}

/// An inclusive or exclusive version bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upper {
    /// `lessThan`: versions below.
    Below(KubeVersion),
    /// `lessThanOrEqual`: versions up to and including.
    UpTo(KubeVersion),
    /// No upper bound (`lessThan: "*"`).
    Unbounded,
}

/// One affected range: `lower <= v` (no lower bound when `None`) and the upper bound.
///
/// How CVE `versions[*]` entries map to ranges:
/// - `version` is the inclusive lower bound; `"0"`, `"*"`, `""` and `"unspecified"` mean
///   none. A branch (`"1.30"`) as lower bound means `1.30.0`.
/// - `lessThan` is exclusive, `lessThanOrEqual` inclusive; `"*"` means unbounded. A branch
///   as `lessThan` means below `x.y.0`; as `lessThanOrEqual` the whole branch.
/// - No `lessThan`/`lessThanOrEqual`: exactly that version; a branch means the whole
///   branch. An entry with neither a usable lower nor an upper bound is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AffectedRange {
    pub lower: Option<KubeVersion>,
    pub upper: Upper,
}

impl AffectedRange {
    pub fn contains(&self, version: KubeVersion) -> bool {
        let above_lower = self.lower.is_none_or(|lower| version >= lower);
        let below_upper = match self.upper {
            Upper::Below(upper) => version < upper,
            Upper::UpTo(upper) => version <= upper,
            Upper::Unbounded => true,
        };
        above_lower && below_upper
    }
}

/// A CVE that concerns Kubernetes: its highest CVSS base score and affected ranges.
#[derive(Debug, Clone, PartialEq)]
pub struct Cve {
    pub id: String,
    /// Highest base score over all CVSS versions and containers of the record.
    pub score: Option<f64>,
    pub affected: Vec<AffectedRange>,
    /// The record's last update (`cveMetadata.dateUpdated`, else `datePublished`), UTC day.
    pub updated: Option<Date>,
}

impl Cve {
    pub fn affects(&self, version: KubeVersion) -> bool {
        self.affected.iter().any(|r| r.contains(version))
    }

    pub fn is_critical(&self, threshold: f64) -> bool {
        self.score.is_some_and(|s| s >= threshold)
    }

    /// Reads a CVE JSON 5.x record. `Ok(None)` when no `affected` entry is a Kubernetes
    /// product; warnings for entries that were skipped.
    pub fn from_record(record: &Value) -> Result<(Option<Cve>, Vec<String>), String> {
        let id = record
            .pointer("/cveMetadata/cveId")
            .and_then(Value::as_str)
            .ok_or("no cveMetadata.cveId")?
            .to_string();
        let cna = record
            .pointer("/containers/cna")
            .ok_or_else(|| format!("{id}: no containers.cna"))?;
        let mut warnings = Vec::new();
        let mut affected = Vec::new();
        let mut concerns_kubernetes = false;
        for entry in cna
            .get("affected")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !is_kubernetes_product(entry) {
                continue;
            }
            concerns_kubernetes = true;
            for version in entry
                .get("versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match affected_range(version) {
                    Ok(Some(range)) => affected.push(range),
                    Ok(None) => {}
                    Err(message) => {
                        warnings.push(format!("{id}: skipped version entry {version}: {message}"))
                    }
                }
            }
        }
        if !concerns_kubernetes {
            return Ok((None, warnings));
        }
        let containers = std::iter::once(cna).chain(
            record
                .pointer("/containers/adp")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
        let score = containers
            .flat_map(|c| {
                c.get("metrics")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .flat_map(|metric| {
                ["cvssV4_0", "cvssV3_1", "cvssV3_0", "cvssV2_0"]
                    .into_iter()
                    .filter_map(|key| metric.get(key)?.get("baseScore")?.as_f64())
            })
            .filter(|s| s.is_finite())
            .reduce(f64::max);
        let updated = ["/cveMetadata/dateUpdated", "/cveMetadata/datePublished"]
            .iter()
            .filter_map(|p| record.pointer(p)?.as_str())
            .filter_map(|raw| parse_timestamp(raw).ok())
            .map(|ts| ts.to_zoned(TimeZone::UTC).date())
            .max();
        Ok((
            Some(Cve {
                id,
                score,
                affected,
                updated,
            }),
            warnings,
        ))
    }
}

fn is_kubernetes_product(entry: &Value) -> bool {
    let field = |key: &str| {
        entry
            .get(key)
            .and_then(Value::as_str)
            .map(|s| s.trim().to_ascii_lowercase())
    };
    let product = field("product");
    let vendor = field("vendor");
    match product.as_deref() {
        Some("kubernetes") => true,
        Some(product) => {
            vendor.as_deref() == Some("kubernetes") && KUBERNETES_PRODUCTS.contains(&product)
        }
        None => false,
    }
}

fn is_unspecified(raw: &str) -> bool {
    matches!(
        raw.trim().to_ascii_lowercase().as_str(),
        "" | "0" | "*" | "unspecified" | "n/a"
    )
}

/// One `versions[*]` entry; `Ok(None)` for entries that are not `affected`.
fn affected_range(entry: &Value) -> Result<Option<AffectedRange>, String> {
    let status = entry
        .get("status")
        .and_then(Value::as_str)
        .ok_or("no status")?;
    if !status.eq_ignore_ascii_case("affected") {
        return Ok(None);
    }
    let text = |key: &str| -> Result<Option<&str>, String> {
        match entry.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(format!("{key} is not a string: {other}")),
        }
    };
    let version = text("version")?.ok_or("no version")?;
    let lower = if is_unspecified(version) {
        None
    } else {
        let parsed = KubeVersion::parse_loose(version)
            .ok_or_else(|| format!("version {version:?} is not a Kubernetes version"))?;
        Some(parsed)
    };
    let bound = |raw: &str| {
        KubeVersion::parse_loose(raw)
            .ok_or_else(|| format!("bound {raw:?} is not a Kubernetes version"))
    };
    let upper = match (text("lessThan")?, text("lessThanOrEqual")?) {
        (Some(_), Some(_)) => return Err("both lessThan and lessThanOrEqual".into()),
        (Some(raw), None) if raw.trim() == "*" => Upper::Unbounded,
        (None, Some(raw)) if raw.trim() == "*" => Upper::Unbounded,
        (Some(raw), None) => Upper::Below(bound(raw)?.0),
        (None, Some(raw)) => match bound(raw)? {
            (v, true) => Upper::UpTo(v),
            (v, false) => Upper::Below(v.branch().next().first_release()),
        },
        (None, None) => match lower {
            None => return Err("neither a version nor a range".into()),
            Some((v, true)) => Upper::UpTo(v),
            Some((v, false)) => Upper::Below(v.branch().next().first_release()),
        },
    };
    let lower = lower.map(|(v, _)| v);
    if let (Some(lower), Upper::Below(upper)) = (lower, upper)
        && upper <= lower
    {
        return Err(format!("empty range {lower} .. < {upper}"));
    }
    Ok(Some(AffectedRange { lower, upper }))
}

/// Parses a JSON array of CVE JSON 5.x records, keeping those about Kubernetes. Malformed
/// records are skipped with a warning.
pub fn parse_cve_records(text: &str) -> Result<(Vec<Cve>, Vec<String>), DataError> {
    let records: Vec<Value> =
        serde_json::from_str(text).map_err(|e| DataError::Cves(e.to_string()))?;
    let mut cves = Vec::new();
    let mut warnings = Vec::new();
    for (index, record) in records.iter().enumerate() {
        collect_record(record, &mut cves, &mut warnings, || format!("#{index}"));
    }
    Ok((cves, warnings))
}

pub(super) fn collect_record(
    record: &Value,
    cves: &mut Vec<Cve>,
    warnings: &mut Vec<String>,
    name: impl FnOnce() -> String,
) {
    match Cve::from_record(record) {
        Ok((cve, record_warnings)) => {
            warnings.extend(
                record_warnings
                    .into_iter()
                    .map(|w| format!("CVE data: {w}")),
            );
            cves.extend(cve);
        }
        Err(message) => warnings.push(format!(
            "CVE data: skipped malformed record {}: {message}",
            name()
        )),
    }
}

pub fn bundled_cves() -> Result<(Vec<Cve>, Vec<String>), DataError> {
    parse_cve_records(BUNDLED_CVES)
}

/// CVE ids (`CVE-YYYY-NNNN...`) found in a text, in order, without duplicates.
pub fn find_cve_ids(text: &str) -> Vec<String> {
    let upper = text.to_ascii_uppercase();
    let bytes = upper.as_bytes();
    let mut ids: Vec<String> = Vec::new();
    let mut start = 0;
    while let Some(offset) = upper[start..].find("CVE-") {
        let at = start + offset;
        let year_end = at
            + 4
            + bytes[at + 4..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
        let ok_year = year_end - (at + 4) == 4 && bytes.get(year_end) == Some(&b'-');
        if ok_year {
            let number_start = year_end + 1;
            let number_len = bytes[number_start..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if number_len >= 4 {
                let id = upper[at..number_start + number_len].to_string();
                if !ids.contains(&id) {
                    ids.push(id);
                }
                start = number_start + number_len;
                continue;
            }
        }
        start = at + 4;
    }
    ids
}

/// CVE ids listed by the official Kubernetes CVE feed (a JSON Feed 1.1 document whose
/// `items[*]` carry the CVE id in `id` and a cve.org link in `external_url`).
pub fn parse_cve_feed(text: &str) -> Result<Vec<String>, DataError> {
    let feed: Value = serde_json::from_str(text).map_err(|e| DataError::Cves(e.to_string()))?;
    let items = feed
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| DataError::Cves("the CVE feed has no items array".into()))?;
    let mut ids = BTreeSet::new();
    for item in items {
        for key in ["id", "external_url"] {
            if let Some(text) = item.get(key).and_then(Value::as_str) {
                ids.extend(find_cve_ids(text));
            }
        }
    }
    Ok(ids.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn bundled_data_parses_cleanly() {
        let eol = EolData::bundled().expect("bundled EOL data");
        assert_eq!(eol.oldest(), Some(Branch::new(1, 25)));
        assert_eq!(eol.newest(), Some(Branch::new(1, 37)));
        assert_eq!(
            eol.end_of_life(Branch::new(1, 34)),
            Some(date("2026-10-27"))
        );
        let (releases, warnings) = ReleaseData::bundled().expect("bundled releases");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(releases.releases.len() >= 60);
        assert_eq!(releases.newest_date(), Some(date("2026-04-15")));
        let (cves, warnings) = bundled_cves().expect("bundled CVEs");
        assert!(warnings.is_empty(), "{warnings:?}");
        let ids: Vec<&str> = cves.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "CVE-2023-3676",
                "CVE-2023-3955",
                "CVE-2023-5528",
                "CVE-2024-10220"
            ]
        );
        // CVE-2023-3676: exactly v1.28.0, and v1.27.0 ..= v1.27.4
        let cve = &cves[0];
        assert_eq!(cve.score, Some(8.8));
        assert!(cve.affects(v("v1.28.0")));
        assert!(!cve.affects(v("v1.28.1")));
        assert!(cve.affects(v("v1.27.4")));
        assert!(!cve.affects(v("v1.27.5")));
        assert!(cve.affects(v("v1.20.1")), "no lower bound below v1.24.16");
        assert_eq!(cves[2].score, Some(7.2));
    }

    #[test]
    fn eol_yaml_errors_are_reported() {
        for (text, needle) in [
            ("- branch: \"1.x\"\n  end-of-life: 2026-01-01\n", "1.x"),
            ("- branch: \"1.30\"\n  end-of-life: soon\n", "soon"),
            (
                "- branch: \"1.30\"\n  end-of-life: 2025-06-28\n- branch: \"1.30\"\n  end-of-life: 2025-06-28\n",
                "twice",
            ),
            ("[]", "no branches"),
            ("- nonsense", "invalid EOL data"),
        ] {
            let err = EolData::parse_yaml(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn releases_skip_drafts_prereleases_and_odd_tags() {
        let text = json!([
            {"tag_name": "v1.35.1", "published_at": "2026-02-10T18:00:00Z", "draft": false, "prerelease": false},
            {"tag_name": "v1.34.4", "published_at": "2026-02-10T17:00:00Z", "draft": false, "prerelease": false},
            {"tag_name": "v1.36.0-alpha.1", "published_at": "2026-02-10T16:00:00Z", "draft": false, "prerelease": true},
            {"tag_name": "v1.35.2", "published_at": null, "draft": true, "prerelease": false},
            {"tag_name": "v1.36.0-rc.0", "published_at": "2026-04-01T10:00:00Z", "draft": false, "prerelease": false},
            {"tag_name": "v1.35.0", "published_at": "2025-12-17T17:00:00Z", "draft": false, "prerelease": false, "body": "x"},
            {"tag_name": "v1.34.3", "published_at": "2025-12-09T10:00:00Z"},
            {"tag_name": "v1.33.7", "published_at": "yesterday"},
            {"name": "no tag"}
        ])
        .to_string();
        let (data, warnings) = ReleaseData::parse_json(&text).unwrap();
        let versions: Vec<String> = data
            .releases
            .iter()
            .map(|r| r.version.to_string())
            .collect();
        assert_eq!(versions, ["v1.34.3", "v1.34.4", "v1.35.0", "v1.35.1"]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("v1.33.7") && warnings[0].contains("yesterday"));
        assert!(warnings[1].contains("#8"));
        let branch = data.branch_as_of(Branch::new(1, 35), date("2026-01-31"));
        assert_eq!(branch.len(), 1, "releases after the date are ignored");
        assert_eq!(
            data.newest_minor_as_of(date("2026-04-18"))
                .map(|r| r.version),
            Some(v("v1.35.0"))
        );
        assert!(ReleaseData::parse_json("{}").is_err());
    }

    #[test]
    fn cve_ranges() {
        let cases = [
            // (entry, inside, outside)
            (
                json!({"version": "1.30.0", "lessThan": "1.30.3", "status": "affected", "versionType": "semver"}),
                vec!["v1.30.0", "v1.30.2"],
                vec!["v1.29.9", "v1.30.3", "v1.31.0"],
            ),
            (
                json!({"version": "v1.30.0", "lessThanOrEqual": "v1.30.3", "status": "affected"}),
                vec!["v1.30.0", "v1.30.3"],
                vec!["v1.30.4", "v1.29.1"],
            ),
            (
                json!({"version": "0", "lessThan": "1.28.12", "status": "affected"}),
                vec!["v1.0.0", "v1.28.11"],
                vec!["v1.28.12"],
            ),
            (
                json!({"version": "unspecified", "lessThanOrEqual": "1.27.4", "status": "affected"}),
                vec!["v1.27.4"],
                vec!["v1.27.5"],
            ),
            (
                json!({"version": "*", "lessThan": "1.26", "status": "affected"}),
                vec!["v1.25.99"],
                vec!["v1.26.0"],
            ),
            (
                json!({"version": "1.29", "lessThanOrEqual": "1.30", "status": "affected"}),
                vec!["v1.29.0", "v1.30.14"],
                vec!["v1.28.9", "v1.31.0"],
            ),
            (
                json!({"version": "v1.28.0", "status": "affected"}),
                vec!["v1.28.0"],
                vec!["v1.28.1", "v1.27.9"],
            ),
            (
                json!({"version": "1.31", "status": "affected", "versionType": "custom"}),
                vec!["v1.31.0", "v1.31.9"],
                vec!["v1.32.0", "v1.30.9"],
            ),
            (
                json!({"version": "1.32.0", "lessThan": "*", "status": "affected"}),
                vec!["v1.32.0", "v1.40.1"],
                vec!["v1.31.9"],
            ),
            (
                json!({"version": "v1.30.3", "status": "unaffected"}),
                vec![],
                vec!["v1.30.3", "v1.30.2"],
            ),
        ];
        for (entry, inside, outside) in cases {
            let rec = record("CVE-2099-0001", json!([entry.clone()]), json!([]));
            let (cve, warnings) = Cve::from_record(&rec).unwrap();
            assert!(warnings.is_empty(), "{entry}: {warnings:?}");
            let cve = cve.expect("a Kubernetes CVE");
            for version in inside {
                assert!(cve.affects(v(version)), "{entry} should contain {version}");
            }
            for version in outside {
                assert!(
                    !cve.affects(v(version)),
                    "{entry} should not contain {version}"
                );
            }
        }
    }

    #[test]
    fn cve_scores_take_the_highest_of_all_versions_and_containers() {
        let versions = json!([{"version": "1.30.0", "lessThan": "1.30.3", "status": "affected"}]);
        let mut rec = record(
            "CVE-2099-0002",
            versions,
            json!([{"cvssV3_1": {"baseScore": 6.5}}, {"cvssV2_0": {"baseScore": 7.0}}]),
        );
        let score = |rec: &Value| Cve::from_record(rec).unwrap().0.unwrap().score;
        assert_eq!(score(&rec), Some(7.0));
        rec["containers"]["adp"] = json!([{"metrics": [{"cvssV4_0": {"baseScore": 9.3}}]}]);
        assert_eq!(score(&rec), Some(9.3));
        rec["containers"]["cna"]["metrics"] = json!([{"cvssV3_0": {"baseScore": 9.8}}]);
        assert_eq!(score(&rec), Some(9.8));
        rec["containers"]["cna"]["metrics"] = json!([{"other": {}}]);
        rec["containers"]["adp"] = json!([]);
        assert_eq!(score(&rec), None);
    }

    #[test]
    fn products_other_than_kubernetes_are_ignored() {
        let product = |vendor: &str, product: &str| {
            json!({
                "cveMetadata": {"cveId": "CVE-2099-0003"},
                "containers": {"cna": {"affected": [{"vendor": vendor, "product": product,
                    "versions": [{"version": "1.0.0", "status": "affected"}]}]}}
            })
        };
        let concerns = |rec: Value| Cve::from_record(&rec).unwrap().0.is_some();
        assert!(concerns(product("n/a", "Kubernetes")));
        assert!(concerns(product("kubernetes", "kubelet")));
        assert!(concerns(product("Kubernetes", "KUBE-PROXY")));
        assert!(!concerns(product("Kubernetes", "ingress-nginx")));
        assert!(!concerns(product("Someone", "kubelet")));
    }

    #[test]
    fn malformed_records_and_entries_are_skipped_with_warnings() {
        let good = record(
            "CVE-2099-0010",
            json!([
                {"version": "1.30.0", "lessThan": "1.30.3", "status": "affected"},
                {"version": "banana", "lessThan": "1.30.3", "status": "affected"},
                {"version": "1.30.0", "lessThan": "1.30.3", "lessThanOrEqual": "1.30.3", "status": "affected"},
                {"version": "1.30.5", "lessThan": "1.30.3", "status": "affected"},
                {"version": "0", "status": "affected"},
                {"lessThan": "1.30.3", "status": "affected"},
                {"version": "1.30.0"},
                {"version": 130, "status": "affected"}
            ]),
            json!([{"cvssV3_1": {"baseScore": 8.8}}]),
        );
        let text = json!([
            good,
            {"cveMetadata": {}},
            {"cveMetadata": {"cveId": "CVE-2099-0011"}},
            "not an object"
        ])
        .to_string();
        let (cves, warnings) = parse_cve_records(&text).unwrap();
        assert_eq!(cves.len(), 1);
        assert_eq!(cves[0].affected.len(), 1);
        assert!(cves[0].affects(v("v1.30.2")));
        assert_eq!(warnings.len(), 10, "{warnings:#?}");
        assert!(warnings.iter().any(|w| w.contains("banana")));
        assert!(warnings.iter().any(|w| w.contains("both lessThan")));
        assert!(warnings.iter().any(|w| w.contains("empty range")));
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("neither a version nor a range"))
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("#1") && w.contains("cveId"))
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("CVE-2099-0011") || w.contains("#2"))
        );
        assert!(warnings.iter().all(|w| !w.contains('\n')));
        assert!(parse_cve_records("{").is_err());
    }

    #[test]
    fn cve_ids_from_the_feed() {
        let feed = json!({
            "version": "https://jsonfeed.org/version/1.1",
            "title": "Kubernetes Vulnerability Announcements - CVE Feed",
            "items": [
                {"id": "CVE-2024-10220", "url": "https://github.com/kubernetes/kubernetes/issues/128885",
                 "external_url": "https://www.cve.org/cverecord?id=CVE-2024-10220", "summary": "gitRepo"},
                {"id": "CVE-2023-5043, CVE-2023-5044", "external_url": "https://www.cve.org/cverecord?id=CVE-2023-5043"},
                {"id": "not-a-cve", "external_url": "https://www.cve.org/cverecord?id=cve-2023-3676"},
                {"summary": "no id"}
            ]
        })
        .to_string();
        assert_eq!(
            parse_cve_feed(&feed).unwrap(),
            [
                "CVE-2023-3676",
                "CVE-2023-5043",
                "CVE-2023-5044",
                "CVE-2024-10220"
            ]
        );
        assert!(parse_cve_feed("{\"items\": 3}").is_err());
        assert_eq!(
            find_cve_ids("CVE-20-1 CVE-2021-12 CVE-2021-25741x"),
            ["CVE-2021-25741"]
        );
    }

    // ---- online loading against a local HTTP server
}
