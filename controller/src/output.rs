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
        // JSON goes out as it is serialised, never held whole (see write_json).
        OutputFormat::Json => write_stdout(|out| write_json(report, out)),
        // serde_yaml does not tell a closed pipe from its own errors: YAML is built first.
        OutputFormat::Yaml => print_stdout(&serde_yaml::to_string(report)?),
        OutputFormat::Text => print_stdout(&render_text(report, style)),
    }
}

/// Reports with at least this many resources are written as JSON by two threads (see
/// [`write_json`]). Chosen, not measured: a report this size takes about a millisecond to
/// serialise, well above a thread's start; the offline example and one app's report stay on one
/// thread.
const SHARED_JSON: usize = 512;

/// Resources per piece of a JSON report written by two threads: about 28 KB of text on the
/// 2,000-pair corpus.
const JSON_PIECE: usize = 64;

/// `report` as pretty JSON and a line break, byte for byte what `serde_json::to_writer_pretty`
/// writes. Serialising is the last step of `argo-drift diff`, and one thread alone did it while
/// the other idled: 12.6M instructions of 577M for the 2,000-pair corpus (0.9 MB of JSON;
/// `valgrind --tool=callgrind`, `write_report`), 5.5M on this thread now.
///
/// With many resources, the list is written in pieces of [`JSON_PIECE`]: this thread serialises
/// every other piece straight out, a second thread the pieces between into buffers, at most two
/// ahead. So the text is never held whole (held whole, the text of a large report is the peak of
/// the run's memory: 62.9 rather than 53.0 MiB on the corpus repeated ten times, when the second
/// half of the list was one buffer; `scripts/diff-ab.py`, peak RSS).
///
/// Each piece is serialised inside a wrapper that puts the list at the depth (indent) it has in
/// the report, `{"resources": [...]}`, and the wrapper's start and end are cut ([`Inside`]):
/// the items come out as the report's own serialisation writes them.
fn write_json(report: &DriftReport, out: &mut impl Write) -> std::io::Result<()> {
    if report.resources.len() < SHARED_JSON {
        serde_json::to_writer_pretty(&mut *out, report).map_err(std::io::Error::from)?;
        return out.write_all(b"\n");
    }
    write_json_shared(report, out)
}

/// [`write_json`] by two threads, for a report of at least one resource.
fn write_json_shared(report: &DriftReport, out: &mut impl Write) -> std::io::Result<()> {
    // The report's start: its summary, then the resources, here an empty list (listed by field,
    // so that a field added to the report is not forgotten here).
    let empty = DriftReport {
        summary: report.summary.clone(),
        resources: Vec::new(),
    };
    let head = serde_json::to_vec_pretty(&empty).map_err(std::io::Error::from)?;
    let Some(head) = head.strip_suffix(b"[]\n}") else {
        return Err(std::io::Error::other(
            "serde_json wrote an empty list of resources in an unexpected form",
        ));
    };
    let pieces: Vec<&[ResourceReport]> = report.resources.chunks(JSON_PIECE).collect();
    std::thread::scope(|scope| {
        let (send, receive) = std::sync::mpsc::sync_channel(2);
        let pieces = &pieces;
        let writer = std::thread::Builder::new().name("json-writer".into());
        writer.spawn_scoped(scope, move || {
            let mut size = 0;
            for piece in pieces.iter().skip(1).step_by(2) {
                let mut text = Vec::with_capacity(size);
                let written = Inside::items(piece, &mut text).map(|()| text);
                size = written
                    .as_ref()
                    .map_or(0, |text| text.len() + text.len() / 4);
                let failed = written.is_err();
                // An error ends the writing; so does the writer's (it has stopped receiving).
                if send.send(written).is_err() || failed {
                    return;
                }
            }
        })?;
        out.write_all(head)?;
        out.write_all(b"[\n")?;
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 {
                out.write_all(b",\n")?;
            }
            if i % 2 == 0 {
                Inside::items(piece, out)?;
            } else {
                let text = receive.recv().map_err(|_| {
                    std::io::Error::other("the second JSON writer stopped before its last piece")
                })??;
                out.write_all(&text)?;
            }
        }
        out.write_all(b"\n  ]\n}\n")
    })
}

