//! Field paths inside an object: the readable form (`spec.template.spec.containers[name=web].image`),
//! the RFC 6901 pointer into the live object, and the glob patterns rules are written in.

use std::fmt;

use compact_str::CompactString;
use serde_json::Value;

use crate::error::{Error, Result};

/// How a list item is named: by its merge key(s) when the list has one, else by position.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    Key(Vec<(String, Value)>),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A map key. Inline up to 24 bytes (nearly every key of a Kubernetes object): the diff walk
    /// pushes one for every field it visits, and a `String` there was an allocation each.
    Field(CompactString),
    /// `index` is the item's position in the live list, or where it would be appended.
    Item { selector: Selector, index: usize },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldPath(pub Vec<Step>);

impl FieldPath {
    pub fn root() -> FieldPath {
        FieldPath(Vec::new())
    }

    pub fn field(&self, name: &str) -> FieldPath {
        let mut steps = self.0.clone();
        steps.push(Step::Field(name.into()));
        FieldPath(steps)
    }

    pub fn item(&self, selector: Selector, index: usize) -> FieldPath {
        let mut steps = self.0.clone();
        steps.push(Step::Item { selector, index });
        FieldPath(steps)
    }

    /// RFC 6901 pointer into the live object.
    pub fn pointer(&self) -> String {
        let mut out = String::new();
        for step in &self.0 {
            out.push('/');
            match step {
                Step::Field(name) => out.push_str(&name.replace('~', "~0").replace('/', "~1")),
                Step::Item { index, .. } => out.push_str(&index.to_string()),
            }
        }
        out
    }

    /// Parse the readable form, as typed by a person (`policy explain --path`).
    pub fn parse(text: &str) -> Result<FieldPath> {
        let tokens = tokenize(text)?;
        let mut steps = Vec::new();
        for token in tokens {
            steps.push(match token {
                Token::Name(n) => Step::Field(n.into()),
                Token::Bracket(inner) => {
                    let selector = parse_selector(&inner).ok_or_else(|| Error::ParseFieldPath {
                        path: text.to_string(),
                        message: format!("[{inner}] is not an index or a key=value selector"),
                    })?;
                    let index = match selector {
                        Selector::Index(i) => i,
                        Selector::Key(_) => 0,
                    };
                    Step::Item { selector, index }
                }
            });
        }
        Ok(FieldPath(steps))
    }
}

/// Equal, or the same scalar written as a string and as a number (`"3"` and `3`): how a list
/// item's merge key in a path matches the item.
pub fn same_value(a: &Value, b: &Value) -> bool {
    a == b
        || matches!((a, b), (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s)) if s == &n.to_string())
}

/// The value at `steps` of `value`, list items found by their merge key where a step has one.
pub fn lookup<'v>(value: &'v Value, steps: &[Step]) -> Option<&'v Value> {
    let mut here = value;
    for step in steps {
        here = match step {
            Step::Field(name) => here.get(name.as_str())?,
            Step::Item { selector, .. } => {
                let items = here.as_array()?;
                &items[crate::normalize::merge_keys::find_item(items, selector)?]
            }
        };
    }
    Some(here)
}

fn parse_selector(inner: &str) -> Option<Selector> {
    if let Ok(i) = inner.trim().parse::<usize>() {
        return Some(Selector::Index(i));
    }
    let mut pairs = Vec::new();
    for part in inner.split(',') {
        let (k, v) = part.split_once('=')?;
        let v = v.trim();
        let value = if let Ok(n) = v.parse::<i64>() {
            Value::from(n)
        } else if v.starts_with('"') {
            serde_json::from_str(v).ok()?
        } else {
            Value::String(v.to_string())
        };
        pairs.push((k.trim().to_string(), value));
    }
    Some(Selector::Key(pairs))
}

