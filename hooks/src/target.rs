//! Which Application a hook runs for: `--app`/`APP_NAME`, else this Pod's owning Job and its
//! Argo CD tracking mark (plain-YAML apps get no `ARGOCD_APP_NAME` from Argo CD).

use anyhow::bail;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::DynamicObject;
use kube::{Api, Client};

use argo_drift_desired::argocd::ArgoCd;

use crate::Common;

pub const TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// The Application, and how it was found (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub namespace: String,
    pub found_by: String,
}

impl Target {
    /// The Application as Argo CD's tracking marks name it: bare in Argo CD's namespace,
    /// `namespace_name` elsewhere; records are named after it, so that two apps of one name in
    /// two namespaces keep two trails.
    pub fn tracking_name(&self, argocd_namespace: &str) -> String {
        if self.namespace == argocd_namespace {
            self.name.clone()
        } else {
            format!("{}_{}", self.namespace, self.name)
        }
    }
}

/// `name`, `namespace/name`, or Argo CD's tracking form `namespace_name` (apps outside Argo
/// CD's namespace; a namespace cannot contain `_`, so the first one splits).
pub fn parse_app(text: &str, default_namespace: &str) -> Target {
    let (namespace, name) =
        argo_drift_cluster::application::parse_app_name(text, default_namespace);
    Target {
        name,
        namespace,
        found_by: String::new(),
    }
}

/// The app part of a tracking id `<app>:<group>/<Kind>:<namespace>/<name>`.
pub fn app_of_tracking_id(id: &str) -> Option<&str> {
    id.split_once(':')
        .map(|(app, _)| app)
        .filter(|a| !a.is_empty())
}

pub async fn find(client: &Client, common: &Common) -> anyhow::Result<Target> {
    if let Some(app) = common.app.as_deref().filter(|a| !a.is_empty()) {
        let mut t = parse_app(app, &common.app_namespace);
        t.found_by = "--app/APP_NAME".into();
        return Ok(t);
    }
    let (Some(pod), Some(namespace)) = (&common.pod_name, &common.pod_namespace) else {
        bail!("cannot tell which Application this hook is for: no --app/APP_NAME, and POD_NAME/POD_NAMESPACE (downward API) are not set to find it from this Pod's Job");
    };
    let pod_obj = Api::<Pod>::namespaced(client.clone(), namespace)
        .get(pod)
        .await
        .map_err(argo_drift_cluster::error::Error::kube(format!(
            "no --app/APP_NAME; reading this Pod {namespace}/{pod} to find its Job"
        )))?;
    let job = pod_obj
        .metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .find(|o| o.kind == "Job")
        .map(|o| o.name);
    let Some(job) = job else {
        bail!("no --app/APP_NAME, and Pod {namespace}/{pod} has no owning Job (is it run as an Argo CD hook?)");
    };
    let job_obj = Api::<Job>::namespaced(client.clone(), namespace)
        .get(&job)
        .await
        .map_err(argo_drift_cluster::error::Error::kube(format!(
            "reading Job {namespace}/{job}, the owner of Pod {pod}"
        )))?;
    let annotation = job_obj
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TRACKING_ANNOTATION))
        .and_then(|id| app_of_tracking_id(id))
        .map(str::to_string);
    let label = job_obj
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(INSTANCE_LABEL))
        .cloned();
    let (app, how) = match (annotation, label) {
        (Some(a), _) => (a, format!("Job {namespace}/{job} annotation {TRACKING_ANNOTATION}")),
        (None, Some(l)) => (l, format!("Job {namespace}/{job} label {INSTANCE_LABEL}")),
        (None, None) => bail!(
            "no --app/APP_NAME, and Job {namespace}/{job} (owner of Pod {pod}) has neither the annotation {TRACKING_ANNOTATION} nor the label {INSTANCE_LABEL}"
        ),
    };
    let mut t = parse_app(&app, &common.app_namespace);
    t.found_by = how;
    Ok(t)
}

/// The Application object: through Argo CD's API when one is configured (it answers wherever
/// the hook runs, also on a destination cluster that does not hold the Application), else
/// through Kubernetes (the hook runs on Argo CD's own cluster). Should Argo CD's API fail, the
/// Kubernetes read is tried before giving up, and an error names both.
pub async fn load(
    client: &Client,
    argocd: Option<&ArgoCd>,
    target: &Target,
) -> anyhow::Result<DynamicObject> {
    let what = format!(
        "Application {}/{} (found by {})",
        target.namespace, target.name, target.found_by
    );
    let through_argocd = match argocd {
        None => None,
        Some(argocd) => match argocd.application(&target.name, &target.namespace).await {
            Ok(value) => match serde_json::from_value::<DynamicObject>(value) {
                Ok(object) => return Ok(object),
                Err(e) => Some(format!("Argo CD's API answered with no Application: {e}")),
            },
            Err(e) => Some(e.to_string()),
        },
    };
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &target.namespace,
        &argo_drift_cluster::application::api_resource(),
    );
    match api.get(&target.name).await {
        Ok(object) => {
            if let Some(e) = through_argocd {
                tracing::warn!(error = %e, "{what}: read through Kubernetes, Argo CD's API failed");
            }
            Ok(object)
        }
        Err(e) => {
            let kube = argo_drift_cluster::error::Error::kube(format!("reading {what}"))(e);
            match through_argocd {
                Some(first) => bail!("{kube}; and through Argo CD's API: {first}"),
                None => Err(kube.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_in_every_form_argo_cd_writes() {
        let t = parse_app("web", "argocd");
        assert_eq!((t.namespace.as_str(), t.name.as_str()), ("argocd", "web"));
        let t = parse_app("team-a_web", "argocd");
        assert_eq!((t.namespace.as_str(), t.name.as_str()), ("team-a", "web"));
        let t = parse_app("team-a/web", "argocd");
        assert_eq!((t.namespace.as_str(), t.name.as_str()), ("team-a", "web"));
        assert_eq!(
            app_of_tracking_id("web:batch/Job:shop/web-presync"),
            Some("web")
        );
        assert_eq!(app_of_tracking_id(":batch/Job:shop/x"), None);
    }
}
