//! Setting fields of one document in a YAML file while keeping every other byte: comments, key
//! order, quoting, blank lines, the other documents. What `argo-drift adopt` writes back to Git.
//!
//! The file is parsed with positions (granit-parser, the parser kube-rs reads YAML with), the
//! field is found by its path (list items by merge key), and only its node is rewritten: a
//! scalar in its own quoting style, a missing field inserted at its map's indentation after the
//! last entry, a removed field's lines deleted, a flow collection (`[a, b]`, `{a: 1}`) rewritten
//! whole in flow style. The result is parsed again and must equal the document with the fields
//! set, else the edit is refused: nothing is written that does not say what was asked.

use granit_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Value};

use crate::normalize::merge_keys::find_item;
use crate::path::{lookup, same_value, FieldPath, Selector, Step};

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{0}")]
    Parse(String),
    #[error("document {document} is not in the file ({documents} there)")]
    NoDocument { document: usize, documents: usize },
    #[error("{path}: {reason}")]
    Unsupported { path: String, reason: String },
    #[error("the edited document does not read back as intended (at {path}); nothing written")]
    Verify { path: String },
}

#[derive(Debug)]
enum Shape {
    Scalar(ScalarStyle),
    Map { flow: bool, entries: Vec<Entry> },
    Seq { flow: bool, items: Vec<Node> },
    Alias,
}

#[derive(Debug)]
struct Entry {
    key: String,
    key_start: usize,
    value: Node,
}

#[derive(Debug)]
struct Node {
    shape: Shape,
    start: usize,
    end: usize,
}

fn offset(span: &Span, start: bool) -> Result<usize, EditError> {
    let m = if start { span.start } else { span.end };
    m.byte_offset()
        .ok_or_else(|| EditError::Parse("the YAML parser gave no byte offset".into()))
}

type Events<'a> = std::iter::Peekable<Parser<'a, granit_parser::StrInput<'a>>>;

fn next(events: &mut Events<'_>) -> Result<(Event<'static>, Span), EditError> {
    loop {
        match events.next() {
            None => return Err(EditError::Parse("unexpected end of the YAML".into())),
            Some(Err(e)) => return Err(EditError::Parse(e.to_string())),
            Some(Ok((event, span))) => match event {
                Event::Comment(..) | Event::Anchor(..) => continue,
                event => return Ok((owned(event), span)),
            },
        }
    }
}

/// The event without borrowed text (only what the tree keeps).
fn owned(event: Event<'_>) -> Event<'static> {
    match event {
        Event::Scalar(text, style, anchor, _) => Event::Scalar(
            std::borrow::Cow::Owned(text.into_owned()),
            style,
            anchor,
            None,
        ),
        Event::SequenceStart(style, anchor, _) => Event::SequenceStart(style, anchor, None),
        Event::MappingStart(style, anchor, _) => Event::MappingStart(style, anchor, None),
        Event::Alias(a) => Event::Alias(a),
        Event::SequenceEnd => Event::SequenceEnd,
        Event::MappingEnd => Event::MappingEnd,
        Event::DocumentStart(..) => Event::DocumentStart(false, None),
        Event::DocumentEnd => Event::DocumentEnd,
        Event::StreamStart => Event::StreamStart,
        Event::StreamEnd => Event::StreamEnd,
        _ => Event::StreamEnd,
    }
}

fn node(events: &mut Events<'_>, first: (Event<'static>, Span)) -> Result<Node, EditError> {
    let (event, span) = first;
    let start = offset(&span, true)?;
    match event {
        Event::Scalar(_, style, _, _) => Ok(Node {
            shape: Shape::Scalar(style),
            start,
            end: offset(&span, false)?,
        }),
        Event::Alias(_) => Ok(Node {
            shape: Shape::Alias,
            start,
            end: offset(&span, false)?,
        }),
        Event::MappingStart(style, _, _) => {
            let mut entries = Vec::new();
            loop {
                let (event, span) = next(events)?;
                match event {
                    Event::MappingEnd => {
                        return Ok(Node {
                            shape: Shape::Map {
                                flow: style == granit_parser::StructureStyle::Flow,
                                entries,
                            },
                            start,
                            end: offset(&span, false)?,
                        })
                    }
                    Event::Scalar(key, _, _, _) => {
                        let key_start = offset(&span, true)?;
                        let first = next(events)?;
                        entries.push(Entry {
                            key: key.into_owned(),
                            key_start,
                            value: node(events, first)?,
                        });
                    }
                    _ => {
                        return Err(EditError::Parse(
                            "a mapping key that is not a scalar".into(),
                        ))
                    }
                }
            }
        }
        Event::SequenceStart(style, _, _) => {
            let mut items = Vec::new();
            loop {
                let (event, span) = next(events)?;
                if matches!(event, Event::SequenceEnd) {
                    return Ok(Node {
                        shape: Shape::Seq {
                            flow: style == granit_parser::StructureStyle::Flow,
                            items,
                        },
                        start,
                        end: offset(&span, false)?,
                    });
                }
                items.push(node(events, (event, span))?);
            }
        }
        _ => Err(EditError::Parse("unexpected YAML event".into())),
    }
}