fn needs_quotes(name: &str) -> bool {
    name.is_empty()
        || name
            .chars()
            .any(|c| matches!(c, '.' | '[' | ']' | '"' | '*') || c.is_whitespace())
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Field(name) if needs_quotes(name) => {
                    write!(f, "[{}]", Value::String(name.to_string()))?
                }
                Step::Field(name) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(name)?;
                }
                Step::Item { selector, .. } => match selector {
                    Selector::Index(i) => write!(f, "[{i}]")?,
                    Selector::Key(pairs) => {
                        f.write_str("[")?;
                        for (j, (k, v)) in pairs.iter().enumerate() {
                            if j > 0 {
                                f.write_str(",")?;
                            }
                            match v {
                                Value::String(s) if !s.contains([',', ']', '"']) => {
                                    write!(f, "{k}={s}")?
                                }
                                other => write!(f, "{k}={other}")?,
                            }
                        }
                        f.write_str("]")?;
                    }
                },
            }
        }
        Ok(())
    }
}

enum Token {
    Name(String),
    Bracket(String),
}

fn tokenize(text: &str) -> Result<Vec<Token>> {
    let err = |message: &str| Error::ParseFieldPath {
        path: text.to_string(),
        message: message.to_string(),
    };
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut name = String::new();
    while i < chars.len() {
        match chars[i] {
            '.' => {
                if !name.is_empty() {
                    tokens.push(Token::Name(std::mem::take(&mut name)));
                } else if i == 0 || chars[i - 1] == '.' {
                    return Err(err("empty field name"));
                }
                i += 1;
            }
            '[' => {
                if !name.is_empty() {
                    tokens.push(Token::Name(std::mem::take(&mut name)));
                }
                if chars.get(i + 1) == Some(&'"') {
                    // A quoted field name: ["app.kubernetes.io/name"]
                    let rest: String = chars[i + 1..].iter().collect();
                    let mut de = serde_json::Deserializer::from_str(&rest).into_iter::<String>();
                    let quoted = de
                        .next()
                        .and_then(|r| r.ok())
                        .ok_or_else(|| err("unterminated quoted field name"))?;
                    let consumed = rest[..de.byte_offset()].chars().count();
                    i += 1 + consumed;
                    if chars.get(i) != Some(&']') {
                        return Err(err("expected ] after a quoted field name"));
                    }
                    tokens.push(Token::Name(quoted));
                    i += 1;
                } else {
                    let close = chars[i..]
                        .iter()
                        .position(|&c| c == ']')
                        .ok_or_else(|| err("unclosed ["))?;
                    tokens.push(Token::Bracket(chars[i + 1..i + close].iter().collect()));
                    i += close + 1;
                }
            }
            ']' => return Err(err("unexpected ]")),
            c => {
                name.push(c);
                i += 1;
            }
        }
    }
    if !name.is_empty() {
        tokens.push(Token::Name(name));
    }
    if text.ends_with('.') {
        return Err(err("path ends with ."));
    }
    Ok(tokens)
}

/// One segment of a rule's path pattern.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Field(String),
    /// `*`: any one field.
    AnyField,
    /// `**`: any number (zero or more) of fields and items.
    AnyDepth,
    /// `[*]`: any one list item.
    AnyItem,
    /// `[name=web]` or `[0]`.
    Item(Selector),
}

