//! Reading manifests from the filesystem and stdin: files, directories (recursive) and `-`.
//! Each object is prepared (server-owned fields dropped) as soon as it is parsed, and a YAML
//! stream is read one section at a time, so a large live dump is never held whole.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context};
use argo_drift_core::manifest::{
    is_separator, parse_section, parse_source, Origin, Resource, YamlSections,
};
use argo_drift_core::normalize::{prepare, Prepared, TrackingKeys};
use memchr::memmem;

/// How deep a directory walk may go: a guard against symlink loops.
const MAX_DEPTH: usize = 64;

/// Load and prepare every object under `paths`, handing each to `sink` as soon as it is parsed.
/// `role` ("desired", "live") names the set in errors; `stdin_taken` makes sure `-` is read once
/// across all sets. Returns how many objects were read.
pub fn for_each(
    paths: &[PathBuf],
    role: &str,
    tracking: &TrackingKeys,
    stdin_taken: &mut bool,
    sink: &mut dyn FnMut(Prepared) -> argo_drift_core::Result<()>,
) -> anyhow::Result<usize> {
    let mut pieces = Pieces::new(paths, role, stdin_taken)?;
    let mut count = 0;
    while let Some(piece) = pieces.next_piece()? {
        piece.parse(&mut |resource| {
            count += 1;
            sink(prepare(resource, tracking))
        })?;
    }
    Ok(count)
}

/// The pieces of a set of sources, in order, each to be parsed on its own and on any thread
/// ([`Piece::parse`]): the sections of a YAML stream (the text between `---` lines, numbered as
/// the whole-text reader numbers them), or a whole source (one without separators, read whole
/// and handed to `parse_source`, which reads it as one JSON value when it looks like one; and
/// any `.json` file). Sources are read in chunks, so only the sections at hand are held as text:
/// on a 70 MB dump the text was 70 MB of the peak.
///
/// Objects, origins and errors are those `parse_source` gives for the whole text, with one
/// difference: an invalid UTF-8 byte is reported when its section is reached, so the objects
/// before it have been handed over and an earlier parse error is reported first.
pub struct Pieces {
    role: String,
    files: std::vec::IntoIter<Option<PathBuf>>,
    open: Option<Source<Box<dyn Read + Send>>>,
}

impl Pieces {
    /// The pieces of the files and directories (recursive) under `paths`, `-` being stdin.
    pub fn new(paths: &[PathBuf], role: &str, stdin_taken: &mut bool) -> anyhow::Result<Pieces> {
        let mut files = Vec::new();
        for path in paths {
            if path.as_os_str() == "-" {
                if *stdin_taken {
                    bail!("- (stdin) is given more than once; it can be read only once");
                }
                *stdin_taken = true;
                files.push(None);
                continue;
            }
            let meta = std::fs::metadata(path)
                .with_context(|| format!("{role} path {}", path.display()))?;
            if meta.is_dir() {
                let before = files.len();
                walk(path, &mut files, 0)
                    .with_context(|| format!("reading {role} directory {}", path.display()))?;
                if files.len() == before {
                    bail!(
                        "{role} directory {} holds no *.yaml, *.yml or *.json file",
                        path.display()
                    );
                }
            } else {
                files.push(Some(path.clone()));
            }
        }
        Ok(Pieces {
            role: role.to_string(),
            files: files.into_iter(),
            open: None,
        })
    }

    /// The next piece, or `None` after the last source's last.
    pub fn next_piece(&mut self) -> anyhow::Result<Option<Piece>> {
        loop {
            if let Some(source) = &mut self.open {
                if let Some(piece) = source.next_piece()? {
                    return Ok(Some(piece));
                }
                tracing::debug!(file = %source.name, bytes = source.size(), "read {} manifests", self.role);
                self.open = None;
            }
            let Some(file) = self.files.next() else {
                return Ok(None);
            };
            self.open = Some(match file {
                None => Source::new("<stdin>".to_string(), Box::new(std::io::stdin()), CHUNK),
                Some(path) => {
                    let name = path.display().to_string();
                    let file =
                        std::fs::File::open(&path).with_context(|| format!("reading {name}"))?;
                    Source::new(name, Box::new(file), CHUNK)
                }
            });
        }
    }
}

