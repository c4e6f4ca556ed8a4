//! Argo CD resource health checks in Lua, run as Argo CD runs them (util/lua/lua.go): Lua 5.1
//! with `goto` — gopher-lua's dialect, here LuaJIT with its compiler off so that the time limit
//! holds — the object as the global `obj`, the libraries Argo CD opens (always base, table,
//! `package` and a safe `os` with `time` and `date`; `string`, `math` and coroutines too for
//! built-in scripts and for argocd-cm overrides with `useOpenLibs`), a one-second time limit,
//! and the same rules for the result: nil is no health, a table whose `status` is one of Argo
//! CD's health codes, an unknown status Unknown.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mlua::{HookTriggers, Lua, LuaOptions, StdLib, Table, Value as LuaValue, VmState};
use serde::Deserialize;
use serde_json::Value;

/// Argo CD's health status codes.
pub const STATUSES: [&str; 6] = [
    "Healthy",
    "Progressing",
    "Degraded",
    "Suspended",
    "Missing",
    "Unknown",
];

/// Argo CD's answer to a status it does not know.
pub const INVALID_STATUS: &str = "Lua returned an invalid health status";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct HealthStatus {
    pub status: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Argo CD's `useOpenLibs`: string and math too.
    pub open_libs: bool,
    /// Argo CD stops a script after one second.
    pub time_limit: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            open_libs: false,
            time_limit: Duration::from_secs(1),
        }
    }
}

/// Run `script` on `object`. Errors are the script's own (a runtime error, the time limit, a
/// result that is not a table); an unknown status is not an error but Unknown, as in Argo CD;
/// `None` when the script returns nil (no health).
pub fn run(script: &str, object: &Value, options: Options) -> Result<Option<HealthStatus>, String> {
    let lua = sandbox(options).map_err(|e| format!("setting up Lua: {e}"))?;
    let result = eval(&lua, script, object, options, "=health.lua")?;
    health_of(&result)
}

/// Run `script` with `obj` set in a prepared state and return the value Argo CD reads: the
/// top of the stack, i.e. the last value returned.
pub(crate) fn eval(
    lua: &Lua,
    script: &str,
    object: &Value,
    options: Options,
    name: &str,
) -> Result<LuaValue, String> {
    let obj = to_lua(lua, object).map_err(|e| format!("passing the object to Lua: {e}"))?;
    lua.globals().set("obj", obj).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let limit = options.time_limit;
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(1000),
        move |_, _| {
            if started.elapsed() > limit {
                return Err(mlua::Error::RuntimeError(format!(
                    "the script ran longer than {} ms and was stopped",
                    limit.as_millis()
                )));
            }
            Ok(VmState::Continue)
        },
    )
    .map_err(|e| e.to_string())?;
    let values = lua
        .load(script)
        .set_name(name)
        .eval::<mlua::MultiValue>()
        .map_err(describe)?;
    Ok(values.into_iter().last().unwrap_or(LuaValue::Nil))
}

/// A health script's result as Argo CD reads it (ExecuteHealthLua).
fn health_of(result: &LuaValue) -> Result<Option<HealthStatus>, String> {
    let table = match result {
        LuaValue::Nil => return Ok(None),
        LuaValue::Table(t) => t,
        other => {
            return Err(format!(
                "expect table output from Lua script, not {}",
                lua_type(other)
            ))
        }
    };
    // A table with an array part encodes as a JSON array, which Argo CD cannot decode into a
    // health status and takes as an empty one.
    if table.raw_len() > 0 {
        return Ok(Some(HealthStatus {
            status: String::new(),
            message: String::new(),
        }));
    }
    let field = |name: &str| -> Result<String, String> {
        match table.raw_get::<LuaValue>(name).map_err(|e| e.to_string())? {
            LuaValue::Nil => Ok(String::new()),
            LuaValue::String(s) => Ok(s.to_string_lossy()),
            other => Err(format!(
                "the health status' {name} is a {}, not a string",
                lua_type(&other)
            )),
        }
    };
    let status = field("status")?;
    let message = field("message")?;
    if !STATUSES.contains(&status.as_str()) {
        return Ok(Some(HealthStatus {
            status: "Unknown".into(),
            message: INVALID_STATUS.into(),
        }));
    }
    Ok(Some(HealthStatus { status, message }))
}