/// A writer passing on what a serialiser writes to it less a known start and end, which it checks.
struct Inside<'w, W: Write> {
    out: &'w mut W,
    /// What is left of the start to cut.
    start: &'static [u8],
    end: &'static [u8],
    /// The last bytes written, as many as `end` (or fewer): held back, for they may be the end.
    held: Vec<u8>,
}

impl<'w, W: Write> Inside<'w, W> {
    /// `{"resources": [`, its items, `]}`: how `resources` starts and ends in pretty JSON (with
    /// at least one item).
    const START: &'static [u8] = b"{\n  \"resources\": [\n";
    const END: &'static [u8] = b"\n  ]\n}";

    /// The items of the report's `resources` list (at least one), as its serialisation writes
    /// them, separated but with no line break before the first or after the last.
    fn items(resources: &[ResourceReport], out: &'w mut W) -> std::io::Result<()> {
        #[derive(serde::Serialize)]
        struct Wrapper<'r> {
            resources: &'r [ResourceReport],
        }
        let mut inside = Inside {
            out,
            start: Self::START,
            end: Self::END,
            held: Vec::with_capacity(Self::END.len() * 2),
        };
        // Buffered in front: serde_json writes token by token, this cuts and holds back per write.
        // Its buffer is emptied into `inside` without flushing `out` (stdout) for each piece.
        let mut buffered = std::io::BufWriter::with_capacity(16 * 1024, &mut inside);
        serde_json::to_writer_pretty(&mut buffered, &Wrapper { resources })
            .map_err(std::io::Error::from)?;
        buffered.into_inner().map_err(|e| e.into_error())?;
        if !inside.start.is_empty() || inside.held != inside.end {
            return Err(std::io::Error::other(
                "serde_json wrote a list of resources in an unexpected form",
            ));
        }
        Ok(())
    }
}

