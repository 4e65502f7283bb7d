//! Handing files of any realistic size back through ConfigMaps: the results of an in-cluster
//! run and of an upstream e2e run.
//!
//! A ConfigMap holds at most 1 MiB (`data` and `binaryData` together; the API server answers
//! 422 Invalid above that), while a conformance `junit_01.xml` lists ~6600 testcases in
//! ~2.3 MB and a 5000-node report is megabytes too. Design (chosen over cutting files to fit,
//! which loses exactly what certification needs, and over one ConfigMap per file, which
//! still fails for one big file):
//! - the files are put into one payload (JSON, file name -> text) and gzip-compressed (XML and
//!   logs compress about tenfold, so usually one object is enough);
//! - the payload is split into parts of at most [`PART_BYTES`] in `binaryData` of
//!   ConfigMaps `<name>-part-1..N`;
//! - the manifest ConfigMap `<name>` is written LAST: format, part count, SHA-256 of the
//!   payload, the files and their sizes, and small plain values (verdicts, exit code). A
//!   reader that finds no manifest has no results; a manifest whose parts are missing or
//!   do not match the digest means incomplete results, never silently partial ones.
//! - Only when even [`MAX_PARTS`] parts do not suffice are `.log` files shortened (cut from
//!   the front, the end kept); the manifest names them. Reports are never cut: if they alone
//!   do not fit, storing fails with an error saying so.

use super::errors::{ApiError, call};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

/// Value of the manifest's `format` key.
pub const FORMAT: &str = "scs-kaas-check-bundle/v1";
/// Bytes of payload per part ConfigMap: under the API server's 1 MiB limit with room for
/// the object's metadata.
pub const PART_BYTES: usize = 960 * 1024;
/// At most this many parts (about 15 MiB compressed, 150 MB of text) before logs are
/// shortened.
pub const MAX_PARTS: usize = 16;
/// Manifest keys.
pub const FORMAT_KEY: &str = "format";
pub const PARTS_KEY: &str = "parts";
pub const DIGEST_KEY: &str = "sha256";
pub const FILES_KEY: &str = "files";
pub const SHORTENED_KEY: &str = "shortened";
/// The key of the payload in a part ConfigMap.
const PART_KEY: &str = "part";

/// The name of part `i` (1-based) of bundle `name`.
pub fn part_name(name: &str, i: usize) -> String {
    format!("{name}-part-{i}")
}

/// A payload ready to be stored.
#[derive(Debug)]
pub struct Packed {
    pub parts: Vec<Vec<u8>>,
    pub digest: String,
    /// `name size` lines of the files as stored.
    pub files: String,
    /// Logs that were shortened to fit.
    pub shortened: Vec<String>,
}

fn gzip(files: &BTreeMap<String, String>) -> std::io::Result<Vec<u8>> {
    let json = serde_json::to_vec(files).map_err(std::io::Error::other)?;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&json)?;
    encoder.finish()
}

fn sha256(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compresses and splits `files`; shortens `.log` files (front first) only if the payload
/// would need more than `max_parts` parts of `part_bytes`. `Err` says why it cannot fit.
pub fn pack(
    mut files: BTreeMap<String, String>,
    part_bytes: usize,
    max_parts: usize,
) -> Result<Packed, String> {
    let budget = part_bytes * max_parts;
    let mut shortened = Vec::new();
    let mut payload = gzip(&files).map_err(|e| format!("cannot compress the results: {e}"))?;
    for _ in 0..4 {
        if payload.len() <= budget {
            break;
        }
        let logs: Vec<String> = files
            .keys()
            .filter(|k| k.ends_with(".log"))
            .cloned()
            .collect();
        if logs.is_empty() {
            break;
        }
        // Shrink the logs by the factor the payload is over budget, with a margin.
        let factor = budget as f64 / payload.len() as f64 * 0.9;
        for key in logs {
            if let Some(text) = files.get_mut(&key) {
                let keep = (text.len() as f64 * factor) as usize;
                *text = super::objects::cut_front(text, keep);
                if !shortened.contains(&key) {
                    shortened.push(key);
                }
            }
        }
        payload = gzip(&files).map_err(|e| format!("cannot compress the results: {e}"))?;
    }
    if payload.len() > budget {
        return Err(format!(
            "the results are {} bytes compressed, more than {max_parts} ConfigMaps of {} bytes \
             hold even with the logs shortened",
            payload.len(),
            part_bytes
        ));
    }
    Ok(Packed {
        digest: sha256(&payload),
        parts: payload
            .chunks(part_bytes.max(1))
            .map(<[u8]>::to_vec)
            .collect(),
        files: files
            .iter()
            .map(|(k, v)| format!("{k} {}\n", v.len()))
            .collect(),
        shortened,
    })
}

/// Joins and checks parts against the manifest's digest, then decompresses them. `Err`
/// says what does not match.
pub fn unpack(parts: &[Vec<u8>], digest: &str) -> Result<BTreeMap<String, String>, String> {
    let payload: Vec<u8> = parts.concat();
    let actual = sha256(&payload);
    if actual != digest {
        return Err(format!(
            "the stored parts do not match the manifest's digest (sha256 {actual}, expected {digest})"
        ));
    }
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(payload.as_slice())
        .read_to_end(&mut json)
        .map_err(|e| format!("cannot decompress the results: {e}"))?;
    serde_json::from_slice(&json).map_err(|e| format!("the results are malformed: {e}"))
}

/// Creates ConfigMap `cm` in the client's default namespace, or replaces one of that name.
async fn put(api: &Api<ConfigMap>, timeout: Duration, mut cm: ConfigMap) -> Result<(), ApiError> {
    let name = cm.metadata.name.clone().unwrap_or_default();
    let what = format!("store configmap {name}");
    match call(&what, timeout, api.create(&PostParams::default(), &cm)).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == Some(409) => {
            let current = call(&what, timeout, api.get(&name)).await?;
            cm.metadata.resource_version = current.metadata.resource_version;
            call(
                &what,
                timeout,
                api.replace(&name, &PostParams::default(), &cm),
            )
            .await
            .map(|_| ())
        }
        Err(e) => Err(e),
    }
}