/// A piece of a source ([`Pieces`]).
pub enum Piece {
    /// A section of a YAML stream holding a document, numbered.
    Section {
        origin: Origin,
        first_line: usize,
        text: String,
    },
    /// A whole source.
    Whole { name: String, bytes: Vec<u8> },
}

impl Piece {
    /// Parse the piece, handing each object to `sink`.
    pub fn parse(
        &self,
        sink: &mut dyn FnMut(Resource) -> argo_drift_core::Result<()>,
    ) -> argo_drift_core::Result<()> {
        match self {
            Piece::Section {
                origin,
                first_line,
                text,
            } => parse_section(origin.clone(), *first_line, text, sink).map(drop),
            Piece::Whole { name, bytes } => parse_source(name, bytes, sink),
        }
    }
}

/// One source read in chunks of `chunk` bytes and cut into pieces.
struct Source<R> {
    name: String,
    input: R,
    chunk: usize,
    buf: Vec<u8>,
    eof: bool,
    done: bool,
    sections: YamlSections,
    /// Bytes read so far.
    read: usize,
    /// Offset in the source of buf[0].
    base: usize,
    /// Where the current section starts in buf.
    section_start: usize,
    /// The current section's first line, and the lines it holds up to `pos`.
    first_line: usize,
    lines: usize,
    /// Start of the first line of buf not yet looked at.
    pos: usize,
    /// Whether a separator has been seen: until then the source may be one JSON document.
    separated: bool,
    /// Whether a line of the current section so far starts `---` or `...`.
    marked: bool,
}

impl<R: Read> Source<R> {
    fn new(name: String, input: R, chunk: usize) -> Source<R> {
        Source {
            sections: YamlSections::new(&name),
            name,
            input,
            chunk,
            buf: Vec::new(),
            eof: false,
            done: false,
            read: 0,
            base: 0,
            section_start: 0,
            first_line: 1,
            lines: 0,
            pos: 0,
            separated: false,
            marked: false,
        }
    }

    /// Bytes read so far.
    fn size(&self) -> usize {
        self.read
    }

    fn read_chunk(&mut self) -> anyhow::Result<()> {
        let read = (&mut self.input)
            .take(self.chunk as u64)
            .read_to_end(&mut self.buf)
            .with_context(|| format!("reading {}", self.name))?;
        self.read += read;
        self.eof = read == 0;
        Ok(())
    }

    fn next_piece(&mut self) -> anyhow::Result<Option<Piece>> {
        if self.done {
            return Ok(None);
        }
        if self.name.ends_with(".json") {
            // Whole: a file's own read_to_end sizes the buffer once from the file's length.
            self.done = true;
            self.read = self
                .input
                .read_to_end(&mut self.buf)
                .with_context(|| format!("reading {}", self.name))?;
            return Ok(Some(self.whole()));
        }
        if self.base == 0 && self.buf.is_empty() && !self.eof {
            self.read_chunk()?;
        }
        loop {
            while let Some((start, end)) = self.next_separator() {
                self.pos = end;
                self.separated = true;
                let piece = self.section(start)?;
                self.first_line += self.lines + 1;
                self.lines = 0;
                self.section_start = end;
                if piece.is_some() {
                    return Ok(piece);
                }
            }
            if self.eof {
                self.done = true;
                if self.separated {
                    // The last section, even when empty: the numbering counts it as the
                    // whole-text reader does.
                    let end = self.buf.len();
                    return self.section(end);
                }
                // No separator: the source is one document, maybe JSON (JSON documents between
                // separators are a YAML stream, as kubectl reads them), held whole in any case.
                return Ok(Some(self.whole()));
            }
            // What is before the current section is done with.
            self.buf.drain(..self.section_start);
            self.base += self.section_start;
            self.pos -= self.section_start;
            self.section_start = 0;
            self.read_chunk()?;
        }
    }