fn describe(e: mlua::Error) -> String {
    // A script's own error reads as Argo CD shows it: the message alone.
    let text = match e {
        mlua::Error::RuntimeError(m) => m,
        other => other.to_string(),
    };
    // The first line names the error; the traceback that follows is mlua's, not the script's.
    text.lines()
        .take_while(|l| !l.starts_with("stack traceback"))
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string()
}

fn lua_type(v: &LuaValue) -> &'static str {
    match v {
        LuaValue::Nil => "nil",
        LuaValue::Boolean(_) => "boolean",
        LuaValue::Integer(_) | LuaValue::Number(_) => "number",
        LuaValue::String(_) => "string",
        LuaValue::Table(_) => "table",
        LuaValue::Function(_) => "function",
        _ => "userdata",
    }
}

/// A state with only what Argo CD gives a script. With open libraries Argo CD (gopher-lua's
/// OpenLibs) also opens `io` and `debug`; they are left closed here: no built-in script uses
/// them, and a check has no business reading files (docs/health-checks.md lists this).
pub(crate) fn sandbox(options: Options) -> mlua::Result<Lua> {
    let mut libs = StdLib::TABLE | StdLib::PACKAGE | StdLib::JIT;
    if options.open_libs {
        libs |= StdLib::STRING | StdLib::MATH;
    }
    let lua = Lua::new_with(libs, LuaOptions::default())?;
    // The time limit is a count hook, which compiled traces do not call: interpret only.
    lua.load("jit.off(); jit.flush()").exec()?;
    let globals = lua.globals();
    globals.set("jit", LuaValue::Nil)?;
    // LuaJIT's coroutines are part of its base library; gopher-lua opens them only with the
    // other libraries.
    if !options.open_libs {
        globals.set("coroutine", LuaValue::Nil)?;
    }
    for name in ["dofile", "loadfile"] {
        globals.set(name, LuaValue::Nil)?;
    }
    let package: Table = globals.get("package")?;
    package.set("path", "")?;
    package.set("cpath", "")?;
    package.set("loadlib", LuaValue::Nil)?;
    let os = safe_os(&lua)?;
    globals.set("os", os.clone())?;
    let loaded: Table = package.get("loaded")?;
    loaded.set("os", os.clone())?;
    loaded.set("jit", LuaValue::Nil)?;
    if !options.open_libs {
        loaded.set("coroutine", LuaValue::Nil)?;
    }
    let preload: Table = package.get("preload")?;
    preload.set("os", lua.create_function(move |_, ()| Ok(os.clone()))?)?;
    Ok(lua)
}

/// `os.time{...}` as Argo CD's Lua (gopher-lua) computes it: Go's `time.Date`, which carries
/// out-of-range fields over (month 13 is January of the next year, day 0 the last day of the
/// month before), in UTC. A date outside what can be represented is an error, never a panic.
fn os_time(year: i64, month: i64, day: i64, hour: i64, min: i64, sec: i64) -> Result<i64, String> {
    use k8s_openapi::jiff::{civil, tz::TimeZone, Span};
    let out_of_range = || format!("date out of range (year {year}, month {month}, day {day})");
    let year = i16::try_from(year).map_err(|_| out_of_range())?;
    let first = civil::Date::new(year, 1, 1).map_err(|_| out_of_range())?;
    // Months first, then days and time of day, as time.Date normalises them.
    let month_start = Span::new()
        .try_months(month.saturating_sub(1))
        .and_then(|m| first.checked_add(m))
        .map_err(|_| out_of_range())?;
    let rest = Span::new()
        .try_days(day.saturating_sub(1))
        .and_then(|s| s.try_hours(hour))
        .and_then(|s| s.try_minutes(min))
        .and_then(|s| s.try_seconds(sec))
        .map_err(|_| out_of_range())?;
    let at = month_start
        .to_datetime(civil::Time::midnight())
        .checked_add(rest)
        .map_err(|_| out_of_range())?;
    let zoned = at.to_zoned(TimeZone::UTC).map_err(|e| e.to_string())?;
    Ok(zoned.timestamp().as_second())
}