/// Stores `files` as bundle `name` in the client's default namespace (the service
/// account's namespace when running in a pod): the parts, then the manifest with `plain`
/// (small values readable with kubectl). Returns a line for stderr; `Err` names what failed
/// (an API error, or results that cannot fit).
pub async fn store(
    client: &kube::Client,
    request_timeout: Duration,
    name: &str,
    files: BTreeMap<String, String>,
    plain: BTreeMap<String, String>,
) -> Result<String, ApiError> {
    let namespace = client.default_namespace().to_string();
    let total: usize = files.values().map(String::len).sum();
    let packed = pack(files, PART_BYTES, MAX_PARTS)
        .map_err(|e| ApiError::new(format!("store the results in {namespace}/{name}: {e}")))?;
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let meta = |n: String| ObjectMeta {
        name: Some(n),
        ..Default::default()
    };
    let compressed: usize = packed.parts.iter().map(Vec::len).sum();
    for (i, part) in packed.parts.iter().enumerate() {
        let cm = ConfigMap {
            metadata: meta(part_name(name, i + 1)),
            binary_data: Some(BTreeMap::from([(
                PART_KEY.to_string(),
                ByteString(part.clone()),
            )])),
            ..Default::default()
        };
        put(&api, request_timeout, cm).await?;
    }
    let mut data = plain;
    data.insert(FORMAT_KEY.into(), FORMAT.into());
    data.insert(PARTS_KEY.into(), packed.parts.len().to_string());
    data.insert(DIGEST_KEY.into(), packed.digest.clone());
    data.insert(FILES_KEY.into(), packed.files.clone());
    if !packed.shortened.is_empty() {
        data.insert(SHORTENED_KEY.into(), packed.shortened.join("\n"));
    }
    put(
        &api,
        request_timeout,
        ConfigMap {
            metadata: meta(name.to_string()),
            data: Some(data),
            ..Default::default()
        },
    )
    .await?;
    Ok(format!(
        "results stored in configmaps {namespace}/{name} and {} part(s) ({total} bytes, {compressed} compressed{})",
        packed.parts.len(),
        if packed.shortened.is_empty() {
            String::new()
        } else {
            format!("; shortened to fit: {}", packed.shortened.join(", "))
        }
    ))
}

/// A bundle as read back.
#[derive(Debug, Clone, Default)]
pub struct Bundle {
    pub files: BTreeMap<String, String>,
    /// The manifest's plain values (verdicts, exit code, ...).
    pub plain: BTreeMap<String, String>,
    /// Files shortened to fit.
    pub shortened: Vec<String>,
}

/// What a reader finds.
#[derive(Debug, Clone)]
pub enum Found {
    /// No manifest and no part: nothing was stored (yet).
    Nothing,
    /// Everything the manifest lists, matching its digest.
    Complete(Bundle),
    /// Something was stored but not all of it: why, and the manifest's plain values if the
    /// manifest exists.
    Incomplete {
        why: String,
        plain: BTreeMap<String, String>,
    },
}

