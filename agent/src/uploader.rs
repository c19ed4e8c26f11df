//! Ships spool batches to the collector, oldest first, one file per request
//! (`docs/protocol.md`). A file is removed only after a 2xx; the batch id is
//! the idempotency key, so a retry after a lost answer stores nothing twice.
//! Failures back off exponentially with full jitter; 429 and 503 honour
//! `Retry-After`. A batch the collector refuses for good (400, 413, 422) is
//! moved to `.rejected/` and counted — never retried forever, never lost
//! silently.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::StatusCode;
use strand_schemas::protocol;

use crate::metrics::{AgentMetrics, UploadLabels};
use crate::shutdown::Shutdown;
use crate::spool::{Entry, Spool};

/// Where and how to upload.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub token: String,
}

/// Exponential backoff with full jitter (AWS architecture blog's "full jitter").
#[derive(Debug, Clone)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap, attempt: 0 }
    }

    /// The next wait: uniform in [0, min(cap, base·2^attempt)].
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(20));
        self.attempt = self.attempt.saturating_add(1);
        let ceiling = exp.min(self.cap);
        Duration::from_nanos(fastrand::u64(0..=ceiling.as_nanos() as u64))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// What to do after one attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored (or already stored): remove the file.
    Done,
    /// Try again later, after at least this long if the server said so.
    Retry(Option<Duration>),
    /// The collector will never accept this file.
    Reject(String),
    /// The collector cannot read this file yet (`newer_version`): it stays in
    /// the spool until the collector is upgraded (`docs/protocol.md`).
    Hold(String),
}

/// Classifies a response.
pub fn classify(status: StatusCode, retry_after: Option<&str>, body: &str) -> Outcome {
    if status.is_success() {
        return Outcome::Done;
    }
    match status.as_u16() {
        429 | 503 => Outcome::Retry(retry_after.and_then(parse_retry_after)),
        400 if reason(body) == Some("newer_version") => Outcome::Hold(format!("{status}: {}", body.trim())),
        400 | 413 | 415 | 422 => Outcome::Reject(format!("{status}: {}", body.trim())),
        _ => Outcome::Retry(None),
    }
}

/// The `reason` of a JSON refusal.
fn reason(body: &str) -> Option<&str> {
    let at = body.find("\"reason\"")?;
    let rest = body[at + 8..].trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    rest.split('"').next()
}

/// How long a held batch (`newer_version`) waits before it is offered again.
const HOLD_RETRY: Duration = Duration::from_secs(600);

/// `Retry-After` as delta-seconds or an HTTP date; capped at 10 minutes.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        // HTTP dates (IMF-fixdate and the two obsolete forms, RFC 9110 §5.6.7), else RFC 3339.
        let when = httpdate::parse_http_date(v).ok().or_else(|| humantime::parse_rfc3339_weak(v).ok())?;
        when.duration_since(std::time::SystemTime::now()).unwrap_or_default()
    };
    Some(d.min(Duration::from_secs(600)))
}

