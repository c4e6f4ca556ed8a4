//! The JSON Schemas in config/ are generated from the config structs; editors use them through
//! the `yaml-language-server` line at the top of each YAML file.
#![allow(clippy::unwrap_used)]

/// Each committed schema must match its structs; `ARGO_DRIFT_UPDATE_SCHEMAS=1 cargo test`
/// rewrites them.
#[test]
fn the_committed_json_schemas_are_up_to_date() {
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    for (file, schema) in [
        ("policy.schema.json", argo_drift_core::config::schema()),
        (
            "notifications.schema.json",
            argo_drift_notify::config::schema(),
        ),
    ] {
        let path = config.join(file);
        let generated = format!("{}\n", serde_json::to_string_pretty(&schema).unwrap());
        if std::env::var_os("ARGO_DRIFT_UPDATE_SCHEMAS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is out of date: run ARGO_DRIFT_UPDATE_SCHEMAS=1 cargo test",
            path.display()
        );
    }
}
