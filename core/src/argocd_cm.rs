//! Argo CD's own settings (its `argocd-cm` ConfigMap), read with Argo CD's semantics so that what
//! a user told Argo CD once holds for argo-drift too: ignore rules, compare options, which kinds
//! Argo CD manages at all, how it tracks objects, and which Secret annotations it masks.
//! Sources followed: util/settings/settings.go (SettingsManager), util/settings/resources_filter.go
//! and filtered_resource.go, util/argo/resource_tracking.go, gitops-engine pkg/diff/diff.go.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::normalize::ignore::{argocd_cm_rules, IgnoreDifferences, IgnoreRule};
use crate::normalize::known_types::{KnownTypeField, KnownTypes};
use crate::normalize::{TrackingKeys, TrackingMethod};

/// The settings of one version of `argocd-cm`.
#[derive(Debug, Default)]
pub struct ArgoCdSettings {
    /// `resource.customizations…ignoreDifferences…` and, with `resource.compareoptions`
    /// `ignoreAggregatedRoles: true`, the rules of aggregated roles.
    pub ignore_rules: Vec<IgnoreRule>,
    /// `resource.exclusions` and `resource.inclusions`, with Argo CD's built-in exclusions.
    pub resources: ResourceFilter,
    /// `application.resourceTrackingMethod`.
    pub tracking_method: Option<TrackingMethod>,
    /// `application.instanceLabelKey`.
    pub instance_label_key: Option<String>,
    /// `installationID`: objects of another Argo CD installation are not this one's.
    pub installation_id: Option<String>,
    /// `resource.sensitive.mask.annotations`: Secret annotations whose values are masked.
    pub sensitive_annotations: Vec<String>,
    /// `knownTypeFields` of the resource customizations, with Argo CD's built-in for Rollouts.
    pub known_types: std::sync::Arc<KnownTypes>,
    /// Entries Argo CD skips with a warning (an unsupported known type), said as warnings.
    pub warnings: Vec<String>,
}

