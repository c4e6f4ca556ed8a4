//! Parse YAML/JSON text into Kubernetes objects with a `ResourceKey` and the place they came from.
//!
//! Sources are handed in as bytes with a name; walking directories and reading stdin is the caller's
//! job. Multi-document YAML is split on `---` lines the way kubectl's YAML reader does, `kind: List`
//! (and any `*List`, what `kubectl get -o yaml` prints) is expanded into its items, and a large List
//! is parsed one item at a time so that a 50 MB dump never exists as one parsed tree.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::normalize::managed::Ownership;

mod fast_yaml;

/// Identity of a Kubernetes object: the API version is deliberately not part of it, because the
/// same object is served under several versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceKey {
    pub group: String,
    pub kind: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

/// A map by object identity, hashed with hashbrown's fast hasher: keys of one kind and namespace
/// share long prefixes, which an ordered map compares again at every level.
pub type KeyMap<V> = std::collections::HashMap<ResourceKey, V, foldhash::fast::RandomState>;

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.kind)?;
        } else {
            write!(f, "{}.{}", self.kind, self.group)?;
        }
        if self.namespace.is_empty() {
            write!(f, " {}", self.name)
        } else {
            write!(f, " {}/{}", self.namespace, self.name)
        }
    }
}

/// Where a document came from, for error messages and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub source: Arc<str>,
    /// 1-based index of the document in its source (sections between `---` lines).
    pub document: usize,
    /// 1-based index of the item when the document is a List.
    pub item: Option<usize>,
    /// 1-based line where the document (or item) starts.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.source, self.document)?;
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        write!(f, " (line {})", self.line)
    }
}

/// One Kubernetes object as written in a source.
#[derive(Debug, Clone)]
pub struct Resource {
    pub key: ResourceKey,
    pub api_version: String,
    pub object: Value,
    pub origin: Origin,
    /// Whether the document named its namespace; if not, `resolve_namespace` fills it in.
    pub namespace_given: bool,
    /// How many nulls the object holds at most, when its reader counted them (`None`: unknown):
    /// `prepare` stops looking for them once it has met that many. Walking every object for
    /// them was 2% of a diff; on the 2,000-pair corpus, whose every desired object holds one near
    /// its start, stopping there saved 0.8% more (`kubectl get -o yaml` form) and 2.3% (JSON).
    pub nulls: Option<usize>,
    /// `metadata.managedFields` when its reader read it aside, out of `object`; `None` when it
    /// did not (then it is in `object`, if the object has it).
    pub ownership: Option<Ownership>,
}

impl Resource {
    /// Build a resource from a parsed object, checking the fields that make up its identity.
    pub fn from_object(object: Value, origin: Origin) -> Result<Resource> {
        let invalid = |message: String| Error::InvalidManifest {
            origin: origin.clone(),
            message,
        };
        let Value::Object(map) = &object else {
            return Err(invalid(format!(
                "expected a Kubernetes object (a mapping), found {}",
                type_name(&object)
            )));
        };
        let api_version = required_string(map, "apiVersion").map_err(&invalid)?;
        let kind = required_string(map, "kind").map_err(&invalid)?;
        let metadata = match map.get("metadata") {
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(invalid(format!(
                    "metadata must be a mapping, found {}",
                    type_name(other)
                )))
            }
            None => return Err(invalid("missing metadata".to_string())),
        };
        let name = match metadata.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                let hint = if metadata.contains_key("generateName") {
                    " (generateName gives no stable identity to compare against)"
                } else {
                    ""
                };
                return Err(invalid(format!("missing metadata.name{hint}")));
            }
            Some(other) => {
                return Err(invalid(format!(
                    "metadata.name must be a string, found {}",
                    type_name(other)
                )))
            }
        };
        let namespace = match metadata.get("namespace") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(invalid(format!(
                    "metadata.namespace must be a string, found {}",
                    type_name(other)
                )))
            }
        };
        let group = match api_version.rsplit_once('/') {
            Some((group, _)) => group.to_string(),
            None => String::new(),
        };
        Ok(Resource {
            key: ResourceKey {
                group,
                kind,
                namespace: namespace.clone().unwrap_or_default(),
                name,
            },
            api_version,
            namespace_given: namespace.is_some(),
            nulls: None,
            ownership: None,
            object,
            origin,
        })
    }
}

