//! The built-in policy (`config/policy.yaml`) converted to JSON once, at build time, for
//! [`Policy::builtin`](src/config.rs): every `argo-drift` run that has no `--policy` reads it
//! at start, before any other work, and serde_yaml took 2.17M instructions to read its 10 KB
//! (0.4% of a diff of the 2,000-pair corpus, on one thread while the other had not started);
//! serde_json reads the same value for 0.27M (`valgrind --tool=callgrind`, `load_policy`). The
//! YAML file stays the one source: users read and copy it, and a test checks that both forms give
//! the same policy.

use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let source = Path::new(&manifest).join("../config/policy.yaml");
    println!("cargo:rerun-if-changed={}", source.display());
    let text = std::fs::read_to_string(&source)
        .unwrap_or_else(|e| panic!("reading {}: {e}", source.display()));
    let value: serde_json::Value = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", source.display()));
    let json = serde_json::to_string(&value)
        .unwrap_or_else(|e| panic!("{} has no JSON form: {e}", source.display()));
    let out = Path::new(&std::env::var("OUT_DIR").unwrap_or_default()).join("policy.json");
    std::fs::write(&out, json).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
