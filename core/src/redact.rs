//! Secret masking: every Secret value is replaced by a mask before it is compared, so no report,
//! patch or text diff can carry it. Masks are equal exactly when the values are equal, so a rotated
//! key still shows as a change, and they carry nothing of the value (no hash to brute-force).

use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::OnceLock;

use base64::Engine as _;
use serde_json::Value;

/// How a live Secret value is kept in the controller's cache: `argo-drift-digest:` and a keyed
/// 128-bit digest of its bytes, never the value. (Base64 has no `:`, so no real `data` value
/// looks like one.) The keys are random per process: the digest compares values within the
/// process and says nothing outside it.
pub const DIGEST_PREFIX: &str = "argo-drift-digest:";

/// Two SipHash keys drawn from the OS at first use.
fn digest_keys() -> &'static (
    std::collections::hash_map::RandomState,
    std::collections::hash_map::RandomState,
) {
    static KEYS: OnceLock<(
        std::collections::hash_map::RandomState,
        std::collections::hash_map::RandomState,
    )> = OnceLock::new();
    KEYS.get_or_init(|| (Default::default(), Default::default()))
}

/// The keyed digest of a value's bytes (`decoded`: the bytes a base64 `data` value decodes to,
/// or a `stringData` value; else the text of something that did not decode).
fn digest(decoded: bool, bytes: &[u8]) -> u128 {
    let (a, b) = digest_keys();
    let half = |state: &std::collections::hash_map::RandomState| {
        let mut h = state.build_hasher();
        h.write_u8(u8::from(decoded));
        h.write(bytes);
        h.finish()
    };
    (u128::from(half(a)) << 64) | u128::from(half(b))
}

fn base64_digest(value: &str) -> u128 {
    if let Some(hex) = value.strip_prefix(DIGEST_PREFIX) {
        if let Ok(d) = u128::from_str_radix(hex, 16) {
            return d;
        }
    }
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    match base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) {
        Ok(bytes) => digest(true, &bytes),
        Err(_) => digest(false, value.as_bytes()),
    }
}

/// Replace the values of a Secret's `data` (base64) and `stringData` by their digests, as
/// the live cache keeps them: a [`Redactor`] gives a digest the mask it gives the value.
pub fn digest_secret_values(secret: &mut Value) {
    for (field, base64) in [("data", true), ("stringData", false)] {
        let Some(Value::Object(data)) = secret.get_mut(field) else {
            continue;
        };
        for v in data.values_mut() {
            let d = match (&*v, base64) {
                (Value::String(s), true) => base64_digest(s),
                (Value::String(s), false) => digest(true, s.as_bytes()),
                (other, _) => digest(false, other.to_string().as_bytes()),
            };
            *v = Value::String(format!("{DIGEST_PREFIX}{d:032x}"));
        }
    }
}

/// A Secret's `kubectl.kubernetes.io/last-applied-configuration` with its values digested
/// (kubectl keeps the whole Secret there, values included); `None` if it is not JSON.
pub fn digest_last_applied(text: &str) -> Option<String> {
    let mut applied: Value = serde_json::from_str(text).ok()?;
    digest_secret_values(&mut applied);
    Some(applied.to_string())
}

/// Hands out masks for one run; the same value always gets the same mask within it.
#[derive(Debug, Default)]
pub struct Redactor {
    /// By the value's digest: a value and its digest (from the live cache) get one mask.
    masks: HashMap<u128, usize>,
    /// Secret annotations whose values are masked too (argocd-cm
    /// `resource.sensitive.mask.annotations`).
    sensitive_annotations: std::sync::Arc<Vec<String>>,
}

impl Redactor {
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Also mask these annotations of Secrets, as Argo CD's diff does (HideSecretData).
    pub fn with_sensitive_annotations(keys: std::sync::Arc<Vec<String>>) -> Redactor {
        Redactor {
            masks: HashMap::new(),
            sensitive_annotations: keys,
        }
    }

    fn mask_for(&mut self, decoded: bool, bytes: Vec<u8>) -> String {
        self.mask_digest(digest(decoded, &bytes))
    }

    fn mask_digest(&mut self, digest: u128) -> String {
        let next = self.masks.len() + 1;
        let n = *self.masks.entry(digest).or_insert(next);
        format!("<redacted #{n}>")
    }

    /// Mask one `data` value (or its digest, see [`DIGEST_PREFIX`]). It is compared by its
    /// decoded bytes, so the same secret encoded with or without line breaks is the same secret.
    pub fn mask_base64(&mut self, value: &str) -> String {
        self.mask_digest(base64_digest(value))
    }