impl ArgoCdSettings {
    /// Parse `argocd-cm`'s data. A setting Argo CD could not read either is an error naming its
    /// key: `(key, message)`.
    pub fn from_data(data: &BTreeMap<String, String>) -> Result<ArgoCdSettings, (String, String)> {
        let mut ignore_rules = argocd_cm_rules(data)?;
        if compare_options(data)?.ignore_aggregated_roles {
            ignore_rules.extend(aggregated_role_rules());
        }
        let tracking_method = match data
            .get("application.resourceTrackingMethod")
            .map(|v| v.trim())
        {
            None | Some("") => None,
            Some(v) => Some(
                v.parse()
                    .map_err(|e: String| ("application.resourceTrackingMethod".to_string(), e))?,
            ),
        };
        let (known_types, warnings) = KnownTypes::from_overrides(known_type_overrides(data)?);
        let non_empty = |key: &str| {
            data.get(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Ok(ArgoCdSettings {
            ignore_rules,
            resources: ResourceFilter {
                exclusions: filtered(data, "resource.exclusions")?,
                inclusions: filtered(data, "resource.inclusions")?,
            },
            tracking_method,
            instance_label_key: non_empty("application.instanceLabelKey"),
            installation_id: non_empty("installationID"),
            // settings.go GetSensitiveAnnotations: comma separated, spaces trimmed.
            sensitive_annotations: data
                .get("resource.sensitive.mask.annotations")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|k| !k.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            known_types: std::sync::Arc::new(known_types),
            warnings,
        })
    }

    /// The tracking Argo CD uses: its settings over the policy's.
    pub fn apply_tracking(&self, keys: &mut TrackingKeys) {
        if let Some(m) = self.tracking_method {
            keys.method = m;
        }
        if let Some(l) = &self.instance_label_key {
            keys.label = l.clone();
        }
        if let Some(id) = &self.installation_id {
            keys.installation_id = id.clone();
        }
    }
}

/// Every override's `knownTypeFields`, from `resource.customizations` (YAML keyed by
/// `<group>/<kind>`) and the split keys `resource.customizations.knownTypeFields.<group>_<kind>`
/// (settings.go GetResourceOverrides, appendResourceOverridesFromSplitKeys, convertToOverrideKey;
/// a split key wins over the same override in the YAML).
fn known_type_overrides(
    data: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Vec<KnownTypeField>>, (String, String)> {
    const PREFIX: &str = "resource.customizations";
    let mut overrides = BTreeMap::new();
    if let Some(text) = data.get(PREFIX).filter(|t| !t.trim().is_empty()) {
        #[derive(Deserialize)]
        struct Override {
            #[serde(default, rename = "knownTypeFields")]
            known_type_fields: Option<Vec<KnownTypeField>>,
        }
        let map: BTreeMap<String, Override> =
            serde_yaml::from_str(text).map_err(|e| (PREFIX.to_string(), e.to_string()))?;
        for (key, o) in map {
            if let Some(fields) = o.known_type_fields.filter(|f| !f.is_empty()) {
                overrides.insert(key, fields);
            }
        }
    }
    let split = format!("{PREFIX}.knownTypeFields.");
    for (key, text) in data {
        let Some(group_kind) = key.strip_prefix(&split) else {
            continue;
        };
        let override_key = match group_kind.split('_').collect::<Vec<_>>().as_slice() {
            ["all"] => "*/*".to_string(),
            [group, kind] => format!("{group}/{kind}"),
            [kind] if !kind.is_empty() => kind.to_string(),
            _ => {
                return Err((
                    key.clone(),
                    "must be resource.customizations.knownTypeFields.<group>_<kind> or .<kind>"
                        .to_string(),
                ))
            }
        };
        let fields: Vec<KnownTypeField> =
            serde_yaml::from_str(text).map_err(|e| (key.clone(), e.to_string()))?;
        overrides.insert(override_key, fields);
    }
    Ok(overrides)
}

/// `resource.compareoptions` (settings.go GetResourceCompareOptions; its defaults from
/// GetDefaultDiffOptions: ignoreAggregatedRoles false).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct CompareOptions {
    ignore_aggregated_roles: bool,
}

fn compare_options(data: &BTreeMap<String, String>) -> Result<CompareOptions, (String, String)> {
    const KEY: &str = "resource.compareoptions";
    match data.get(KEY).filter(|t| !t.trim().is_empty()) {
        None => Ok(CompareOptions::default()),
        Some(text) => serde_yaml::from_str(text).map_err(|e| (KEY.to_string(), e.to_string())),
    }
}

/// gitops-engine's normalizeRole: a Role or ClusterRole whose `aggregationRule` is an object
/// has its `rules` ignored (the aggregation controller fills them in).
fn aggregated_role_rules() -> Vec<IgnoreRule> {
    ["Role", "ClusterRole"]
        .into_iter()
        .filter_map(|kind| {
            IgnoreRule::compile(IgnoreDifferences {
                group: "rbac.authorization.k8s.io".into(),
                kind: kind.into(),
                name: String::new(),
                namespace: String::new(),
                json_pointers: Vec::new(),
                jq_path_expressions: vec![
                    r#"select(.aggregationRule | type == "object") | .rules"#.into(),
                ],
                managed_fields_managers: Vec::new(),
            })
            .ok()
        })
        .collect()
}

/// One entry of `resource.exclusions` / `resource.inclusions` (FilteredResource): globs of API
/// groups and clusters, kinds by name or `*`; an empty list matches everything.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FilteredResource {
    pub api_groups: Vec<String>,
    pub kinds: Vec<String>,
    pub clusters: Vec<String>,
}

impl FilteredResource {
    fn matches(&self, group: &str, kind: &str, cluster: &str) -> bool {
        self.match_cluster(cluster)
            && (self.api_groups.is_empty() || self.api_groups.iter().any(|g| glob(g, group)))
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k == "*" || k == kind))
    }

    fn match_cluster(&self, cluster: &str) -> bool {
        self.clusters.is_empty() || self.clusters.iter().any(|c| glob(c, cluster))
    }
}

fn filtered(
    data: &BTreeMap<String, String>,
    key: &str,
) -> Result<Vec<FilteredResource>, (String, String)> {
    match data.get(key).filter(|t| !t.trim().is_empty()) {
        None => Ok(Vec::new()),
        Some(text) => {
            let list: Vec<FilteredResource> =
                serde_yaml::from_str(text).map_err(|e| (key.to_string(), e.to_string()))?;
            for (i, r) in list.iter().enumerate() {
                for pattern in r.api_groups.iter().chain(&r.clusters) {
                    compile_glob(pattern).map_err(|e| (format!("{key}[{i}]"), e))?;
                }
            }
            Ok(list)
        }
    }
}

/// Which kinds Argo CD manages on which cluster (ResourcesFilter).
#[derive(Debug, Clone, Default)]
pub struct ResourceFilter {
    pub exclusions: Vec<FilteredResource>,
    pub inclusions: Vec<FilteredResource>,
}

