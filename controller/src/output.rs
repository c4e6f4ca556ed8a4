//! Rendering a `DriftReport` as text (for people, with colour on a terminal), JSON or YAML (for
//! tools; the JSON field names are a contract).

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};

use anstyle::{AnsiColor, Effects, Style};
use argo_drift_core::report::{ChangeReport, DriftReport, ResourceReport};
use argo_drift_core::{Severity, Status};
use serde_json::Value;

use crate::cli::{ColorChoice, OutputFormat};

pub struct TextStyle {
    pub color: bool,
    pub show_diff: bool,
    pub show_synced: bool,
}

/// Colour when asked, or on a terminal unless NO_COLOR is set (no-color.org).
pub fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
        }
    }
}

/// Write to stdout; a closed pipe (`| head`) is not an error worth a message.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    write_stdout(|out| out.write_all(text.as_bytes()))
}

pub fn write_report(
    report: &DriftReport,
    format: OutputFormat,
    style: &TextStyle,
) -> anyhow::Result<()> {
    match format {
        // JSON goes out as it is serialised: built whole first, the JSON text of the 2,000-pair
        // corpus (0.9 MB, in a buffer grown by doubling) was held at the end of the run, where
        // its memory peaks.
        OutputFormat::Json => write_stdout(|out| {
            serde_json::to_writer_pretty(&mut *out, report).map_err(std::io::Error::from)?;
            out.write_all(b"\n")
        }),
        // serde_yaml does not tell a closed pipe from its own errors: YAML is built first.
        OutputFormat::Yaml => print_stdout(&serde_yaml::to_string(report)?),
        OutputFormat::Text => print_stdout(&render_text(report, style)),
    }
}

/// Run `write` on a buffered, locked stdout and flush it; a closed pipe is not an error.
fn write_stdout(
    write: impl FnOnce(&mut std::io::BufWriter<std::io::StdoutLock<'static>>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    match write(&mut out).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn severity_style(severity: Severity) -> Style {
    match severity {
        Severity::Critical => AnsiColor::Red.on_default().effects(Effects::BOLD),
        Severity::High => AnsiColor::Red.on_default(),
        Severity::Medium => AnsiColor::Yellow.on_default(),
        Severity::Low => AnsiColor::Cyan.on_default(),
        Severity::Info => AnsiColor::Blue.on_default(),
        Severity::None => Style::new().effects(Effects::DIMMED),
    }
}

struct Painter {
    color: bool,
}

impl Painter {
    fn paint(&self, style: Style, text: &str) -> String {
        if self.color {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_string()
        }
    }
}

/// A value on one line, shortened: the JSON output has it whole.
fn short(value: &Option<Value>) -> String {
    const MAX: usize = 120;
    let text = match value {
        None => return "(absent)".to_string(),
        Some(v) => v.to_string(),
    };
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        text
    }
}

fn resource_label(r: &ResourceReport) -> String {
    let kind = if r.group.is_empty() {
        r.kind.clone()
    } else {
        format!("{}.{}", r.kind, r.group)
    };
    if r.namespace.is_empty() {
        format!("{kind} {}", r.name)
    } else {
        format!("{kind} {}/{}", r.namespace, r.name)
    }
}

pub fn render_text(report: &DriftReport, style: &TextStyle) -> String {
    let p = Painter { color: style.color };
    let mut out = String::new();
    for r in &report.resources {
        if r.status == Status::Synced && !style.show_synced {
            continue;
        }
        let sev = p.paint(severity_style(r.severity), &format!("[{}]", r.severity));
        let bold = Style::new().effects(Effects::BOLD);
        let _ = write!(
            out,
            "{} {} {sev}",
            p.paint(bold, &resource_label(r)),
            r.status.as_str()
        );
        if let Some(rule) = &r.rule {
            let _ = write!(out, " rule {rule}");
        }
        out.push('\n');
        if r.status == Status::Missing || r.status == Status::Extra {
            if let Some(source) = &r.source {
                let _ = writeln!(out, "    from {source}");
            }
        }
        for c in &r.changes {
            render_change(&mut out, &p, c);
        }
        if !r.unverified.is_empty() {
            let _ = writeln!(out, "    unverified: {}", r.unverified.join(", "));
        }
        if style.show_diff {
            if let Some(diff) = &r.diff {
                for line in diff.lines() {
                    let painted = match line.chars().next() {
                        Some('+') if !line.starts_with("+++") => {
                            p.paint(AnsiColor::Green.on_default(), line)
                        }
                        Some('-') if !line.starts_with("---") => {
                            p.paint(AnsiColor::Red.on_default(), line)
                        }
                        Some('@') => p.paint(AnsiColor::Cyan.on_default(), line),
                        _ => line.to_string(),
                    };
                    let _ = writeln!(out, "    {painted}");
                }
            }
        }
    }
    let s = &report.summary;
    // Unverified fields of resources otherwise in sync, told in one line.
    let quiet: Vec<&ResourceReport> = report
        .resources
        .iter()
        .filter(|r| !r.unverified.is_empty() && r.status == Status::Synced && !style.show_synced)
        .collect();
    if !quiet.is_empty() {
        let fields: usize = quiet.iter().map(|r| r.unverified.len()).sum();
        let _ = writeln!(
            out,
            "{fields} field(s) of {} resource(s) in sync unverified: only in live, and nothing \
             says who set them (dump with --show-managed-fields to know); not counted as drift \
             (-o json lists them)",
            quiet.len()
        );
    }
    if out.is_empty() {
        out.push_str("No drift.\n");
    } else {
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{} resources: {} synced, {} modified, {} missing, {} extra; highest severity {}",
        s.resources,
        s.synced,
        s.modified,
        s.missing,
        s.extra,
        p.paint(severity_style(s.severity), s.severity.as_str())
    );
    out
}

fn render_change(out: &mut String, p: &Painter, c: &ChangeReport) {
    let sev = p.paint(
        severity_style(c.severity),
        &format!("{:<8}", c.severity.as_str()),
    );
    let _ = writeln!(out, "  {sev} {:<7} {}", c.op.as_str(), c.field);
    match c.op {
        argo_drift_core::diff::Op::Replace => {
            let _ = writeln!(out, "           git:  {}", short(&c.desired));
            let _ = writeln!(out, "           live: {}", short(&c.live));
        }
        argo_drift_core::diff::Op::Add => {
            let _ = writeln!(out, "           live: {}", short(&c.live));
        }
        argo_drift_core::diff::Op::Remove => {
            let _ = writeln!(out, "           git:  {}", short(&c.desired));
        }
    }
    let who = match (&c.manager, c.attribution) {
        (Some(m), argo_drift_core::normalize::AttributionKind::Ambiguous) => {
            format!("by {m} (ambiguous: Argo CD or a manual kubectl apply)")
        }
        (Some(m), _) => format!("by {m}"),
        (None, argo_drift_core::normalize::AttributionKind::Ambiguous) => {
            "by Argo CD or a manual kubectl apply (in the last-applied annotation; no managedFields to tell)"
                .to_string()
        }
        (None, _) => "by unknown manager".to_string(),
    };
    let when = c
        .time
        .as_deref()
        .map(|t| format!(" at {t}"))
        .unwrap_or_default();
    let _ = writeln!(out, "           {who}{when}; rule {}", c.rule);
}