    /// The next separator line from `pos` (its start and end in buf) when buf holds all of it;
    /// the lines before it are counted, and those starting `---` or `...` (which make a section
    /// that may hold more than one document) marked. `pos` is left at the first line not looked
    /// at. Only the lines starting `---` or `...` are looked at, found by a search for them after
    /// a line break, and the others counted by memchr's vector count: with a look at every line,
    /// cutting took 4.9% of the instructions of `argo-drift diff` on the 2,000-pair corpus
    /// (`kubectl get -o yaml` form), under the lock that hands out the work; 2.9% this way.
    fn next_separator(&mut self) -> Option<(usize, usize)> {
        loop {
            let from = self.pos;
            let rest = &self.buf[from..];
            let Some(at) = marked_line(rest) else {
                // Every complete line of the rest is a plain one: counted, and passed.
                let end = if self.eof {
                    rest.len()
                } else {
                    memchr::memrchr(b'\n', rest).map_or(0, |i| i + 1)
                };
                // (At the end of the source the count is not used: no section follows.)
                self.lines += memchr::memchr_iter(b'\n', &rest[..end]).count();
                self.pos = from + end;
                return None;
            };
            self.lines += memchr::memchr_iter(b'\n', &rest[..at]).count();
            self.pos = from + at;
            let end = match memchr::memchr(b'\n', &rest[at..]) {
                Some(i) => at + i + 1,
                None if self.eof => rest.len(),
                // Not all of the line is read yet.
                None => return None,
            };
            let line = &rest[at..end];
            if line.starts_with(b"---") && std::str::from_utf8(line).is_ok_and(is_separator) {
                return Some((from + at, from + end));
            }
            self.marked = true;
            self.lines += 1;
            self.pos = from + end;
        }
    }

    /// The section from `section_start` to `end` in buf, numbered; `None` when it is blank.
    fn section(&mut self, end: usize) -> anyhow::Result<Option<Piece>> {
        let text = section_text(
            &self.name,
            &self.buf[self.section_start..end],
            self.base + self.section_start,
            self.first_line,
        )?;
        // The first section of a source may start with a byte-order mark, which `text` has
        // lost: its lines are looked at again without it.
        let origin = if self.base + self.section_start == 0 {
            self.sections.number(self.first_line, text)
        } else {
            self.sections
                .number_marked(self.first_line, text, self.marked)
        };
        self.marked = false;
        Ok(origin.map(|origin| Piece::Section {
            origin,
            first_line: self.first_line,
            text: text.to_string(),
        }))
    }

    fn whole(&mut self) -> Piece {
        Piece::Whole {
            name: self.name.clone(),
            bytes: std::mem::take(&mut self.buf),
        }
    }
}

/// Where the first line of `text` (which starts at a line's start) that starts `---` or `...`
/// starts.
fn marked_line(text: &[u8]) -> Option<usize> {
    // Searchers made once: making one was a fifth of a search's cost on sections of 1-3 KB.
    static DASHES: OnceLock<memmem::Finder<'static>> = OnceLock::new();
    static DOTS: OnceLock<memmem::Finder<'static>> = OnceLock::new();
    if text.starts_with(b"---") || text.starts_with(b"...") {
        return Some(0);
    }
    let dashes = DASHES
        .get_or_init(|| memmem::Finder::new(b"\n---"))
        .find(text)
        .map(|i| i + 1);
    // Before the dashes only: past them, the next call looks again.
    let dots = DOTS
        .get_or_init(|| memmem::Finder::new(b"\n..."))
        .find(&text[..dashes.unwrap_or(text.len())]);
    dots.map(|i| i + 1).or(dashes)
}