impl ResourceFilter {
    /// ResourcesFilter.IsExcludedResource: excluded (the built-in exclusions, then the
    /// configured ones) wins; else included; else excluded when inclusions name this cluster.
    pub fn is_excluded(&self, group: &str, kind: &str, cluster: &str) -> bool {
        let core = [
            (&["events.k8s.io", "metrics.k8s.io"][..], &[][..]),
            (&[""][..], &["Event"][..]),
            (&["coordination.k8s.io"][..], &["Lease"][..]),
        ];
        let core_excluded = core.iter().any(|(groups, kinds)| {
            groups.contains(&group) && (kinds.is_empty() || kinds.contains(&kind))
        });
        if core_excluded
            || self
                .exclusions
                .iter()
                .any(|r| r.matches(group, kind, cluster))
        {
            return true;
        }
        if self
            .inclusions
            .iter()
            .any(|r| r.matches(group, kind, cluster))
        {
            return false;
        }
        self.inclusions.iter().any(|r| r.match_cluster(cluster))
    }
}

/// Argo CD's util/glob (gobwas/glob without separators): `*`, `?`, `[…]`, `{a,b}`.
fn compile_glob(pattern: &str) -> Result<globset::GlobMatcher, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("{pattern:?} is not a glob: {e}"))
}

