//! The tiered ApplicationSets of applicationsets/ as the real applicationset-controller renders
//! them (`scripts/testenv.sh argocd`): the cluster generator over Argo CD's cluster Secrets,
//! the Git generator over a local repository holding examples/tiers/, and the Applications
//! with the names, labels, annotations and sync policies applicationsets/README.md documents.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{json, Value};
use support::*;

fn project(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Copy the project's directory `from` into the repository at `to`.
fn copy_tree(from: &Path, repo: &GitRepo, to: &str) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if path.is_dir() {
            copy_tree(&path, repo, &format!("{to}/{name}"));
        } else {
            repo.write(
                &format!("{to}/{name}"),
                &std::fs::read_to_string(&path).unwrap(),
            );
        }
    }
}

/// Everything this test creates carries this label, with the run's id as value.
const RUN_LABEL: &str = "argo-drift.io/test-run";

/// A cluster Secret as `argocd cluster add` writes it.
fn cluster(name: &str, server: &str, labels: Value, run: &str) -> Value {
    let mut labels = labels;
    labels["argocd.argoproj.io/secret-type"] = json!("cluster");
    labels[RUN_LABEL] = json!(run);
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("cluster-{}", name.to_lowercase().replace('_', "-")), "labels": labels},
        "type": "Opaque",
        "stringData": {"name": name, "server": server,
            "config": "{\"tlsClientConfig\":{\"insecure\":true}}"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_applicationset_controller_renders_one_app_per_cluster_tier_and_directory() {
    let real = real_argocd();
    let client = client().await;
    let run = format!("{:x}", rand_u32() & 0xffffff);
    // What an earlier run that failed left behind.
    clean_up(
        &client,
        &real.namespace,
        &format!("{RUN_LABEL},{RUN_LABEL}!={run}"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(&dir.path().join("repo"));
    copy_tree(&project("examples/tiers"), &repo, "examples/tiers");
    repo.commit("tiers");

    // Two clusters, one of them named as people do (normalize makes it a DNS name), and a third
    // that opts out of the tiers.
    let east = format!("east-{run}");
    let west = format!("West_{run}");
    let clusters = [
        cluster(
            &east,
            &format!("https://east-{run}.example.com"),
            json!({}),
            &run,
        ),
        cluster(
            &west,
            &format!("https://west-{run}.example.com"),
            json!({}),
            &run,
        ),
        cluster(
            &format!("off-{run}"),
            &format!("https://off-{run}.example.com"),
            json!({"argo-drift.io/tiers": "off"}),
            &run,
        ),
    ];
    for c in &clusters {
        apply(&client, &real.namespace, c.clone(), "argo-drift-tests").await;
    }
    let mut sets = Vec::new();
    for tier in ["low", "medium", "high"] {
        let text = std::fs::read_to_string(project(&format!("applicationsets/tier-{tier}.yaml")))
            .unwrap()
            .replace("https://github.com/argo-drift/argo-drift.git", &repo.url());
        let mut set: Value = serde_yaml::from_str(&text).unwrap();
        let name = format!("{}-{run}", set["metadata"]["name"].as_str().unwrap());
        set["metadata"]["name"] = json!(name);
        set["metadata"]["namespace"] = json!(real.namespace);
        set["metadata"]["labels"] = json!({RUN_LABEL: run});
        set["spec"]["template"]["metadata"]["labels"][RUN_LABEL] = json!(run);
        // The test installation is shared: this run's sets see only this run's clusters (the
        // shipped selector stays as it is, this one is added to it).
        let clusters = &mut set["spec"]["generators"][0]["matrix"]["generators"][0]["clusters"];
        clusters["selector"]["matchLabels"] = json!({RUN_LABEL: run});
        apply(&client, &real.namespace, set, "argo-drift-tests").await;
        sets.push((tier, name));
    }

    let apps_api = dynamic(
        &client,
        &real.namespace,
        "argoproj.io/v1alpha1",
        "Application",
    )
    .await;
    let expected = [
        ("low", "docs-site"),
        ("medium", "checkout"),
        ("high", "payments"),
    ];
    let mut names: Vec<String> = Vec::new();
    for cluster in [east.clone(), format!("west-{run}")] {
        for (tier, directory) in expected {
            names.push(format!("{cluster}-{tier}-{directory}"));
        }
    }
    let generated: BTreeMap<String, Value> = wait_for(
        "the generated Applications",
        Duration::from_secs(90),
        || async {
            let list = apps_api.list(&ListParams::default()).await.unwrap();
            let ours: BTreeMap<String, Value> = list
                .items
                .into_iter()
                .map(|a| serde_json::to_value(a).unwrap())
                .filter(|a| {
                    a["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|o| {
                            o.iter()
                                .any(|r| sets.iter().any(|(_, s)| r["name"] == s.as_str()))
                        })
                })
                .map(|a| (a["metadata"]["name"].as_str().unwrap().to_string(), a))
                .collect();
            (ours.len() >= names.len()).then_some(ours)
        },
    )
    .await;
    let mut want = names.clone();
    want.sort();
    let got: Vec<&String> = generated.keys().filter(|n| n.contains(&run)).collect();
    assert_eq!(
        got,
        want.iter().collect::<Vec<_>>(),
        "no app for the opted-out cluster"
    );

    for (name, app) in &generated {
        let Some((tier, directory)) = expected
            .iter()
            .find(|(t, d)| name.ends_with(&format!("-{t}-{d}")))
        else {
            continue;
        };
        let labels = &app["metadata"]["labels"];
        assert_eq!(labels["argo-drift.io/enabled"], "true", "{name}");
        assert_eq!(labels["argo-drift.io/tier"], *tier, "{name}");
        let spec = &app["spec"];
        assert_eq!(spec["source"]["repoURL"], repo.url());
        assert_eq!(
            spec["source"]["path"],
            format!("examples/tiers/{tier}/{directory}")
        );
        assert_eq!(spec["destination"]["namespace"], *directory);
        let server = spec["destination"]["server"].as_str().unwrap();
        assert!(
            server == format!("https://east-{run}.example.com")
                || server == format!("https://west-{run}.example.com"),
            "{name}: {server}"
        );
        assert_eq!(
            spec["syncPolicy"]["syncOptions"],
            json!(["CreateNamespace=true"])
        );
        let annotations = &app["metadata"]["annotations"];
        match *tier {
            "low" => {
                assert_eq!(
                    spec["syncPolicy"]["automated"],
                    json!({"selfHeal": true, "prune": false}),
                    "{name}"
                );
                assert!(labels.get("argo-drift.io/mode").is_none(), "{name}");
            }
            "medium" => {
                assert!(spec["syncPolicy"].get("automated").is_none(), "{name}");
                assert_eq!(labels["argo-drift.io/mode"], "enforce");
                assert_eq!(annotations["argo-drift.io/gate"], "high");
            }
            _ => {
                assert!(spec["syncPolicy"].get("automated").is_none(), "{name}");
                assert_eq!(labels["argo-drift.io/mode"], "enforce");
                assert_eq!(annotations["argo-drift.io/gate"], "medium");
                assert_eq!(annotations["argo-drift.io/degrade-at"], "medium");
            }
        }
    }
    // The controller says it is up to date.
    let sets_api = dynamic(
        &client,
        &real.namespace,
        "argoproj.io/v1alpha1",
        "ApplicationSet",
    )
    .await;
    for (tier, name) in &sets {
        wait_for(
            &format!("{tier}: ResourcesUpToDate"),
            Duration::from_secs(30),
            || async {
                let set = serde_json::to_value(sets_api.get(name).await.unwrap()).unwrap();
                set["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "ResourcesUpToDate" && c["status"] == "True")
                    .then_some(())
            },
        )
        .await;
    }
    clean_up(&client, &real.namespace, &format!("{RUN_LABEL}={run}")).await;
}

/// Delete the sets, their apps and the cluster Secrets that `selector` picks. The generated
/// apps carry Argo CD's resources finalizer, which would wait forever for clusters that do not
/// exist: it goes first.
async fn clean_up(client: &kube::Client, namespace: &str, selector: &str) {
    let params = ListParams::default().labels(selector);
    let sets = dynamic(client, namespace, "argoproj.io/v1alpha1", "ApplicationSet").await;
    let _ = sets
        .delete_collection(&DeleteParams::default(), &params)
        .await;
    let apps = dynamic(client, namespace, "argoproj.io/v1alpha1", "Application").await;
    for app in apps.list(&params).await.unwrap().items {
        let name = app.metadata.name.unwrap();
        merge(
            &apps,
            &name,
            "argo-drift-tests",
            json!({"metadata": {"finalizers": null}}),
        )
        .await;
        let _ = apps.delete(&name, &DeleteParams::default()).await;
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let _ = secrets
        .delete_collection(&DeleteParams::default(), &params)
        .await;
}