fn required_string(map: &Map<String, Value>, field: &str) -> std::result::Result<String, String> {
    match map.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(format!("missing {field}")),
        Some(other) => Err(format!(
            "{field} must be a string, found {}",
            type_name(other)
        )),
    }
}

pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Whether Argo CD leaves `object` out of its comparison: a resource hook (an
/// `argocd.argoproj.io/hook` annotation, including `Skip`, PreDelete and PostDelete, or a
/// `helm.sh/hook` other than `crd-install`, which Helm uses for CRDs that are no hooks). Argo CD
/// stores no sync status for them (controller/state.go, CompareAppState: `resState.Hook ||
/// ignore.Ignore(obj) || hookutil.Skip(targetObj)`; gitops-engine pkg/sync/hook/hook.go IsHook,
/// Skip and helm.IsHook), so neither a hook's own changes nor its deletion by a hook delete
/// policy is drift, and a hook with only a `generateName` needs no identity.
pub fn is_hook(object: &Value) -> bool {
    let annotations = &object["metadata"]["annotations"];
    if annotations.get("argocd.argoproj.io/hook").is_some() {
        return true;
    }
    annotations
        .get("helm.sh/hook")
        .and_then(Value::as_str)
        .is_some_and(|v| v != "crd-install")
}

/// Hand `object` to `sink` as a resource, unless it is a hook (see [`is_hook`]).
fn emit(object: Value, origin: Origin, sink: &mut dyn FnMut(Resource) -> Result<()>) -> Result<()> {
    if is_hook(&object) {
        return Ok(());
    }
    sink(Resource::from_object(object, origin)?)
}

/// Parse every object in one source and hand each to `sink` as soon as it is parsed, so that the
/// caller can shrink it (drop `managedFields`, `status`) before the next one is built. Resource
/// hooks are left out, as Argo CD leaves them out of its comparison ([`is_hook`]).
pub fn parse_source(
    source_name: &str,
    bytes: &[u8],
    sink: &mut dyn FnMut(Resource) -> Result<()>,
) -> Result<()> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let offset = e.valid_up_to();
        Error::DecodeUtf8 {
            source_name: source_name.to_string(),
            line: bytes[..offset].iter().filter(|&&b| b == b'\n').count() + 1,
            offset,
        }
    })?;
    let source: Arc<str> = Arc::from(source_name);
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if looks_like_json(source_name, text) {
        parse_json(&source, text, sink)
    } else {
        parse_yaml(&source, text, sink)
    }
}

/// Convenience wrapper collecting every object of one source.
pub fn parse_manifests(source_name: &str, bytes: &[u8]) -> Result<Vec<Resource>> {
    let mut out = Vec::new();
    parse_source(source_name, bytes, &mut |r| {
        out.push(r);
        Ok(())
    })?;
    Ok(out)
}

fn looks_like_json(source_name: &str, text: &str) -> bool {
    if source_name.ends_with(".json") {
        return true;
    }
    // JSON documents between YAML `---` separators are a YAML stream (YAML is a superset of
    // JSON), as kubectl reads them.
    may_be_json(source_name, text) && split_sections(text).len() == 1
}

/// Whether [`parse_source`] may read a source of this name as JSON, judged from its start (the
/// text up to its first non-blank character, BOM removed).
fn may_be_json(source_name: &str, start: &str) -> bool {
    source_name.ends_with(".json")
        || matches!(start.trim_start().chars().next(), Some('{') | Some('['))
}

fn parse_json(
    source: &Arc<str>,
    text: &str,
    sink: &mut dyn FnMut(Resource) -> Result<()>,
) -> Result<()> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut document = 0;
    loop {
        let start = stream.byte_offset();
        let next = stream.next();
        let Some(next) = next else { break };
        document += 1;
        let line = line_of_offset(text, skip_whitespace(text, start));
        let origin = Origin {
            source: source.clone(),
            document,
            item: None,
            line,
        };
        let value = next.map_err(|e| Error::ParseManifest {
            origin: Origin {
                line: e.line(),
                ..origin.clone()
            },
            message: format!("invalid JSON: {e}"),
        })?;
        emit_document(value, origin, sink)?;
    }
    Ok(())
}

fn skip_whitespace(text: &str, from: usize) -> usize {
    from + text[from..].len() - text[from..].trim_start().len()
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A section of a YAML stream between separator lines.
struct Section<'a> {
    first_line: usize,
    text: &'a str,
}

