//! Email over SMTP (lettre): STARTTLS, implicit TLS, or plain for a local relay; optional auth;
//! several recipients; a text part and an HTML part.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls as SmtpTls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::event::Notification;
use crate::pagerduty::app_url;
use crate::template::{Escape, Rendered, Templates};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    /// Plain connection upgraded with STARTTLS (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No encryption: only for a relay on the same host or network.
    None,
}

pub struct Settings {
    pub host: String,
    pub port: Option<u16>,
    pub tls: Tls,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub timeout: Duration,
    /// PEM certificates trusted besides the system's, for a relay with a private CA.
    pub ca_pem: Option<Vec<u8>>,
}

pub struct EmailChannel {
    name: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    attempts: u32,
    templates: Templates,
}

impl EmailChannel {
    pub fn new(name: &str, s: Settings) -> std::result::Result<EmailChannel, String> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host);
        if s.tls != Tls::None {
            let mut params = TlsParameters::builder(s.host.clone());
            if let Some(pem) = &s.ca_pem {
                let ca = Certificate::from_pem(pem).map_err(|e| format!("caFile: {e}"))?;
                params = params.add_root_certificate(ca);
            }
            let params = params.build_rustls().map_err(|e| e.to_string())?;
            // Required, never Opportunistic: a relay that does not offer STARTTLS must not get
            // the password in clear.
            builder = builder
                .port(if s.tls == Tls::Implicit { 465 } else { 587 })
                .tls(if s.tls == Tls::Implicit {
                    SmtpTls::Wrapper(params)
                } else {
                    SmtpTls::Required(params)
                });
        }
        let mut builder = builder.timeout(Some(s.timeout));
        if let Some(port) = s.port {
            builder = builder.port(port);
        }
        if let (Some(user), Some(password)) = (s.username, s.password) {
            builder = builder.credentials(Credentials::new(user, password));
        }
        Ok(EmailChannel {
            name: name.to_string(),
            transport: builder.build(),
            from: s.from,
            to: s.to,
            attempts: 3,
            templates: Templates::default(),
        })
    }

    /// Use the configured templates for subject and body.
    pub fn with_templates(mut self, templates: Templates) -> EmailChannel {
        self.templates = templates;
        self
    }

    /// Send `n` to every recipient; transient SMTP answers and connection errors are retried.
    pub async fn send(&self, n: &Notification, argocd_url: Option<&str>) -> Result<u32> {
        let text = self
            .templates
            .render(&self.name, n, argocd_url, Escape::None);
        let html = self
            .templates
            .render(&self.name, n, argocd_url, Escape::Html);
        let (subject, text, html) = render_with(n, argocd_url, text.as_ref(), html.as_ref());
        let mut builder = Message::builder().from(self.from.clone()).subject(subject);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let message = builder
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| Error::Invalid {
                channel: self.name.clone(),
                message: e.to_string(),
            })?;
        let mut last = String::new();
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=self.attempts {
            match self.transport.send(message.clone()).await {
                Ok(_) => return Ok(attempt),
                Err(e) if e.is_permanent() => {
                    return Err(Error::Rejected {
                        channel: self.name.clone(),
                        protocol: "SMTP",
                        status: e
                            .status()
                            .and_then(|c| c.to_string().parse().ok())
                            .unwrap_or(500),
                        message: e.to_string(),
                    })
                }
                Err(e) => last = e.to_string(),
            }
            if attempt < self.attempts {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        Err(Error::Undelivered {
            channel: self.name.clone(),
            attempts: self.attempts,
            last,
        })
    }
}

pub fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Subject, text body and HTML body.
pub fn render(n: &Notification, argocd_url: Option<&str>) -> (String, String, String) {
    render_with(n, argocd_url, None, None)
}

/// With a user template: its title is the subject, its body replaces the summary line (`text`
/// rendered for the text part, `html` with values escaped for the HTML part).
pub fn render_with(
    n: &Notification,
    argocd_url: Option<&str>,
    text: Option<&Rendered>,
    html: Option<&Rendered>,
) -> (String, String, String) {
    let subject = text.and_then(|t| t.title.clone()).unwrap_or_else(|| {
        format!(
            "[argo-drift] {}: {} ({})",
            n.kind.title(),
            n.app,
            n.severity
        )
    });
    let intro_html = html
        .and_then(|t| t.body.clone())
        .map(|b| format!("<div style=\"white-space:pre-wrap\">{b}</div>"))
        .unwrap_or_else(|| format!("<p>{}</p>", html_escape(&n.summary)));
    let link = app_url(argocd_url, &n.app);
    let mut text = format!(
        "{}\n\nApplication: {}\nSeverity: {}\nEvent: {}\n",
        text.and_then(|t| t.body.as_deref()).unwrap_or(&n.summary),
        n.app,
        n.severity,
        n.kind.as_str()
    );
    if let Some(d) = &n.decision {
        text.push_str(&format!("Decision: {d}\n"));
    }
    let mut rows = String::new();
    if !n.changes.is_empty() {
        text.push_str("\nChanged fields:\n");
        for c in &n.changes {
            let by = c.by().map(|b| format!(" by {b}")).unwrap_or_default();
            text.push_str(&format!(
                "- {} {} ({}{by})\n",
                c.resource, c.field, c.severity
            ));
            rows.push_str(&format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                html_escape(&c.resource),
                html_escape(&c.field),
                c.severity,
                html_escape(&c.by().unwrap_or_default()),
            ));
        }
    }
    text.push_str(&format!("\nIncident: {}\nTime: {}\n", n.incident, n.time));
    if let Some(l) = &link {
        text.push_str(&format!("Argo CD: {l}\n"));
    }
    let mut html = format!(
        "<html><body><h2>{}: {}</h2>{intro_html}<p><b>Severity:</b> {} &middot; <b>Event:</b> {}</p>",
        html_escape(n.kind.title()),
        html_escape(&n.app),
        n.severity,
        n.kind.as_str()
    );
    if let Some(d) = &n.decision {
        html.push_str(&format!("<p><b>Decision:</b> {}</p>", html_escape(d)));
    }
    if !rows.is_empty() {
        html.push_str("<table border=\"1\" cellpadding=\"4\"><tr><th>Resource</th><th>Field</th><th>Severity</th><th>Changed by</th></tr>");
        html.push_str(&rows);
        html.push_str("</table>");
    }
    if let Some(l) = &link {
        html.push_str(&format!(
            "<p><a href=\"{}\">Open in Argo CD</a></p>",
            html_escape(l)
        ));
    }
    html.push_str(&format!(
        "<p><small>Incident {} &middot; {}</small></p></body></html>",
        html_escape(&n.incident),
        html_escape(&n.time)
    ));
    (subject, text, html)
}
