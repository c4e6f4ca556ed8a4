//! Manifest loading, good and bad input: every error names the source, the document and the line;
//! nothing panics and nothing is silently skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use argo_drift_core::manifest::{index_by_key, parse_manifests};
use argo_drift_core::Error;

fn err(text: &str) -> String {
    parse_manifests("m.yaml", text.as_bytes())
        .unwrap_err()
        .to_string()
}

#[test]
fn multi_document_yaml_and_lists_are_expanded() {
    let text = "---\n# comment only\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\
apiVersion: v1\nkind: List\nitems:\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata:\n    name: b\n    namespace: x\n\
- apiVersion: v1\n  kind: Secret\n  metadata: {name: c}\nmetadata:\n  resourceVersion: \"\"\n";
    let rs = parse_manifests("m.yaml", text.as_bytes()).unwrap();
    let names: Vec<_> = rs
        .iter()
        .map(|r| (r.key.kind.as_str(), r.key.name.as_str(), r.origin.line))
        .collect();
    assert_eq!(
        names,
        vec![
            ("ConfigMap", "a", 4),
            ("Deployment", "b", 11),
            ("Secret", "c", 16)
        ]
    );
    assert_eq!(rs[1].key.group, "apps");
    assert_eq!(rs[1].key.namespace, "x");
    assert_eq!(
        rs[2].origin.to_string(),
        "m.yaml: document 3, item 2 (line 16)"
    );
}

#[test]
fn json_documents_and_json_lists() {
    let text = r#"{"apiVersion":"v1","kind":"ServiceList","items":[{"apiVersion":"v1","kind":"Service","metadata":{"name":"s","namespace":"n"}}]}
{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#;
    let rs = parse_manifests("dump.json", text.as_bytes()).unwrap();
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[1].origin.line, 2);
}

#[test]
fn json_documents_between_yaml_separators_are_a_yaml_stream() {
    let text =
        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\"}}\n---\n\
                {\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"b\"}}\n";
    let rs = parse_manifests("dump.yaml", text.as_bytes()).unwrap();
    let names: Vec<&str> = rs.iter().map(|r| r.key.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(rs[1].origin.to_string(), "dump.yaml: document 2 (line 3)");
}

#[test]
fn invalid_yaml_names_file_document_and_line() {
    let e = err("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: [unclosed\n");
    // libyaml notices an unclosed flow sequence at the end of the input.
    assert!(
        e.starts_with("m.yaml: document 2 (line 7): invalid YAML"),
        "{e}"
    );
    let e =
        err("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n   bad: indent\ndata: {}\n");
    assert!(
        e.starts_with("m.yaml: document 1 (line 5): invalid YAML"),
        "{e}"
    );
    let e = err("{\"apiVersion\": \"v1\",\n \"kind\": }");
    assert!(
        e.contains("m.yaml: document 1 (line 2)") && e.contains("invalid JSON"),
        "{e}"
    );
}

#[test]
fn documents_without_identity_are_refused() {
    let e = err("kind: ConfigMap\nmetadata: {name: a}\n");
    assert!(
        e.contains("document 1 (line 1)") && e.contains("missing apiVersion"),
        "{e}"
    );
    let e = err("apiVersion: v1\nmetadata: {name: a}\n");
    assert!(e.contains("missing kind"), "{e}");
    let e = err("apiVersion: v1\nkind: Pod\nmetadata: {generateName: a-}\n");
    assert!(
        e.contains("missing metadata.name") && e.contains("generateName"),
        "{e}"
    );
    let e = err("apiVersion: v1\nkind: Pod\n");
    assert!(e.contains("missing metadata"), "{e}");
    let e = err("- just\n- a list\n");
    assert!(e.contains("expected a Kubernetes object"), "{e}");
    let e = err("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  metadata: {name: x}\n");
    assert!(
        e.contains("item 1 (line 4)") && e.contains("missing kind"),
        "{e}"
    );
}

#[test]
fn duplicates_name_both_places() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: n}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: n}\n";
    let rs = parse_manifests("m.yaml", text.as_bytes()).unwrap();
    let e = index_by_key(rs).unwrap_err();
    assert_eq!(e.category(), "duplicate_resource");
    let e = e.to_string();
    assert!(
        e.contains("ConfigMap n/a is defined twice")
            && e.contains("document 1 (line 1)")
            && e.contains("document 2 (line 5)"),
        "{e}"
    );
}

#[test]
fn non_utf8_names_the_line() {
    let mut bytes = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \xff\xfe\n".to_vec();
    bytes.push(b'\n');
    let e = parse_manifests("bin.yaml", &bytes).unwrap_err();
    assert!(matches!(e, Error::DecodeUtf8 { line: 4, .. }), "{e}");
    assert!(e
        .to_string()
        .starts_with("bin.yaml: line 4: not valid UTF-8"));
}

#[test]
fn alias_bombs_are_refused_not_expanded() {
    // The billion-laughs document of CVE-2019-11253, in a ConfigMap.
    let mut text = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    let mut prev = 'a';
    for c in ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] {
        text.push_str(&format!("  {c}: &{c} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
        prev = c;
    }
    let e = err(&text);
    assert!(
        e.contains("m.yaml: document 1") && e.contains("repetition limit exceeded"),
        "{e}"
    );
}

#[test]
fn anchors_inside_a_list_still_parse() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n  data: &d {k: v}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n  data: *d\n";
    let rs = parse_manifests("m.yaml", text.as_bytes()).unwrap();
    assert_eq!(rs[1].object["data"]["k"], "v");
}

#[test]
fn yaml_scalars_keep_their_types_and_keys_become_strings() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata:\n  1: one\n  true: yes\n  port: \"8080\"\n";
    let rs = parse_manifests("m.yaml", text.as_bytes()).unwrap();
    let data = &rs[0].object["data"];
    assert_eq!(data["1"], "one");
    assert_eq!(data["true"], "yes");
    assert_eq!(data["port"], "8080");
}

/// `namespace_resolved` says exactly when `resolve_namespace` leaves an object as it is: the
/// diff compares a live object ahead, on another thread, only then.
#[test]
fn namespace_resolved_is_true_exactly_when_resolving_changes_nothing() {
    use argo_drift_core::manifest::{namespace_resolved, resolve_namespace, ResourceKey, Scopes};
    let mut scopes = Scopes::default();
    scopes.learn("example.com", "Widget", true);
    let mut checked = 0;
    for kind in ["Widget", "ConfigMap"] {
        let group = if kind == "Widget" { "example.com" } else { "" };
        for given in [false, true] {
            for key_namespace in ["", "a", "shop"] {
                for written in [None, Some("a"), Some("shop"), Some("")] {
                    let key = ResourceKey {
                        group: group.into(),
                        kind: kind.into(),
                        namespace: key_namespace.into(),
                        name: "x".into(),
                    };
                    let mut object = serde_json::json!({"metadata": {"name": "x"}});
                    if let Some(ns) = written {
                        object["metadata"]["namespace"] = ns.into();
                    }
                    let (mut k, mut o) = (key.clone(), object.clone());
                    resolve_namespace(&mut k, &mut o, given, "shop", &scopes);
                    let unchanged = k == key && o == object;
                    assert_eq!(
                        namespace_resolved(&key, &object, given, "shop", &scopes),
                        unchanged,
                        "{kind}, given {given}, key namespace {key_namespace:?}, written {written:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 48);
}