/// A compiled path pattern such as `**.containers[*].image` or `metadata.labels`.
///
/// A pattern names a subtree: it matches a change whose path lies at or below what it names, so
/// `**.containers[*].resources` covers `...containers[name=web].resources.limits.cpu`.
#[derive(Debug, Clone, PartialEq)]
pub struct PathPattern {
    text: String,
    segments: Vec<Segment>,
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PathPattern {
    pub fn parse(text: &str) -> Result<PathPattern> {
        let mut segments = Vec::new();
        for token in tokenize(text)? {
            segments.push(match token {
                Token::Name(n) if n == "**" => Segment::AnyDepth,
                Token::Name(n) if n == "*" => Segment::AnyField,
                Token::Name(n) if n.contains('*') => {
                    return Err(Error::ParseFieldPath {
                        path: text.to_string(),
                        message: format!(
                            "{n:?}: * stands alone as a segment (`*` one field, `**` any depth)"
                        ),
                    })
                }
                Token::Name(n) => Segment::Field(n),
                Token::Bracket(inner) if inner.trim() == "*" => Segment::AnyItem,
                Token::Bracket(inner) => {
                    Segment::Item(parse_selector(&inner).ok_or_else(|| Error::ParseFieldPath {
                        path: text.to_string(),
                        message: format!("[{inner}] is not [*], an index or a key=value selector"),
                    })?)
                }
            });
        }
        if segments.is_empty() {
            return Err(Error::ParseFieldPath {
                path: text.to_string(),
                message: "empty pattern".to_string(),
            });
        }
        Ok(PathPattern {
            text: text.to_string(),
            segments,
        })
    }

    /// Whether the path lies at or below the subtree this pattern names.
    pub fn matches(&self, path: &FieldPath) -> bool {
        matches_prefix(&self.segments, &path.0)
    }

    /// Whether the pattern names exactly this path, not an ancestor of it.
    pub fn matches_exactly(&self, path: &FieldPath) -> bool {
        matches_full(&self.segments, &path.0)
    }

    /// The field name this pattern ends with, when it ends with a named field: such a pattern
    /// can name exactly only a path ending in that field (tables index their rows by it).
    pub fn last_field(&self) -> Option<&str> {
        match self.segments.last() {
            Some(Segment::Field(name)) => Some(name),
            _ => None,
        }
    }
}

/// For `**` followed by a named field: the depths at which the path has that field, where the
/// rest of the pattern may start. Trying every depth, one call each, was most of the cost of
/// classifying a change (`**.containers[*].image` and its like, against every leaf).
fn field_depths<'p>(name: &'p str, path: &'p [Step]) -> impl Iterator<Item = usize> + 'p {
    path.iter()
        .enumerate()
        .filter(move |(_, step)| matches!(step, Step::Field(f) if f.as_str() == name))
        .map(|(i, _)| i)
}

fn matches_full(pattern: &[Segment], path: &[Step]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((Segment::AnyDepth, rest)) => match rest.split_first() {
            Some((Segment::Field(name), after)) => {
                field_depths(name, path).any(|i| matches_full(after, &path[i + 1..]))
            }
            _ => (0..=path.len()).any(|skip| matches_full(rest, &path[skip..])),
        },
        Some((segment, rest)) => path.split_first().is_some_and(|(step, path_rest)| {
            segment_matches(segment, step) && matches_full(rest, path_rest)
        }),
    }
}

fn matches_prefix(pattern: &[Segment], path: &[Step]) -> bool {
    let Some((first, rest)) = pattern.split_first() else {
        return true;
    };
    match first {
        Segment::AnyDepth => match rest.split_first() {
            Some((Segment::Field(name), after)) => {
                field_depths(name, path).any(|i| matches_prefix(after, &path[i + 1..]))
            }
            _ => (0..=path.len()).any(|skip| matches_prefix(rest, &path[skip..])),
        },
        _ => match path.split_first() {
            None => false,
            Some((step, path_rest)) => {
                segment_matches(first, step) && matches_prefix(rest, path_rest)
            }
        },
    }
}

