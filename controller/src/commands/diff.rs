//! `argo-drift diff`: offline comparison of desired manifests with live objects.

use std::process::ExitCode;

use argo_drift_core::manifest::{index_by_key, Scopes};
use argo_drift_core::{analyse, AnalyseOptions};

use crate::cli::{DiffArgs, GlobalArgs};
use crate::output;
use crate::sources;

pub fn run(args: &DiffArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let policy = super::load_policy(&args.policy)?;
    let mut stdin_taken = false;
    let mut desired = sources::load(&args.desired, "desired", &policy.tracking, &mut stdin_taken)?;
    let mut live = sources::load(&args.live, "live", &policy.tracking, &mut stdin_taken)?;
    // CRDs in either set tell the scope of their kinds; both sides then resolve namespaces by
    // the same rule so that their keys agree.
    let mut scopes = Scopes::default();
    for p in desired.iter().chain(live.iter()) {
        scopes.learn_crd(&p.key, &p.object);
    }
    for p in desired.iter_mut().chain(live.iter_mut()) {
        p.resolve_namespace(&args.namespace, &scopes);
    }
    tracing::info!(desired = desired.len(), live = live.len(), "comparing");
    let desired = index_by_key(desired)?;
    let live = index_by_key(live)?;
    let options = AnalyseOptions {
        app: args.app.clone(),
        without_patches: false,
    };
    let report = analyse(&desired, &live, &policy, &options);
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