/// The root node of every document of `text`.
fn documents(text: &str) -> Result<Vec<Node>, EditError> {
    let mut events: Events<'_> = Parser::new_from_str(text).peekable();
    let mut roots = Vec::new();
    loop {
        let (event, span) = next(&mut events)?;
        match event {
            Event::StreamStart | Event::DocumentStart(..) | Event::DocumentEnd => {}
            Event::StreamEnd => return Ok(roots),
            other => roots.push(node(&mut events, (other, span))?),
        }
    }
}

fn line_start(text: &str, pos: usize) -> usize {
    text[..pos].rfind('\n').map_or(0, |i| i + 1)
}

/// Where the line holding the last byte of `[.., end)` ends (after its newline).
fn line_end(text: &str, end: usize) -> usize {
    // A block scalar's span runs on to the next line's content: what precedes `end` on its
    // line is only indentation then.
    let start = line_start(text, end);
    if start > 0 && text[start..end].trim().is_empty() {
        return start;
    }
    text[end..].find('\n').map_or(text.len(), |i| end + i + 1)
}

/// Where an entry whose value is `value` ends: after the line of its last scalar.
fn entry_end(text: &str, value: &Node) -> usize {
    match &value.shape {
        Shape::Map {
            flow: false,
            entries,
        } if !entries.is_empty() => entry_end(text, &entries[entries.len() - 1].value),
        Shape::Seq { flow: false, items } if !items.is_empty() => {
            entry_end(text, &items[items.len() - 1])
        }
        _ => line_end(text, value.end),
    }
}

/// The column of the `-` that opens the item starting at `start`.
fn dash_at(text: &str, start: usize) -> Option<usize> {
    let mut before = text[..start].trim_end();
    // A block scalar's header (`- |`, `- >-`) comes between the dash and the content.
    if let Some(header) = before.rfind(['|', '>']) {
        if before[header + 1..]
            .chars()
            .all(|c| matches!(c, '-' | '+' | '1'..='9'))
        {
            let rest = before[..header].trim_end();
            if rest.ends_with('-') {
                before = rest;
            }
        }
    }
    before.strip_suffix('-').map(str::len)
}

fn column(text: &str, pos: usize) -> usize {
    pos - line_start(text, pos)
}

fn scalar_text(text: &str, node: &Node) -> Option<Value> {
    serde_yaml::from_str::<Value>(&text[node.start..node.end]).ok()
}

/// The index of the item of `items` a step names.
fn find_node(text: &str, items: &[Node], selector: &Selector) -> Option<usize> {
    match selector {
        Selector::Index(i) => (*i < items.len()).then_some(*i),
        Selector::Key(pairs) => items.iter().position(|item| {
            let Shape::Map { entries, .. } = &item.shape else {
                return false;
            };
            pairs.iter().all(|(k, v)| {
                entries
                    .iter()
                    .find(|e| &e.key == k)
                    .and_then(|e| scalar_text(text, &e.value))
                    .is_some_and(|found| same_value(&found, v))
            })
        }),
    }
}

/// How far a path goes in the document: the nodes along it (the root first) and, for each, how
/// it was reached (a map entry's key start, or an item).
struct Located<'n> {
    nodes: Vec<&'n Node>,
    /// For a node that is a map entry's value: where its key starts, and the key.
    keys: Vec<Option<(usize, &'n str)>>,
}

