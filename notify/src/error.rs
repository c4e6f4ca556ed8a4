//! Errors of the notification layer, with a short category for metrics.

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    /// The channel answered with an error it will answer again (bad payload, bad key).
    #[error("{channel}: rejected with {protocol} {status}: {message}")]
    Rejected {
        channel: String,
        /// `HTTP` or `SMTP`: whose status code `status` is.
        protocol: &'static str,
        status: u16,
        message: String,
    },
    /// The message could not be built (an address or header the channel cannot carry).
    #[error("{channel}: the message could not be built: {message}")]
    Invalid { channel: String, message: String },
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
            Error::Rejected { .. } | Error::Invalid { .. } => "rejected",
            Error::Undelivered { .. } => "undelivered",
        }
    }
}