/// Whether a line separates two sections of a YAML stream: `---` followed only by blanks or a
/// comment, as kubectl's YAML reader splits. A separator carrying content (`--- |`) stays inside
/// its section; serde_yaml's own multi-document reader handles that case.
pub fn is_separator(line: &str) -> bool {
    line.trim_end().strip_prefix("---").is_some_and(|rest| {
        let rest = rest.trim_start();
        rest.is_empty() || rest.starts_with('#')
    })
}

/// Split on [`is_separator`] lines.
fn split_sections(text: &str) -> Vec<Section<'_>> {
    let mut sections = Vec::new();
    let mut start = 0;
    let mut first_line = 1;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if is_separator(line) {
            sections.push(Section {
                first_line,
                text: &text[start..offset],
            });
            start = offset + line.len();
            first_line = index + 2;
        }
        offset += line.len();
    }
    sections.push(Section {
        first_line,
        text: &text[start..],
    });
    sections
}

fn parse_yaml(
    source: &Arc<str>,
    text: &str,
    sink: &mut dyn FnMut(Resource) -> Result<()>,
) -> Result<()> {
    let mut stream = YamlSections {
        source: source.clone(),
        document: 0,
        sections: 0,
    };
    for section in split_sections(text) {
        stream.section(section.first_line, section.text, sink)?;
    }
    Ok(())
}

/// A YAML stream parsed one section at a time, so that a reader of a large source holds only the
/// section at hand: the caller cuts the text on [`is_separator`] lines and hands over every
/// section in order, the last one (after the last separator, maybe empty) included. Objects,
/// origins and errors are those [`parse_source`] gives for the whole text.
pub struct YamlSections {
    source: Arc<str>,
    /// Documents counted so far.
    document: usize,
    /// Sections seen so far.
    sections: usize,
}

impl YamlSections {
    pub fn new(source_name: &str) -> YamlSections {
        YamlSections {
            source: Arc::from(source_name),
            document: 0,
            sections: 0,
        }
    }

    /// Parse one section, whose first line is line `first_line` (1-based) of the source.
    pub fn section(
        &mut self,
        first_line: usize,
        text: &str,
        sink: &mut dyn FnMut(Resource) -> Result<()>,
    ) -> Result<()> {
        match self.number(first_line, text) {
            Some(origin) => parse_section(origin, first_line, text, sink).map(drop),
            None => Ok(()),
        }
    }

    /// Number the next section without parsing it, so that sections may be parsed elsewhere
    /// and in any order ([`parse_section`]): the origin of its first document, or `None` for a
    /// blank section, which holds no object (kubectl skips empty documents; so do we, but the
    /// numbering still counts them so that "document N" matches what a person counts).
    ///
    /// A section normally holds one document. One with a line starting `---` or `...` (a
    /// separator carrying content, `--- |`, or a document end) may hold more, as serde_yaml
    /// reads it: such a section is parsed here once to count them, so that the numbers of the
    /// sections after it do not depend on it being parsed first.
    pub fn number(&mut self, first_line: usize, text: &str) -> Option<Origin> {
        self.number_marked(first_line, text, may_hold_documents(text))
    }

    /// [`YamlSections::number`] for a caller that has looked at every line of the section
    /// already: `marked` says whether one starts `---` or `...`.
    pub fn number_marked(&mut self, first_line: usize, text: &str, marked: bool) -> Option<Origin> {
        let index = self.sections;
        self.sections += 1;
        if is_blank_yaml(text) {
            if index > 0 || !text.trim().is_empty() {
                self.document += 1;
            }
            return None;
        }
        self.document += 1;
        let origin = Origin {
            source: self.source.clone(),
            document: self.document,
            item: None,
            line: first_line + leading_blank_lines(text),
        };
        if marked {
            // An error is reported when the section is parsed for its objects; the numbers
            // after an error are never used.
            self.document +=
                parse_section(origin.clone(), first_line, text, &mut |_| Ok(())).unwrap_or(0);
        }
        Some(origin)
    }
}