pub fn client(ca_file: Option<&std::path::Path>) -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .user_agent(concat!("strand-agent/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read collector.ca_file {}", ca.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{}: not a PEM certificate bundle", ca.display()))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().context("cannot build the HTTP client")
}

/// Uploads one batch file.
pub async fn upload(client: &reqwest::Client, target: &Target, entry: &Entry) -> Outcome {
    let body = match tokio::fs::read(&entry.path).await {
        Ok(b) => b,
        // Evicted by the quota meanwhile (counted there): nothing to send.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Outcome::Done,
        Err(e) => return Outcome::Reject(format!("cannot read {}: {e}", entry.path.display())),
    };
    let url = format!("{}{}", target.url.trim_end_matches('/'), protocol::BATCHES_PATH);
    let resp = client
        .post(url)
        .bearer_auth(&target.token)
        .header(protocol::HEADER_TABLE, &entry.table)
        // The identity the batch was written with: after a rename (or a
        // host-name change) the backlog still matches its rows.
        .header(protocol::HEADER_CLUSTER, &entry.cluster)
        .header(protocol::HEADER_NODE, &entry.node)
        .header(protocol::HEADER_BATCH_ID, &entry.batch_id)
        .header(reqwest::header::CONTENT_TYPE, "application/vnd.apache.parquet")
        .body(body)
        .send()
        .await;
    match resp {
        Ok(r) => {
            let status = r.status();
            let retry_after =
                r.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
            let text = r.text().await.unwrap_or_default();
            let outcome = classify(status, retry_after.as_deref(), &text);
            if matches!(status.as_u16(), 401 | 403) {
                tracing::error!(
                    "collector refused this node's credentials for batch {} written as cluster {:?}, node {:?} ({status}: {}); batches are kept and retried (after a rename, let the token speak for the old name too, or for node = \"*\", until the backlog is shipped)",
                    entry.batch_id,
                    entry.cluster,
                    entry.node,
                    text.trim()
                );
            } else if let Outcome::Retry(_) = outcome {
                tracing::warn!("collector answered {status} for {}: {}", entry.batch_id, text.trim());
            }
            outcome
        }
        Err(e) => {
            tracing::warn!("collector unreachable ({e}); batches are kept and retried");
            Outcome::Retry(None)
        }
    }
}

/// One last pass at shutdown, after the writers committed their final
/// batches: ship what the collector takes within `limit`. Anything left stays
/// in the spool and is shipped at the next start.
pub async fn drain(spool: &Spool, client: &reqwest::Client, target: &Target, metrics: &AgentMetrics, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    for entry in spool.to_ship() {
        let Ok(outcome) = tokio::time::timeout_at(deadline, upload(client, target, &entry)).await else { break };
        match outcome {
            Outcome::Done => {
                metrics.uploads.get_or_create(&UploadLabels { outcome: "stored".into() }).inc();
                metrics.uploaded_bytes.inc_by(entry.bytes);
                let _ = spool.remove(&entry);
            }
            // Held batches stay; the others are still worth a try.
            Outcome::Hold(_) => continue,
            Outcome::Reject(_) | Outcome::Retry(_) => break,
        }
    }
    let left = spool.to_ship().len();
    if left > 0 {
        tracing::info!("{left} batch file(s) stay in the spool; they are shipped at the next start");
    }
}

/// Ships the spool until shutdown. Files left at shutdown are shipped at the next start.
pub async fn run(
    spool: Arc<Spool>,
    client: reqwest::Client,
    target: Target,
    metrics: AgentMetrics,
    mut shutdown: Shutdown,
) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    let count = |outcome: &str| metrics.uploads.get_or_create(&UploadLabels { outcome: outcome.into() }).inc();
    // Batches the collector cannot read yet, and when to offer them again.
    let mut held: std::collections::HashMap<std::path::PathBuf, tokio::time::Instant> = Default::default();
    loop {
        let mut wait = Duration::from_secs(1);
        for entry in spool.to_ship() {
            if shutdown.is_triggered() {
                return;
            }
            if held.get(&entry.path).is_some_and(|until| tokio::time::Instant::now() < *until) {
                continue;
            }
            match upload(&client, &target, &entry).await {
                Outcome::Hold(why) => {
                    count("held");
                    if held.insert(entry.path.clone(), tokio::time::Instant::now() + HOLD_RETRY).is_none() {
                        tracing::warn!(
                            "collector cannot read batch {} yet ({why}); it stays in the spool until the collector is upgraded, offered again every {}s",
                            entry.batch_id,
                            HOLD_RETRY.as_secs()
                        );
                    }
                }
                Outcome::Done => {
                    held.remove(&entry.path);
                    count("stored");
                    metrics.uploaded_bytes.inc_by(entry.bytes);
                    if let Err(e) = spool.remove(&entry) {
                        tracing::warn!("cannot remove shipped batch {}: {e}", entry.path.display());
                    }
                    backoff.reset();
                    wait = Duration::ZERO;
                }
                Outcome::Reject(why) => {
                    count("rejected");
                    match spool.quarantine(&entry) {
                        Ok(to) => tracing::error!(
                            "collector refused batch {} for good ({why}); kept as {}",
                            entry.batch_id,
                            to.display()
                        ),
                        Err(e) => tracing::error!(
                            "collector refused batch {} ({why}); cannot move it aside: {e}",
                            entry.batch_id
                        ),
                    }
                }
                Outcome::Retry(after) => {
                    count("retry");
                    wait = after.unwrap_or_else(|| backoff.next_delay());
                    break;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_classified_as_the_protocol_says() {
        assert_eq!(classify(StatusCode::OK, None, ""), Outcome::Done);
        assert_eq!(classify(StatusCode::CREATED, None, ""), Outcome::Done);
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, Some("7"), ""),
            Outcome::Retry(Some(Duration::from_secs(7)))
        );
        assert_eq!(classify(StatusCode::SERVICE_UNAVAILABLE, None, ""), Outcome::Retry(None));
        assert_eq!(classify(StatusCode::INTERNAL_SERVER_ERROR, None, ""), Outcome::Retry(None));
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED, None, ""),
            Outcome::Retry(None),
            "credentials get fixed; data is kept"
        );
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, None, "bad parquet\n"),
            Outcome::Reject("400 Bad Request: bad parquet".into())
        );
        assert!(matches!(classify(StatusCode::PAYLOAD_TOO_LARGE, None, ""), Outcome::Reject(_)));
        // A batch newer than the collector reads waits for the upgrade (docs/protocol.md).
        let newer = r#"{"status":"rejected","reason": "newer_version","error":"batch b: schema 2.0 is newer"}"#;
        assert!(matches!(classify(StatusCode::BAD_REQUEST, None, newer), Outcome::Hold(m) if m.contains("schema 2.0")));
        let other = r#"{"status":"rejected","reason":"bad_parquet","error":"newer_version in text"}"#;
        assert!(matches!(classify(StatusCode::BAD_REQUEST, None, other), Outcome::Reject(_)));
    }

    #[test]
    fn retry_after_takes_seconds_and_dates_and_is_capped() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("999999"), Some(Duration::from_secs(600)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO), "a past date means now");
        assert_eq!(parse_retry_after("soon"), None);
        // The obsolete HTTP date forms a server may still send (RFC 9110 §5.6.7).
        assert_eq!(parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Sun Nov  6 08:49:37 1994"), Some(Duration::ZERO));
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(90));
        let d = parse_retry_after(&soon).unwrap();
        assert!(d > Duration::from_secs(85) && d <= Duration::from_secs(90), "{soon}: {d:?}");
        assert_eq!(parse_retry_after("Sun, 32 Nov 1994 08:49:37 GMT"), None, "no such day");
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let ceiling = Duration::from_millis(100 * (1 << i.min(20))).min(Duration::from_secs(2));
            assert!(*d <= ceiling, "attempt {i}: {d:?} > {ceiling:?}");
        }
        assert!(delays.iter().any(|d| *d != delays[0]), "jittered");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