fn glob(pattern: &str, text: &str) -> bool {
    compile_glob(pattern).is_ok_and(|g| g.is_match(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> ArgoCdSettings {
        let data = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ArgoCdSettings::from_data(&data).unwrap()
    }

    fn groups(groups: &[&str], kinds: &[&str], clusters: &[&str]) -> FilteredResource {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        FilteredResource {
            api_groups: v(groups),
            kinds: v(kinds),
            clusters: v(clusters),
        }
    }

    /// Argo CD's own cases: util/settings/resources_filter_test.go v3.6.2.
    #[test]
    fn argo_cds_resources_filter_tests() {
        let f = |inc: Vec<FilteredResource>, exc: Vec<FilteredResource>| ResourceFilter {
            inclusions: inc,
            exclusions: exc,
        };
        // TestIsExcludedResource
        let empty = f(vec![], vec![]);
        assert!(empty.is_excluded("events.k8s.io", "", ""));
        assert!(empty.is_excluded("metrics.k8s.io", "", ""));
        assert!(!empty.is_excluded("rubbish.io", "", ""));
        // TestResourceInclusions
        let r = f(vec![groups(&["whitelisted-resource"], &[], &[])], vec![]);
        assert!(r.is_excluded("non-whitelisted-resource", "", ""));
        assert!(!r.is_excluded("whitelisted-resource", "", ""));
        // TestResourceInclusionsExclusionNonMutex
        let r = f(
            vec![groups(&["whitelisted-resource"], &[], &[])],
            vec![groups(
                &["whitelisted-resource"],
                &["blacklisted-kind"],
                &[],
            )],
        );
        assert!(r.is_excluded("whitelisted-resource", "blacklisted-kind", ""));
        assert!(!r.is_excluded("whitelisted-resource", "", ""));
        assert!(!r.is_excluded("whitelisted-resource", "non-blacklisted-kind", ""));
        let r = f(
            vec![groups(
                &["whitelisted-resource"],
                &["whitelisted-kind"],
                &[],
            )],
            vec![groups(&["whitelisted-resource"], &[], &[])],
        );
        assert!(r.is_excluded("whitelisted-resource", "whitelisted-kind", ""));
        assert!(r.is_excluded("whitelisted-resource", "", ""));
        assert!(r.is_excluded("whitelisted-resource", "non-whitelisted-kind", ""));
        let r = f(
            vec![groups(&["foo-bar"], &["whitelisted-kind"], &[])],
            vec![groups(&["whitelisted-resource"], &[], &[])],
        );
        assert!(r.is_excluded("not-whitelisted-resource", "whitelisted-kind", ""));
        assert!(r.is_excluded("not-whitelisted-resource", "", ""));
        // TestResourceInclusionsExclusionMultiCluster
        let r = f(
            vec![groups(&["whitelisted-resource"], &[], &["cluster-one"])],
            vec![groups(&["whitelisted-resource"], &[], &["cluster-two"])],
        );
        assert!(!r.is_excluded("whitelisted-resource", "", "cluster-one"));
        assert!(r.is_excluded("whitelisted-resource", "", "cluster-two"));
        assert!(!r.is_excluded("whitelisted-resource", "", "cluster-three"));
    }

    /// The same semantics from argocd-cm's YAML, with globs.
    #[test]
    fn exclusions_and_inclusions_from_argocd_cm() {
        let none = settings(&[]);
        assert!(!none
            .resources
            .is_excluded("apps", "Deployment", "https://a"));
        // The built-in exclusions hold with no settings at all.
        assert!(none
            .resources
            .is_excluded("events.k8s.io", "Event", "https://a"));
        assert!(none.resources.is_excluded("", "Event", "https://a"));
        assert!(none
            .resources
            .is_excluded("coordination.k8s.io", "Lease", "https://a"));
        assert!(!none.resources.is_excluded("", "ConfigMap", "https://a"));

        let s = settings(&[(
            "resource.exclusions",
            "- apiGroups: ['*.example.com']\n  kinds: ['*']\n- apiGroups: ['']\n  kinds: [LimitRange]\n  clusters: ['https://prod-*']\n",
        )]);
        assert!(s
            .resources
            .is_excluded("foo.example.com", "Widget", "https://a"));
        assert!(!s
            .resources
            .is_excluded("example.com", "Widget", "https://a"));
        assert!(s.resources.is_excluded("", "LimitRange", "https://prod-eu"));
        assert!(!s.resources.is_excluded("", "LimitRange", "https://staging"));

        let s = settings(&[(
            "resource.inclusions",
            "- apiGroups: ['apps']\n  kinds: [Deployment]\n  clusters: ['https://only']\n",
        )]);
        assert!(!s
            .resources
            .is_excluded("apps", "Deployment", "https://only"));
        // Inclusions name this cluster: anything else is not allowed there…
        assert!(s.resources.is_excluded("", "ConfigMap", "https://only"));
        // …and everything is on a cluster they do not name.
        assert!(!s.resources.is_excluded("", "ConfigMap", "https://other"));

        let both = settings(&[
            ("resource.inclusions", "- apiGroups: ['*']\n"),
            ("resource.exclusions", "- kinds: [Secret]\n"),
        ]);
        assert!(both.resources.is_excluded("", "Secret", "https://a"));
        assert!(!both.resources.is_excluded("", "ConfigMap", "https://a"));
    }

    #[test]
    fn tracking_installation_and_masks_are_read() {
        let s = settings(&[
            ("application.resourceTrackingMethod", "annotation+label"),
            (
                "application.instanceLabelKey",
                "argocd.argoproj.io/instance",
            ),
            ("installationID", "prod-argocd"),
            (
                "resource.sensitive.mask.annotations",
                "openshift.io/token-secret.value, x",
            ),
        ]);
        let mut keys = TrackingKeys::default();
        s.apply_tracking(&mut keys);
        assert_eq!(keys.method, TrackingMethod::AnnotationAndLabel);
        assert_eq!(keys.label, "argocd.argoproj.io/instance");
        assert_eq!(keys.installation_id, "prod-argocd");
        assert_eq!(
            s.sensitive_annotations,
            vec!["openshift.io/token-secret.value".to_string(), "x".into()]
        );
    }

    #[test]
    fn unreadable_settings_name_their_key() {
        let data: BTreeMap<String, String> = [(
            "resource.exclusions".to_string(),
            "- apiGroups: ['[']".to_string(),
        )]
        .into();
        let (key, _) = ArgoCdSettings::from_data(&data).unwrap_err();
        assert_eq!(key, "resource.exclusions[0]");
        let data: BTreeMap<String, String> = [(
            "resource.compareoptions".to_string(),
            "ignoreAggregatedRoles: [".to_string(),
        )]
        .into();
        let (key, _) = ArgoCdSettings::from_data(&data).unwrap_err();
        assert_eq!(key, "resource.compareoptions");
    }

    #[test]
    fn aggregated_roles_rules_are_ignored_only_when_asked() {
        let key = crate::manifest::ResourceKey {
            group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            namespace: String::new(),
            name: "view".into(),
        };
        let aggregated = serde_json::json!({
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
        });
        let s = settings(&[("resource.compareoptions", "ignoreAggregatedRoles: true\n")]);
        let mut desired = aggregated.clone();
        desired["rules"] = serde_json::json!([]);
        let mut live = aggregated.clone();
        for rule in s.ignore_rules.iter().filter(|r| r.applies_to(&key)) {
            rule.apply(&mut desired, &mut live, None);
        }
        assert_eq!(desired.get("rules"), live.get("rules"), "{desired} {live}");
        // A plain role keeps its rules compared.
        let mut plain = serde_json::json!({"rules": [1]});
        let mut plain_live = serde_json::json!({"rules": [2]});
        for rule in s.ignore_rules.iter().filter(|r| r.applies_to(&key)) {
            rule.apply(&mut plain, &mut plain_live, None);
        }
        assert_ne!(plain, plain_live);
        assert!(settings(&[]).ignore_rules.is_empty());
    }

    fn prepared(annotations: serde_json::Value, keys: &TrackingKeys) -> crate::normalize::Prepared {
        let object = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "web", "namespace": "shop", "annotations": annotations}
        });
        crate::normalize::prepare_live(object, keys)
    }

    /// util/argo/resource_tracking.go getAppInstanceValue: with an installationID, an object
    /// of another installation (or of none) is not tracked by this one.
    #[test]
    fn another_installations_objects_are_not_tracked() {
        let s = settings(&[("installationID", "prod")]);
        let mut keys = TrackingKeys::default();
        s.apply_tracking(&mut keys);
        let id = "web:/ConfigMap:shop/web";
        let ours = prepared(
            serde_json::json!({"argocd.argoproj.io/tracking-id": id, "argocd.argoproj.io/installation-id": "prod"}),
            &keys,
        );
        assert_eq!(ours.tracking.app(&ours.key), Some("web"));
        // Argo CD writes the installation annotation itself: never a difference.
        assert!(ours.object["metadata"]["annotations"]
            .get(crate::normalize::INSTALLATION_ID)
            .is_none());
        let theirs = prepared(
            serde_json::json!({"argocd.argoproj.io/tracking-id": id, "argocd.argoproj.io/installation-id": "staging"}),
            &keys,
        );
        assert_eq!(theirs.tracking.app(&theirs.key), None);
        let unmarked = prepared(
            serde_json::json!({"argocd.argoproj.io/tracking-id": id}),
            &keys,
        );
        assert_eq!(unmarked.tracking.app(&unmarked.key), None);
        // Without an installationID, any installation's mark counts.
        let any = prepared(
            serde_json::json!({"argocd.argoproj.io/tracking-id": id, "argocd.argoproj.io/installation-id": "staging"}),
            &TrackingKeys::default(),
        );
        assert_eq!(any.tracking.app(&any.key), Some("web"));
    }

    /// Argo CD's HideSecretData masks the listed annotations of Secrets; a changed value still
    /// shows as a changed mask.
    #[test]
    fn sensitive_secret_annotations_are_masked() {
        let s = settings(&[("resource.sensitive.mask.annotations", "vault.example/token")]);
        let mut r = crate::redact::Redactor::with_sensitive_annotations(std::sync::Arc::new(
            s.sensitive_annotations.clone(),
        ));
        let secret = |token: &str| serde_json::json!({"metadata": {"annotations": {"vault.example/token": token, "team": "shop"}}, "data": {}});
        let (mut a, mut b, mut c) = (secret("s3cr3t"), secret("s3cr3t"), secret("other"));
        r.redact_secret(&mut a);
        r.redact_secret(&mut b);
        r.redact_secret(&mut c);
        let token =
            |v: &serde_json::Value| v["metadata"]["annotations"]["vault.example/token"].clone();
        assert!(!a.to_string().contains("s3cr3t"), "{a}");
        assert_eq!(token(&a), token(&b));
        assert_ne!(token(&a), token(&c));
        assert_eq!(a["metadata"]["annotations"]["team"], "shop");
    }

    #[test]
    fn known_type_fields_in_both_of_argo_cds_forms() {
        let data = BTreeMap::from([
            (
                "resource.customizations".to_string(),
                "some.io/TestCRD:\n  knownTypeFields:\n  - field: spec.ram\n    type: core/Quantity\n"
                    .to_string(),
            ),
            (
                "resource.customizations.knownTypeFields.cert-manager.io_Certificate".to_string(),
                "- field: spec.duration\n  type: meta/v1/Duration\n- field: spec.x\n  type: apps/v1/Nope\n"
                    .to_string(),
            ),
        ]);
        let s = ArgoCdSettings::from_data(&data).unwrap();
        assert!(s.known_types.applies_to("some.io", "TestCRD"));
        assert!(s.known_types.applies_to("cert-manager.io", "Certificate"));
        assert!(s.known_types.applies_to("argoproj.io", "Rollout"));
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        let bad = BTreeMap::from([(
            "resource.customizations.knownTypeFields.a_b_c".to_string(),
            "[]".to_string(),
        )]);
        let (key, _) = ArgoCdSettings::from_data(&bad).unwrap_err();
        assert_eq!(key, "resource.customizations.knownTypeFields.a_b_c");
        let bad = BTreeMap::from([(
            "resource.customizations.knownTypeFields.apps_Foo".to_string(),
            "field: [".to_string(),
        )]);
        assert!(ArgoCdSettings::from_data(&bad).is_err());
    }
}