impl<W: Write> Write for Inside<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        if !self.start.is_empty() {
            let n = self.start.len().min(rest.len());
            if rest[..n] != self.start[..n] {
                return Err(std::io::Error::other(
                    "serde_json started a list of resources in an unexpected form",
                ));
            }
            self.start = &self.start[n..];
            rest = &rest[n..];
        }
        // Everything but the last `end.len()` bytes written so far goes on.
        let pass = (self.held.len() + rest.len()).saturating_sub(self.end.len());
        if pass > 0 {
            let from_held = pass.min(self.held.len());
            self.out.write_all(&self.held[..from_held])?;
            self.held.drain(..from_held);
            let (now, later) = rest.split_at(pass - from_held);
            self.out.write_all(now)?;
            rest = later;
        }
        self.held.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use argo_drift_core::manifest::{parse_source, ResourceKey};
    use argo_drift_core::normalize::{prepare, Prepared, TrackingKeys};
    use argo_drift_core::report::{analyse, AnalyseOptions};
    use argo_drift_core::Policy;

    use super::*;

    /// `count` objects as `kubectl` would print them: a ConfigMap, a Deployment, a Secret in
    /// turn, `live` with drift in every other (a changed value, a removed key, an added
    /// container, text needing escapes) and every seventh missing.
    fn objects(count: usize, live: bool) -> BTreeMap<ResourceKey, Prepared> {
        let mut text = String::new();
        for i in 0..count {
            let drift = live && i % 2 == 1;
            if live && i % 7 == 3 {
                continue;
            }
            let value = if drift {
                "ünïcode \"quoted\"\\tab"
            } else {
                "plain"
            };
            match i % 3 {
                0 => text.push_str(&format!(
                    "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n  namespace: ns-{}\ndata:\n  key: {value:?}\n{}",
                    i % 5,
                    if drift { "" } else { "  other: |\n    line one\n    line two\n" },
                )),
                1 => text.push_str(&format!(
                    "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-{i}\n  namespace: ns-{}\nspec:\n  replicas: {}\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.{}\n{}",
                    i % 5,
                    if drift { 5 } else { 2 },
                    if drift { 27 } else { 25 },
                    if drift { "      - name: debug\n        image: busybox\n        securityContext:\n          privileged: true\n" } else { "" },
                )),
                _ => text.push_str(&format!(
                    "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s-{i}\n  namespace: ns-{}\nstringData:\n  password: {}\n",
                    i % 5,
                    if drift { "changed" } else { "git" },
                )),
            }
        }
        let tracking = TrackingKeys::default();
        let mut objects = BTreeMap::new();
        parse_source("test.yaml", text.as_bytes(), &mut |resource| {
            let p = prepare(resource, &tracking);
            objects.insert(p.key.clone(), p);
            Ok(())
        })
        .unwrap();
        objects
    }

    fn report(count: usize) -> DriftReport {
        let options = AnalyseOptions {
            patches: true,
            text_diffs: true,
            ..Default::default()
        };
        let policy = Policy::builtin().unwrap();
        analyse(
            objects(count, false),
            &objects(count, true),
            &policy,
            &options,
        )
    }

    fn serde_json_pretty(report: &DriftReport) -> Vec<u8> {
        let mut text = serde_json::to_vec_pretty(report).unwrap();
        text.push(b'\n');
        text
    }

    #[test]
    fn json_written_by_two_threads_is_serde_jsons_byte_for_byte() {
        // Pieces: one partial, one whole, the second thread's last, this thread's last partial.
        let piece = JSON_PIECE;
        for count in [1, 2, piece, piece + 1, 2 * piece, 2 * piece + 1, 600, 1200] {
            let report = report(count);
            assert_eq!(report.resources.len(), count);
            let mut written = Flushes::default();
            write_json_shared(&report, &mut written).unwrap();
            assert!(
                written.text == serde_json_pretty(&report),
                "{count} resources: the JSON differs from serde_json's"
            );
            // The caller flushes once at the end; pieces do not flush stdout on their way.
            assert_eq!(written.flushes, 0, "{count} resources");
        }
        // And below and above the threshold.
        for count in [0, SHARED_JSON - 1, SHARED_JSON] {
            let report = report(count);
            let mut written = Vec::new();
            write_json(&report, &mut written).unwrap();
            assert!(written == serde_json_pretty(&report), "{count} resources");
        }
        // The reports compared hold patches, text diffs and escapes.
        let report = report(1200);
        assert!(report.resources.iter().any(|r| r.patch.is_some()));
        assert!(report.resources.iter().any(|r| r.diff.is_some()));
        assert!(report.summary.missing > 0 && report.summary.modified > 0);
    }

    /// Keeps what is written, and counts flushes.
    #[derive(Default)]
    struct Flushes {
        text: Vec<u8>,
        flushes: usize,
    }

    impl Write for Flushes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.text.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            self.flushes += 1;
            Ok(())
        }
    }

    /// Takes `room` bytes, then fails as a closed pipe does.
    struct ClosingPipe {
        room: usize,
    }

    impl Write for ClosingPipe {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_ends_the_json_writing_with_its_error() {
        let report = report(1200);
        // In the head, in a piece of this thread's, in one of the second thread's.
        for room in [10, 2_000, 40_000, 400_000] {
            let err = write_json_shared(&report, &mut ClosingPipe { room }).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{room}: {err}");
        }
    }

    /// Cuts `{[` and `]}`.
    fn braces(out: &mut Vec<u8>) -> Inside<'_, Vec<u8>> {
        Inside {
            out,
            start: b"{[",
            end: b"]}",
            held: Vec::new(),
        }
    }

    #[test]
    fn inside_cuts_the_wrapper_and_refuses_an_unexpected_form() {
        let mut out = Vec::new();
        let mut inside = braces(&mut out);
        // Written in pieces that cut across the start and the end.
        for piece in [&b"{"[..], b"[a", b",b", b"]", b"}"] {
            inside.write_all(piece).unwrap();
        }
        assert_eq!(inside.held, b"]}");
        assert_eq!(out, b"a,b");

        let mut out = Vec::new();
        let mut inside = braces(&mut out);
        assert!(inside.write_all(b"[{").is_err());
    }
}