/// Argo CD's safe `os`: `time` and `date` only.
fn safe_os(lua: &Lua) -> mlua::Result<Table> {
    use k8s_openapi::jiff::{tz::TimeZone, Timestamp};
    let os = lua.create_table()?;
    os.set(
        "time",
        lua.create_function(|_, t: Option<Table>| {
            let Some(t) = t else {
                return Ok(Timestamp::now().as_second());
            };
            let int = |k: &str, default: i64| t.get::<Option<i64>>(k).map(|v| v.unwrap_or(default));
            os_time(
                int("year", 1970)?,
                int("month", 1)?,
                int("day", 1)?,
                int("hour", 12)?,
                int("min", 0)?,
                int("sec", 0)?,
            )
            .map_err(|e| mlua::Error::RuntimeError(format!("os.time: {e}")))
        })?,
    )?;
    os.set(
        "date",
        lua.create_function(|lua, (format, time): (Option<String>, Option<i64>)| {
            let format = format.unwrap_or_else(|| "%c".into());
            let format = format.trim_start_matches('!').to_string();
            let ts = match time {
                Some(t) => Timestamp::from_second(t)
                    .map_err(|e| mlua::Error::RuntimeError(format!("os.date: {e}")))?,
                None => Timestamp::now(),
            };
            let zoned = ts.to_zoned(TimeZone::UTC);
            if format.starts_with("*t") {
                let t = lua.create_table()?;
                t.set("year", zoned.year())?;
                t.set("month", zoned.month())?;
                t.set("day", zoned.day())?;
                t.set("hour", zoned.hour())?;
                t.set("min", zoned.minute())?;
                t.set("sec", zoned.second())?;
                t.set("wday", zoned.weekday().to_sunday_one_offset())?;
                t.set("yday", zoned.day_of_year())?;
                t.set("isdst", false)?;
                return Ok(LuaValue::Table(t));
            }
            let text = k8s_openapi::jiff::fmt::strtime::format(&format, &zoned)
                .map_err(|e| mlua::Error::RuntimeError(format!("os.date: {e}")))?;
            Ok(LuaValue::String(lua.create_string(&text)?))
        })?,
    )?;
    Ok(os)
}

/// JSON to Lua as Argo CD decodes it: null is nil, arrays are 1-based tables.
fn to_lua(lua: &Lua, v: &Value) -> mlua::Result<LuaValue> {
    Ok(match v {
        Value::Null => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Number(n) => LuaValue::Number(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => LuaValue::String(lua.create_string(s)?),
        Value::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            LuaValue::Table(t)
        }
        Value::Object(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, item) in map {
                t.raw_set(k.as_str(), to_lua(lua, item)?)?;
            }
            LuaValue::Table(t)
        }
    })
}

/// A field of a decoded test table as Go's encoding/json finds it for a struct field (Argo
/// CD's tables go through sigs.k8s.io/yaml): the exact key, else one equal ignoring case.
pub(crate) fn go_field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    let map = v.as_object()?;
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// A string field as Go decodes it into a `string`: absent or null is empty.
pub(crate) fn go_string(v: &Value, name: &str) -> Result<String, String> {
    match go_field(v, name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("{name}: {other} is not a string")),
    }
}

/// A test table (YAML) decoded as Argo CD decodes it.
pub(crate) fn load_table(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// `group/Kind testdata/x.yaml`
    pub name: String,
    /// `None`: passed; else why not.
    pub failure: Option<String>,
}

/// The checks of a tree in Argo CD's layout (`<group>/<Kind>/health.lua`, a `_` in a
/// directory name being a wildcard), found for an object as Argo CD finds a built-in one
/// (util/lua/lua.go, GetHealthScript): its own group and kind first, else the first wildcard
/// directory, in sorted order, that matches.
pub(crate) struct Tree {
    root: PathBuf,
    wildcards: Vec<(String, globset::GlobMatcher)>,
}

impl Tree {
    pub(crate) fn new(root: &Path, checks: &[PathBuf]) -> Tree {
        let mut wildcards: Vec<(String, globset::GlobMatcher)> = checks
            .iter()
            .filter_map(|dir| {
                let key = dir.strip_prefix(root).ok()?.to_str()?.to_string();
                if !key.contains('_') {
                    return None;
                }
                let glob = globset::GlobBuilder::new(&key.replace('_', "*"))
                    .literal_separator(true)
                    .build()
                    .ok()?;
                Some((key, glob.compile_matcher()))
            })
            .collect();
        wildcards.sort_by(|a, b| a.0.cmp(&b.0));
        Tree {
            root: root.to_path_buf(),
            wildcards,
        }
    }

