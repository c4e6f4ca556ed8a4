//! The Lua runner against Argo CD's own suite: every `health_test.yaml` of the pinned Argo CD
//! release's `resource_customizations` tree (from Go's module cache, `scripts/testenv.sh
//! argocd-source`), run through `argo-drift health test` as Argo CD's util/lua/health_test.go
//! runs it. And the dialect points that suite depends on, each shown on its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn argo_drift(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_argo-drift"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The pinned Argo CD release's source tree.
fn argocd_source() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/testenv.sh");
    let out = Command::new(script).arg("argocd-source").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let dir = text
        .lines()
        .find_map(|l| l.strip_prefix("export ARGO_DRIFT_ARGOCD_SOURCE="))
        .unwrap();
    PathBuf::from(dir)
}

/// (passed, failed lines) of `argo-drift health test ARGS`.
fn health_test(args: &[&str]) -> (usize, Vec<String>) {
    let out = argo_drift(&[&["health", "test"], args].concat());
    let text = stdout(&out);
    let last = text
        .trim_end()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let passed = last
        .split_once(" passed")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no summary: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let failed: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("FAIL "))
        .map(str::to_string)
        .collect();
    (passed, failed)
}

#[test]
fn argo_cds_own_health_suite_passes_through_our_runner() {
    let tree = argocd_source().join("resource_customizations");
    let (passed, failed) = health_test(&[tree.to_str().unwrap()]);
    let total = passed + failed.len();
    assert!(total > 1500, "{total} cases: not Argo CD's whole tree?");
    // docs/health-checks.md lists the differences that remain; today there are none.
    assert!(
        failed.is_empty(),
        "{passed} of {total} passed:\n{}",
        failed.join("\n")
    );
    eprintln!("Argo CD's health and action suites: {passed} of {total} passed");
    let out = stdout(&argo_drift(&["health", "test", tree.to_str().unwrap()]));
    let actions = out.lines().filter(|l| l.contains("/actions ")).count();
    assert!(actions > 150, "{actions} action cases");
    // Argo CD opens the standard libraries for its built-in scripts; closed, dozens fail
    // (`string.find`, `math.floor`, ...): the libraries matter.
    let (_, closed) = health_test(&["--override", tree.to_str().unwrap()]);
    assert!(closed.len() > 10, "{closed:?}");
    assert!(closed.iter().any(|l| l.contains("string")), "{closed:?}");
}

/// A tree of one check, `example.com/Widget`, with `script` and `table`, and the object
/// `testdata/w.yaml`.
fn widget(script: &str, table: &str, object: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let check = dir.path().join("example.com/Widget");
    std::fs::create_dir_all(check.join("testdata")).unwrap();
    std::fs::write(check.join("health.lua"), script).unwrap();
    std::fs::write(check.join("health_test.yaml"), table).unwrap();
    std::fs::write(check.join("testdata/w.yaml"), object).unwrap();
    dir
}

const WIDGET: &str = "apiVersion: example.com/v1\nkind: Widget\nstatus: {phase: Ready-1}\n";

#[test]
fn goto_and_the_libraries_behave_as_in_gopher_lua() {
    // gopher-lua is Lua 5.1 plus `goto`; string and math are open for built-in scripts only.
    let script = r#"
local hs = {status = "Progressing"}
for _, p in ipairs({obj.status.phase}) do
  if string.find(p, "Ready") == nil then goto continue end
  hs.status = "Healthy"
  hs.message = string.format("%s/%d", string.sub(p, 1, 5), math.floor(1.7))
  ::continue::
end
return hs
"#;
    let dir = widget(
        script,
        "tests:\n- healthStatus: {status: Healthy, message: Ready/1}\n  inputPath: testdata/w.yaml\n",
        WIDGET,
    );
    let root = dir.path().to_str().unwrap();
    assert_eq!(health_test(&[root]), (1, vec![]));
    let (passed, failed) = health_test(&["--override", root]);
    assert_eq!(passed, 0);
    assert!(failed[0].contains("string"), "{failed:?}");
    assert_eq!(
        health_test(&["--override", "--open-libs", root]),
        (1, vec![])
    );
}

#[test]
fn test_tables_are_decoded_as_argo_cd_decodes_them() {
    // sigs.k8s.io/yaml into Go structs: keys match ignoring case, unknown keys are ignored, a
    // missing healthStatus expects no health (nil), and only an object's first document counts.
    let script = "if obj.status.phase == 'none' then return nil end\nreturn {status = 'Healthy', message = obj.status.phase}\n";
    let dir = widget(
        script,
        "tests:\n- HealthStatus: {Status: Healthy, MESSAGE: Ready-1}\n  inputpath: testdata/w.yaml\n  comment: ignored\n- inputPath: testdata/none.yaml\n",
        &format!("---\n{WIDGET}---\nkind: Other\n"),
    );
    std::fs::write(
        dir.path().join("example.com/Widget/testdata/none.yaml"),
        "apiVersion: example.com/v1\nkind: Widget\nstatus: {phase: none}\n",
    )
    .unwrap();
    assert_eq!(health_test(&[dir.path().to_str().unwrap()]), (2, vec![]));
}

