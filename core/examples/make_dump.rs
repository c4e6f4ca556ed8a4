//! Write a large `kubectl get -o yaml` style live dump (and the matching desired manifests) by
//! replicating the bundled example into many namespaces. Used by `scripts/bench-memory.sh`.
//!
//! Usage: cargo run --release -p argo-drift-core --example make_dump -- OUT_DIR SIZE_MB
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = Path::new(args.get(1).map(String::as_str).unwrap_or("target/dump"));
    let size_mb: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(50);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/offline");
    let live = std::fs::read_to_string(root.join("live/shop.yaml")).unwrap();
    let items_start = live.find("\nitems:\n").unwrap() + "\nitems:\n".len();
    let items_end = live.find("\nkind: List\n").unwrap() + 1;
    let items = &live[items_start..items_end];
    let mut desired = String::new();
    let mut files: Vec<_> = std::fs::read_dir(root.join("desired"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        desired.push_str(&std::fs::read_to_string(f).unwrap());
        desired.push_str("\n---\n");
    }
    std::fs::create_dir_all(out).unwrap();
    let mut live_out =
        std::io::BufWriter::new(std::fs::File::create(out.join("live.yaml")).unwrap());
    let mut desired_out =
        std::io::BufWriter::new(std::fs::File::create(out.join("desired.yaml")).unwrap());
    writeln!(live_out, "apiVersion: v1\nitems:").unwrap();
    let (mut written, mut copies) = (0usize, 0usize);
    while written < size_mb * 1024 * 1024 {
        let ns = format!("shop-{copies}");
        let block = items
            .replace("namespace: shop\n", &format!("namespace: {ns}\n"))
            .replace(":shop/", &format!(":{ns}/"));
        live_out.write_all(block.as_bytes()).unwrap();
        written += block.len();
        desired_out
            .write_all(
                desired
                    .replace("namespace: shop\n", &format!("namespace: {ns}\n"))
                    .as_bytes(),
            )
            .unwrap();
        copies += 1;
    }
    writeln!(live_out, "kind: List\nmetadata:\n  resourceVersion: \"\"").unwrap();
    eprintln!(
        "wrote {} ({} MB of live objects, {copies} copies of the example app)",
        out.display(),
        written / (1024 * 1024)
    );
}