/// Parse one section numbered by [`YamlSections::number`], whose first line is line
/// `first_line` of the source, handing each object to `sink`. Returns how many documents the
/// section held beyond its first.
pub fn parse_section(
    origin: Origin,
    first_line: usize,
    text: &str,
    sink: &mut dyn FnMut(Resource) -> Result<()>,
) -> Result<usize> {
    if let Some(split) = split_list(text) {
        if parse_split_list(&split, &origin, first_line, sink)? {
            return Ok(0);
        }
    }
    let document = fast_yaml::read(text, true).and_then(|document| {
        // What was set aside is a List's own: its items carry theirs in the value.
        if document.ownership.is_some() && is_list(&document.value) {
            fast_yaml::read(text, false)
        } else {
            Some(document)
        }
    });
    if let Some(document) = document {
        let fast_yaml::Document {
            value,
            nulls,
            mut ownership,
        } = document;
        emit_document(value, origin, &mut |mut resource| {
            resource.nulls = Some(nulls);
            resource.ownership = ownership.take();
            sink(resource)
        })?;
        return Ok(0);
    }
    let document = origin.document;
    let mut inner_docs = 0;
    for de in serde_yaml::Deserializer::from_str(text) {
        inner_docs += 1;
        let value =
            serde_yaml::Value::deserialize(de).map_err(|e| yaml_error(&e, &origin, first_line))?;
        let value = yaml_to_json(value).map_err(|message| Error::ParseManifest {
            origin: origin.clone(),
            message,
        })?;
        if value.is_null() {
            continue;
        }
        let origin = Origin {
            document: document + inner_docs - 1,
            ..origin.clone()
        };
        emit_document(value, origin, sink)?;
    }
    Ok(inner_docs.saturating_sub(1))
}

/// Whether a section may hold more than one document: a line of it starts `---` or `...`.
///
/// The checks of a section before it is parsed (this one, [`is_blank_yaml`],
/// [`leading_blank_lines`]) search with memchr's vector code, or stop at the first line with
/// content: a JSON document is one long line, and scanning it several times over in `str`'s
/// searches was 3.7% of `argo-drift diff` on the 2,000-pair corpus in that form.
fn may_hold_documents(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.starts_with(b"---")
        || bytes.starts_with(b"...")
        || line_after_first_starts(bytes, b"\n---")
        || line_after_first_starts(bytes, b"\n...")
}

/// Whether a line after the first starts with what follows the line break `needle` starts with.
/// A JSON document is one line: the search for the first line break ends it.
fn line_after_first_starts(bytes: &[u8], needle: &[u8]) -> bool {
    memchr::memchr(b'\n', bytes)
        .is_some_and(|first| memchr::memmem::find(&bytes[first..], needle).is_some())
}

/// The lines of `text` from the first, trimmed, up to the first for which `stop` is true; how
/// many there were before it, and whether one was met. `stop` must be true for any line whose
/// first character is not `#` or `.`: such a line is taken as met without reading to its end.
fn lines_until(text: &str, mut stop: impl FnMut(&str) -> bool) -> (usize, bool) {
    let mut rest = text;
    let mut count = 0;
    while !rest.is_empty() {
        let content = rest.trim_start_matches([' ', '\t', '\r']);
        match content.as_bytes().first() {
            Some(b'\n') | Some(b'#') | Some(b'.') | None => {}
            // Content, whatever follows on the line (other whitespace is left to `trim`).
            Some(b) if b.is_ascii_graphic() => return (count, true),
            Some(_) => {}
        }
        let end = memchr::memchr(b'\n', content.as_bytes()).unwrap_or(content.len());
        if stop(content[..end].trim()) {
            return (count, true);
        }
        count += 1;
        rest = content.get(end + 1..).unwrap_or("");
    }
    (count, false)
}

fn is_blank_yaml(text: &str) -> bool {
    // A line is blank when empty, a comment or a document end `...`.
    !lines_until(text, |t| {
        !(t.is_empty() || t.starts_with('#') || t == "...")
    })
    .1
}

fn leading_blank_lines(text: &str) -> usize {
    lines_until(text, |t| !(t.is_empty() || t.starts_with('#'))).0
}

fn yaml_error(e: &serde_yaml::Error, origin: &Origin, first_line: usize) -> Error {
    let line = e
        .location()
        .map(|l| first_line + l.line() - 1)
        .unwrap_or(origin.line);
    // serde_yaml appends "at line X column Y" relative to the section; we give the absolute line.
    let message = e.to_string();
    let message = match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    Error::ParseManifest {
        origin: Origin {
            line,
            ..origin.clone()
        },
        message: format!("invalid YAML: {message}"),
    }
}