fn locate<'n>(text: &str, root: &'n Node, steps: &[Step]) -> Located<'n> {
    let mut located = Located {
        nodes: vec![root],
        keys: vec![None],
    };
    let mut here = root;
    for step in steps {
        let found = match (&here.shape, step) {
            (Shape::Map { entries, .. }, Step::Field(name)) => entries
                .iter()
                .find(|e| e.key == name.as_str())
                .map(|e| (&e.value, Some((e.key_start, e.key.as_str())))),
            (Shape::Seq { items, .. }, Step::Item { selector, .. }) => {
                find_node(text, items, selector).map(|i| (&items[i], None))
            }
            _ => None,
        };
        let Some((next, key)) = found else {
            break;
        };
        located.nodes.push(next);
        located.keys.push(key);
        here = next;
    }
    located
}

/// Set (`Some`) or remove (`None`) the value at `steps` in a JSON value.
fn set_at(doc: &mut Value, steps: &[Step], new: Option<&Value>) -> bool {
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let mut here = doc;
    for step in parents {
        let next = match step {
            Step::Field(name) => {
                if here.is_null() {
                    *here = Value::Object(Map::new());
                }
                let Some(map) = here.as_object_mut() else {
                    return false;
                };
                if new.is_none() && !map.contains_key(name.as_str()) {
                    return true;
                }
                map.entry(name.to_string()).or_insert(Value::Null)
            }
            Step::Item { selector, .. } => {
                let Some(items) = here.as_array_mut() else {
                    return false;
                };
                let Some(i) = find_item(items, selector) else {
                    return new.is_none();
                };
                &mut items[i]
            }
        };
        here = next;
    }
    match (last, new) {
        (Step::Field(name), Some(v)) => {
            if here.is_null() {
                *here = Value::Object(Map::new());
            }
            match here.as_object_mut() {
                Some(map) => {
                    map.insert(name.to_string(), v.clone());
                    true
                }
                None => false,
            }
        }
        (Step::Field(name), None) => {
            if let Some(map) = here.as_object_mut() {
                map.remove(name.as_str());
            }
            true
        }
        (Step::Item { selector, .. }, new) => {
            if here.is_null() {
                *here = Value::Array(Vec::new());
            }
            let Some(items) = here.as_array_mut() else {
                return false;
            };
            match (find_item(items, selector), new) {
                (Some(i), Some(v)) => items[i] = v.clone(),
                (Some(i), None) => {
                    items.remove(i);
                }
                (None, Some(v)) => items.push(v.clone()),
                (None, None) => {}
            }
            true
        }
    }
}

// --- rendering ---------------------------------------------------------------------------------

/// Whether `s` can be written unquoted and read back as the same string (by YAML 1.2 and by the
/// YAML 1.1 readers Kubernetes tools use: `yes`, `on`, `0x1F`, `1_000` are not strings there).
fn plain_ok(s: &str, flow: bool) -> bool {
    let words = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
    ];
    if s.is_empty() || s.trim() != s || words.contains(&s.to_ascii_lowercase().as_str()) {
        return false;
    }
    if s.starts_with(|c: char| ",[]{}#&*!|>'\"%@`".contains(c))
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s.contains(['\n', '\t', '\r'])
        || (flow && s.contains([',', '[', ']', '{', '}']))
    {
        return false;
    }
    // `-`, `?` and `:` open a plain scalar only before a non-space (`-c`, `--port=80`).
    if s.starts_with(['-', '?', ':']) {
        let second = s[1..].chars().next();
        if second.is_none_or(|c| c.is_whitespace() || (flow && ",[]{}".contains(c))) {
            return false;
        }
    }
    // Numbers of YAML 1.1 (`1_000`, `0x1F`, `0o17`, `1:30` sexagesimal, `.5`, `1e3`).
    if s.chars().any(|c| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_hexdigit() || "._+-xXoO:".contains(c))
    {
        return false;
    }
    matches!(serde_yaml::from_str::<Value>(s), Ok(Value::String(ref t)) if t == s)
}

