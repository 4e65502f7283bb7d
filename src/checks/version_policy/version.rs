//! Kubernetes version numbers: parsing of `gitVersion` strings and release tags.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// A Kubernetes version `major.minor.patch`, with its upstream pre-release stage if it has
/// one; vendor and build suffixes are not kept. Ordered like semver: a pre-release comes
/// before its release (`v1.34.8-rc.0 < v1.34.8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct KubeVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub stage: Stage,
}

/// Where a version stands in the upstream release process: an alpha, beta or release
/// candidate of `major.minor.patch` (tags `-alpha.N`, `-beta.N`, `-rc.N`), or the release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Stage {
    Alpha(u64),
    Beta(u64),
    Rc(u64),
    Release,
}

impl Stage {
    /// The upstream pre-release stage a suffix after the patch number names, e.g. `-rc.0`,
    /// `-alpha.1.23+abc` (a build from a pre-release tag) or `-beta`. Vendor suffixes
    /// (`-gke.1200`, `-eks-abcdef`, `+k3s1`, `+rke2r1`) name none.
    fn of_suffix(rest: &str) -> Stage {
        let Some(tag) = rest.strip_prefix('-') else {
            return Stage::Release;
        };
        for (name, stage) in [
            ("alpha", Stage::Alpha as fn(u64) -> Stage),
            ("beta", Stage::Beta),
            ("rc", Stage::Rc),
        ] {
            let Some(after) = tag.strip_prefix(name) else {
                continue;
            };
            if after.is_empty() || after.starts_with('+') {
                return stage(0);
            }
            if let Some(number) = after.strip_prefix('.') {
                let digits: String = number.chars().take_while(char::is_ascii_digit).collect();
                let tail = &number[digits.len()..];
                if let Ok(n) = digits.parse()
                    && (tail.is_empty() || tail.starts_with('.') || tail.starts_with('+'))
                {
                    return stage(n);
                }
            }
        }
        Stage::Release
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Alpha(n) => write!(f, "alpha.{n}"),
            Stage::Beta(n) => write!(f, "beta.{n}"),
            Stage::Rc(n) => write!(f, "rc.{n}"),
            Stage::Release => write!(f, "release"),
        }
    }
}

/// A release branch (minor release) `major.minor`, e.g. `1.34`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Branch {
    pub major: u64,
    pub minor: u64,
}

/// A version string that is not a Kubernetes version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse Kubernetes version {0:?}")]
pub struct VersionParseError(pub String);

impl KubeVersion {
    /// A release (no pre-release stage).
    pub const fn new(major: u64, minor: u64, patch: u64) -> Self {
        KubeVersion {
            major,
            minor,
            patch,
            stage: Stage::Release,
        }
    }

    /// Parses a version as reported by a cluster (`/version` → `gitVersion`).
    ///
    /// Accepts an optional leading `v`. An upstream pre-release tag after the patch number
    /// (`v1.34.8-rc.0`, `v1.35.0-alpha.1`, `v1.35.0-beta.2`) is kept as the [`Stage`];
    /// everything else after `-` or `+` is ignored: vendor builds (`v1.33.4-gke.1200`,
    /// `v1.30.1-eks-abcdef`) and build metadata (`v1.34.2+k3s1`, `v1.33.1+rke2r1`).
    pub fn parse(input: &str) -> Result<Self, VersionParseError> {
        let error = || VersionParseError(input.to_string());
        let (numbers, rest) = split_numbers(input.trim()).ok_or_else(error)?;
        if !(rest.is_empty() || rest.starts_with('-') || rest.starts_with('+')) {
            return Err(error());
        }
        match numbers[..] {
            [major, minor, patch] => Ok(KubeVersion {
                stage: Stage::of_suffix(rest),
                ..KubeVersion::new(major, minor, patch)
            }),
            _ => Err(error()),
        }
    }