fn emit_document(
    value: Value,
    origin: Origin,
    sink: &mut dyn FnMut(Resource) -> Result<()>,
) -> Result<()> {
    match value {
        Value::Object(mut map) if is_list_kind(&map) => {
            let items = match map.remove("items") {
                Some(Value::Array(items)) => items,
                None | Some(Value::Null) => Vec::new(),
                Some(other) => {
                    return Err(Error::InvalidManifest {
                        origin,
                        message: format!(
                            "items of a List must be a list, found {}",
                            type_name(&other)
                        ),
                    })
                }
            };
            emit_items(items, &origin, sink)
        }
        // A bare JSON array of objects: treat as the items of a List.
        Value::Array(items) => emit_items(items, &origin, sink),
        other => emit(other, origin, sink),
    }
}

fn emit_items(
    items: Vec<Value>,
    origin: &Origin,
    sink: &mut dyn FnMut(Resource) -> Result<()>,
) -> Result<()> {
    for (i, item) in items.into_iter().enumerate() {
        let origin = Origin {
            item: Some(i + 1),
            ..origin.clone()
        };
        emit(item, origin, sink)?;
    }
    Ok(())
}

/// Whether [`emit_document`] takes a document's value for a list of objects.
fn is_list(value: &Value) -> bool {
    match value {
        Value::Object(map) => is_list_kind(map),
        Value::Array(_) => true,
        _ => false,
    }
}

fn is_list_kind(map: &Map<String, Value>) -> bool {
    matches!(map.get("kind"), Some(Value::String(k)) if k.ends_with("List"))
        && matches!(
            map.get("items"),
            Some(Value::Array(_)) | None | Some(Value::Null)
        )
        && !matches!(map.get("metadata"), Some(Value::Object(m)) if m.contains_key("name") && map.get("items").is_none())
}

/// A List document cut into its header and its items, each item a one-element block sequence.
struct SplitList<'a> {
    header: String,
    items: Vec<(usize, &'a str)>,
}

/// Cut a `kubectl get -o yaml` style List into item texts without parsing it. Only the shape
/// `items:` at column 0 followed by `- ` entries at one indentation is recognised; any surprise
/// (an anchor, an item that does not parse on its own) makes the caller parse the whole document.
fn split_list(text: &str) -> Option<SplitList<'_>> {
    // Anchors and aliases are the one YAML feature that can tie one item to another, so a
    // document using them is parsed whole.
    if !text.starts_with("items:") && !line_after_first_starts(text.as_bytes(), b"\nitems:") {
        return None;
    }
    if text.lines().any(has_anchor_or_alias) {
        return None;
    }
    // One pass over the lines, without collecting them: a dump has millions.
    let mut header = String::new();
    let mut items = Vec::new();
    let mut indent: Option<usize> = None;
    let mut current: Option<(usize, usize)> = None; // (line index, byte start) of the open item
    let mut state = 0; // 0: before `items:`, 1: inside the items, 2: after them
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let start = offset;
        offset += line.len();
        match state {
            0 => {
                if line.trim_end() == "items:" {
                    state = 1;
                } else {
                    header.push_str(line);
                }
                continue;
            }
            2 => {
                header.push_str(line);
                continue;
            }
            _ => {}
        }
        let content = line.trim_end();
        let stripped = content.trim_start();
        if stripped.is_empty() || stripped.starts_with('#') {
            continue;
        }
        let col = content.len() - stripped.len();
        let is_entry = stripped == "-" || stripped.starts_with("- ");
        match indent {
            None if is_entry => indent = Some(col),
            None => return None,
            Some(i) if col < i || (col == i && !is_entry) => {
                if let Some((first, byte_start)) = current.take() {
                    items.push((first, &text[byte_start..start]));
                }
                state = 2;
                header.push_str(line);
                continue;
            }
            _ => {}
        }
        if is_entry && Some(col) == indent {
            if let Some((first, byte_start)) = current.take() {
                items.push((first, &text[byte_start..start]));
            }
            current = Some((index, start));
        }
    }
    if state == 0 {
        return None;
    }
    if let Some((first, byte_start)) = current.take() {
        items.push((first, &text[byte_start..]));
    }
    Some(SplitList { header, items })
}