    /// Argo CD's key for an object: `group/Kind`, or `Kind` for the core group.
    pub(crate) fn key(object: &Value) -> Option<String> {
        let api_version = object.get("apiVersion")?.as_str()?;
        let kind = object.get("kind")?.as_str()?;
        Some(match api_version.rsplit_once('/') {
            Some((group, _)) => format!("{group}/{kind}"),
            None => kind.to_string(),
        })
    }

    /// How a directory of the tree is named in results.
    pub(crate) fn label(&self, dir: &Path) -> String {
        dir.strip_prefix(&self.root)
            .unwrap_or(dir)
            .display()
            .to_string()
    }

    /// An action script for `object` (`<group>/<Kind>/actions/<file>`; actions have no
    /// wildcards), else the one under `fallback`.
    pub(crate) fn action_script(&self, object: &Value, fallback: &Path, file: &str) -> PathBuf {
        Tree::key(object)
            .map(|k| self.root.join(k).join("actions").join(file))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| fallback.join(file))
    }

    /// The directory whose `file` runs for `object`, if any.
    pub(crate) fn find(&self, object: &Value, file: &str) -> Option<PathBuf> {
        let key = Tree::key(object)?;
        let exact = self.root.join(&key);
        if exact.join(file).is_file() {
            return Some(exact);
        }
        self.wildcards
            .iter()
            .find(|(_, m)| m.is_match(&key))
            .map(|(dir, _)| self.root.join(dir))
            .filter(|d| d.join(file).is_file())
    }
}

/// Every check under `dir` (Argo CD's layout `<group>/<Kind>/{health.lua, health_test.yaml,
/// testdata/}`), each case of its `health_test.yaml` run with the script Argo CD would pick for
/// the case's object (see `Tree`), as Argo CD's own suite does (util/lua/health_test.go). A
/// file that cannot be read or decoded is a failing case; it never stops the run.
pub fn test_dir(dir: &Path, options: Options) -> Result<Vec<CaseResult>, String> {
    let mut checks = Vec::new();
    find_files(dir, "health.lua", &mut checks).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut action_tables = Vec::new();
    find_files(dir, "action_test.yaml", &mut action_tables)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    if checks.is_empty() && action_tables.is_empty() {
        return Err(format!(
            "{}: no <group>/<Kind>/health.lua or <group>/<Kind>/actions/action_test.yaml found",
            dir.display()
        ));
    }
    checks.sort();
    action_tables.sort();
    let tree = Tree::new(dir, &checks);
    let mut results = Vec::new();
    for check_dir in &checks {
        let label = check_dir
            .strip_prefix(dir)
            .unwrap_or(check_dir)
            .display()
            .to_string();
        let table = check_dir.join("health_test.yaml");
        let cases = load_table(&table).and_then(|t| match go_field(&t, "tests") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(cases)) => Ok(cases.clone()),
            Some(other) => Err(format!("{}: tests: {other} is not a list", table.display())),
        });
        let cases = match cases {
            Ok(c) => c,
            Err(e) => {
                results.push(CaseResult {
                    name: format!("{label} health_test.yaml"),
                    failure: Some(e),
                });
                continue;
            }
        };
        for (i, case) in cases.iter().enumerate() {
            let input = go_string(case, "inputPath").unwrap_or_default();
            let name = format!(
                "{label} {}",
                if input.is_empty() {
                    format!("tests[{i}]")
                } else {
                    input.clone()
                }
            );
            let failure = run_case(&tree, check_dir, case, &input, options).err();
            results.push(CaseResult { name, failure });
        }
    }
    results.extend(crate::actions::test_tables(&tree, &action_tables, options));
    Ok(results)
}

fn expected_status(case: &Value) -> Result<Option<HealthStatus>, String> {
    match go_field(case, "healthStatus") {
        None | Some(Value::Null) => Ok(None),
        Some(h) => Ok(Some(HealthStatus {
            status: go_string(h, "status")?,
            message: go_string(h, "message")?,
        })),
    }
}

