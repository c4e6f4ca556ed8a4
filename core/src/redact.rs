//! Secret masking: every Secret value is replaced by a mask before it is compared, so no report,
//! patch or text diff can carry it. Masks are equal exactly when the values are equal, so a rotated
//! key still shows as a change, and they carry nothing of the value (no hash to brute-force).

use std::collections::HashMap;

use base64::Engine as _;
use serde_json::Value;

/// Hands out masks for one run; the same value always gets the same mask within it.
#[derive(Debug, Default)]
pub struct Redactor {
    masks: HashMap<(bool, Vec<u8>), usize>,
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
        let next = self.masks.len() + 1;
        let n = *self.masks.entry((decoded, bytes)).or_insert(next);
        format!("<redacted #{n}>")
    }

    /// Mask one `data` value. It is compared by its decoded bytes, so the same secret encoded
    /// with or without line breaks is the same secret.
    pub fn mask_base64(&mut self, value: &str) -> String {
        let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        match base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) {
            Ok(bytes) => self.mask_for(true, bytes),
            Err(_) => self.mask_for(false, value.as_bytes().to_vec()),
        }
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
                    (Value::String(s), false) => self.mask_for(true, s.as_bytes().to_vec()),
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
}