/// Parse one source as it is read, `chunk` bytes at a time, handing each object to `sink`, and
/// return its size in bytes.
#[cfg(test)]
fn read_source_in_chunks(
    name: &str,
    input: &mut dyn Read,
    chunk: usize,
    sink: &mut dyn FnMut(Resource) -> argo_drift_core::Result<()>,
) -> anyhow::Result<usize> {
    let mut source = Source::new(name.to_string(), input, chunk);
    while let Some(piece) = source.next_piece()? {
        piece.parse(sink)?;
    }
    Ok(source.size())
}

/// Sources are read this many bytes at a time.
const CHUNK: usize = 1 << 16;

/// One section's text, checked as UTF-8 (the error names the source's line and byte offset, as
/// `parse_source` does); a byte-order mark at the start of the source is dropped.
fn section_text<'a>(
    name: &str,
    bytes: &'a [u8],
    offset: usize,
    first_line: usize,
) -> argo_drift_core::Result<&'a str> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let valid = e.valid_up_to();
        argo_drift_core::Error::DecodeUtf8 {
            source_name: name.to_string(),
            line: first_line + memchr::memchr_iter(b'\n', &bytes[..valid]).count(),
            offset: offset + valid,
        }
    })?;
    Ok(match offset {
        0 => text.strip_prefix('\u{feff}').unwrap_or(text),
        _ => text,
    })
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml") | Some("yml") | Some("json")
    )
}