#[test]
fn a_bad_file_is_a_failing_case_and_the_run_goes_on() {
    let dir = widget(
        "return {status = 'Healthy'}",
        "tests:\n- healthStatus: {status: Healthy}\n  inputPath: testdata/w.yaml\n",
        WIDGET,
    );
    let broken = dir.path().join("example.com/Broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("health.lua"), "return {status = 'Healthy'}").unwrap();
    std::fs::write(broken.join("health_test.yaml"), "tests: [unclosed\n").unwrap();
    let syntax = dir.path().join("example.com/Syntax");
    std::fs::create_dir_all(syntax.join("testdata")).unwrap();
    std::fs::write(syntax.join("health.lua"), "return {status = ").unwrap();
    std::fs::write(
        syntax.join("health_test.yaml"),
        "tests:\n- healthStatus: {status: Healthy}\n  inputPath: testdata/s.yaml\n",
    )
    .unwrap();
    std::fs::write(
        syntax.join("testdata/s.yaml"),
        "apiVersion: example.com/v1\nkind: Syntax\n",
    )
    .unwrap();
    let (passed, failed) = health_test(&[dir.path().to_str().unwrap()]);
    assert_eq!(passed, 1, "{failed:?}");
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed[0].starts_with("FAIL example.com/Broken health_test.yaml:"),
        "{failed:?}"
    );
    assert!(
        failed[1].starts_with("FAIL example.com/Syntax testdata/s.yaml: error:"),
        "{failed:?}"
    );
}

#[test]
fn a_wildcard_check_runs_for_kinds_without_their_own() {
    // As Argo CD: `_` in a directory name is a wildcard; an object's own group and kind win.
    let dir = widget(
        "return {status = 'Healthy', message = 'own'}",
        "tests:\n- healthStatus: {status: Healthy, message: own}\n  inputPath: testdata/w.yaml\n",
        WIDGET,
    );
    let wild = dir.path().join("_.example.com/_");
    std::fs::create_dir_all(wild.join("testdata")).unwrap();
    std::fs::write(
        wild.join("health.lua"),
        "return {status = 'Degraded', message = 'wildcard'}",
    )
    .unwrap();
    std::fs::write(
        wild.join("health_test.yaml"),
        "tests:\n- healthStatus: {status: Degraded, message: wildcard}\n  inputPath: testdata/g.yaml\n- healthStatus: {status: Healthy, message: own}\n  inputPath: testdata/w.yaml\n",
    )
    .unwrap();
    std::fs::write(
        wild.join("testdata/g.yaml"),
        "apiVersion: db.example.com/v1\nkind: Gadget\n",
    )
    .unwrap();
    std::fs::write(wild.join("testdata/w.yaml"), WIDGET).unwrap();
    assert_eq!(health_test(&[dir.path().to_str().unwrap()]), (3, vec![]));
}

#[test]
fn actions_run_as_argo_cd_runs_them() {
    // Discovery offers actions (an empty table is an action with just its name); an action
    // gets `actionParams`, runs with the libraries closed, returns the patched object or a
    // list of impacted resources, and its error reads as Argo CD shows it.
    let dir = tempfile::tempdir().unwrap();
    let actions = dir.path().join("example.com/Widget/actions");
    std::fs::create_dir_all(actions.join("testdata")).unwrap();
    std::fs::create_dir_all(actions.join("grow")).unwrap();
    std::fs::create_dir_all(actions.join("clone")).unwrap();
    std::fs::write(
        actions.join("discovery.lua"),
        "local a = {}\na.grow = {disabled = obj.spec.size >= 10, params = {{name = 'by'}}}\na.clone = {}\nreturn a\n",
    )
    .unwrap();
    std::fs::write(
        actions.join("grow/action.lua"),
        "local by = tonumber(actionParams['by'])\nif not by then error('invalid number: ' .. actionParams['by'], 0) end\nobj.spec.size = obj.spec.size + by\nobj.spec.labels = {}\nreturn obj\n",
    )
    .unwrap();
    std::fs::write(
        actions.join("clone/action.lua"),
        "local c = {apiVersion = obj.apiVersion, kind = obj.kind, metadata = {name = obj.metadata.name .. '-copy', namespace = obj.metadata.namespace}, spec = obj.spec}\nreturn {{operation = 'create', resource = c}}\n",
    )
    .unwrap();
    std::fs::write(
        actions.join("testdata/w.yaml"),
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: ns}\nspec: {size: 3, labels: {}}\n",
    )
    .unwrap();
    std::fs::write(
        actions.join("testdata/w-grown.yaml"),
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: ns}\nspec: {size: 5, labels: {}}\n",
    )
    .unwrap();
    std::fs::write(
        actions.join("testdata/w-clone.yaml"),
        "- k8sOperation: create\n  unstructuredObj:\n    apiVersion: example.com/v1\n    kind: Widget\n    metadata: {name: w-copy, namespace: ns}\n    spec: {size: 3}\n",
    )
    .unwrap();
    std::fs::write(
        actions.join("action_test.yaml"),
        "discoveryTests:\n- inputPath: testdata/w.yaml\n  result:\n  - {name: grow, params: [{name: by}]}\n  - {name: clone}\nactionTests:\n- action: grow\n  inputPath: testdata/w.yaml\n  expectedOutputPath: testdata/w-grown.yaml\n  parameters: {by: \"2\"}\n- action: grow\n  inputPath: testdata/w.yaml\n  expectedErrorMessage: \"invalid number: x\"\n  parameters: {by: x}\n- action: clone\n  inputPath: testdata/w.yaml\n  expectedOutputPath: testdata/w-clone.yaml\n",
    )
    .unwrap();
    let root = dir.path().to_str().unwrap();
    assert_eq!(health_test(&[root]), (4, vec![]));
    // A wrong expectation is a failure naming the field.
    std::fs::write(
        actions.join("testdata/w-grown.yaml"),
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: ns}\nspec: {size: 6}\n",
    )
    .unwrap();
    let (passed, failed) = health_test(&[root]);
    assert_eq!(passed, 3);
    assert!(
        failed[0].ends_with("the output differs from testdata/w-grown.yaml at .spec.size"),
        "{failed:?}"
    );
}
