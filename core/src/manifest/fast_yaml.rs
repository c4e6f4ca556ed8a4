//! A fast reader for the YAML that Kubernetes tools write, straight into JSON values.
//!
//! `kubectl get -o yaml`, Helm and Kustomize print a small part of YAML: block mappings and
//! sequences, plain and single-quoted scalars (wrapped at 80 columns), double-quoted ones,
//! literal and folded block scalars, one-line flow collections; or JSON documents between `---`
//! lines. This reader handles exactly that part and answers `None` for anything else — anchors,
//! tags, flows over several lines, multi-line double-quoted scalars, more-indented folded lines,
//! duplicate keys, any malformation — and the caller then parses the text
//! with serde_yaml, whose result (and error message) is the reference. Whenever this reader
//! answers, its value is the one serde_yaml's would convert to (tests compare the two on real
//! manifests and on thousands of mutated ones), so the fallback changes speed, never meaning.
//!
//! With `managed_fields`, an object's `metadata.managedFields` as kubectl prints it is read into
//! field sets ([`Ownership`]) rather than into the value, as `prepare` would have made them of the
//! value; in any other form it stays in the value.
//!
//! Plain scalars are resolved as serde_yaml resolves them (`null`/`~`/empty, `true`/`false` in
//! three spellings, integers, floats, else strings); anything that might be a number other than a
//! plain decimal integer is handed to serde_yaml, one scalar at a time.

use std::borrow::Cow;
use std::cell::Cell;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::normalize::managed::{FieldNode, ManagerEntry, Ownership};

/// The JSON value of one YAML document, or `None` when this reader does not handle its text.
pub(crate) fn parse(text: &str) -> Option<Value> {
    read(text, false).map(|document| document.value)
}

/// One YAML document as [`read`] reads it.
pub(crate) struct Document {
    pub(crate) value: Value,
    /// How many nulls the value holds, at any depth: what looks for them can stop once it has
    /// met that many (`kubectl get` prints none).
    pub(crate) nulls: usize,
    /// `metadata.managedFields`, read straight into field sets and left out of `value`; `None`
    /// when it was not (then it is in `value`, if the document has it).
    pub(crate) ownership: Option<Ownership>,
}

/// [`parse`], with the count of the value's nulls. With `managed_fields`, the
/// `metadata.managedFields` of an object written as `kubectl get -o yaml` writes it (a mapping
/// at column 0) is read into field sets rather than into the value: a third of such a dump is
/// managedFields, and reading it into JSON maps to take them apart again took 5% more
/// instructions of a diff of the 2,000-pair corpus in that form (661.0M rather than 630.7M,
/// `valgrind --tool=callgrind`). Whatever this path reads, it reads as the generic path does (the
/// tests compare the two); anything it does not read is left to the generic path.
pub(crate) fn read(text: &str, managed_fields: bool) -> Option<Document> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return parse_json_document(text).map(|(value, nulls)| Document {
            value,
            nulls,
            ownership: None,
        });
    }
    let mut reader = Reader::new(text)?;
    let mut ownership = None;
    if managed_fields {
        match reader.set_aside_managed_fields() {
            Some(read) => ownership = read,
            // The lines were left changed: read them again.
            None => reader = Reader::new(text)?,
        }
    }
    let first = reader.next_content(0)?;
    let indent = reader.lines[first].indent;
    let value = reader.node(first, indent)?;
    // Anything after the top node (a `...` line, a dedented stray line) is for serde_yaml to judge.
    match reader.next_content(reader.cursor) {
        None => Some(Document {
            value,
            nulls: reader.nulls,
            ownership,
        }),
        Some(_) => None,
    }
}

/// How many nulls `value` holds, at any depth.
fn count_nulls(value: &Value) -> usize {
    match value {
        Value::Null => 1,
        Value::Array(items) => items.iter().map(count_nulls).sum(),
        Value::Object(map) => map.values().map(count_nulls).sum(),
        _ => 0,
    }
}

/// A JSON document, as kubectl reads one (its decoder sees the `{` and reads JSON): serde_json,
/// with duplicate keys refused as serde_yaml refuses them.
/// Its value and how many nulls it holds.
fn parse_json_document(text: &str) -> Option<(Value, usize)> {
    let mut de = serde_json::Deserializer::from_str(text);
    let nulls = Cell::new(0);
    let value = StrictValue(&nulls).deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some((value, nulls.get()))
}

/// A `serde_json::Value` that refuses a mapping naming one key twice, counting its nulls.
#[derive(Clone, Copy)]
struct StrictValue<'c>(&'c Cell<usize>);

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        self.0.set(self.0.get() + 1);
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            // One search of the map per key, not one to refuse a duplicate and one to insert.
            match map.entry(key) {
                serde_json::map::Entry::Occupied(_) => {
                    return Err(serde::de::Error::custom("duplicate key"));
                }
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(access.next_value_seed(self)?);
                }
            }
        }
        Ok(Value::Object(map))
    }
}

/// One line of the document: where it starts and ends (without its line break) and where its
/// content starts. A `- ` entry moves its line's content start past the dash, so that what follows
/// reads as a node of its own at that column.
#[derive(Clone, Copy)]
struct Line {
    start: usize,
    end: usize,
    /// `end` without the line's trailing spaces: where its content ends.
    content_end: usize,
    indent: usize,
}

struct Reader<'a> {
    text: &'a str,
    lines: Vec<Line>,
    /// The first line not yet consumed.
    cursor: usize,
    /// How many nulls were read.
    nulls: usize,
}

fn line_at(text: &str, start: usize, end: usize) -> Line {
    let bytes = &text.as_bytes()[start..end];
    let indent = leading_spaces(bytes);
    let trailing = bytes[indent..]
        .iter()
        .rev()
        .take_while(|&&b| b == b' ')
        .count();
    Line {
        start,
        end,
        content_end: end - trailing,
        indent,
    }
}

impl<'a> Reader<'a> {
    /// The reader of a text, or `None` when it holds a tab or a carriage return (indentation
    /// and line-break rules this reader leaves to serde_yaml).
    fn new(text: &'a str) -> Option<Self> {
        let bytes = text.as_bytes();
        // Tabs and carriage returns in one search over the whole text, then line breaks: memchr's
        // search for one byte, set up again for every line (29 bytes on average), costs less than
        // its search for three bytes (1% fewer instructions of a diff of the 2,000-pair corpus in
        // `kubectl get -o yaml` form, `valgrind --tool=callgrind`); a loop over every byte was the
        // reader's largest single cost (7% of such a diff).
        if memchr::memchr2(b'\t', b'\r', bytes).is_some() {
            return None;
        }
        let mut lines = Vec::with_capacity(bytes.len() / 24 + 1);
        let mut start = 0;
        for at in memchr::memchr_iter(b'\n', bytes) {
            lines.push(line_at(text, start, at));
            start = at + 1;
        }
        lines.push(line_at(text, start, text.len()));
        Some(Reader {
            text,
            lines,
            cursor: 0,
            nulls: 0,
        })
    }