fn run_case(
    tree: &Tree,
    check_dir: &Path,
    case: &Value,
    input: &str,
    options: Options,
) -> Result<(), String> {
    if input.is_empty() {
        return Err("the case has no inputPath".into());
    }
    let expected = expected_status(case)?;
    let object = load_object(&check_dir.join(input))?;
    let script_dir = tree
        .find(&object, "health.lua")
        .unwrap_or_else(|| check_dir.to_path_buf());
    let script = script_dir.join("health.lua");
    let text =
        std::fs::read_to_string(&script).map_err(|e| format!("{}: {e}", script.display()))?;
    let got = run(&text, &object, options).map_err(|e| format!("error: {e}"))?;
    if got == expected {
        return Ok(());
    }
    let show = |h: &Option<HealthStatus>| match h {
        Some(h) => format!("{} {:?}", h.status, h.message),
        None => "no health (nil)".into(),
    };
    Err(format!("expected {}, got {}", show(&expected), show(&got)))
}

pub(crate) fn find_files(dir: &Path, file: &str, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            find_files(&path, file, out)?;
        } else if path.file_name().is_some_and(|n| n == file) {
            out.push(path.parent().unwrap_or(dir).to_path_buf());
        }
    }
    Ok(())
}

/// A YAML (or JSON) object from a file: its first document, as Go's yaml.Unmarshal (Argo CD
/// reads test data with sigs.k8s.io/yaml) decodes only the first.
pub fn load_object(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let first = serde_yaml::Deserializer::from_str(&text)
        .next()
        .ok_or_else(|| format!("{}: no YAML document", path.display()))?;
    Value::deserialize(first).map_err(|e| format!("{}: {e}", path.display()))
}

/// The value of `resource.customizations.actions.<group>_<Kind>` for an `actions/` directory
/// (Argo CD's ResourceActions: `discovery.lua`, `definitions` of `name` and `action.lua`),
/// merged with Argo CD's built-in actions for the kind.
fn actions_entry(dir: &Path) -> Result<Option<String>, String> {
    let discovery = dir.join("discovery.lua");
    if !discovery.is_file() {
        return Ok(None);
    }
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut definitions = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("action.lua").is_file())
        .collect();
    names.sort();
    for action in names {
        let name = action
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        definitions.push(
            serde_json::json!({"name": name, "action.lua": read(&action.join("action.lua"))?}),
        );
    }
    let value = serde_json::json!({
        "discovery.lua": read(&discovery)?,
        "definitions": definitions,
        "mergeBuiltinActions": true,
    });
    serde_yaml::to_string(&value)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// `argocd-cm` entries `resource.customizations.health.<group>_<Kind>` (and