    /// Whether this is an upstream pre-release (alpha, beta or release candidate).
    pub fn is_prerelease(self) -> bool {
        self.stage != Stage::Release
    }

    /// The release this version is (or is a pre-release of).
    pub fn release(self) -> KubeVersion {
        KubeVersion::new(self.major, self.minor, self.patch)
    }

    /// Parses a release tag that names a final release: exactly `vX.Y.Z` (or `X.Y.Z`).
    /// Pre-release tags (`v1.35.0-rc.1`) and anything else give `None`.
    pub fn parse_release_tag(tag: &str) -> Option<Self> {
        match split_numbers(tag.trim()) {
            Some((numbers, "")) => match numbers[..] {
                [major, minor, patch] => Some(KubeVersion::new(major, minor, patch)),
                _ => None,
            },
            _ => None,
        }
    }

    /// Parses a version or branch as written in CVE records: `v1.30.2`, `1.30.2` or
    /// `1.30`; suffixes after `-`/`+` are ignored. Returns the version and whether a patch
    /// number was given (`1.30` gives `(1.30.0, false)`).
    pub fn parse_loose(input: &str) -> Option<(Self, bool)> {
        let (numbers, rest) = split_numbers(input.trim())?;
        if !(rest.is_empty() || rest.starts_with('-') || rest.starts_with('+')) {
            return None;
        }
        match numbers[..] {
            [major, minor] => Some((KubeVersion::new(major, minor, 0), false)),
            [major, minor, patch] => Some((KubeVersion::new(major, minor, patch), true)),
            _ => None,
        }
    }

    pub fn branch(self) -> Branch {
        Branch {
            major: self.major,
            minor: self.minor,
        }
    }
}

impl FromStr for KubeVersion {
    type Err = VersionParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KubeVersion::parse(s)
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)?;
        match self.stage {
            Stage::Release => Ok(()),
            stage => write!(f, "-{stage}"),
        }
    }
}

impl Branch {
    pub const fn new(major: u64, minor: u64) -> Self {
        Branch { major, minor }
    }

    /// Parses `1.34` or `v1.34`.
    pub fn parse(input: &str) -> Option<Self> {
        match split_numbers(input.trim()) {
            Some((numbers, "")) => match numbers[..] {
                [major, minor] => Some(Branch::new(major, minor)),
                _ => None,
            },
            _ => None,
        }
    }

    /// The first release of the branch, `x.y.0`.
    pub fn first_release(self) -> KubeVersion {
        KubeVersion::new(self.major, self.minor, 0)
    }

    /// The next branch (`1.34` → `1.35`).
    pub fn next(self) -> Branch {
        Branch::new(self.major, self.minor.saturating_add(1))
    }
}