/// Whether a line carries a YAML anchor (`&a`) or alias (`*a`) as a node property: right after a
/// `- ` or `: ` indicator, a flow opener or separator, or at the start of the line.
fn has_anchor_or_alias(line: &str) -> bool {
    let bytes = line.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        if b != b'&' && b != b'*' {
            return false;
        }
        let followed = bytes.get(i + 1).is_some_and(|c| !c.is_ascii_whitespace());
        let before = line[..i].trim_end();
        let after_indicator = before.is_empty()
            || before.ends_with(['-', ':', '[', ',', '{'])
            || before.ends_with("<<");
        followed
            && after_indicator
            && (i == 0 || bytes[i - 1].is_ascii_whitespace() || b"[{,".contains(&bytes[i - 1]))
    })
}

/// Parse a pre-split List; returns false when the header says it is not a List after all, so that
/// the caller parses the document whole.
fn parse_split_list(
    split: &SplitList<'_>,
    origin: &Origin,
    first_line: usize,
    sink: &mut dyn FnMut(Resource) -> Result<()>,
) -> Result<bool> {
    let Ok(header) = serde_yaml::from_str::<serde_yaml::Value>(&split.header) else {
        return Ok(false);
    };
    let is_list = header
        .get("kind")
        .and_then(|k| k.as_str())
        .is_some_and(|k| k.ends_with("List"));
    if !is_list || split.items.is_empty() {
        return Ok(false);
    }
    for (i, (line_index, text)) in split.items.iter().enumerate() {
        let item_origin = Origin {
            item: Some(i + 1),
            line: first_line + line_index,
            ..origin.clone()
        };
        let value = match fast_yaml::parse(text) {
            Some(Value::Array(mut seq)) if seq.len() == 1 => seq.pop().unwrap_or_default(),
            _ => {
                let mut seq: Vec<serde_yaml::Value> = serde_yaml::from_str(text)
                    .map_err(|e| yaml_error(&e, &item_origin, first_line + line_index))?;
                let Some(value) = seq.pop() else {
                    return Ok(false);
                };
                yaml_to_json(value).map_err(|message| Error::ParseManifest {
                    origin: item_origin.clone(),
                    message,
                })?
            }
        };
        emit(value, item_origin, sink)?;
    }
    Ok(true)
}

/// Convert a YAML value to JSON the way Kubernetes' YAML reader does: tags are dropped, scalar
/// mapping keys become strings.
fn yaml_to_json(value: serde_yaml::Value) -> std::result::Result<Value, String> {
    use serde_yaml::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| format!("number {n} cannot be represented in JSON"))?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<std::result::Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    Y::Null => "null".to_string(),
                    other => {
                        return Err(format!(
                            "mapping key must be a scalar, found {}",
                            match other {
                                Y::Sequence(_) => "a list",
                                Y::Mapping(_) => "a mapping",
                                _ => "a tagged value",
                            }
                        ))
                    }
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => yaml_to_json(tagged.value)?,
    })
}

/// Which kinds are cluster-scoped: a built-in table for Kubernetes' own kinds, extended by what a
/// run can learn (CustomResourceDefinitions it sees, live objects served without a namespace).
///
/// Kept as a list sorted by group and kind and searched with borrowed names: every object of a
/// diff asks, on both sides and more than once, and a lookup in sets of owned pairs built two
/// strings each time (4,150 lookups, 2.7M instructions, in a diff of the 2,000-pair corpus;
/// 1.4M fewer this way, callgrind).
#[derive(Debug, Clone)]
pub struct Scopes {
    /// (group, kind, cluster-scoped), sorted by group and kind, each kind once.
    kinds: Vec<(String, String, bool)>,
}