/// Reads bundle `name` from `namespace`.
pub async fn read(
    client: &kube::Client,
    request_timeout: Duration,
    namespace: &str,
    name: &str,
) -> Result<Found, ApiError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let get = |n: String| {
        let api = api.clone();
        async move {
            call(
                &format!("read configmap {namespace}/{n}"),
                request_timeout,
                api.get_opt(&n),
            )
            .await
        }
    };
    let Some(manifest) = get(name.to_string()).await? else {
        return Ok(match get(part_name(name, 1)).await? {
            Some(_) => Found::Incomplete {
                why: format!(
                    "part ConfigMaps of {namespace}/{name} exist but its manifest does not: \
                     the run stopped while storing its results"
                ),
                plain: BTreeMap::new(),
            },
            None => Found::Nothing,
        });
    };
    let plain = manifest.data.unwrap_or_default();
    let incomplete = |why: String| Found::Incomplete {
        why,
        plain: plain.clone(),
    };
    if plain.get(FORMAT_KEY).map(String::as_str) != Some(FORMAT) {
        return Ok(incomplete(format!(
            "configmap {namespace}/{name} is not in the format {FORMAT} (format {:?}; written by \
             another version of scs-kaas-check?)",
            plain.get(FORMAT_KEY).cloned().unwrap_or_default()
        )));
    }
    let count: usize = plain
        .get(PARTS_KEY)
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(0);
    let mut parts = Vec::with_capacity(count);
    for i in 1..=count {
        let part = get(part_name(name, i)).await?;
        match part
            .and_then(|cm| cm.binary_data)
            .and_then(|mut d| d.remove(PART_KEY))
        {
            Some(bytes) => parts.push(bytes.0),
            None => {
                return Ok(incomplete(format!(
                    "part {i} of {count} ({}) is missing",
                    part_name(name, i)
                )));
            }
        }
    }
    let digest = plain.get(DIGEST_KEY).cloned().unwrap_or_default();
    match unpack(&parts, &digest) {
        Ok(files) => Ok(Found::Complete(Bundle {
            files,
            shortened: plain
                .get(SHORTENED_KEY)
                .map(|s| s.lines().map(str::to_string).collect())
                .unwrap_or_default(),
            plain,
        })),
        Err(why) => Ok(incomplete(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that do not compress (a simple xorshift stream as hex-free text).
    fn noise(len: usize, mut seed: u64) -> String {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                char::from(b'!' + (seed % 90) as u8)
            })
            .collect()
    }

    #[test]
    fn round_trip_over_several_parts() {
        let files = BTreeMap::from([
            ("junit.xml".to_string(), noise(300_000, 1)),
            ("logs/a.log".to_string(), noise(50_000, 2)),
        ]);
        let packed = pack(files.clone(), 100_000, 10).unwrap();
        assert!(packed.parts.len() >= 3, "{}", packed.parts.len());
        assert!(packed.parts.iter().all(|p| p.len() <= 100_000));
        assert!(packed.shortened.is_empty());
        assert_eq!(unpack(&packed.parts, &packed.digest).unwrap(), files);
        // A missing or altered part is detected, never read as partial results.
        let mut broken = packed.parts.clone();
        broken.pop();
        assert!(
            unpack(&broken, &packed.digest)
                .unwrap_err()
                .contains("digest")
        );
        broken = packed.parts.clone();
        broken[0][10] ^= 1;
        assert!(unpack(&broken, &packed.digest).is_err());
    }

    #[test]
    fn logs_are_shortened_only_when_the_parts_do_not_suffice_and_reports_never() {
        let files = BTreeMap::from([
            ("report.yaml".to_string(), noise(40_000, 3)),
            ("logs/big.log".to_string(), noise(400_000, 4)),
        ]);
        let packed = pack(files.clone(), 50_000, 4).unwrap();
        assert_eq!(packed.shortened, vec!["logs/big.log".to_string()]);
        let back = unpack(&packed.parts, &packed.digest).unwrap();
        assert_eq!(back["report.yaml"], files["report.yaml"]);
        assert!(back["logs/big.log"].starts_with("[... first "));
        assert!(files["logs/big.log"].ends_with(&back["logs/big.log"][200..]));
        // Reports alone over the budget: an error saying so.
        let too_big = BTreeMap::from([("junit.xml".to_string(), noise(400_000, 5))]);
        let e = pack(too_big, 50_000, 4).unwrap_err();
        assert!(e.contains("more than 4 ConfigMaps"), "{e}");
    }
}