/// Collect manifest files below `dir` in a stable (sorted) order, skipping hidden entries such
/// as `.git`.
fn walk(dir: &Path, files: &mut Vec<Option<PathBuf>>, depth: usize) -> anyhow::Result<()> {
    if depth > MAX_DEPTH {
        bail!(
            "{} is nested more than {MAX_DEPTH} directories deep (a symlink loop?)",
            dir.display()
        );
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, files, depth + 1)?;
        } else if is_manifest(&path) {
            files.push(Some(path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a source yields: each object with its key and origin, or the error.
    fn whole(name: &str, bytes: &[u8]) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        parse_source(name, bytes, &mut |r| {
            out.push(describe(&r));
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        Ok(out)
    }

    fn streamed(name: &str, bytes: &[u8], chunk: usize) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        let size = read_source_in_chunks(name, &mut { bytes }, chunk, &mut |r| {
            out.push(describe(&r));
            Ok(())
        })
        .map_err(|e| format!("{e:#}"))?;
        assert_eq!(size, bytes.len(), "{name}: size");
        Ok(out)
    }

    fn describe(r: &Resource) -> String {
        format!(
            "{} @ {} line {}: {}",
            r.key,
            r.origin,
            r.origin.line,
            serde_json::to_string(&r.object).unwrap()
        )
    }

    /// Read in chunks of every small size and of the real one, a source gives what the
    /// whole-text reader gives: the same objects, origins (document, item, line) and errors.
    fn same_as_whole(name: &str, bytes: &[u8]) {
        let expected = whole(name, bytes);
        for chunk in [1, 2, 3, 5, 7, 16, 64, 1000, CHUNK] {
            assert_eq!(
                streamed(name, bytes, chunk),
                expected,
                "{name} read {chunk} bytes at a time:\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n";

    #[test]
    fn yaml_streams_read_in_chunks_give_what_the_whole_text_gives() {
        let texts = [
            String::new(),
            "\n  \n".to_string(),
            "# only a comment\n".to_string(),
            CM.to_string(),
            CM.trim_end().to_string(),
            format!("---\n{CM}"),
            format!("\u{feff}{CM}---\n{}", CM.replace("name: a", "name: b")),
            format!(
                "\n\n# c\n{CM}--- # next\n\n{}---\n",
                CM.replace("name: a", "name: b")
            ),
            format!("{CM}---"),
            format!(
                "{CM}---\n---\n...\n---\n{}",
                CM.replace("name: a", "name: c")
            ),
            format!("{CM}--- |\n  text\n"),
            format!("{CM}----\n"),
            CM.replace('\n', "\r\n")
                + "---\r\n"
                + &CM.replace("name: a", "name: d").replace('\n', "\r\n"),
            format!(
                "apiVersion: v1\nitems:\n- {}kind: List\n",
                CM.replace("\n", "\n  ").trim_end()
            ),
            format!("{CM}---\nkind: [\n"),
            format!("{CM}---\n{CM}"),
            "key: value\n---\n{\"kind\": \"ConfigMap\"}\n".to_string(),
            // Marked lines in the middle of a section, dots before dashes and after them.
            format!(
                "{CM}...\n---x: 1\n---\n{}...\n",
                CM.replace("name: a", "name: e")
            ),
            format!("{CM}---\n...\n{CM}---\n---\n"),
            format!("{CM}...\n{}", CM.replace("name: a", "name: f")),
            format!(
                "{CM}...\n{}---\n{}",
                CM.replace("name: a", "name: g"),
                CM.replace("name: a", "name: h")
            ),
        ];
        for (i, text) in texts.iter().enumerate() {
            same_as_whole(&format!("t{i}.yaml"), text.as_bytes());
        }
        // The repository's own manifests, as one stream.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for dir in ["examples", "deploy", "config", "applicationsets"] {
            if root.join(dir).is_dir() {
                walk(&root.join(dir), &mut files, 0).unwrap();
            }
        }
        let mut all = Vec::new();
        for file in files.iter().flatten() {
            let bytes = std::fs::read(file).unwrap();
            // Policy files and the like are YAML but not manifests.
            if file.extension().is_some_and(|e| e != "json") && whole("f.yaml", &bytes).is_ok() {
                all.extend(bytes);
                all.extend(b"\n---\n");
            }
        }
        assert!(
            all.len() > 10_000,
            "the repository's manifests were not found"
        );
        assert!(whole("repo.yaml", &all).unwrap().len() > 20);
        same_as_whole("repo.yaml", &all);
    }

    /// `argo-drift diff` parses pieces on two threads, in any order: each piece's objects and
    /// origins must not depend on the pieces before it having been parsed, even where a
    /// section holds several documents (a separator carrying content, a document end).
    #[test]
    fn pieces_parsed_in_any_order_give_what_the_whole_text_gives() {
        let b = CM.replace("name: a", "name: b");
        let c = CM.replace("name: a", "name: c");
        let texts = [
            format!("{CM}---\n{b}---\n{c}"),
            format!("{CM}--- {{apiVersion: v1, kind: ConfigMap, metadata: {{name: x}}}}\n---\n{b}"),
            format!("{CM}---\n{b}--- # a comment\n{c}...\n# after the end\n"),
            format!(
                "{CM}---\n{b}...\n---\n{}---\n{c}",
                CM.replace("name: a", "name: e")
            ),
            format!("---\n\n---\n{CM}--- !!map\n{b}---\n{c}"),
            format!(
                "apiVersion: v1\nitems:\n- {}\nkind: List\n---\n{b}",
                CM.replace("\n", "\n  ").trim_end()
            ),
        ];
        for (i, text) in texts.iter().enumerate() {
            let name = format!("t{i}.yaml");
            let expected = whole(&name, text.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(expected.len() >= 2, "{name}: {expected:?}");
            let mut source = Source::new(name.clone(), text.as_bytes(), 5);
            let mut pieces = Vec::new();
            while let Some(piece) = source.next_piece().unwrap() {
                pieces.push(piece);
            }
            let mut parsed = vec![Vec::new(); pieces.len()];
            for (piece, out) in pieces.iter().zip(&mut parsed).rev() {
                piece
                    .parse(&mut |r| {
                        out.push(describe(&r));
                        Ok(())
                    })
                    .unwrap();
            }
            assert_eq!(parsed.concat(), expected, "{name}:\n{text}");
        }
    }

    #[test]
    fn invalid_utf8_is_named_by_line_and_offset_as_the_whole_text_reader_names_it() {
        let mut bytes = format!("{CM}---\n{CM}---\n").into_bytes();
        let at = bytes.len() + 20;
        bytes.extend(CM.replace("name: a", "name: e").as_bytes());
        bytes[at] = 0xff;
        same_as_whole("bad.yaml", &bytes);
        let error = streamed("bad.yaml", &bytes, 3).unwrap_err();
        assert!(
            error.contains("bad.yaml") && error.contains("line 16"),
            "{error}"
        );
        // At the very start, and in a line that looks like a separator.
        same_as_whole("bad.yaml", b"\xff\n");
        let mut separator = format!("{CM}--- #").into_bytes();
        separator.push(0xc3);
        separator.extend(format!("\n{CM}").as_bytes());
        same_as_whole("bad.yaml", &separator);
    }

    /// A reader that counts what it has handed out.
    struct Counted<'a> {
        bytes: &'a [u8],
        served: std::rc::Rc<std::cell::Cell<usize>>,
    }

    impl Read for Counted<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.bytes.read(out)?;
            self.served.set(self.served.get() + n);
            Ok(n)
        }
    }

    #[test]
    fn a_yaml_stream_is_parsed_while_it_is_read() {
        // 2,000 documents, about 160 KB: the first object must reach the sink after one chunk,
        // not after the whole source was read.
        let text: String = (0..2000)
            .map(|i| format!("---\n{}", CM.replace("name: a", &format!("name: cm-{i}"))))
            .collect();
        first_object_after_one_chunk(&text);
    }

    #[test]
    fn json_documents_between_separators_are_parsed_while_they_are_read() {
        // What `kubectl get -o json` gives per object, joined as a YAML stream: a 4.5 MB dump
        // read whole was 4.5 MB of the peak of `argo-drift diff`.
        let text: String = (0..2000)
            .map(|i| {
                format!(
                    "{{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"ConfigMap\",\n  \
                     \"metadata\": {{\"name\": \"cm-{i}\"}}\n}}\n---\n"
                )
            })
            .collect();
        first_object_after_one_chunk(&text);
        same_as_whole("stream.yaml", text.as_bytes());
        same_as_whole("stream.yaml", format!("\u{feff}{text}").as_bytes());
        same_as_whole("stream.yaml", format!("---\n{text}").as_bytes());
    }

    fn first_object_after_one_chunk(text: &str) {
        let served = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut input = Counted {
            bytes: text.as_bytes(),
            served: served.clone(),
        };
        let mut read_at_first = None;
        let mut objects = 0;
        read_source_in_chunks("many.yaml", &mut input, 4096, &mut |_| {
            read_at_first.get_or_insert(served.get());
            objects += 1;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(objects, 2000);
        assert!(text.len() > 100_000);
        assert!(
            read_at_first.is_some_and(|read| read <= 2 * 4096),
            "the first object came after {read_at_first:?} of {} bytes were read",
            text.len()
        );
    }

    #[test]
    fn one_json_document_is_read_whole() {
        let list = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}},
{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"}}]}"#;
        same_as_whole("dump.json", list.as_bytes());
        same_as_whole("dump.yaml", list.as_bytes());
        same_as_whole("dump.yaml", format!("\n\n  {list}").as_bytes());
        same_as_whole("two.yaml", b"{\"kind\": \"ConfigMap\", \"apiVersion\": \"v1\", \"metadata\": {\"name\": \"a\"}}\n---\n{\"kind\": \"Secret\", \"apiVersion\": \"v1\", \"metadata\": {\"name\": \"a\"}}\n");
        assert_eq!(streamed("dump.json", list.as_bytes(), 2).unwrap().len(), 2);
    }
}