fn segment_matches(segment: &Segment, step: &Step) -> bool {
    match (segment, step) {
        (Segment::Field(a), Step::Field(b)) => a == b,
        (Segment::AnyField, Step::Field(_)) => true,
        (Segment::AnyItem, Step::Item { .. }) => true,
        (Segment::Item(Selector::Index(i)), Step::Item { index, selector }) => {
            matches!(selector, Selector::Index(j) if j == i)
                || (*index == *i && matches!(selector, Selector::Index(_)))
        }
        (
            Segment::Item(Selector::Key(want)),
            Step::Item {
                selector: Selector::Key(have),
                ..
            },
        ) => want.iter().all(|(k, v)| {
            have.iter().any(|(hk, hv)| {
                hk == k
                    && (hv == v
                        || hv.as_str().is_some_and(|s| Some(s) == v.as_str())
                        || scalar_text(hv) == scalar_text(v))
            })
        }),
        _ => false,
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Matching as it read before `field_depths`: every depth tried for `**`.
    fn prefix_by_every_depth(pattern: &[Segment], path: &[Step]) -> bool {
        let Some((first, rest)) = pattern.split_first() else {
            return true;
        };
        match first {
            Segment::AnyDepth => {
                (0..=path.len()).any(|skip| prefix_by_every_depth(rest, &path[skip..]))
            }
            _ => path.split_first().is_some_and(|(step, path_rest)| {
                segment_matches(first, step) && prefix_by_every_depth(rest, path_rest)
            }),
        }
    }

    fn full_by_every_depth(pattern: &[Segment], path: &[Step]) -> bool {
        match pattern.split_first() {
            None => path.is_empty(),
            Some((Segment::AnyDepth, rest)) => {
                (0..=path.len()).any(|skip| full_by_every_depth(rest, &path[skip..]))
            }
            Some((segment, rest)) => path.split_first().is_some_and(|(step, path_rest)| {
                segment_matches(segment, step) && full_by_every_depth(rest, path_rest)
            }),
        }
    }

    proptest! {
        #[test]
        fn any_depth_matches_as_trying_every_depth_does(
            pattern in proptest::collection::vec(
                prop_oneof![Just("**"), Just("*"), Just("a"), Just("b"), Just("[*]"), Just("[0]")],
                1..6,
            ),
            path in proptest::collection::vec(
                prop_oneof![Just("a"), Just("b"), Just("c"), Just("[0]"), Just("[1]")],
                0..7,
            ),
        ) {
            let join = |parts: &[&str]| {
                parts.iter().enumerate().fold(String::new(), |mut text, (i, part)| {
                    if i > 0 && !part.starts_with('[') {
                        text.push('.');
                    }
                    text.push_str(part);
                    text
                })
            };
            let pattern_text = join(&pattern);
            let Ok(compiled) = PathPattern::parse(&pattern_text) else {
                return Ok(());
            };
            let path_text = join(&path);
            let steps = if path.is_empty() {
                FieldPath::root()
            } else {
                match FieldPath::parse(&path_text) {
                    Ok(p) => p,
                    Err(_) => return Ok(()),
                }
            };
            prop_assert_eq!(
                compiled.matches(&steps),
                prefix_by_every_depth(&compiled.segments, &steps.0),
                "{} against {}", pattern_text, path_text
            );
            prop_assert_eq!(
                compiled.matches_exactly(&steps),
                full_by_every_depth(&compiled.segments, &steps.0),
                "{} against {}", pattern_text, path_text
            );
        }
    }

    #[test]
    fn readable_form_round_trips() {
        let text = r#"spec.template.spec.containers[name=web].env[name=A].value"#;
        let path = FieldPath::parse(text).unwrap();
        assert_eq!(path.to_string(), text);
        let labels = FieldPath::parse(r#"metadata.labels["app.kubernetes.io/name"]"#).unwrap();
        assert_eq!(
            labels.0,
            vec![
                Step::Field("metadata".into()),
                Step::Field("labels".into()),
                Step::Field("app.kubernetes.io/name".into())
            ]
        );
        assert_eq!(
            labels.to_string(),
            r#"metadata.labels["app.kubernetes.io/name"]"#
        );
        assert_eq!(labels.pointer(), "/metadata/labels/app.kubernetes.io~1name");
    }

    #[test]
    fn patterns_match_subtrees() {
        let p = PathPattern::parse("**.containers[*].resources").unwrap();
        let path = FieldPath::parse("spec.template.spec.containers[name=web].resources.limits.cpu")
            .unwrap();
        assert!(p.matches(&path));
        let image = FieldPath::parse("spec.template.spec.containers[name=web].image").unwrap();
        assert!(!p.matches(&image));
        let anchored = PathPattern::parse("metadata.labels").unwrap();
        assert!(anchored.matches(&FieldPath::parse("metadata.labels.app").unwrap()));
        assert!(!anchored.matches(&FieldPath::parse("spec.template.metadata.labels.app").unwrap()));
        let keyed = PathPattern::parse("spec.ports[port=80]").unwrap();
        assert!(keyed.matches(&FieldPath::parse("spec.ports[port=80].nodePort").unwrap()));
        assert!(!keyed.matches(&FieldPath::parse("spec.ports[port=81].nodePort").unwrap()));
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        for bad in ["spec..x", "spec.[", "spec.contain*ers", ""] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