fn quoted(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

fn render_scalar(v: &Value, style: ScalarStyle, flow: bool) -> String {
    match v {
        Value::String(s) => match style {
            ScalarStyle::SingleQuoted if !s.contains('\n') => {
                format!("'{}'", s.replace('\'', "''"))
            }
            ScalarStyle::Plain if plain_ok(s, flow) => s.clone(),
            _ => quoted(s),
        },
        Value::Null => "null".into(),
        Value::Array(_) | Value::Object(_) => render_flow(v),
        other => other.to_string(),
    }
}

fn render_key(k: &str, flow: bool) -> String {
    if plain_ok(k, flow) {
        k.to_string()
    } else {
        quoted(k)
    }
}

fn render_flow(v: &Value) -> String {
    match v {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(render_flow).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", render_key(k, true), render_flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => render_scalar(other, ScalarStyle::Plain, true),
    }
}

/// `v` in flow style, keeping what `node` (its old self in `text`) wrote where it still holds:
/// the keys' order, a scalar's exact text.
fn render_flow_like(text: &str, node: &Node, v: &Value) -> String {
    match (&node.shape, v) {
        (Shape::Scalar(_), _) if scalar_text(text, node).as_ref() == Some(v) => {
            text[node.start..node.end].to_string()
        }
        (Shape::Scalar(style), v) if !v.is_object() && !v.is_array() => {
            render_scalar(v, *style, true)
        }
        (Shape::Map { entries, .. }, Value::Object(map)) => {
            let mut parts = Vec::new();
            for e in entries {
                if let Some(value) = map.get(&e.key) {
                    let key_end = text[e.key_start..]
                        .find(':')
                        .map_or(e.key_start, |i| e.key_start + i);
                    let key = text[e.key_start..key_end].trim_end();
                    parts.push(format!(
                        "{key}: {}",
                        render_flow_like(text, &e.value, value)
                    ));
                }
            }
            for (k, value) in map {
                if !entries.iter().any(|e| &e.key == k) {
                    parts.push(format!("{}: {}", render_key(k, true), render_flow(value)));
                }
            }
            format!("{{{}}}", parts.join(", "))
        }
        (Shape::Seq { items, .. }, Value::Array(values)) => {
            let parts: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, value)| match items.get(i) {
                    Some(item) => render_flow_like(text, item, value),
                    None => render_flow(value),
                })
                .collect();
            format!("[{}]", parts.join(", "))
        }
        _ => render_flow(v),
    }
}

/// The keys of a new map in the order Kubernetes manifests write them: `name` first.
fn ordered(map: &Map<String, Value>) -> impl Iterator<Item = (&String, &Value)> {
    let name = map.get_key_value("name");
    name.into_iter()
        .chain(map.iter().filter(|(k, _)| k.as_str() != "name"))
}

/// `key: value` at `indent`, in block style, with its line break.
fn render_entry(key: &str, v: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let key = render_key(key, false);
    match v {
        Value::Object(map) if !map.is_empty() => {
            let mut out = format!("{pad}{key}:\n");
            for (k, v) in ordered(map) {
                out.push_str(&render_entry(k, v, indent + 2));
            }
            out
        }
        Value::Array(items) if !items.is_empty() => {
            let mut out = format!("{pad}{key}:\n");
            for item in items {
                out.push_str(&render_item(item, indent + 2));
            }
            out
        }
        other => format!(
            "{pad}{key}: {}\n",
            render_scalar(other, ScalarStyle::Plain, false)
        ),
    }
}

/// `- item` with its dash at `indent`, in block style.
fn render_item(v: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) if !map.is_empty() => {
            let mut out = String::new();
            for (k, v) in ordered(map) {
                out.push_str(&render_entry(k, v, indent + 2));
            }
            // The first entry goes on the dash's line.
            format!("{pad}- {}", &out[indent + 2..])
        }
        Value::Array(items) if !items.is_empty() => {
            let mut out = format!("{pad}-\n");
            for item in items {
                out.push_str(&render_item(item, indent + 2));
            }
            out
        }
        other => format!(
            "{pad}- {}\n",
            render_scalar(other, ScalarStyle::Plain, false)
        ),
    }
}

// --- editing -----------------------------------------------------------------------------------

/// One change to make: the value at `path`, or `None` to remove it.
#[derive(Debug, Clone)]
pub struct FieldEdit {
    pub path: FieldPath,
    pub value: Option<Value>,
}

