//! Fetching the version-policy data over HTTPS: GitHub release pages, the Kubernetes CVE
//! feed and CVE records (bounded concurrency, per-request timeouts).

use super::*;

/// A reqwest error with its causes, on one line.
fn describe(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !message.contains(&cause_text) {
            message.push_str(": ");
            message.push_str(&cause_text);
        }
        source = cause.source();
    }
    one_line(&message)
}

async fn get_text(
    http: &reqwest::Client,
    url: &str,
    accept: &str,
    github_token: Option<&str>,
) -> Result<String, DataError> {
    let http_error = |message: String| DataError::Http {
        url: url.to_string(),
        message,
    };
    let mut request = http
        .get(url)
        .timeout(HTTP_TIMEOUT)
        .header(reqwest::header::ACCEPT, accept)
        .header(reqwest::header::USER_AGENT, USER_AGENT);
    if let Some(token) = github_token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| http_error(describe(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(http_error(format!("HTTP status {status}")));
    }
    response.text().await.map_err(|e| http_error(describe(&e)))
}

fn github_token() -> Option<String> {
    std::env::var("GITHUB_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
}

/// Fetches releases from a GitHub-releases-API endpoint (`base_url?per_page=100&page=N`).
///
/// Pages until a page is short or empty, or all releases on it are older than two years
/// before `reference_date`, at most [`MAX_RELEASE_PAGES`]. Sends `GITHUB_TOKEN` as bearer
/// token when set.
pub async fn fetch_releases(
    http: &reqwest::Client,
    base_url: &str,
    reference_date: Date,
) -> Result<(ReleaseData, Vec<String>), DataError> {
    let cutoff = reference_date
        .checked_sub(2.years())
        .unwrap_or(reference_date);
    let token = github_token();
    let separator = if base_url.contains('?') { '&' } else { '?' };
    let mut data = ReleaseData::default();
    let mut warnings = Vec::new();
    for page in 1..=MAX_RELEASE_PAGES {
        let url = format!("{base_url}{separator}per_page={RELEASES_PER_PAGE}&page={page}");
        let text = get_text(http, &url, "application/vnd.github+json", token.as_deref()).await?;
        let items: Vec<Value> = serde_json::from_str(&text).map_err(|e| DataError::Http {
            url: url.clone(),
            message: format!("not a JSON array of releases: {e}"),
        })?;
        let count = items.len();
        let all_old = items.iter().all(|item| {
            item.get("published_at")
                .and_then(Value::as_str)
                .and_then(|raw| parse_timestamp(raw).ok())
                .is_some_and(|ts| ts.to_zoned(TimeZone::UTC).date() < cutoff)
        });
        warnings.extend(data.add_items(items));
        if count < RELEASES_PER_PAGE || all_old {
            break;
        }
    }
    Ok((data, warnings))
}

/// Fetches the official CVE feed and returns the CVE ids it lists.
pub async fn fetch_cve_ids(
    http: &reqwest::Client,
    feed_url: &str,
) -> Result<Vec<String>, DataError> {
    let text = get_text(
        http,
        feed_url,
        "application/feed+json, application/json",
        None,
    )
    .await?;
    parse_cve_feed(&text).map_err(|e| DataError::Http {
        url: feed_url.to_string(),
        message: e.to_string(),
    })
}

/// Fetches the CVE JSON 5.x record of each id from `record_base_url` + id, at most
/// [`CVE_FETCH_CONCURRENCY`] at a time. Failures become warnings; the count of records
/// that could not be fetched is returned too.
pub async fn fetch_cve_records(
    http: &reqwest::Client,
    record_base_url: &str,
    ids: &[String],
) -> (Vec<Cve>, Vec<String>, usize) {
    let base = record_base_url.trim_end_matches('/');
    let results: Vec<(String, Result<Value, String>)> = stream::iter(ids.iter().cloned())
        .map(|id| async move {
            let url = format!("{base}/{id}");
            let result = match get_text(http, &url, "application/json", None).await {
                Ok(text) => serde_json::from_str::<Value>(&text)
                    .map_err(|e| format!("GET {url}: not JSON: {e}")),
                Err(e) => Err(e.to_string()),
            };
            (id, result)
        })
        .buffer_unordered(CVE_FETCH_CONCURRENCY)
        .collect()
        .await;
    let mut cves = Vec::new();
    let mut warnings = Vec::new();
    let mut failed = 0;
    for (id, result) in results {
        match result {
            Ok(record) => collect_record(&record, &mut cves, &mut warnings, || id.clone()),
            Err(message) => {
                failed += 1;
                warnings.push(format!("CVE data: cannot fetch {id}: {message}"));
            }
        }
    }
    cves.sort_by(|a, b| a.id.cmp(&b.id));
    (cves, warnings, failed)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[tokio::test]
    async fn releases_are_paged_until_a_short_page() {
        let (base, seen) = serve(|path| {
            if path.ends_with("page=1") {
                (
                    200,
                    page(
                        (0..100).map(|i| format!("v1.34.{i}")),
                        "2026-01-05T10:00:00Z",
                    ),
                )
            } else if path.ends_with("page=2") {
                (
                    200,
                    page((0..3).map(|i| format!("v1.33.{i}")), "2025-06-05T10:00:00Z"),
                )
            } else {
                (404, "[]".into())
            }
        })
        .await;
        let url = format!("{base}/repos/kubernetes/kubernetes/releases");
        let (data, warnings) = fetch_releases(&client(), &url, date("2026-04-18"))
            .await
            .unwrap();
        assert!(warnings.is_empty());
        assert_eq!(data.releases.len(), 103);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                "/repos/kubernetes/kubernetes/releases?per_page=100&page=1",
                "/repos/kubernetes/kubernetes/releases?per_page=100&page=2"
            ]
        );
    }

    #[tokio::test]
    async fn paging_stops_at_releases_older_than_two_years() {
        let (base, seen) = serve(|_| {
            (
                200,
                page(
                    (0..100).map(|i| format!("v1.20.{i}")),
                    "2021-01-05T10:00:00Z",
                ),
            )
        })
        .await;
        let (data, _) = fetch_releases(&client(), &base, date("2026-04-18"))
            .await
            .unwrap();
        assert_eq!(data.releases.len(), 100);
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn paging_stops_after_ten_pages() {
        let (base, seen) = serve(|_| {
            (
                200,
                page(
                    (0..100).map(|i| format!("v1.35.{i}")),
                    "2026-01-05T10:00:00Z",
                ),
            )
        })
        .await;
        fetch_releases(&client(), &base, date("2026-04-18"))
            .await
            .unwrap();
        assert_eq!(seen.lock().unwrap().len(), MAX_RELEASE_PAGES as usize);
    }
}
