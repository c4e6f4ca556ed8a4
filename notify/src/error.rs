//! Errors of the notification layer, with a short category for metrics.

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    /// The channel answered with an error it will answer again (bad payload, bad key).
    #[error("{channel}: rejected with HTTP {status}: {message}")]
    Rejected {
        channel: String,
        status: u16,
        message: String,
    },
    /// Gave up after retries (5xx, 429, timeouts, connection errors).
    #[error("{channel}: not delivered after {attempts} attempts: {last}")]
    Undelivered {
        channel: String,
        attempts: u32,
        last: String,
    },
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::Rejected { .. } => "rejected",
            Error::Undelivered { .. } => "undelivered",
        }
    }
}