impl fmt::Display for Branch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Splits `v1.2.3rest` into up to three dot-separated numbers and the unparsed rest.
/// Needs at least `major.minor`; a dot must be followed by digits.
fn split_numbers(input: &str) -> Option<(Vec<u64>, &str)> {
    let mut rest = input
        .strip_prefix('v')
        .or_else(|| input.strip_prefix('V'))
        .unwrap_or(input);
    let mut numbers = Vec::with_capacity(3);
    loop {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        numbers.push(rest[..digits].parse().ok()?);
        rest = &rest[digits..];
        if numbers.len() == 3 {
            break;
        }
        match rest.strip_prefix('.') {
            Some(after) if after.starts_with(|c: char| c.is_ascii_digit()) => rest = after,
            _ => break,
        }
    }
    (numbers.len() >= 2).then_some((numbers, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_cluster_version_forms() {
        let cases = [
            ("v1.34.2", KubeVersion::new(1, 34, 2)),
            ("1.34.2", KubeVersion::new(1, 34, 2)),
            ("v1.34.2+k3s1", KubeVersion::new(1, 34, 2)),
            ("v1.33.4-gke.1200", KubeVersion::new(1, 33, 4)),
            ("v1.30.1-eks-abcdef", KubeVersion::new(1, 30, 1)),
            ("v1.33.1+rke2r1", KubeVersion::new(1, 33, 1)),
            ("v1.33.1-rcx.1", KubeVersion::new(1, 33, 1)),
            (" v1.31.10 ", KubeVersion::new(1, 31, 10)),
        ];
        for (input, want) in cases {
            assert_eq!(KubeVersion::parse(input), Ok(want), "{input}");
            assert!(!want.is_prerelease());
        }
    }

    #[test]
    fn upstream_prereleases_are_kept_and_order_before_their_release() {
        let cases = [
            ("v1.34.8-rc.0", Stage::Rc(0)),
            ("v1.29.3-rc.1", Stage::Rc(1)),
            ("v1.35.0-alpha.1", Stage::Alpha(1)),
            ("v1.35.0-alpha.0.123+0123abcd", Stage::Alpha(0)),
            ("v1.35.0-beta.2", Stage::Beta(2)),
            ("v1.35.0-beta", Stage::Beta(0)),
        ];
        for (input, stage) in cases {
            let v = KubeVersion::parse(input).unwrap();
            assert_eq!(v.stage, stage, "{input}");
            assert!(v.is_prerelease());
            assert!(v < v.release(), "{input}");
        }
        let rc = KubeVersion::parse("v1.34.8-rc.0").unwrap();
        assert!(rc > KubeVersion::new(1, 34, 7));
        assert_eq!(rc.to_string(), "v1.34.8-rc.0");
        assert_eq!(rc.release(), KubeVersion::new(1, 34, 8));
        assert!(
            KubeVersion::parse("v1.35.0-alpha.2").unwrap()
                < KubeVersion::parse("v1.35.0-beta.0").unwrap()
        );
    }

    #[test]
    fn rejects_non_versions_quoting_them() {
        for input in [
            "foo", "", "v", "v1", "1.34", "v1.34.", "v1.34.x", "1.34.2x", "v1..2", "1.2.3.4",
        ] {
            let err = KubeVersion::parse(input).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("cannot parse Kubernetes version {input:?}")
            );
        }
        assert_eq!(
            KubeVersion::parse("foo").unwrap_err().to_string(),
            r#"cannot parse Kubernetes version "foo""#
        );
    }

    #[test]
    fn release_tags_must_be_plain() {
        assert_eq!(
            KubeVersion::parse_release_tag("v1.35.1"),
            Some(KubeVersion::new(1, 35, 1))
        );
        for tag in [
            "v1.35.0-rc.1",
            "v1.35.0-alpha.0",
            "v1.35",
            "kubernetes-1.35.0",
            "v1.35.0+x",
        ] {
            assert_eq!(KubeVersion::parse_release_tag(tag), None, "{tag}");
        }
    }

    #[test]
    fn loose_parsing_for_cve_records() {
        assert_eq!(
            KubeVersion::parse_loose("v1.30.2"),
            Some((KubeVersion::new(1, 30, 2), true))
        );
        assert_eq!(
            KubeVersion::parse_loose("1.30"),
            Some((KubeVersion::new(1, 30, 0), false))
        );
        assert_eq!(KubeVersion::parse_loose("0"), None);
        assert_eq!(KubeVersion::parse_loose("*"), None);
    }

    #[test]
    fn ordering_and_display() {
        assert!(KubeVersion::new(1, 33, 10) > KubeVersion::new(1, 33, 9));
        assert!(Branch::new(1, 10) > Branch::new(1, 9));
        assert_eq!(KubeVersion::new(1, 33, 2).to_string(), "v1.33.2");
        assert_eq!(Branch::new(1, 33).to_string(), "1.33");
        assert_eq!(Branch::parse("v1.34"), Some(Branch::new(1, 34)));
        assert_eq!(Branch::parse("1.34.1"), None);
    }
}