/// Set `edits` in document `document` (0-based) of `text`; every other byte is kept.
pub fn set_fields(text: &str, document: usize, edits: &[FieldEdit]) -> Result<String, EditError> {
    let original = documents(text)?;
    let documents_in = original.len();
    let root = original.get(document).ok_or(EditError::NoDocument {
        document: document + 1,
        documents: documents_in,
    })?;
    if root.end < root.start {
        return Err(EditError::Parse("a document without content".into()));
    }
    let mut wanted = doc_value(text, document)?;
    for edit in edits {
        if !set_at(&mut wanted, &edit.path.0, edit.value.as_ref()) {
            return Err(EditError::Unsupported {
                path: edit.path.to_string(),
                reason: "the file's document has another shape on the way (a scalar where a map or list is)".into(),
            });
        }
    }
    let mut out = text.to_string();
    for edit in edits {
        out = apply(&out, document, edit, &wanted)?;
    }
    let got = doc_value(&out, document)?;
    if got != wanted {
        return Err(EditError::Verify {
            path: edits
                .iter()
                .map(|e| e.path.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    if documents(&out)?.len() != documents_in {
        return Err(EditError::Verify {
            path: "the file's documents".into(),
        });
    }
    Ok(out)
}

/// Document `document` of `text` as JSON.
fn doc_value(text: &str, document: usize) -> Result<Value, EditError> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .nth(document)
        .map(Value::deserialize)
        .transpose()
        .map_err(|e| EditError::Parse(e.to_string()))?
        .ok_or(EditError::NoDocument {
            document: document + 1,
            documents: 0,
        })
}

/// One edit on the current text; `wanted` is the document with every edit made (what a
/// rewritten subtree is rendered from).
fn apply(
    text: &str,
    document: usize,
    edit: &FieldEdit,
    wanted: &Value,
) -> Result<String, EditError> {
    let roots = documents(text)?;
    let root = &roots[document];
    let steps = &edit.path.0;
    let unsupported = |reason: &str| EditError::Unsupported {
        path: edit.path.to_string(),
        reason: reason.to_string(),
    };
    let at = locate(text, root, steps);
    let reached = at.nodes.len() - 1;
    let splice = |start: usize, end: usize, with: &str| {
        let mut out = String::with_capacity(text.len() + with.len());
        out.push_str(&text[..start]);
        out.push_str(with);
        out.push_str(&text[end..]);
        out
    };
    // A flow collection on the way is written again whole, in flow style.
    if let Some(k) = at.nodes.iter().position(|n| {
        matches!(
            n.shape,
            Shape::Map { flow: true, .. } | Shape::Seq { flow: true, .. }
        )
    }) {
        if k > 0 || reached < steps.len() || edit.value.is_some() {
            let node = at.nodes[k];
            let Some(v) = lookup(wanted, &steps[..k]) else {
                return remove(text, &at, k, &unsupported);
            };
            return Ok(splice(
                node.start,
                node.end,
                &render_flow_like(text, node, v),
            ));
        }
    }
    if at.nodes.iter().any(|n| matches!(n.shape, Shape::Alias)) {
        return Err(unsupported(
            "the path goes through a YAML alias (*name): edit the anchor instead",
        ));
    }
    if reached == steps.len() {
        let target = at.nodes[reached];
        let Some(new) = &edit.value else {
            return remove(text, &at, reached, &unsupported);
        };
        if reached == 0 {
            return Err(unsupported("the whole document cannot be replaced"));
        }
        if let (Shape::Scalar(style), false) = (&target.shape, new.is_object() || new.is_array()) {
            if !matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
                return Ok(splice(
                    target.start,
                    target.end,
                    &render_scalar(new, *style, false),
                ));
            }
        }
        // A block collection or a block scalar: the whole entry or item is written again.
        let (start, end, rendered) = rewrite(text, &at, reached, new, &unsupported)?;
        return Ok(splice(start, end, &rendered));
    }
    if edit.value.is_none() {
        return Ok(text.to_string()); // absent already
    }
    // Missing: inserted into the deepest node that is there, with what it must hold.
    let parent = at.nodes[reached];
    let Some(v) = lookup(wanted, &steps[..=reached]) else {
        return Err(unsupported("no value to insert"));
    };
    match (&parent.shape, &steps[reached]) {
        (Shape::Map { entries, .. }, Step::Field(name)) => {
            let (indent, at_pos) = match entries.first() {
                Some(first) => (column(text, first.key_start), entry_end(text, parent)),
                None => return Err(unsupported("an empty map in block style")),
            };
            let mut rendered = render_entry(name, v, indent);
            let mut pos = at_pos;
            if pos == text.len() && !text.ends_with('\n') {
                rendered.insert(0, '\n');
                pos = text.len();
            }
            Ok(splice(pos, pos, &rendered))
        }
        (Shape::Seq { items, .. }, Step::Item { .. }) => {
            let first = items
                .first()
                .ok_or_else(|| unsupported("an empty list in block style"))?;
            let dash = dash_at(text, first.start)
                .ok_or_else(|| unsupported("a list item without its dash"))?;
            let pos = entry_end(text, parent);
            Ok(splice(pos, pos, &render_item(v, column(text, dash))))
        }
        _ => Err(unsupported(
            "the file has a scalar where the path needs a map or list",
        )),
    }
}

/// Delete the entry or item at depth `k` of `at` (its lines).
fn remove(
    text: &str,
    at: &Located<'_>,
    k: usize,
    unsupported: &dyn Fn(&str) -> EditError,
) -> Result<String, EditError> {
    if k == 0 {
        return Err(unsupported("the whole document cannot be removed"));
    }
    let node = at.nodes[k];
    let parent = at.nodes[k - 1];
    if matches!(
        parent.shape,
        Shape::Map { flow: true, .. } | Shape::Seq { flow: true, .. }
    ) {
        return Err(unsupported("removing from a flow collection"));
    }
    let start = match at.keys[k] {
        Some((key, _)) => line_start(text, key),
        None => line_start(
            text,
            dash_at(text, node.start).ok_or_else(|| unsupported("a list item without its dash"))?,
        ),
    };
    // A key or dash that does not begin its line (`- name: x` for the item's first key).
    let begins = at.keys[k].map_or(node.start, |(key, _)| key);
    if !text[start..begins]
        .trim_start_matches([' ', '-'])
        .is_empty()
    {
        return Err(unsupported("the entry shares its line with another"));
    }
    if at.keys[k].is_some_and(|(key, _)| text[line_start(text, key)..key].contains('-')) {
        return Err(unsupported(
            "the first key of a list item (remove the item instead)",
        ));
    }
    let end = entry_end(text, node);
    let mut out = text[..start].to_string();
    out.push_str(&text[end..]);
    Ok(out)
}

/// The entry or item at depth `k` written again with `new`: (start, end, text).
fn rewrite(
    text: &str,
    at: &Located<'_>,
    k: usize,
    new: &Value,
    unsupported: &dyn Fn(&str) -> EditError,
) -> Result<(usize, usize, String), EditError> {
    let node = at.nodes[k];
    let end = entry_end(text, node);
    match at.keys[k] {
        Some((key, name)) => {
            let start = line_start(text, key);
            let rendered = render_entry(name, new, column(text, key));
            if text[start..key].trim().is_empty() {
                Ok((start, end, rendered))
            } else {
                // `- key: ...` (the first key of an item): the dash is kept.
                Ok((key, end, rendered[column(text, key)..].to_string()))
            }
        }
        None => {
            let dash = dash_at(text, node.start)
                .ok_or_else(|| unsupported("a list item without its dash"))?;
            Ok((
                line_start(text, dash),
                end,
                render_item(new, column(text, dash)),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    const DEPLOYMENT: &str = r#"# The web tier. Owned by team-a.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web   # keep in step with the Service
  labels:
    app: web
spec:
  replicas: 2  # scaled by hand in incidents
  template:
    spec:
      containers:
      - name: web
        image: "web:1"
        args: [serve, --port=80]

      - name: side
        image: 'envoy'
        env:
        - {name: A, value: "1"}
---
# second document
apiVersion: v1
kind: ConfigMap
metadata: {name: flags}
data:
  mode: safe
  level: low
"#;

    fn set(
        text: &str,
        document: usize,
        edits: &[(&str, Option<Value>)],
    ) -> Result<String, EditError> {
        let edits: Vec<FieldEdit> = edits
            .iter()
            .map(|(p, v)| FieldEdit {
                path: FieldPath::parse(p).unwrap(),
                value: v.clone(),
            })
            .collect();
        set_fields(text, document, &edits)
    }

    /// `text` with `from` replaced by `to` once (and it was there once).
    fn with(text: &str, from: &str, to: &str) -> String {
        assert_eq!(text.matches(from).count(), 1, "{from:?}");
        text.replacen(from, to, 1)
    }

    #[test]
    fn a_scalar_is_set_in_its_own_quoting_and_nothing_else_moves() {
        let out = set(
            DEPLOYMENT,
            0,
            &[
                ("spec.replicas", Some(json!(5))),
                (
                    "spec.template.spec.containers[name=web].image",
                    Some(json!("web:2")),
                ),
                (
                    "spec.template.spec.containers[name=side].image",
                    Some(json!("envoy:1.31")),
                ),
            ],
        )
        .unwrap();
        let expected = with(DEPLOYMENT, "replicas: 2  #", "replicas: 5  #");
        let expected = with(&expected, "image: \"web:1\"", "image: \"web:2\"");
        let expected = with(&expected, "image: 'envoy'", "image: 'envoy:1.31'");
        assert_eq!(out, expected);
    }

    #[test]
    fn missing_fields_are_inserted_at_their_maps_indentation() {
        let out = set(
            DEPLOYMENT,
            0,
            &[
                ("metadata.annotations.owner", Some(json!("team-b"))),
                (
                    "spec.template.spec.containers[name=web].imagePullPolicy",
                    Some(json!("Always")),
                ),
                (
                    "metadata.labels[\"app.kubernetes.io/part-of\"]",
                    Some(json!("shop")),
                ),
            ],
        )
        .unwrap();
        let expected = with(
            DEPLOYMENT,
            "    app: web\n",
            "    app: web\n    app.kubernetes.io/part-of: shop\n  annotations:\n    owner: team-b\n",
        );
        let expected = with(
            &expected,
            "        args: [serve, --port=80]\n",
            "        args: [serve, --port=80]\n        imagePullPolicy: Always\n",
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn a_removed_field_takes_its_lines_and_a_new_item_gets_its_dash() {
        let out = set(
            DEPLOYMENT,
            1,
            &[
                ("data.level", None),
                ("data.extra", Some(json!({"a": "1", "b": [true, "yes"]}))),
            ],
        )
        .unwrap();
        let expected = with(
            DEPLOYMENT,
            "  mode: safe\n  level: low\n",
            "  mode: safe\n  extra:\n    a: \"1\"\n    b:\n      - true\n      - \"yes\"\n",
        );
        assert_eq!(out, expected);
        let sidecar =
            json!({"name": "log", "image": "fluent-bit:3", "args": ["-c", "/etc/fb.conf"]});
        let out = set(
            DEPLOYMENT,
            0,
            &[("spec.template.spec.containers[name=log]", Some(sidecar))],
        )
        .unwrap();
        let expected = with(
            DEPLOYMENT,
            "        - {name: A, value: \"1\"}\n",
            "        - {name: A, value: \"1\"}\n      - name: log\n        args:\n          - -c\n          - /etc/fb.conf\n        image: fluent-bit:3\n",
        );
        assert_eq!(out, expected);
        // A whole item removed: its lines, down to its last nested line.
        let out = set(
            DEPLOYMENT,
            0,
            &[("spec.template.spec.containers[name=side]", None)],
        )
        .unwrap();
        let expected = with(
            DEPLOYMENT,
            "      - name: side\n        image: 'envoy'\n        env:\n        - {name: A, value: \"1\"}\n",
            "",
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn flow_collections_are_written_again_in_flow_style() {
        let out = set(
            DEPLOYMENT,
            0,
            &[
                (
                    "spec.template.spec.containers[name=web].args[1]",
                    Some(json!("--port=8080")),
                ),
                (
                    "spec.template.spec.containers[name=side].env[name=A].value",
                    Some(json!("2")),
                ),
            ],
        )
        .unwrap();
        let expected = with(DEPLOYMENT, "[serve, --port=80]", "[serve, --port=8080]");
        let expected = with(
            &expected,
            "{name: A, value: \"1\"}",
            "{name: A, value: \"2\"}",
        );
        assert_eq!(out, expected);
        let out = set(
            DEPLOYMENT,
            1,
            &[("metadata.labels", Some(json!({"tier": "gold"})))],
        )
        .unwrap();
        assert_eq!(
            out,
            with(
                DEPLOYMENT,
                "metadata: {name: flags}",
                "metadata: {name: flags, labels: {tier: gold}}"
            )
        );
    }

    #[test]
    fn strings_that_read_as_something_else_are_quoted() {
        for (value, written) in [
            (json!("true"), "\"true\""),
            (json!("yes"), "\"yes\""),
            (json!("1.0"), "\"1.0\""),
            (json!("0x1F"), "\"0x1F\""),
            (json!("a: b"), "\"a: b\""),
            (json!("#x"), "\"#x\""),
            (json!("line\nbreak"), "\"line\\nbreak\""),
            (json!(""), "\"\""),
            (json!(null), "null"),
            (json!(3), "3"),
            (json!("plain-text"), "plain-text"),
        ] {
            let out = set(DEPLOYMENT, 1, &[("data.mode", Some(value.clone()))]).unwrap();
            assert_eq!(
                out,
                with(DEPLOYMENT, "mode: safe", &format!("mode: {written}")),
                "{value}"
            );
        }
    }

    #[test]
    fn a_scalar_becoming_a_map_rewrites_its_entry_and_an_alias_is_refused() {
        let out = set(DEPLOYMENT, 1, &[("data.mode", Some(json!({"x": 1})))]).unwrap();
        assert_eq!(
            out,
            with(DEPLOYMENT, "  mode: safe\n", "  mode:\n    x: 1\n")
        );
        let anchored = "base: &b\n  a: 1\nother: *b\n";
        let e = set(anchored, 0, &[("other.a", Some(json!(2)))]).unwrap_err();
        assert!(e.to_string().contains("alias"), "{e}");
        assert!(matches!(
            set(DEPLOYMENT, 5, &[]),
            Err(EditError::NoDocument {
                document: 6,
                documents: 2
            })
        ));
        // A path through a scalar cannot be made.
        let e = set(DEPLOYMENT, 1, &[("data.mode.deep", Some(json!(1)))]).unwrap_err();
        assert!(e.to_string().starts_with("data.mode.deep: "), "{e}");
    }

    #[test]
    fn a_file_without_a_final_newline_and_block_scalars() {
        let text = "a: 1\nscript: |\n  echo hi\n  exit 0\nb: x";
        let out = set(text, 0, &[("c", Some(json!("new")))]).unwrap();
        assert_eq!(out, "a: 1\nscript: |\n  echo hi\n  exit 0\nb: x\nc: new\n");
        let out = set(text, 0, &[("script", Some(json!("echo bye\n")))]).unwrap();
        assert_eq!(out, "a: 1\nscript: \"echo bye\\n\"\nb: x");
    }
}

#[cfg(test)]
mod every_leaf {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    /// Every scalar leaf of `v`, with its path.
    fn leaves(v: &Value, at: FieldPath, out: &mut Vec<FieldPath>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    leaves(v, at.field(k), out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    leaves(v, at.item(Selector::Index(i), i), out);
                }
            }
            _ => out.push(at),
        }
    }

    /// Each leaf of each document of the project's example manifests set to a new value, one at
    /// a time: the edit is made, reads back as asked (set_fields checks it), and changes only the
    /// leaf's own line(s).
    #[test]
    fn every_leaf_of_the_example_manifests_can_be_set_changing_only_its_line() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut files = Vec::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "yaml") {
                    files.push(path);
                }
            }
        }
        let mut edited = 0;
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let Ok(docs) = documents(&text) else { continue };
            for document in 0..docs.len() {
                let value = doc_value(&text, document).unwrap();
                let mut paths = Vec::new();
                leaves(&value, FieldPath::root(), &mut paths);
                for path in paths {
                    let edit = FieldEdit {
                        path: path.clone(),
                        value: Some(json!("adopted: value")),
                    };
                    let out = set_fields(&text, document, &[edit])
                        .unwrap_or_else(|e| panic!("{}: {path}: {e}", file.display()));
                    // One hunk: the leaf's line(s) (a block scalar's several) became one.
                    let before: Vec<&str> = text.lines().collect();
                    let after: Vec<&str> = out.lines().collect();
                    let head = before
                        .iter()
                        .zip(&after)
                        .take_while(|(a, b)| a == b)
                        .count();
                    let tail = before[head..]
                        .iter()
                        .rev()
                        .zip(after[head..].iter().rev())
                        .take_while(|(a, b)| a == b)
                        .count();
                    let what = format!("{}: {path}:\n{out}", file.display());
                    assert_eq!(after.len() - head - tail, 1, "{what}");
                    let old = &before[head..before.len() - tail];
                    assert!(
                        old.len() == 1 || old[0].trim_end().ends_with(['|', '>', '-']),
                        "{what}"
                    );
                    edited += 1;
                }
            }
        }
        assert!(edited > 100, "{edited} leaves");
    }
}
