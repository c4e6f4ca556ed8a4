// gitops-diff: Argo CD's diff engine (gitops-engine pkg/diff, the release pinned in
// scripts/testenv.sh) over a corpus of desired/live pairs, in-process, to compare argo-drift
// with it on the same machine in the same run. Built by `scripts/testenv.sh gitops-diff`.
//
//	gitops-diff DESIRED.yaml LIVE.yaml [ROUNDS]
//	gitops-diff to-yaml IN OUT
//
// Pairs are matched by group, kind, namespace and name. Parsing is done first and not timed;
// only diff.Diff is. Prints one JSON object: pairs, rounds, seconds (of the best round),
// pairsPerSecond, and the keys Argo CD finds modified.
//
// `to-yaml` rewrites a stream of documents as `kubectl get -o yaml` prints objects: through
// sigs.k8s.io/yaml, as kubectl's YAML printer (k8s.io/cli-runtime pkg/printers/yaml.go) does,
// one document per object between `---` lines.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/diff"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

func load(path string) (map[string]*unstructured.Unstructured, []string) {
	data, err := os.ReadFile(path)
	if err != nil {
		fail(err)
	}
	out := map[string]*unstructured.Unstructured{}
	var order []string
	decoder := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		obj := map[string]any{}
		if err := decoder.Decode(&obj); err != nil {
			if err == io.EOF {
				break
			}
			fail(fmt.Errorf("%s: %w", path, err))
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		gvk := u.GroupVersionKind()
		key := fmt.Sprintf("%s/%s/%s/%s", gvk.Group, gvk.Kind, u.GetNamespace(), u.GetName())
		if _, seen := out[key]; !seen {
			order = append(order, key)
		}
		out[key] = u
	}
	return out, order
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gitops-diff:", err)
	os.Exit(2)
}

// toYAML writes the documents of in to out as kubectl prints objects.
func toYAML(in, out string) {
	data, err := os.ReadFile(in)
	if err != nil {
		fail(err)
	}
	var buf bytes.Buffer
	decoder := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for first := true; ; first = false {
		obj := map[string]any{}
		if err := decoder.Decode(&obj); err != nil {
			if err == io.EOF {
				break
			}
			fail(fmt.Errorf("%s: %w", in, err))
		}
		text, err := sigsyaml.Marshal(obj)
		if err != nil {
			fail(err)
		}
		if !first {
			buf.WriteString("---\n")
		}
		buf.Write(text)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		fail(err)
	}
}

func main() {
	if len(os.Args) == 4 && os.Args[1] == "to-yaml" {
		toYAML(os.Args[2], os.Args[3])
		return
	}
	if len(os.Args) < 3 {
		fail(fmt.Errorf("usage: gitops-diff DESIRED LIVE [ROUNDS]"))
	}
	rounds := 3
	if len(os.Args) > 3 {
		n, err := strconv.Atoi(os.Args[3])
		if err != nil {
			fail(err)
		}
		rounds = n
	}
	desired, order := load(os.Args[1])
	live, _ := load(os.Args[2])
	type pair struct {
		key          string
		config, live *unstructured.Unstructured
	}
	var pairs []pair
	for _, k := range order {
		if l, ok := live[k]; ok {
			pairs = append(pairs, pair{k, desired[k], l})
		}
	}
	ctx := context.Background()
	best := time.Duration(1<<63 - 1)
	var modified []string
	for r := 0; r < rounds; r++ {
		modified = modified[:0]
		start := time.Now()
		for _, p := range pairs {
			// diff.Diff may modify its arguments' maps: each round diffs fresh copies, made
			// outside the timed section would double memory; DeepCopy is part of Argo CD's own
			// path (it copies before normalising), so it is timed here as well.
			res, err := diff.Diff(ctx, p.config.DeepCopy(), p.live.DeepCopy())
			if err != nil {
				fail(fmt.Errorf("%s: %w", p.key, err))
			}
			if res.Modified {
				modified = append(modified, p.key)
			}
		}
		if d := time.Since(start); d < best {
			best = d
		}
	}
	out, _ := json.Marshal(map[string]any{
		"pairs":          len(pairs),
		"rounds":         rounds,
		"seconds":        best.Seconds(),
		"pairsPerSecond": float64(len(pairs)) / best.Seconds(),
		"modified":       modified,
	})
	fmt.Println(string(out))
}