    /// Replace every value of a Secret's `data` (and `stringData`, should one remain), and of its
    /// sensitive annotations, by its mask.
    pub fn redact_secret(&mut self, secret: &mut Value) {
        let keys = self.sensitive_annotations.clone();
        if let Some(Value::Object(annotations)) = secret.pointer_mut("/metadata/annotations") {
            for key in keys.iter() {
                if let Some(v) = annotations.get_mut(key) {
                    let masked = self.mask_for(false, v.to_string().into_bytes());
                    *v = Value::String(masked);
                }
            }
        }
        for (field, base64) in [("data", true), ("stringData", false)] {
            let Some(Value::Object(data)) = secret.get_mut(field) else {
                continue;
            };
            // Sorted, so that mask numbers do not depend on the order keys were written in.
            let mut keys: Vec<String> = data.keys().cloned().collect();
            keys.sort();
            for key in keys {
                let Some(v) = data.get_mut(&key) else {
                    continue;
                };
                let masked = match (&*v, base64) {
                    (Value::String(s), true) => self.mask_base64(s),
                    (Value::String(s), false) => match s.strip_prefix(DIGEST_PREFIX) {
                        Some(_) => self.mask_base64(s),
                        None => self.mask_for(true, s.as_bytes().to_vec()),
                    },
                    (other, _) => self.mask_for(false, other.to_string().into_bytes()),
                };
                *v = Value::String(masked);
            }
        }
    }
}

/// Whether an object is a core Secret, whose values must be masked.
pub fn is_secret(group: &str, kind: &str) -> bool {
    group.is_empty() && kind == "Secret"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_are_equal_exactly_when_values_are() {
        let mut r = Redactor::new();
        let mut a = json!({"data": {"user": "YWRtaW4=", "pass": "czNjcjN0", "same": "YWRtaW4="}});
        r.redact_secret(&mut a);
        assert_eq!(a["data"]["user"], a["data"]["same"]);
        assert_ne!(a["data"]["user"], a["data"]["pass"]);
        let text = a.to_string();
        assert!(!text.contains("YWRtaW4") && !text.contains("admin") && !text.contains("czNjcjN0"));
        // A rotated value gets a new mask; the old value keeps its mask.
        let mut b = json!({"data": {"pass": "bmV3", "old": "czNjcjN0"}});
        r.redact_secret(&mut b);
        assert_ne!(b["data"]["pass"], a["data"]["pass"]);
        assert_eq!(b["data"]["old"], a["data"]["pass"]);
        // Line-wrapped base64 is the same secret.
        assert_eq!(
            r.mask_base64("YWRt\naW4="),
            a["data"]["user"].as_str().unwrap()
        );
    }

    #[test]
    fn a_digested_value_gets_the_mask_of_the_value_and_keeps_nothing_of_it() {
        let mut live = json!({"data": {"user": "YWRtaW4=", "pass": "bmV3"},
                              "stringData": {"token": "xyz"}});
        digest_secret_values(&mut live);
        let text = live.to_string();
        // Values with letters past `f`: a digest is hex, and a hex value such as `abc` turned
        // up in one digest in about fifty (the digest keys are drawn for each process).
        assert!(
            !text.contains("YWRtaW4") && !text.contains("bmV3") && !text.contains("xyz"),
            "{text}"
        );
        assert!(live["data"]["user"]
            .as_str()
            .unwrap()
            .starts_with(DIGEST_PREFIX));
        let mut r = Redactor::new();
        let mut git =
            json!({"data": {"user": "YWRtaW4="}, "stringData": {"pass": "new", "token": "xyz"}});
        r.redact_secret(&mut git);
        r.redact_secret(&mut live);
        assert_eq!(live["data"]["user"], git["data"]["user"]);
        // `stringData` in Git is compared by its bytes, as the base64 of the live `data` is.
        assert_eq!(live["data"]["pass"], git["stringData"]["pass"]);
        assert_eq!(live["stringData"]["token"], git["stringData"]["token"]);
        assert_ne!(live["data"]["user"], live["data"]["pass"]);
        // kubectl's copy of the Secret in its annotation is digested too.
        let applied =
            digest_last_applied(r#"{"kind":"Secret","data":{"user":"YWRtaW4="}}"#).unwrap();
        assert!(!applied.contains("YWRtaW4"), "{applied}");
        assert!(applied.contains(DIGEST_PREFIX));
    }
}
