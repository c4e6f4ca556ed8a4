//! `argo-drift diff`: offline comparison of desired manifests with live objects.
//!
//! Memory stays near the size of the input: desired objects are kept as compact JSON, and each
//! live object is compared as soon as it is parsed and then dropped.

use std::collections::HashMap;
use std::process::ExitCode;

use argo_drift_core::manifest::{Origin, ResourceKey, Scopes};
use argo_drift_core::report::Analyser;
use argo_drift_core::{AnalyseOptions, Error};
use serde_json::Value;

use crate::cli::{DiffArgs, GlobalArgs};
use crate::output;
use crate::sources;

pub fn run(args: &DiffArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let policy = super::load_policy(&args.policy)?;
    let mut stdin_taken = false;
    // CRDs tell the scope of their kinds; desired objects are compacted as they come.
    let mut scopes = Scopes::default();
    let mut desired = Vec::new();
    sources::for_each(
        &args.desired,
        "desired",
        &policy.tracking,
        &mut stdin_taken,
        &mut |mut p| {
            scopes.learn_crd(&p.key, &p.object);
            let json = serde_json::to_vec(&p.object).unwrap_or_default();
            p.object = Value::Null;
            desired.push((p, json));
            Ok(())
        },
    )?;
    let options = AnalyseOptions {
        app: args.app.clone(),
        patches: true,
        text_diffs: args.show_diff,
        ..Default::default()
    };
    let mut analyser = Analyser::new(&policy, options);
    let desired_count = desired.len();
    for (mut p, json) in desired {
        // Both sides resolve namespaces by the same rule so that their keys agree.
        p.resolve_namespace(&args.namespace, &scopes);
        analyser.add_desired_compact(p, json)?;
    }
    let mut seen: HashMap<ResourceKey, Origin> = HashMap::new();
    let live_count = sources::for_each(
        &args.live,
        "live",
        &policy.tracking,
        &mut stdin_taken,
        &mut |mut p| {
            scopes.learn_crd(&p.key, &p.object);
            p.resolve_namespace(&args.namespace, &scopes);
            check_unique(&mut seen, &p.key, &p.origin)?;
            analyser.observe_live(&p);
            Ok(())
        },
    )?;
    tracing::info!(desired = desired_count, live = live_count, "compared");
    let report = analyser.finish();
    let style = output::TextStyle {
        color: output::use_color(global.color),
        show_diff: args.show_diff,
        show_synced: args.show_synced,
    };
    output::write_report(&report, args.output, &style)?;
    Ok(if report.has_drift_at(args.fail_on) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Two documents naming the same object: silently keeping one would hide drift in the other.
fn check_unique(
    seen: &mut HashMap<ResourceKey, Origin>,
    key: &ResourceKey,
    origin: &Origin,
) -> argo_drift_core::Result<()> {
    if let Some(first) = seen.get(key) {
        return Err(Error::duplicate(key, first, origin));
    }
    seen.insert(key.clone(), origin.clone());
    Ok(())
}