    /// The content of a line from its content start, without trailing spaces.
    fn content(&self, index: usize) -> &'a str {
        let line = self.lines[index];
        // An entry's content start moves past its dash, never past the content's end.
        &self.text[(line.start + line.indent).min(line.content_end)..line.content_end]
    }

    /// The first line at or after `from` with content (not blank, not a comment).
    fn next_content(&self, from: usize) -> Option<usize> {
        (from..self.lines.len()).find(|&i| {
            let c = self.content(i);
            !c.is_empty() && !c.starts_with('#')
        })
    }

    /// Read `metadata.managedFields` into field sets and take its lines out of the document, when
    /// the document is a mapping at column 0 whose `metadata` holds it as a block sequence of
    /// compact mappings (as `kubectl get -o yaml` prints it). `Some(None)`: nothing was taken out,
    /// the lines are as they were. `None`: the block is not of that form or not read as the
    /// generic path reads it (a duplicate key, an entry of another shape), and the lines were
    /// changed: the caller reads the text again.
    fn set_aside_managed_fields(&mut self) -> Option<Option<Ownership>> {
        let lines = self.lines.len();
        let Some(metadata) =
            (0..lines).find(|&i| self.lines[i].indent == 0 && self.content(i) == "metadata:")
        else {
            return Some(None);
        };
        let Some(first) = self.next_content(metadata + 1) else {
            return Some(None);
        };
        let column = self.lines[first].indent;
        if column == 0 {
            return Some(None);
        }
        // The key among metadata's, in the form this path reads.
        let Some(key) = self.managed_fields_key(first, column) else {
            return Some(None);
        };
        if self.content(key) != "managedFields:" {
            return Some(None);
        }
        let Some(start) = self.next_content(key + 1) else {
            return Some(None);
        };
        let indent = self.lines[start].indent;
        if indent < column || !is_entry(self.content(start)) {
            return Some(None);
        }
        let entries = self.managed_entries(start, indent)?;
        let end = self.cursor;
        // What follows closes the sequence as the generic path would: another key of metadata,
        // or less indented lines.
        if let Some(next) = self.next_content(end) {
            let next_indent = self.lines[next].indent;
            if next_indent > column || (next_indent == column && is_entry(self.content(next))) {
                return None;
            }
        }
        // A second managedFields key is an error the generic path reports.
        if self.managed_fields_key(end, column).is_some() {
            return None;
        }
        self.lines.drain(key..end);
        self.cursor = 0;
        self.nulls = 0;
        Some(Some(Ownership::from_entries(entries)))
    }

    /// The first line from `from` on, within the mapping at `column` (up to a line less
    /// indented), whose key is `managedFields`, in whatever form it is written.
    fn managed_fields_key(&self, from: usize, column: usize) -> Option<usize> {
        for i in from..self.lines.len() {
            if self.lines[i].indent > column {
                continue;
            }
            let content = self.content(i);
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            if self.lines[i].indent < column {
                return None;
            }
            let may_name = content.starts_with("managedFields") || content.starts_with(['"', '\'']);
            if may_name
                && split_key(content)
                    .and_then(|(k, _)| key_string(k))
                    .as_deref()
                    == Some("managedFields")
            {
                return Some(i);
            }
        }
        None
    }

    /// The entries of a managedFields block sequence whose first `- ` is on line `first` at
    /// column `indent`, each a compact mapping on its dash line (as [`Reader::sequence`] reads
    /// them); entries the generic path leaves out ([`ManagerEntry::read`]) are left out.
    fn managed_entries(&mut self, first: usize, indent: usize) -> Option<Vec<ManagerEntry>> {
        let mut entries = Vec::new();
        let mut index = first;
        loop {
            let rest = self.after_dash(index)?;
            if rest.is_empty() || rest.starts_with('#') {
                return None;
            }
            let split = split_key(rest)?;
            entries.extend(self.managed_entry(index, self.lines[index].indent, split)?);
            match self.next_entry(indent)? {
                Some(next) => index = next,
                None => return Some(entries),
            }
        }
    }

    /// One managedFields entry, a mapping as [`Reader::mapping`] reads it, with its `fieldsV1`
    /// read into a field set. `Some(None)`: an entry the generic path leaves out.
    fn managed_entry(
        &mut self,
        first: usize,
        indent: usize,
        split: (&'a str, &'a str),
    ) -> Option<Option<ManagerEntry>> {
        let mut fields = None;
        let map = self.entries(first, indent, split, |reader, key, index, rest| {
            if key != "fieldsV1" {
                return Some(false);
            }
            if fields.is_some() {
                return None;
            }
            fields = Some(if rest.is_empty() || rest.starts_with('#') {
                reader.cursor = index + 1;
                reader.field_set_below(indent)?
            } else {
                FieldNode::parse(reader.inline_value(index, rest, indent)?)
            });
            Some(true)
        })?;
        Some(ManagerEntry::read(map, |_| fields))
    }

    /// The field set below a key at column `indent` with nothing after its `:` (as
    /// [`Reader::nested`] finds the value): a mapping indented deeper, or none (null: an empty
    /// set, as [`FieldNode::parse`] makes of it). A sequence is left to the generic path.
    fn field_set_below(&mut self, indent: usize) -> Option<FieldNode> {
        let Some(next) = self.next_content(self.cursor) else {
            return Some(FieldNode::default());
        };
        let column = self.lines[next].indent;
        let content = self.content(next);
        if is_entry(content) {
            // A sequence, at the key's column or deeper; or, shallower, a sibling entry.
            return if column >= indent {
                None
            } else {
                Some(FieldNode::default())
            };
        }
        if column > indent {
            self.field_set(next, column)
        } else {
            Some(FieldNode::default())
        }
    }

    /// A FieldsV1 set written as a block mapping whose first key is on line `first` at column
    /// `indent`, made as [`FieldNode::parse`] makes it of the object [`Reader::mapping`] reads:
    /// keys in a JSON object's order, a key given twice refused. Only the lines kubectl prints
    /// are read here, `KEY: {}` (a leaf) and `KEY:` (a set below) with a plain key of a FieldsV1
    /// form (`f:`, `k:`, `v:`, `i:`, `.`): found by their ends rather than by the generic path's
    /// scalar rules, which took ten times as long. Any other line is left to the generic path.
    fn field_set(&mut self, first: usize, indent: usize) -> Option<FieldNode> {
        let mut children: Vec<(&'a str, FieldNode)> = Vec::new();
        let mut index = first;
        loop {
            let content = self.content(index);
            let (key, leaf) = match content.strip_suffix(": {}") {
                Some(key) => (key, true),
                None => (content.strip_suffix(':')?, false),
            };
            if !is_fields_v1_key(key) {
                return None;
            }
            self.cursor = index + 1;
            let child = if leaf {
                FieldNode::default()
            } else {
                self.field_set_below(indent)?
            };
            children.push((key, child));
            match self.next_key(indent)? {
                Some(next) => index = next,
                None => break,
            }
        }
        // kubectl prints the keys sorted, nearly always as a JSON object orders them.
        if !children.is_sorted_by(|a, b| a.0 < b.0) {
            children.sort_by(|a, b| a.0.cmp(b.0));
            if children.windows(2).any(|w| w[0].0 == w[1].0) {
                return None;
            }
        }
        let mut node = FieldNode::with_capacity(children.len());
        for (key, child) in children {
            node.add(Cow::Borrowed(key), || child);
        }
        Some(node)
    }

    /// The node whose first line is `index`, at column `indent`.
    fn node(&mut self, index: usize, indent: usize) -> Option<Value> {
        let content = self.content(index);
        if is_entry(content) {
            self.sequence(index, indent)
        } else if let Some(split) = split_key(content) {
            self.mapping(index, indent, split)
        } else {
            None
        }
    }

    /// A block sequence whose first `- ` entry is on line `index` at column `indent`.
    fn sequence(&mut self, first: usize, indent: usize) -> Option<Value> {
        let mut items = Vec::new();
        let mut index = first;
        loop {
            let rest = self.after_dash(index)?;
            if rest.is_empty() || rest.starts_with('#') {
                self.cursor = index + 1;
                items.push(self.nested(indent, false)?);
            } else if let Some(split) = split_key(rest) {
                // A compact mapping, at the column its first key is in.
                items.push(self.mapping(index, self.lines[index].indent, split)?);
            } else {
                items.push(self.inline_value(index, rest, indent)?);
            }
            match self.next_entry(indent)? {
                Some(next) => index = next,
                None => return Some(Value::Array(items)),
            }
        }
    }

    /// What follows the dash of the sequence entry on line `index` (`None` when the line is no
    /// entry): empty, or a comment, when the entry's node is on the lines below; else the node
    /// written on the dash line, whose column becomes the line's indent so that it reads as a
    /// node of its own (a compact mapping, or a scalar; another entry is refused).
    #[inline(always)]
    fn after_dash(&mut self, index: usize) -> Option<&'a str> {
        let content = self.content(index);
        if !is_entry(content) {
            return None;
        }
        let rest = content[1..].trim_start_matches(' ');
        if !rest.is_empty() && !rest.starts_with('#') {
            if is_entry(rest) {
                return None;
            }
            self.lines[index].indent += content.len() - rest.len();
        }
        Some(rest)
    }

    /// After a sequence entry's node, the line of the sequence's next entry at column `indent`:
    /// `Some(None)` at the sequence's end, `None` at a line indented deeper.
    #[inline(always)]
    fn next_entry(&self, indent: usize) -> Option<Option<usize>> {
        match self.next_content(self.cursor) {
            Some(next) if self.lines[next].indent == indent && is_entry(self.content(next)) => {
                Some(Some(next))
            }
            Some(next) if self.lines[next].indent > indent => None,
            _ => Some(None),
        }
    }

    /// A block mapping whose first key is on line `index` at column `indent`; `split` is that
    /// line's key and what follows it, as the caller found them.
    fn mapping(&mut self, first: usize, indent: usize, split: (&'a str, &'a str)) -> Option<Value> {
        self.entries(first, indent, split, |_, _, _, _| Some(false))
            .map(Value::Object)
    }

    /// The entries of the block mapping [`Reader::mapping`] reads, but for those `take` reads:
    /// called with each key, its line and what follows its `:`, it answers whether it read the
    /// value itself (leaving the cursor after it), or `None` for a value the generic path is to
    /// read. Inlined, as is [`Reader::next_key`]: left to the compiler, the generic path took
    /// 0.4% more instructions of a diff than with the loop written out in [`Reader::mapping`].
    #[inline(always)]
    fn entries(
        &mut self,
        first: usize,
        indent: usize,
        split: (&'a str, &'a str),
        mut take: impl FnMut(&mut Self, &str, usize, &'a str) -> Option<bool>,
    ) -> Option<Map<String, Value>> {
        let mut map = Map::new();
        let mut index = first;
        let mut split = Some(split);
        loop {
            let (key, rest) = match split.take() {
                Some(first) => first,
                None => split_key(self.content(index))?,
            };
            let key = key_string(key)?;
            let rest = rest.trim_start_matches(' ');
            if !take(self, &key, index, rest)? {
                let value = if rest.is_empty() || rest.starts_with('#') {
                    self.cursor = index + 1;
                    self.nested(indent, true)?
                } else {
                    self.inline_value(index, rest, indent)?
                };
                // A key named twice is an error serde_yaml reports.
                match map.entry(key) {
                    serde_json::map::Entry::Vacant(slot) => {
                        slot.insert(value);
                    }
                    serde_json::map::Entry::Occupied(_) => return None,
                }
            }
            match self.next_key(indent)? {
                Some(next) => index = next,
                None => return Some(map),
            }
        }
    }

    /// After the value of a mapping's entry, the line of its next key at column `indent`:
    /// `Some(None)` at the mapping's end, `None` at a line the generic path refuses there (an
    /// entry dash at the mapping's column, a line indented deeper).
    #[inline(always)]
    fn next_key(&self, indent: usize) -> Option<Option<usize>> {
        match self.next_content(self.cursor) {
            Some(next) if self.lines[next].indent == indent => {
                (!is_entry(self.content(next))).then_some(Some(next))
            }
            Some(next) if self.lines[next].indent > indent => None,
            _ => Some(None),
        }
    }

    /// The value of a key or entry with nothing after its indicator: the block on the following
    /// lines when it is indented deeper (or, for a key, a sequence at the key's own column), else
    /// null.
    fn nested(&mut self, indent: usize, sequence_at_same_column: bool) -> Option<Value> {
        let Some(next) = self.next_content(self.cursor) else {
            self.nulls += 1;
            return Some(Value::Null);
        };
        let column = self.lines[next].indent;
        if column > indent
            || (sequence_at_same_column && column == indent && is_entry(self.content(next)))
        {
            self.node(next, column)
        } else {
            self.nulls += 1;
            Some(Value::Null)
        }
    }

    /// A value written on the line of its key or dash: a scalar, `{}`/`[]`, or a literal block
    /// scalar starting there. `parent` is the column of the collection holding it; a following
    /// line indented deeper than it would continue the value, which this reader leaves to
    /// serde_yaml.
    fn inline_value(&mut self, index: usize, rest: &'a str, parent: usize) -> Option<Value> {
        self.cursor = index + 1;
        let value = match rest.as_bytes()[0] {
            b'|' | b'>' => self.block_scalar(rest, parent)?,
            b'"' => {
                let (s, after) = double_quoted(rest)?;
                only_comment(after)?;
                Value::String(s)
            }
            b'\'' => Value::String(self.single_quoted_value(rest, parent)?),
            b'{' | b'[' => {
                let (value, after) = flow(rest)?;
                only_comment(after)?;
                value
            }
            _ => {
                let first = plain(rest)?;
                if first.len() < rest.len() {
                    // A comment ends the scalar on its first line.
                    resolve_plain(first)?
                } else {
                    match self.fold_plain(first, parent)? {
                        Some(folded) => resolve_plain(&folded)?,
                        None => resolve_plain(first)?,
                    }
                }
            }
        };
        // A scalar, or a flow collection (small: `{}` nearly always).
        self.nulls += count_nulls(&value);
        match self.next_content(self.cursor) {
            Some(next) if self.lines[next].indent > parent => None,
            _ => Some(value),
        }
    }

    /// The lines continuing a plain scalar (emitters wrap long ones at 80 columns) joined by
    /// spaces as YAML folds them (`Some(None)` when it has none). Continuations
    /// this reader does not judge (blank lines between, comments, `: `, an entry dash) are `None`.
    fn fold_plain(&mut self, first: &str, parent: usize) -> Option<Option<String>> {
        let mut folded: Option<String> = None;
        while let Some(line) = self.lines.get(self.cursor).copied() {
            let content = self.content(self.cursor);
            if content.is_empty() || line.indent <= parent {
                break;
            }
            if content.starts_with('#') || is_entry(content) || content.contains(" #") {
                return None;
            }
            if content.ends_with(':') || content.contains(": ") {
                return None;
            }
            let out = folded.get_or_insert_with(|| first.to_string());
            out.push(' ');
            out.push_str(content);
            self.cursor += 1;
        }
        Some(folded)
    }

    /// A single-quoted scalar that may go on over the following lines: its value, with the line
    /// breaks folded into spaces, each continuation's indentation and each line's trailing spaces
    /// dropped; only a comment may follow it. Blank lines inside are left to serde_yaml.
    fn single_quoted_value(&mut self, first: &str, parent: usize) -> Option<String> {
        let value =
            |text: &str| single_quoted(text).map(|(s, after)| only_comment(after).map(|()| s));
        if let Some(done) = value(first) {
            return done;
        }
        let mut text = first.to_string();
        loop {
            let line = *self.lines.get(self.cursor)?;
            let content = self.content(self.cursor);
            if content.is_empty() || line.indent <= parent {
                return None;
            }
            let trimmed = text.trim_end_matches(' ').len();
            text.truncate(trimmed);
            text.push(' ');
            text.push_str(content);
            self.cursor += 1;
            if let Some(done) = value(&text) {
                return done;
            }
        }
    }

    /// A literal (`|`, `|-`, `|+`) or folded (`>`, `>-`, `>+`) block scalar whose header is
    /// `header`, in a collection at column `parent`: the lines after it indented deeper than the
    /// parent, kept as they are (literal) or joined by spaces (folded).
    fn block_scalar(&mut self, header: &str, parent: usize) -> Option<Value> {
        let chomp = match header[1..].trim_end_matches(' ') {
            "" => Chomp::Clip,
            "-" => Chomp::Strip,
            "+" => Chomp::Keep,
            other => {
                let (indicator, after) = other.split_at(1.min(other.len()));
                let chomp = match indicator {
                    "-" => Chomp::Strip,
                    "+" => Chomp::Keep,
                    _ => return None,
                };
                if !after.starts_with(" #") {
                    return None;
                }
                chomp
            }
        };
        // The block's indentation is that of its first non-blank line; a blank line before it
        // longer than that is an error serde_yaml reports.
        let mut block_indent = None;
        let mut longest_leading_blank = 0;
        for i in self.cursor..self.lines.len() {
            let line = self.lines[i];
            let raw = &self.text[line.start..line.end];
            if raw.trim_start_matches(' ').is_empty() {
                longest_leading_blank = longest_leading_blank.max(raw.len());
                continue;
            }
            block_indent = Some(line.indent);
            break;
        }
        let block_indent = match block_indent {
            Some(i) if i > parent && longest_leading_blank <= i => i,
            // An empty block (its lines end before any content deeper than the parent).
            Some(_) | None if longest_leading_blank <= parent && !matches!(chomp, Chomp::Keep) => {
                return Some(Value::String(String::new()))
            }
            _ => return None,
        };
        let folded = header.starts_with('>');
        let mut seen_content = false;
        let mut out = String::new();
        let mut trailing_breaks = 0;
        let mut index = self.cursor;
        while index < self.lines.len() {
            let line = self.lines[index];
            let raw = &self.text[line.start..line.end];
            let is_blank = raw.trim_start_matches(' ').is_empty();
            if !is_blank && line.indent < block_indent {
                break;
            }
            if is_blank && raw.len() <= block_indent {
                // The last line of the text has no line break of its own.
                if index + 1 < self.lines.len() {
                    trailing_breaks += 1;
                }
            } else {
                let text = &raw[block_indent..];
                if folded && seen_content && trailing_breaks == 1 {
                    // Folding: one line break between two lines is a space.
                    out.push(' ');
                } else {
                    // Folding keeps n-1 of n breaks; leading breaks and a literal keep all.
                    let kept = if folded && seen_content {
                        trailing_breaks - 1
                    } else {
                        trailing_breaks
                    };
                    for _ in 0..kept {
                        out.push('\n');
                    }
                }
                // A more-indented line of a folded scalar is kept as it is, with its breaks:
                // left to serde_yaml.
                if folded && text.starts_with(' ') {
                    return None;
                }
                seen_content = true;
                trailing_breaks = 0;
                out.push_str(text);
                if index + 1 < self.lines.len() {
                    trailing_breaks = 1;
                }
            }
            index += 1;
        }
        self.cursor = index;
        match chomp {
            Chomp::Strip => {}
            Chomp::Clip if !out.is_empty() && trailing_breaks > 0 => out.push('\n'),
            Chomp::Clip => {}
            Chomp::Keep => {
                for _ in 0..trailing_breaks {
                    out.push('\n');
                }
            }
        }
        Some(Value::String(out))
    }
}