const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("", "ComponentStatus"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("scheduling.k8s.io", "PriorityClass"),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("networking.k8s.io", "IngressClass"),
    ("node.k8s.io", "RuntimeClass"),
    ("policy", "PodSecurityPolicy"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
];

impl Default for Scopes {
    fn default() -> Self {
        let mut scopes = Scopes { kinds: Vec::new() };
        for (group, kind) in CLUSTER_SCOPED {
            scopes.learn(group, kind, true);
        }
        scopes
    }
}

impl Scopes {
    fn find(&self, group: &str, kind: &str) -> Result<usize, usize> {
        self.kinds
            .binary_search_by(|(g, k, _)| (g.as_str(), k.as_str()).cmp(&(group, kind)))
    }

    pub fn is_cluster_scoped(&self, group: &str, kind: &str) -> bool {
        self.find(group, kind)
            .is_ok_and(|i| self.kinds.get(i).is_some_and(|(_, _, cluster)| *cluster))
    }

    /// Whether the object at `key` declares the scope of a kind ([`Scopes::learn_crd`] reads
    /// it): a CustomResourceDefinition.
    pub fn declares_scope(key: &ResourceKey) -> bool {
        key.group == "apiextensions.k8s.io" && key.kind == "CustomResourceDefinition"
    }

    /// Learn a kind's scope from a CustomResourceDefinition.
    pub fn learn_crd(&mut self, key: &ResourceKey, object: &Value) {
        if !Scopes::declares_scope(key) {
            return;
        }
        let spec = object.get("spec");
        let group = spec.and_then(|s| s.get("group")).and_then(Value::as_str);
        let kind = spec
            .and_then(|s| s.get("names"))
            .and_then(|n| n.get("kind"))
            .and_then(Value::as_str);
        let scope = spec.and_then(|s| s.get("scope")).and_then(Value::as_str);
        if let (Some(g), Some(k), Some(scope)) = (group, kind, scope) {
            self.learn(g, k, scope == "Cluster");
        }
    }

    /// Record a kind's scope as the API server's discovery reports it.
    pub fn learn(&mut self, group: &str, kind: &str, cluster_scoped: bool) {
        match self.find(group, kind) {
            Ok(i) => {
                if let Some((_, _, cluster)) = self.kinds.get_mut(i) {
                    *cluster = cluster_scoped;
                }
            }
            Err(i) => self
                .kinds
                .insert(i, (group.to_string(), kind.to_string(), cluster_scoped)),
        }
    }
}

/// Give a namespaced object without a namespace the default one, and take the namespace off a
/// cluster-scoped object (the API server ignores it there). The object's own
/// `metadata.namespace` is kept in step so that it does not show up as a difference. Both the
/// desired and the live side go through the same rule, so they agree on every key.
pub fn resolve_namespace(
    key: &mut ResourceKey,
    object: &mut Value,
    namespace_given: bool,
    default_namespace: &str,
    scopes: &Scopes,
) {
    let metadata = object.get_mut("metadata").and_then(Value::as_object_mut);
    if scopes.is_cluster_scoped(&key.group, &key.kind) {
        key.namespace.clear();
        if let Some(m) = metadata {
            m.remove("namespace");
        }
    } else if !namespace_given || key.namespace.is_empty() {
        key.namespace = default_namespace.to_string();
        if let Some(m) = metadata {
            m.insert(
                "namespace".to_string(),
                Value::String(default_namespace.to_string()),
            );
        }
    }
}

/// Whether [`resolve_namespace`] would leave the object as it is: its key and
/// `metadata.namespace` already say what the scope asks for.
pub fn namespace_resolved(
    key: &ResourceKey,
    object: &Value,
    namespace_given: bool,
    default_namespace: &str,
    scopes: &Scopes,
) -> bool {
    let written = object.get("metadata").and_then(|m| m.get("namespace"));
    if scopes.is_cluster_scoped(&key.group, &key.kind) {
        key.namespace.is_empty() && written.is_none()
    } else if !namespace_given || key.namespace.is_empty() {
        key.namespace == default_namespace
            && written.and_then(Value::as_str) == Some(default_namespace)
    } else {
        true
    }
}

/// Anything that has an identity and a place it came from.
pub trait Located {
    fn key(&self) -> &ResourceKey;
    fn origin(&self) -> &Origin;
}

impl Located for Resource {
    fn key(&self) -> &ResourceKey {
        &self.key
    }
    fn origin(&self) -> &Origin {
        &self.origin
    }
}

/// Index a set of objects by key, refusing two documents that name the same object: silently
/// keeping one would hide drift in the other.
pub fn index_by_key<T: Located>(items: Vec<T>) -> Result<BTreeMap<ResourceKey, T>> {
    let mut out: BTreeMap<ResourceKey, T> = BTreeMap::new();
    for item in items {
        if let Some(first) = out.get(item.key()) {
            return Err(Error::duplicate(item.key(), first.origin(), item.origin()));
        }
        out.insert(item.key().clone(), item);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_fields_read_aside_are_the_resources_own_and_a_lists_stay_in_its_items() {
        let managed = "  managedFields:\n  - apiVersion: v1\n    fieldsType: FieldsV1\n    fieldsV1:\n      f:data:\n        f:a: {}\n    manager: kubectl-edit\n    operation: Update\n";
        let one = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n{managed}  name: a\ndata:\n  a: b\n"
        );
        let resources = parse_manifests("one.yaml", one.as_bytes()).unwrap();
        let tracking = crate::normalize::TrackingKeys::default();
        let read = &resources[0];
        assert!(read.ownership.is_some());
        assert!(read.object["metadata"].get("managedFields").is_none());
        // The same ownership as `prepare` makes of the value.
        let mut generic =
            Resource::from_object(serde_yaml::from_str(&one).unwrap(), read.origin.clone())
                .unwrap();
        generic.nulls = read.nulls;
        let expected = crate::normalize::prepare(generic, &tracking);
        let prepared = crate::normalize::prepare(read.clone(), &tracking);
        assert_eq!(prepared.ownership, expected.ownership);
        assert_eq!(prepared.object, expected.object);
        assert_eq!(
            prepared.ownership.unwrap().entries()[0].manager,
            "kubectl-edit"
        );
        // A List's own managedFields are not its items': each item keeps its own in its value.
        let item = format!(
            "- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n  {}    name: b\n",
            managed.replace("\n  ", "\n    ")
        );
        let list = format!("apiVersion: v1\nkind: List\nmetadata:\n{managed}items:\n{item}");
        let resources = parse_manifests("list.yaml", list.as_bytes()).unwrap();
        assert_eq!(resources.len(), 1);
        assert!(resources[0].ownership.is_none());
        assert!(resources[0].object["metadata"]["managedFields"].is_array());
        let prepared = crate::normalize::prepare(resources[0].clone(), &tracking);
        assert_eq!(
            prepared.ownership.unwrap().entries()[0].manager,
            "kubectl-edit"
        );
    }

    #[test]
    fn a_kinds_scope_is_the_last_one_learned() {
        let mut scopes = Scopes::default();
        assert!(scopes.is_cluster_scoped("", "Namespace"));
        assert!(scopes.is_cluster_scoped("rbac.authorization.k8s.io", "ClusterRole"));
        assert!(!scopes.is_cluster_scoped("", "ConfigMap"));
        assert!(!scopes.is_cluster_scoped("example.com", "Gizmo"));
        scopes.learn("example.com", "Gizmo", true);
        assert!(scopes.is_cluster_scoped("example.com", "Gizmo"));
        assert!(!scopes.is_cluster_scoped("example.com", "Gadget"));
        assert!(!scopes.is_cluster_scoped("", "Gizmo"));
        scopes.learn("example.com", "Gizmo", false);
        assert!(!scopes.is_cluster_scoped("example.com", "Gizmo"));
        scopes.learn("", "Namespace", false);
        assert!(!scopes.is_cluster_scoped("", "Namespace"));
        assert!(scopes.is_cluster_scoped("", "Node"));
    }
    use proptest::prelude::*;

    /// The section checks as they read before [`lines_until`]: every line, whole.
    fn blank_by_lines(text: &str) -> bool {
        text.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#') || t == "..."
        })
    }

    fn leading_by_lines(text: &str) -> usize {
        text.lines()
            .take_while(|l| {
                let t = l.trim();
                t.is_empty() || t.starts_with('#')
            })
            .count()
    }

    fn documents_by_search(text: &str) -> bool {
        text.starts_with("---")
            || text.starts_with("...")
            || text.contains("\n---")
            || text.contains("\n...")
    }

    proptest! {
        #[test]
        fn section_checks_agree_with_reading_every_line(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(" "), Just("\t"), Just("\r"), Just("\n"), Just("#"), Just("."),
                    Just("..."), Just("-"), Just("---"), Just("a: 1"), Just("\u{b}"),
                    Just("\u{a0}"), Just("\u{3000}"), Just("{}"),
                ],
                0..24,
            )
        ) {
            let text = parts.concat();
            prop_assert_eq!(is_blank_yaml(&text), blank_by_lines(&text), "{:?}", text);
            prop_assert_eq!(leading_blank_lines(&text), leading_by_lines(&text), "{:?}", text);
            prop_assert_eq!(may_hold_documents(&text), documents_by_search(&text), "{:?}", text);
        }
    }
}
