//! Delivery over HTTP: retries with exponential backoff on 5xx, timeouts and connection errors,
//! `Retry-After` honoured on 429, other 4xx answers given up at once (they will not change), and
//! a per-channel rate limit so bursts are spread rather than refused.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Retry {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is cut to it, so one channel cannot stall for hours.
    pub max_retry_after: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// At most one send per `interval`: Slack's incoming webhooks allow about 1 per second,
/// PagerDuty about 120 per minute per routing key.
pub struct RateLimit {
    interval: Duration,
    next: tokio::sync::Mutex<Instant>,
}

impl RateLimit {
    pub fn per_second(n: f64) -> RateLimit {
        RateLimit {
            interval: Duration::from_secs_f64(1.0 / n.max(0.001)),
            next: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    pub async fn acquire(&self) {
        let mut next = self.next.lock().await;
        let now = Instant::now();
        if *next > now {
            tokio::time::sleep(*next - now).await;
        }
        *next = (*next).max(now) + self.interval;
    }
}

/// Credentials for a webhook sink; never printed.
#[derive(Debug, Clone)]
pub enum HttpAuth {
    Bearer(crate::config::Secret),
    Basic(String, crate::config::Secret),
}

/// One HTTP endpoint of a channel.
pub struct HttpTarget {
    /// Channel name, for errors and metrics; the URL may hold a secret and is never shown.
    pub channel: String,
    pub url: String,
    pub client: reqwest::Client,
    pub retry: Retry,
    pub limit: RateLimit,
    /// Sent instead of `application/json` (CloudEvents: `application/cloudevents+json`).
    pub content_type: Option<&'static str>,
    pub auth: Option<HttpAuth>,
}

impl HttpTarget {
    pub fn new(
        channel: &str,
        url: &str,
        timeout: Duration,
        retry: Retry,
        limit: RateLimit,
    ) -> HttpTarget {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        HttpTarget {
            channel: channel.to_string(),
            url: url.to_string(),
            client,
            retry,
            limit,
            content_type: None,
            auth: None,
        }
    }

    /// POST `body` as JSON until it is accepted or the retries run out. Returns the attempts used.
    pub async fn post(&self, body: &Value) -> Result<u32> {
        let mut delay = self.retry.first_delay;
        let mut last = String::new();
        for attempt in 1..=self.retry.attempts {
            self.limit.acquire().await;
            let mut request = self.client.post(&self.url);
            request = match self.content_type {
                Some(ct) => request
                    .header(reqwest::header::CONTENT_TYPE, ct)
                    .body(body.to_string()),
                None => request.json(body),
            };
            request = match &self.auth {
                Some(HttpAuth::Bearer(token)) => request.bearer_auth(&token.0),
                Some(HttpAuth::Basic(user, password)) => {
                    request.basic_auth(user, Some(&password.0))
                }
                None => request,
            };
            let wait = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        return Ok(attempt);
                    }
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry_after(v, std::time::SystemTime::now()));
                    let text = response.text().await.unwrap_or_default();
                    let text = text.chars().take(300).collect::<String>();
                    last = format!("HTTP {}: {text}", status.as_u16());
                    if status.as_u16() == 429 {
                        retry_after
                            .map(|d| d.min(self.retry.max_retry_after))
                            .unwrap_or(delay)
                    } else if status.is_server_error() {
                        delay
                    } else {
                        return Err(Error::Rejected {
                            channel: self.channel.clone(),
                            protocol: "HTTP",
                            status: status.as_u16(),
                            message: text,
                        });
                    }
                }
                Err(e) => {
                    // reqwest names the URL in its errors; webhook URLs are secrets.
                    last = e.without_url().to_string();
                    delay
                }
            };
            tracing::debug!(channel = %self.channel, attempt, error = %last, "delivery failed; retrying");
            if attempt < self.retry.attempts {
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(self.retry.max_delay);
            }
        }
        Err(Error::Undelivered {
            channel: self.channel.clone(),
            attempts: self.retry.attempts,
            last,
        })
    }
}

/// `Retry-After` (RFC 9110 10.2.3): delay-seconds, or an HTTP-date to wait until (a date in the
/// past means at once).
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = httpdate::parse_http_date("Fri, 04 Dec 2026 10:00:00 GMT").unwrap();
        assert_eq!(retry_after(" 30 ", now), Some(Duration::from_secs(30)));
        assert_eq!(
            retry_after("Fri, 04 Dec 2026 10:00:45 GMT", now),
            Some(Duration::from_secs(45))
        );
        // The obsolete forms RFC 9110 still asks recipients to accept.
        assert_eq!(
            retry_after("Friday, 04-Dec-26 10:01:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            retry_after("Fri, 04 Dec 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
    }
}