#[derive(Clone, Copy)]
enum Chomp {
    Clip,
    Strip,
    Keep,
}

/// How many spaces `bytes` starts with, eight bytes at a time: a loop over each byte took 1%
/// more instructions of a diff of `kubectl get -o yaml` dumps (lines indented by seven spaces on
/// average).
fn leading_spaces(bytes: &[u8]) -> usize {
    let mut n = 0;
    while let Some(chunk) = bytes.get(n..n + 8) {
        let Ok(chunk) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let others = u64::from_le_bytes(chunk) ^ u64::from_le_bytes([b' '; 8]);
        if others != 0 {
            return n + (others.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + bytes[n..].iter().take_while(|&&b| b == b' ').count()
}

/// Whether a key of a FieldsV1 line is one [`Reader::field_set`] reads as the generic path
/// would: a plain scalar of a FieldsV1 form (`f:`, `k:`, `v:`, `i:`, or `.`; always a string)
/// with nothing in it that [`split_key`] or [`key_string`] would cut or trim (`: `, ` #`, a
/// trailing space).
fn is_fields_v1_key(key: &str) -> bool {
    let form = key == "."
        || (key.len() > 2 && matches!(&key.as_bytes()[..2], b"f:" | b"k:" | b"v:" | b"i:"));
    // Most keys hold no space at all: one search for it, not one per pattern.
    form && match memchr::memchr(b' ', key.as_bytes()) {
        None => true,
        Some(_) => !key.ends_with(' ') && !key.contains(": ") && !key.contains(" #"),
    }
}

/// Whether a line's content is a block sequence entry (`-` alone or followed by a space).
fn is_entry(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

/// A mapping entry's key text and what follows its `:`, or `None` when the content is not one
/// (or is one this reader leaves to serde_yaml: complex keys, keys with properties).
fn split_key(content: &str) -> Option<(&str, &str)> {
    let first = *content.as_bytes().first()?;
    if first == b'"' || first == b'\'' {
        let after = if first == b'"' {
            double_quoted(content)?.1
        } else {
            single_quoted(content)?.1
        };
        let rest = after.strip_prefix(':')?;
        if !rest.is_empty() && !rest.starts_with(' ') {
            return None;
        }
        return Some((&content[..content.len() - after.len()], rest));
    }
    if !starts_plain(content) {
        return None;
    }
    let bytes = content.as_bytes();
    let mut from = 0;
    while let Some(i) = next_indicator(bytes, from) {
        match bytes[i] {
            b':' if i + 1 == bytes.len() || bytes[i + 1] == b' ' => {
                return Some((&content[..i], &content[i + 1..]));
            }
            b'#' if i > 0 && bytes[i - 1] == b' ' => return None,
            _ => {}
        }
        from = i + 1;
    }
    None
}

/// The first `:` or `#` in `bytes` at or after `from`, looked for eight bytes at a time. Keys
/// and plain values are short: a loop over every byte was 6% of a diff of `kubectl get -o yaml`
/// dumps (2,000 pairs), and memchr's setup costs as much on such lengths.
fn next_indicator(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `word` equal to `b`; only the lowest one set is sure (a
    // borrow can mark bytes above it), and only the lowest is used.
    let equal = |word: u64, b: u8| {
        let x = word ^ (ONES * u64::from(b));
        x.wrapping_sub(ONES) & !x & HIGH
    };
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let Ok(chunk) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let word = u64::from_le_bytes(chunk);
        let found = equal(word, b':') | equal(word, b'#');
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    bytes
        .get(i..)?
        .iter()
        .position(|&b| b == b':' || b == b'#')
        .map(|p| i + p)
}

/// A key as a string: quoted keys as written, plain keys only when they resolve to a string (a
/// plain `1` or `true` key is turned into a string by a rule serde_yaml's caller applies).
fn key_string(key: &str) -> Option<String> {
    match key.as_bytes()[0] {
        b'"' => double_quoted(key).map(|(s, _)| s),
        b'\'' => single_quoted(key).map(|(s, _)| s),
        _ => match resolve_plain(key.trim_end_matches(' '))? {
            Value::String(s) => Some(s),
            _ => None,
        },
    }
}

/// Whether a plain scalar may start with this text in block context.
fn starts_plain(text: &str) -> bool {
    let bytes = text.as_bytes();
    match bytes.first() {
        None => false,
        Some(b'-' | b'?' | b':') => bytes.get(1).is_some_and(|&b| b != b' '),
        Some(
            b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'\''
            | b'"' | b'%' | b'@' | b'`',
        ) => false,
        Some(_) => true,
    }
}

/// A one-line plain scalar value: up to a comment, trimmed; `None` when it holds what a plain
/// value cannot (`: `, a trailing `:`), or does not start like one.
fn plain(rest: &str) -> Option<&str> {
    if !starts_plain(rest) {
        return None;
    }
    let bytes = rest.as_bytes();
    let mut end = bytes.len();
    let mut from = 0;
    while let Some(i) = next_indicator(bytes, from) {
        match bytes[i] {
            b'#' if i > 0 && bytes[i - 1] == b' ' => {
                end = i;
                break;
            }
            b':' if i + 1 == bytes.len() || bytes[i + 1] == b' ' => return None,
            _ => {}
        }
        from = i + 1;
    }
    Some(rest[..end].trim_end_matches(' '))
}

/// What follows a quoted scalar on its line must be nothing or a comment.
fn only_comment(after: &str) -> Option<()> {
    let trimmed = after.trim_start_matches(' ');
    (trimmed.is_empty() || (trimmed.starts_with('#') && after.starts_with(' '))).then_some(())
}

/// A one-line single-quoted scalar at the start of `text`, and the text after its closing quote.
fn single_quoted(text: &str) -> Option<(String, &str)> {
    let body = &text[1..];
    let mut out = String::new();
    let mut from = 0;
    let bytes = body.as_bytes();
    let mut i = 0;
    // From quote to quote by memchr: a last-applied configuration is a quoted line of kilobytes,
    // and a loop over its bytes was 2% of a diff of `kubectl get -o yaml` dumps.
    while let Some(found) = memchr::memchr(b'\'', bytes.get(i..)?) {
        i += found;
        out.push_str(&body[from..i]);
        if bytes.get(i + 1) == Some(&b'\'') {
            out.push('\'');
            i += 2;
            from = i;
            continue;
        }
        return Some((out, &body[i + 1..]));
    }
    None
}

/// A one-line double-quoted scalar at the start of `text` with YAML's escapes, and the text
/// after its closing quote.
fn double_quoted(text: &str) -> Option<(String, &str)> {
    let body = &text[1..];
    let bytes = body.as_bytes();
    let mut out = String::new();
    let mut from = 0;
    let mut i = 0;
    // From one quote or escape to the next by memchr, as for single-quoted scalars.
    while let Some(found) = memchr::memchr2(b'"', b'\\', bytes.get(i..)?) {
        i += found;
        match bytes[i] {
            b'"' => {
                out.push_str(&body[from..i]);
                return Some((out, &body[i + 1..]));
            }
            b'\\' => {
                out.push_str(&body[from..i]);
                let escape = *bytes.get(i + 1)?;
                i += 2;
                let simple = match escape {
                    b'0' => Some('\0'),
                    b'a' => Some('\u{07}'),
                    b'b' => Some('\u{08}'),
                    b't' => Some('\t'),
                    b'n' => Some('\n'),
                    b'v' => Some('\u{0b}'),
                    b'f' => Some('\u{0c}'),
                    b'r' => Some('\r'),
                    b'e' => Some('\u{1b}'),
                    b' ' => Some(' '),
                    b'"' => Some('"'),
                    b'/' => Some('/'),
                    b'\\' => Some('\\'),
                    b'N' => Some('\u{85}'),
                    b'_' => Some('\u{a0}'),
                    b'L' => Some('\u{2028}'),
                    b'P' => Some('\u{2029}'),
                    _ => None,
                };
                if let Some(c) = simple {
                    out.push(c);
                } else {
                    let width = match escape {
                        b'x' => 2,
                        b'u' => 4,
                        b'U' => 8,
                        _ => return None,
                    };
                    let hex = body.get(i..i + width)?;
                    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return None;
                    }
                    out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
                    i += width;
                }
                from = i;
            }
            _ => return None,
        }
    }
    None
}

/// A flow collection (`{a: 1, b: [x, "y"]}`) written on one line at the start of `text`, and
/// the text after it. Empty entries, a trailing comma, single-pair mappings inside a sequence
/// and keys without a value are left to serde_yaml.
fn flow(text: &str) -> Option<(Value, &str)> {
    let (close, mut rest) = match text.as_bytes()[0] {
        b'{' => (b'}', &text[1..]),
        b'[' => (b']', &text[1..]),
        _ => return None,
    };
    let mut map = Map::new();
    let mut items = Vec::new();
    let collection = |map, items| {
        if close == b'}' {
            Value::Object(map)
        } else {
            Value::Array(items)
        }
    };
    rest = rest.trim_start_matches(' ');
    if rest.as_bytes().first() == Some(&close) {
        return Some((collection(map, items), &rest[1..]));
    }
    loop {
        let (first, after) = flow_node(rest)?;
        rest = after.trim_start_matches(' ');
        if close == b'}' {
            let Value::String(key) = first else {
                return None;
            };
            rest = rest.strip_prefix(": ")?.trim_start_matches(' ');
            let (value, after) = flow_node(rest)?;
            if map.insert(key, value).is_some() {
                return None;
            }
            rest = after.trim_start_matches(' ');
        } else {
            items.push(first);
        }
        match rest.as_bytes().first() {
            Some(b',') => rest = rest[1..].trim_start_matches(' '),
            Some(&b) if b == close => return Some((collection(map, items), &rest[1..])),
            _ => return None,
        }
        if matches!(rest.as_bytes().first(), Some(b']' | b'}' | b',') | None) {
            return None;
        }
    }
}

/// One node inside a flow collection: a nested collection, a quoted scalar, or a plain one.
fn flow_node(text: &str) -> Option<(Value, &str)> {
    match *text.as_bytes().first()? {
        b'{' | b'[' => flow(text),
        b'"' => double_quoted(text).map(|(s, after)| (Value::String(s), after)),
        b'\'' => single_quoted(text).map(|(s, after)| (Value::String(s), after)),
        // In a flow, `?` and `:` at the start of a node are indicators, not text.
        b'?' | b':' => None,
        _ => {
            if !starts_plain(text) {
                return None;
            }
            // The scalar ends at a flow indicator or a `: `; a `:` before another indicator is
            // an error and a ` #` a comment, both left to serde_yaml; other `:` are text
            // (`image: {name: nginx:1.27}`).
            let bytes = text.as_bytes();
            let mut end = bytes.len();
            for (i, &b) in bytes.iter().enumerate() {
                match b {
                    b',' | b'[' | b']' | b'{' | b'}' => {
                        end = i;
                        break;
                    }
                    b':' => match bytes.get(i + 1) {
                        None | Some(b' ') => {
                            end = i;
                            break;
                        }
                        Some(b',' | b'?' | b'[' | b']' | b'{' | b'}') => return None,
                        Some(_) => {}
                    },
                    b'#' if bytes[i - 1] == b' ' => return None,
                    _ => {}
                }
            }
            let scalar = text[..end].trim_end_matches(' ');
            if scalar.is_empty() {
                return None;
            }
            Some((resolve_plain(scalar)?, &text[end..]))
        }
    }
}

/// Whether serde_yaml might read a plain scalar as a number: a sign, then `0x`/`0o`/`0b` and
/// anything, or `.inf`/`.nan` spellings, or digits with at most one dot and an optional exponent.
/// An IP address, a UID, `100Mi`, `500m` or a timestamp are strings without asking it.
fn may_be_number(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    if unsigned.starts_with("0x") || unsigned.starts_with("0o") || unsigned.starts_with("0b") {
        return true;
    }
    if unsigned.len() > 1
        && unsigned.starts_with('.')
        && unsigned.bytes().skip(1).all(|b| b.is_ascii_alphabetic())
    {
        return true;
    }
    let mantissa_end = unsigned
        .bytes()
        .position(|b| !(b.is_ascii_digit() || b == b'.'))
        .unwrap_or(unsigned.len());
    // An address such as 10.96.0.1 has more than one dot, and managedFields' `.` key has no
    // digit: strings.
    if !unsigned[..mantissa_end].bytes().any(|b| b.is_ascii_digit())
        || unsigned[..mantissa_end]
            .bytes()
            .filter(|&b| b == b'.')
            .count()
            > 1
    {
        return false;
    }
    let exponent = &unsigned[mantissa_end..];
    if exponent.is_empty() {
        return true;
    }
    let Some(digits) = exponent.strip_prefix(['e', 'E']) else {
        return false;
    };
    let digits = digits.strip_prefix(['+', '-']).unwrap_or(digits);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A plain scalar's value, as serde_yaml resolves it.
fn resolve_plain(text: &str) -> Option<Value> {
    // Most keys and values are words. One starting with a letter is a string unless it is one of
    // the nine spellings of null, true and false (no number starts with a letter), matched here:
    // the checks below cost more than the string (2% of a diff of `kubectl get -o yaml` dumps for
    // the words not starting n, t or f, and 0.3% more for those).
    if text.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) {
        return Some(match text {
            "null" | "Null" | "NULL" => Value::Null,
            "true" | "True" | "TRUE" => Value::Bool(true),
            "false" | "False" | "FALSE" => Value::Bool(false),
            _ => Value::String(text.to_string()),
        });
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        _ => {}
    }
    if !may_be_number(text) {
        return Some(Value::String(text.to_string()));
    }
    // A decimal integer without a leading zero: the common case, resolved here.
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
    {
        if let Ok(n) = text.parse::<i64>() {
            return Some(Value::from(n));
        }
    }
    // Anything else that may be a number (1.5, 0x1F, 0755, .inf, 1e3): serde_yaml decides,
    // except for what it would read as a document marker rather than a scalar.
    if text.starts_with("---") || text.starts_with("...") {
        return None;
    }
    let value: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
    match value {
        serde_yaml::Value::Sequence(_) | serde_yaml::Value::Mapping(_) => None,
        scalar => super::yaml_to_json(scalar).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_spaces_are_counted_across_words() {
        for spaces in 0..20 {
            for rest in ["", "a", "a b ", "        x"] {
                let line = format!("{}{rest}", " ".repeat(spaces));
                let expected = line.bytes().take_while(|&b| b == b' ').count();
                assert_eq!(leading_spaces(line.as_bytes()), expected, "{line:?}");
            }
        }
    }

    #[test]
    fn lines_are_cut_at_every_break_and_tabs_and_returns_refused() {
        let text = "a: 1\n  b: 2\n\n\n        c: three and more than eight\nlast";
        let reader = Reader::new(text).unwrap();
        let cut: Vec<(&str, usize)> = reader
            .lines
            .iter()
            .map(|l| (&text[l.start..l.end], l.indent))
            .collect();
        let expected: Vec<(&str, usize)> = text
            .split('\n')
            .map(|l| (l, l.bytes().take_while(|&b| b == b' ').count()))
            .collect();
        assert_eq!(cut, expected);
        for at in 0..text.len() {
            for refused in ["\t", "\r"] {
                let mut with = text.to_string();
                with.insert_str(at, refused);
                assert!(Reader::new(&with).is_none(), "{with:?}");
            }
        }
    }

    #[test]
    fn next_indicator_finds_the_first_colon_or_hash_from_any_start() {
        let texts = [
            "",
            ":",
            "#",
            "abc",
            "f:metadata:",
            "k:{\"name\":\"web\"}: x",
            "a #b: c",
            "0123456789abcdef:",
            "0123456:",
            "01234567:",
            "012345678#",
            "é:#",
            "::##",
            "no indicator at all in this rather long text",
        ];
        for text in texts {
            let bytes = text.as_bytes();
            for from in 0..=bytes.len() {
                let expected = bytes[from..]
                    .iter()
                    .position(|&b| b == b':' || b == b'#')
                    .map(|p| from + p);
                assert_eq!(
                    next_indicator(bytes, from),
                    expected,
                    "{text:?} from {from}"
                );
            }
        }
    }

    /// What serde_yaml makes of a text, converted as the manifest reader converts it.
    fn reference(text: &str) -> Option<Value> {
        let value: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
        super::super::yaml_to_json(value).ok()
    }

    /// The reader answers for this text, with serde_yaml's value.
    fn handled(text: &str) -> Value {
        let ours = parse(text).unwrap_or_else(|| panic!("left to serde_yaml:\n{text}"));
        assert_eq!(Some(&ours), reference(text).as_ref(), "differs on:\n{text}");
        ours
    }

    /// Whatever the reader answers for this text, serde_yaml agrees; and reading managedFields
    /// aside gives what the generic path gives.
    fn agrees(text: &str) -> bool {
        let generic = read(text, false);
        agrees_aside(text, generic.as_ref());
        match generic {
            Some(Document { value, nulls, .. }) => {
                let theirs = reference(text);
                assert_eq!(
                    Some(&value),
                    theirs.as_ref(),
                    "fast reader accepted what serde_yaml reads otherwise:\n{text:?}"
                );
                assert_eq!(
                    nulls,
                    count_nulls(&value),
                    "nulls counted wrongly:\n{text:?}"
                );
                true
            }
            None => false,
        }
    }

    /// With managedFields read aside, the reader answers when the generic path does, with the
    /// same object less `metadata.managedFields`, and the ownership made of that value.
    fn agrees_aside(text: &str, generic: Option<&Document>) -> Option<Ownership> {
        let aside = read(text, true);
        let (generic, aside) = match (generic, aside) {
            (None, None) => return None,
            (Some(g), Some(a)) => (g, a),
            (g, a) => panic!(
                "generic path answered {}, aside {}:\n{text:?}",
                g.is_some(),
                a.is_some()
            ),
        };
        assert!(generic.ownership.is_none());
        let mut expected = generic.value.clone();
        let ownership = aside.ownership?;
        let managed = expected
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .and_then(|m| m.remove("managedFields"))
            .unwrap_or_else(|| panic!("set aside from no managedFields:\n{text:?}"));
        assert_eq!(aside.value, expected, "read aside otherwise:\n{text:?}");
        assert_eq!(
            Some(&ownership),
            Ownership::from_managed_fields(managed).as_ref(),
            "ownership read aside otherwise:\n{text:?}"
        );
        assert!(
            aside.nulls == count_nulls(&aside.value),
            "nulls counted wrongly:\n{text:?}"
        );
        Some(ownership)
    }

    /// What `kubectl get -o yaml` prints (go-yaml: long plain and single-quoted values wrapped
    /// at 80 columns, sequences not indented under their key, literal blocks for multi-line text).
    const KUBECTL: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  annotations:
    deployment.kubernetes.io/revision: "1"
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":{},"name":"web"}}
    note: 'it''s a very long note that the emitter wraps because it is far longer than eighty
      columns: see'
  creationTimestamp: "2026-12-05T05:46:38Z"
  generation: 2
  labels: {}
  managedFields:
  - apiVersion: apps/v1
    fieldsType: FieldsV1
    fieldsV1:
      f:spec:
        f:template:
          f:spec:
            f:containers:
              k:{"name":"web"}:
                .: {}
                f:image: {}
    manager: kubectl-client-side-apply
    operation: Update
    time: "2026-12-05T05:46:38Z"
  name: web
  namespace: default # a comment
  uid: 9ab9be34-43e3-4669-a64d-5712914f25c0
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    spec:
      containers:
      - args:
        - -c
        - chown -R elasticsearch:elasticsearch /usr/share/elasticsearch/data && chown
          -R elasticsearch:elasticsearch /usr/share/elasticsearch/logs
        env:
        - name: EMPTY
        - name: QUOTED
          value: "tab\there \u00e9 \"q\" \\ end"
        - name: NUMBERISH
          value: "0755"
        image: nginx:1.27
        ports:
        - containerPort: 80
          protocol: TCP
        resources:
          limits:
            cpu: 500m
            memory: 1.5Gi
          requests:
            cpu: 0.5
            memory: 100Mi
        description: >-
          folded over
          two lines

          and a paragraph
        script: |-
          #!/bin/sh
          echo "hello: world"

            indented more
        volumeMounts: []
      nodeSelector:
        kubernetes.io/os: linux
      tolerations:
      -   key: spaced
          operator: Exists
      - effect: NoSchedule
status:
  conditions:
  -
    type: Available
    status: "True"
  ratio: 1e3
  hex: 0x1F
  octal: 0o17
  negative: -12
  nothing: ~
  yes: yes
  flags: [true, false, {image: "nginx:1.27", port: 80}, 'q', []]
"#;

    /// managedFields in the forms the path reads: entries of every kind of element, one for the
    /// status subresource (left out), keys out of a JSON object's order, comments.
    const MANAGED: &str = r#"apiVersion: v1
kind: Service
metadata:
  annotations:
    note: x
  managedFields:
  - apiVersion: v1
    fieldsType: FieldsV1
    fieldsV1:
      f:metadata:
        f:labels:
          .: {}
          f:app: {}
      f:spec:
        f:ports:
          .: {}
          k:{"port":80,"protocol":"TCP"}:
            .: {}
            f:port: {}
            f:targetPort: {}
        f:selector: {}
        f:_private: {}
        # after f:_private here, before it in a JSON object
        f:Zeta: {}
    manager: argocd-controller
    operation: Apply
    time: "2026-12-05T05:46:38Z"
  - apiVersion: v1
    fieldsType: FieldsV1
    fieldsV1:
      f:status:
        f:loadBalancer: {}
    manager: kube-controller-manager
    operation: Update
    subresource: status
    time: "2026-12-05T05:47:00Z"
  - apiVersion: v1
    fieldsType: FieldsV1
    fieldsV1:
      f:spec:
        f:finalizers:
          v:"kubernetes": {}
        f:containers:
          i:0:
            f:env:
    manager: kubectl-edit
    operation: Update

  name: web
  namespace: default
spec:
  ports:
  - port: 80
"#;

    #[test]
    fn managed_fields_are_read_aside_as_the_generic_path_reads_them() {
        let indented = MANAGED
            .replace("  - apiVersion: v1\n", "    - apiVersion: v1\n")
            .replace("\n    fieldsType", "\n      fieldsType");
        for text in [KUBECTL, MANAGED] {
            let generic = read(text, false);
            let ownership = agrees_aside(text, generic.as_ref()).expect("read aside");
            assert!(!ownership.entries().is_empty());
        }
        let generic = read(MANAGED, false);
        let ownership = agrees_aside(MANAGED, generic.as_ref()).unwrap();
        let managers: Vec<_> = ownership.entries().iter().map(|e| &e.manager).collect();
        assert_eq!(managers, ["argocd-controller", "kubectl-edit"]);
        assert_eq!(
            ownership.entries()[0].time.as_deref(),
            Some("2026-12-05T05:46:38Z")
        );
        // Other forms (entries indented under the key, comments, duplicates, a sequence, keys
        // quoted or spaced): read aside or left in the value, always as the generic path reads
        // them.
        assert!(!indented.contains("\n  - apiVersion"));
        for text in [
            indented.as_str(),
            &MANAGED.replace("  managedFields:\n", "  managedFields: # comment\n"),
            &MANAGED.replace("  name: web\n", "  name: web\n  managedFields: []\n"),
            &MANAGED.replace(
                "    manager: kubectl-edit\n",
                "    manager: kubectl-edit\n    manager: x\n",
            ),
            &MANAGED.replace(
                "          f:app: {}\n",
                "          f:app: {}\n          f:app: {}\n",
            ),
            &MANAGED.replace("          f:app: {}\n", "          f:app:\n          - 1\n"),
            &MANAGED.replace("          f:app: {}\n", "          f:app: {} # c\n"),
            &MANAGED.replace("          f:app: {}\n", "          \"f:app\": {}\n"),
            &MANAGED.replace("          f:app: {}\n", "          f:app : {}\n"),
            &MANAGED.replace("          f:app: {}\n", "          f:app: { }\n"),
            &MANAGED.replace("          f:app: {}\n", "          f:a #b: {}\n"),
            &MANAGED.replace("          f:app: {}\n", "          f:a: b: {}\n"),
            &MANAGED.replace("          f:app: {}\n", "          app: {}\n"),
        ] {
            let generic = read(text, false);
            agrees_aside(text, generic.as_ref());
            agrees(text);
        }
    }

    #[test]
    fn reads_what_kubectl_prints_as_serde_yaml_does() {
        let value = handled(KUBECTL);
        assert_eq!(
            value["spec"]["template"]["spec"]["containers"][0]["args"][1],
            "chown -R elasticsearch:elasticsearch /usr/share/elasticsearch/data && chown -R elasticsearch:elasticsearch /usr/share/elasticsearch/logs"
        );
        assert_eq!(
            value["spec"]["template"]["spec"]["containers"][0]["script"],
            "#!/bin/sh\necho \"hello: world\"\n\n  indented more"
        );
        assert_eq!(
            value["spec"]["template"]["spec"]["containers"][0]["description"],
            "folded over two lines\nand a paragraph"
        );
        assert_eq!(value["metadata"]["namespace"], "default");
        assert_eq!(value["status"]["hex"], 31);
    }

    #[test]
    fn scalars_resolve_as_serde_yaml_resolves_them() {
        for scalar in [
            "",
            "~",
            "null",
            "Null",
            "NULL",
            "true",
            "True",
            "TRUE",
            "false",
            "FALSE",
            "yes",
            "no",
            "on",
            "0",
            "-0",
            "+1",
            "7",
            "-7",
            "007",
            "-007",
            "0x1F",
            "-0x1F",
            "0o17",
            "0b101",
            "1.5",
            "-1.5",
            ".5",
            "1e3",
            "1E-3",
            ".inf",
            "-.inf",
            ".nan",
            "1_000",
            "100Mi",
            "500m",
            "1.5Gi",
            "2026-12-05",
            "12:30",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551616",
            "-9223372036854775809",
            "0.",
            ".",
            "..",
            "-.",
            ".e3",
            "+.5",
            "-",
            "-a",
            "a b",
            "a#b",
            "é",
            "'quoted'",
            "\"dq\"",
            "'it''s'",
            "\"\\u00e9\\x41\\t\"",
            "{}",
            "[]",
            "...x",
        ] {
            let text = format!("key: {scalar}\n");
            agrees(&text);
            let text = format!("- {scalar}\n");
            agrees(&text);
        }
    }

    /// managedFields name a map's own entry `.`: read as a string without asking serde_yaml
    /// (one call per such key cost 4% of a diff over 2,000 objects).
    #[test]
    fn dots_without_digits_are_strings_without_asking_serde_yaml() {
        for text in [".", "..", "-.", ".e3"] {
            assert!(!may_be_number(text), "{text}");
        }
        for text in [".5", "0.", ".inf", "-.Inf", "1e3"] {
            assert!(may_be_number(text), "{text}");
        }
        let value = handled("f:metadata:\n  .: {}\n  f:labels:\n    .: {}\n");
        assert!(value["f:metadata"]["f:labels"]["."].is_object());
    }

    #[test]
    fn leaves_what_it_does_not_read_to_serde_yaml() {
        for text in [
            "a: &x 1\nb: *x\n",
            "a: !!str 1\n",
            "a: {b}\n",
            "a: [1, 2,]\n",
            "a: [1, 2\n",
            "a: {b: c:}\n",
            "a: {b: c:[]}\n",
            "a: [?x]\n",
            "a: [x #c]\n",
            "a: >\n  folded\n    more indented\n",
            "a: |2\n   x\n",
            "a: \"multi\n  line\"\n",
            "a: 1\na: 2\n",
            "? complex\n: key\n",
            "- - nested\n",
            "a:\n\tb: 1\n",
            "a: x\ty\n",
            "a: 1\r\nb: 2\r\n",
            "a: 1\rb: 2\n",
            "a: 1\n b: 2\n",
            "plain scalar document\n",
            "a: b: c\n",
            "1: one\n",
            "a: 1\n...\n",
            "%YAML 1.2\n---\na: 1\n",
        ] {
            assert!(
                parse(text).is_none(),
                "should be left to serde_yaml: {text:?}"
            );
        }
    }

    #[test]
    fn json_documents_are_read_by_serde_json_and_duplicate_keys_refused() {
        let value = handled("{\"a\": {\"b\": [1, 2.5, \"x\", null, true]}, \"c\": null}\n");
        assert_eq!(value["a"]["b"][1], 2.5);
        // Nulls counted as for YAML: at any depth.
        assert!(agrees(
            "{\"a\": {\"b\": [null, {\"c\": null}]}, \"d\": null}"
        ));
        let json = read("[null, {\"a\": null}]", false).unwrap();
        assert_eq!(json.nulls, 2);
        assert!(parse("{\"a\": 1, \"a\": 2}").is_none());
        assert!(parse("{\"a\": 1} trailing").is_none());
        assert!(parse("{a: 1}").is_none());
    }

    /// Every YAML document in the repository (examples, deploy manifests, test data, Argo CD
    /// health-check test data): where the reader answers, serde_yaml agrees; and it answers for
    /// most of them.
    #[test]
    fn agrees_with_serde_yaml_on_every_manifest_in_the_repository() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().to_string();
                if path.is_dir() {
                    // A Helm chart's templates are Go templates, not YAML.
                    let chart_templates = name == "templates" && dir.join("Chart.yaml").is_file();
                    if !name.starts_with('.')
                        && name != "target"
                        && name != "node_modules"
                        && !chart_templates
                    {
                        dirs.push(path);
                    }
                } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                    files.push(path);
                }
            }
        }
        let (mut documents, mut answered) = (0, 0);
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            for section in super::super::split_sections(&text) {
                if super::super::is_blank_yaml(section.text) {
                    continue;
                }
                documents += 1;
                if agrees(section.text) {
                    answered += 1;
                }
            }
        }
        assert!(documents > 150, "only {documents} documents found");
        assert!(
            answered * 10 >= documents * 9,
            "answered {answered} of {documents}"
        );
    }

    /// Thousands of small corruptions of real-looking YAML: whenever the reader still answers,
    /// serde_yaml reads the same value — the reader never accepts a malformed text or reads a
    /// well-formed one otherwise.
    #[test]
    fn mutated_documents_are_read_as_serde_yaml_reads_them_or_left_to_it() {
        let seeds = [
            KUBECTL.to_string(),
            MANAGED.to_string(),
            "a: {b: [1, 'x', \"y\"], c: {}, d: nginx:1.27}\nb: [{c: d}, e]\n".to_string(),
            "a:\n  b: 1\n  c:\n  - x\n  - y: 2\n    z: |\n      t\n    w: >\n      u\n      v\n\n      w\n".to_string(),
            "- name: a\n  value: 'q''s'\n- name: b\n  value: \"\\t\"\n".to_string(),
        ];
        let pieces: &[&str] = &[
            " ", "  ", "\n", "- ", "-", ":", ": ", "#", " #", "'", "\"", "|", "|-", "|+", "{}",
            "[]", "{", "]", "a", "0", "1.5", ".", "&a ", "*a", "!", ">", "\\", "~", "?", "x: y\n",
        ];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        let (mut answered, mut aside, mut total) = (0, 0, 0);
        for round in 0..20_000 {
            let mut text = seeds[round % seeds.len()].clone();
            for _ in 0..1 + next(3) {
                let mut at = next(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                if next(2) == 0 {
                    text.insert_str(at, pieces[next(pieces.len())]);
                } else {
                    let mut end = (at + 1 + next(3)).min(text.len());
                    while !text.is_char_boundary(end) {
                        end += 1;
                    }
                    text.replace_range(at..end, "");
                }
            }
            total += 1;
            if agrees(&text) {
                answered += 1;
            }
            if read(&text, true).is_some_and(|d| d.ownership.is_some()) {
                aside += 1;
            }
        }
        // The mutations must leave many texts readable, or the property says little.
        assert!(answered * 4 > total, "answered {answered} of {total}");
        assert!(
            aside * 10 > total,
            "managedFields read aside in {aside} of {total}"
        );
    }
}