/// `resource.customizations.actions.<group>_<Kind>` where there are actions) for every check under
/// `dir` (`<group>/<Kind>/health.lua`).
pub fn configmap_entries(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let groups = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for group in groups.flatten() {
        if !group.path().is_dir() {
            continue;
        }
        let kinds = std::fs::read_dir(group.path()).map_err(|e| e.to_string())?;
        for kind in kinds.flatten() {
            let key = format!(
                "{}_{}",
                group.file_name().to_string_lossy(),
                kind.file_name().to_string_lossy()
            );
            let script = kind.path().join("health.lua");
            if script.is_file() {
                let text = std::fs::read_to_string(&script)
                    .map_err(|e| format!("{}: {e}", script.display()))?;
                out.push((format!("resource.customizations.health.{key}"), text));
            }
            if let Some(actions) = actions_entry(&kind.path().join("actions"))? {
                out.push((format!("resource.customizations.actions.{key}"), actions));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_time_carries_fields_over_as_go_does_and_never_panics() {
        let t = |y, mo, d, h, mi, s| os_time(y, mo, d, h, mi, s);
        assert_eq!(t(2026, 12, 4, 0, 0, 0), Ok(1_796_342_400));
        // time.Date(2026, 13, 1, ...) is 2027-01-01; day 0 is the month before's last day.
        assert_eq!(t(2026, 13, 1, 0, 0, 0), t(2027, 1, 1, 0, 0, 0));
        assert_eq!(t(2026, 3, 0, 0, 0, 0), t(2026, 2, 28, 0, 0, 0));
        assert_eq!(t(2026, 2, 30, 0, 0, 0), t(2026, 3, 2, 0, 0, 0));
        assert_eq!(t(2026, 1, 1, 25, 0, 0), t(2026, 1, 2, 1, 0, 0));
        assert_eq!(t(2026, 1, 1, 0, 0, -1), t(2025, 12, 31, 23, 59, 59));
        for bad in [
            t(99_999, 1, 1, 0, 0, 0),
            t(2026, i64::MAX, 1, 0, 0, 0),
            t(2026, 1, i64::MIN, 0, 0, 0),
            t(9999, 12, 31, 24 * 400, 0, 0),
        ] {
            assert!(bad.unwrap_err().contains("out of range"));
        }
    }
    use serde_json::json;

    fn check(script: &str) -> Result<HealthStatus, String> {
        run(
            script,
            &json!({"status": {"phase": "Running", "items": [1, 2, 3]}, "spec": null}),
            Options::default(),
        )?
        .ok_or_else(|| "nil".to_string())
    }

    #[test]
    fn the_object_is_the_global_obj_with_nulls_as_nil_and_arrays_from_one() {
        let r = check(
            r#"local hs = {}
            if obj.spec == nil and obj.status.items[1] == 1 and #obj.status.items == 3 then
              hs.status = "Healthy"; hs.message = obj.status.phase
            end
            return hs"#,
        )
        .unwrap();
        assert_eq!(
            r,
            HealthStatus {
                status: "Healthy".into(),
                message: "Running".into()
            }
        );
    }

    #[test]
    fn an_unknown_status_is_unknown_as_in_argo_cd() {
        assert_eq!(
            check(r#"return {status = "Fine"}"#).unwrap(),
            HealthStatus {
                status: "Unknown".into(),
                message: INVALID_STATUS.into()
            }
        );
        assert_eq!(check("return {}").unwrap().status, "Unknown");
    }

    #[test]
    fn malformed_results_and_errors_are_clear_errors_not_crashes() {
        assert_eq!(
            check("return 42").unwrap_err(),
            "expect table output from Lua script, not number"
        );
        // Nothing returned is no health, as Argo CD's nil result.
        assert_eq!(check("local x = 1").unwrap_err(), "nil");
        // A table with an array part: Argo CD cannot decode it and takes an empty status.
        assert_eq!(check(r#"return {"Healthy"}"#).unwrap().status, "");
        assert!(check(r#"return {status = 3}"#)
            .unwrap_err()
            .contains("status is a number"));
        let e = check("local x = 1\nerror(\"boom\")").unwrap_err();
        assert!(e.contains("health.lua:2: boom"), "{e}");
        let e = check("return obj.nothing.here").unwrap_err();
        assert!(e.contains("attempt to index"), "{e}");
        let e = check("return {status = ").unwrap_err();
        assert!(
            e.contains("syntax error") || e.contains("unexpected"),
            "{e}"
        );
    }

    #[test]
    fn a_script_that_loops_for_ever_is_stopped() {
        let started = Instant::now();
        let e = run(
            "while true do end",
            &json!({}),
            Options {
                time_limit: Duration::from_millis(200),
                ..Options::default()
            },
        )
        .unwrap_err();
        assert!(e.contains("ran longer than 200 ms"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn only_the_libraries_argo_cd_opens_are_there() {
        for forbidden in [
            "return io.open('/etc/passwd')",
            "return os.execute('true')",
            "return os.getenv('HOME')",
            "return dofile('/etc/passwd')",
            "return loadfile('/etc/passwd')",
            "return require('io')",
            "return package.loadlib('x', 'y')",
            "return debug.getinfo(1)",
            "return string.upper('x')",
            "return math.floor(1.5)",
        ] {
            let e = check(forbidden).unwrap_err();
            assert!(
                e.contains("nil") || e.contains("not found"),
                "{forbidden}: {e}"
            );
        }
        // What Argo CD does give: table, require of the safe os, os.time and os.date.
        let r = check(
            r#"local os2 = require("os")
            local t = {}
            table.insert(t, os2.time({year = 2026, month = 1, day = 2, hour = 3}))
            return {status = "Healthy", message = os.date("!%Y-%m-%d", t[1])}"#,
        )
        .unwrap();
        assert_eq!(r.message, "2026-01-02");
        // useOpenLibs adds string and math.
        let open = Options {
            open_libs: true,
            ..Options::default()
        };
        let r = run(
            r#"return {status = "Healthy", message = string.upper("ok") .. math.floor(1.5)}"#,
            &json!({}),
            open,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.message, "OK1");
        // gopher-lua opens coroutines with the other libraries only; LuaJIT's compiler
        // control is never there.
        assert!(check("return coroutine.create(print)").is_err());
        assert!(check("return jit.on()").is_err());
    }
}
