//! Notifications: what happened (`event`), where it goes (`config` routes), how each channel
//! renders it (`slack`, `pagerduty`), and how it is delivered without blocking detection
//! (`deliver`: retries honouring `Retry-After`, rate limits), with user `template`s for titles
//! and bodies.

pub mod cloudevents;
pub mod config;
pub mod deliver;
pub mod dispatch;
pub mod email;
pub mod error;
pub mod event;
pub mod pagerduty;
pub mod slack;
pub mod template;

pub use error::{Error, Result};
pub use event::{ChangeLine, EventKind, Notification};
