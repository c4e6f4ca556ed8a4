//! `argo-drift diff`: offline comparison of desired manifests with live objects.
//!
//! Memory stays near the size of the input: desired objects are kept packed, and each
//! live object is compared as soon as it is parsed and then dropped. The work is shared by two
//! threads: the sources are cut into pieces (a YAML section, a whole file) in order, batches of
//! pieces are parsed (and live objects compared) by whichever thread is free, and the results
//! are taken in order by this one, which records them. See [`Work`].

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Condvar, Mutex, OnceLock};

use argo_drift_core::manifest::Scopes;
use argo_drift_core::normalize::{prepare, Prepared, TrackingKeys};
use argo_drift_core::report::{Analyser, Compared, PackedSpan};
use argo_drift_core::{AnalyseOptions, Policy};
use serde_json::Value;

use crate::cli::{DiffArgs, GlobalArgs};
use crate::output;
use crate::sources::{Piece, Pieces};

pub fn run(args: &DiffArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let policy = super::load_policy(&args.policy)?;
    let stdin_uses = args
        .desired
        .iter()
        .chain(&args.live)
        .filter(|p| p.as_os_str() == "-")
        .count();
    if stdin_uses > 1 {
        anyhow::bail!("- (stdin) is given more than once; it can be read only once");
    }
    let work = Work::new(args, &policy.tracking);
    let (desired_count, live_count) = std::thread::scope(|scope| {
        let helper = std::thread::Builder::new().name("parser".into());
        let helper = helper.spawn_scoped(scope, || work.help())?;
        let compared = compare(args, &policy, &work);
        // The comparison's end (done, or an error) has stopped the helper.
        helper
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        compared
    })?;
    let report = match work.shared.into_inner() {
        Some(shared) => shared.analyser.finish(),
        // The comparison shares the analyser before it returns without an error.
        None => anyhow::bail!("the comparison ended without its analysis"),
    };
    tracing::info!(desired = desired_count, live = live_count, "compared");
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

/// Pieces are parsed in batches of this many: one hand-over per object costs more than parsing
/// it. A parsed object weighs about ten times its text, so what is in flight shows in peak
/// memory: on the 2,000-pair corpus batches of 64 took 42 MB, of 16 33 MB, in the same time
/// (0.09 s), with one reader thread. With two, 8 rather than 16 took 0.5 to 1.0 MiB less peak
/// RSS in the same time (JSON documents: 15.9 vs 16.6 MiB; `kubectl get -o yaml`: 16.4 vs
/// 16.9 MiB, 64.5 vs 65.9 ms; medians of 60 and 100 runs, `scripts/diff-ab.py`).
const BATCH: usize = 8;

/// Parsed batches may wait this many to be recorded; a thread with a batch to parse waits
/// beyond that. While only parsing was shared, two rather than four took 0.3 MB less at the
/// peak in the same time. Since live batches are compared where they are parsed, a thread
/// waiting on the limit idles longer: on the 2,000-pair corpus (`scripts/diff-ab.py`, 60 runs
/// of each, interleaved) four took 79.6 ms rather than 88.9 (`kubectl get -o yaml`) and 73.0
/// rather than 77.1 (JSON documents), for 0.7 and 1.3 MiB more peak RSS; eight were no faster
/// and took 0.4 to 0.8 MiB more than four.
const AHEAD: usize = 4;

/// The parsing of a diff's sources, and the comparison of live objects, shared by two threads.
///
/// The desired sources, then the live ones, are cut into pieces in order (cheap: a scan for
/// `---` lines), and handed out in numbered batches to whichever thread asks: the helper thread
/// ([`Work::help`]), which does nothing else, and the recording thread ([`compare`]), which
/// parses a batch itself when the next one in order is not ready. Parsed batches are taken by
/// the recording thread in order, so objects, errors and their precedence are those of reading
/// the sources one after the other; the first error in that order ends the diff.
///
/// Once every desired object is in the analyser, the recording thread shares it
/// ([`Work::shared`]), and a live batch is compared where it is parsed
/// ([`Analyser::compare_live`]); the recording thread records each comparison in order, or
/// compares itself what could not be compared ahead (see [`Work::compare_ahead`]).
///
/// Parsing was 60% of the work and the comparison waited for it: with one reader thread the
/// machine's second core idled while the desired side was read. With parsing shared but every
/// comparison made by the recording thread, that thread did 58% of the work and the helper
/// waited for it (`perf report --sort comm`, 20 diffs of the 2,000-pair corpus).
struct Work<'a> {
    tracking: &'a TrackingKeys,
    /// `--namespace`: the namespace of namespaced objects that name none.
    default_namespace: &'a str,
    state: Mutex<State<'a>>,
    changed: Condvar,
    /// Set once every desired object is in the analyser.
    shared: OnceLock<Shared<'a>>,
}

/// The analysis, shared once its desired side is complete.
struct Shared<'a> {
    analyser: Analyser<'a>,
    /// The scopes known then: built-in kinds and the desired CustomResourceDefinitions. A live
    /// one read later can change a kind's scope for the objects after it.
    scopes: Scopes,
}

/// Live objects as parsed, each with its comparison when it could be made where it was parsed.
type LiveBatch = Vec<(Prepared, Option<Compared>)>;

struct State<'a> {
    desired: Option<Pieces>,
    /// Read once the desired sources are done, so that their errors come first.
    live_paths: &'a [std::path::PathBuf],
    live: Option<Pieces>,
    role: Role,
    /// The number of the next batch to hand out.
    next: usize,
    /// Parsed batches waiting for the comparison, by number.
    parsed: BTreeMap<usize, Parsed>,
    /// Batches the helper parsed and the comparison is done with, for the helper to free (a
    /// free on another thread than the allocation costs several times more: 0.11 s vs 0.09 s
    /// for a diff of the 2,000-pair corpus).
    to_free: Vec<LiveBatch>,
    /// No batch is handed out any more: the sources are done, or the diff ends early.
    finished: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Desired,
    Live,
}

/// A batch to parse, or the error met while cutting it.
struct Job {
    number: usize,
    role: Role,
    pieces: anyhow::Result<Vec<Piece>>,
}

/// A parsed batch.
struct Parsed {
    role: Role,
    /// By the helper thread: freed there.
    by_helper: bool,
    objects: anyhow::Result<Objects>,
}

enum Objects {
    /// Desired objects packed (`argo_drift_core::packed`), side by side in `packed` (each
    /// object's `Value` is dropped where it was parsed; a CustomResourceDefinition's is kept,
    /// for the scope it declares).
    Desired {
        objects: Vec<(Box<Prepared>, std::ops::Range<usize>)>,
        packed: String,
    },
    Live(LiveBatch),
}

impl<'a> Work<'a> {
    fn new(args: &'a DiffArgs, tracking: &'a TrackingKeys) -> Work<'a> {
        // `- (stdin)` given twice is refused before any reading.
        let mut desired_stdin = false;
        let (desired, failed) = match Pieces::new(&args.desired, "desired", &mut desired_stdin) {
            Ok(pieces) => (Some(pieces), None),
            Err(e) => (None, Some(e)),
        };
        let mut state = State {
            desired,
            live_paths: &args.live,
            live: None,
            role: Role::Desired,
            next: 0,
            parsed: BTreeMap::new(),
            to_free: Vec::new(),
            finished: false,
        };
        if let Some(error) = failed {
            state.parsed.insert(
                0,
                Parsed {
                    role: Role::Desired,
                    by_helper: false,
                    objects: Err(error),
                },
            );
            state.next = 1;
            state.finished = true;
        }
        Work {
            tracking,
            default_namespace: &args.namespace,
            state: Mutex::new(state),
            changed: Condvar::new(),
            shared: OnceLock::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<'a>> {
        // A panic on the other thread is raised again when it is joined.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The helper thread: parse batches until none is left or the diff ends.
    fn help(&self) {
        let mut state = self.lock();
        loop {
            let to_free = std::mem::take(&mut state.to_free);
            if !to_free.is_empty() {
                drop(state);
                drop(to_free);
                state = self.lock();
                continue;
            }
            if state.finished {
                return;
            }
            if state.parsed.len() >= AHEAD {
                state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            let Some(job) = state.take_job() else {
                return;
            };
            drop(state);
            let parsed = self.parse(job.role, job.pieces, true);
            state = self.lock();
            state.parsed.insert(job.number, parsed);
            self.changed.notify_all();
        }
    }

    /// The parsed batch numbered `number`, for the comparison: parsed by the helper, or here
    /// when a batch is left to parse. `None` once every batch has been taken.
    fn batch(&self, number: usize) -> Option<Parsed> {
        let mut state = self.lock();
        loop {
            if let Some(parsed) = state.parsed.remove(&number) {
                self.changed.notify_all();
                return Some(parsed);
            }
            if state.finished && number >= state.next {
                return None;
            }
            // Once the sources are finished the batch asked for is parsed or being parsed by
            // the helper: wait for it (`take_job` would return nothing, and this would spin).
            if state.parsed.len() < AHEAD && !state.finished {
                // No job means the sources just ended here: look again (the batch asked for
                // may not exist), rather than wait for a helper that has nothing left to do.
                let Some(job) = state.take_job() else {
                    continue;
                };
                drop(state);
                let parsed = self.parse(job.role, job.pieces, false);
                if job.number == number {
                    return Some(parsed);
                }
                state = self.lock();
                state.parsed.insert(job.number, parsed);
                continue;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The comparison is done with a batch: one the helper parsed goes back to it to be freed.
    fn done_with(&self, parsed: LiveBatch, by_helper: bool) {
        if by_helper {
            self.lock().to_free.push(parsed);
            self.changed.notify_all();
        }
    }

    /// The diff ends (done, or on an error): no batch is handed out any more.
    fn finish(&self) {
        let mut state = self.lock();
        state.finished = true;
        state.parsed.clear();
        self.changed.notify_all();
    }

    fn parse(&self, role: Role, pieces: anyhow::Result<Vec<Piece>>, by_helper: bool) -> Parsed {
        let objects = pieces.and_then(|pieces| match role {
            Role::Desired => {
                let mut objects = Vec::new();
                let mut packed = String::new();
                for piece in &pieces {
                    piece.parse(&mut |resource| {
                        let mut p = prepare(resource, self.tracking);
                        let start = packed.len();
                        argo_drift_core::packed::write(&p.object, &mut packed);
                        if !Scopes::declares_scope(&p.key) {
                            p.object = Value::Null;
                        }
                        // Boxed here, on the thread that parsed it, rather than when the analysis
                        // is shared (by the recording thread alone, while the other waits).
                        objects.push((Box::new(p), start..packed.len()));
                        Ok(())
                    })?;
                }
                Ok(Objects::Desired { objects, packed })
            }
            Role::Live => {
                let mut objects = Vec::new();
                for piece in &pieces {
                    piece.parse(&mut |resource| {
                        let p = prepare(resource, self.tracking);
                        let compared = self.compare_ahead(&p);
                        objects.push((p, compared));
                        Ok(())
                    })?;
                }
                Ok(Objects::Live(objects))
            }
        });
        Parsed {
            role,
            by_helper,
            objects,
        }
    }
}

impl<'a> Work<'a> {
    /// Share the analysis once every desired object is in it: live batches parsed from then on
    /// are compared where they are parsed.
    fn share(&self, analyser: Analyser<'a>, scopes: &Scopes) {
        // Set once: the in-order thread gives its analyser up when it shares it.
        let _ = self.shared.set(Shared {
            analyser,
            scopes: scopes.clone(),
        });
    }

    /// Compare a live object where it was parsed, when the analysis is shared and the object's
    /// namespace needs no resolving under the scopes known then (resolving it is the recording
    /// thread's: a live CustomResourceDefinition read before it can change its kind's scope).
    fn compare_ahead(&self, live: &Prepared) -> Option<Compared> {
        let shared = self.shared.get()?;
        if !live.namespace_resolved(self.default_namespace, &shared.scopes) {
            return None;
        }
        shared.analyser.compare_live(live)
    }
}

impl State<'_> {
    /// The next batch of pieces, numbered; an error cutting it ends the handing out.
    fn take_job(&mut self) -> Option<Job> {
        if self.finished {
            return None;
        }
        let number = self.next;
        self.next += 1;
        let mut pieces = Vec::with_capacity(BATCH);
        let cut = self.cut(&mut pieces);
        // The role of the pieces cut (of the sources whose error it is).
        let role = self.role;
        match cut {
            Err(e) => {
                self.finished = true;
                Some(Job {
                    number,
                    role,
                    pieces: Err(e),
                })
            }
            Ok(()) if pieces.is_empty() && self.finished => {
                // Nothing was left: the number was not used.
                self.next -= 1;
                None
            }
            Ok(()) => Some(Job {
                number,
                role,
                pieces: Ok(pieces),
            }),
        }
    }

    /// Up to a batch of pieces of the current role; moves on to the live sources when the
    /// desired ones are done, and marks the end of both. A batch holds one role's pieces: the
    /// role after the cut is theirs.
    fn cut(&mut self, pieces: &mut Vec<Piece>) -> anyhow::Result<()> {
        while pieces.len() < BATCH {
            let source = match self.role {
                Role::Desired => self.desired.as_mut(),
                Role::Live => self.live.as_mut(),
            };
            let next = match source {
                Some(source) => source.next_piece()?,
                None => None,
            };
            match next {
                Some(piece) => pieces.push(piece),
                // The desired pieces end this batch; the next one moves on.
                None if self.role == Role::Desired && !pieces.is_empty() => return Ok(()),
                None if self.role == Role::Desired => {
                    self.desired = None;
                    self.role = Role::Live;
                    let mut live_stdin = false;
                    self.live = Some(Pieces::new(self.live_paths, "live", &mut live_stdin)?);
                }
                None => {
                    self.live = None;
                    self.finished = true;
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Read the desired objects, then record the comparison of each live object as it arrives.
/// The analysis is left in [`Work::shared`].
fn compare<'a>(
    args: &DiffArgs,
    policy: &'a Policy,
    work: &Work<'a>,
) -> anyhow::Result<(usize, usize)> {
    let compared = compare_batches(args, policy, work);
    work.finish();
    compared
}

fn compare_batches<'a>(
    args: &DiffArgs,
    policy: &'a Policy,
    work: &Work<'a>,
) -> anyhow::Result<(usize, usize)> {
    let options = AnalyseOptions {
        app: args.app.clone(),
        patches: true,
        text_diffs: args.show_diff,
        ..Default::default()
    };
    let mut analyser = Some(Analyser::new(policy, options));
    // CRDs tell the scope of their kinds.
    let mut scopes = Scopes::default();
    let mut desired: Vec<(Box<Prepared>, PackedSpan)> = Vec::new();
    // Whether a live CustomResourceDefinition was read: it can change the scope of its kind from
    // the one comparisons made ahead assumed.
    let mut live_crds = false;
    let mut desired_count = 0;
    let mut live_count = 0;
    let mut number = 0;
    while let Some(parsed) = work.batch(number) {
        number += 1;
        // The first live batch: every desired object has been read.
        if parsed.role == Role::Live && analyser.is_some() {
            share_desired(&mut analyser, &mut desired, args, &scopes, work)?;
        }
        match parsed.objects? {
            Objects::Desired { objects, packed } => {
                let Some(analyser) = analyser.as_mut() else {
                    anyhow::bail!("a desired object was read after the live ones");
                };
                desired_count += objects.len();
                for (p, range) in objects {
                    scopes.learn_crd(&p.key, &p.object);
                    let mut p = p;
                    p.object = Value::Null;
                    desired.push((p, analyser.compact_packed(&packed[range])));
                }
            }
            Objects::Live(mut objects) => {
                let Some(shared) = work.shared.get() else {
                    anyhow::bail!("live objects were read before the desired ones were shared");
                };
                for (p, compared) in &mut objects {
                    if Scopes::declares_scope(&p.key) {
                        scopes.learn_crd(&p.key, &p.object);
                        live_crds = true;
                    }
                    let compared = compared.take().filter(|_| {
                        !live_crds
                            || scopes.is_cluster_scoped(&p.key.group, &p.key.kind)
                                == shared.scopes.is_cluster_scoped(&p.key.group, &p.key.kind)
                    });
                    match compared {
                        Some(compared) => shared.analyser.observe_compared(p, compared)?,
                        None => {
                            p.resolve_namespace(&args.namespace, &scopes);
                            shared.analyser.observe_live(p)?;
                        }
                    }
                }
                live_count += objects.len();
                work.done_with(objects, parsed.by_helper);
            }
        }
    }
    if analyser.is_some() {
        share_desired(&mut analyser, &mut desired, args, &scopes, work)?;
    }
    Ok((desired_count, live_count))
}

/// Add the desired objects read so far and share the analysis: both sides resolve namespaces
/// by the same rule (with every CRD among the desired objects known) so that their keys agree.
fn share_desired<'a>(
    analyser: &mut Option<Analyser<'a>>,
    desired: &mut Vec<(Box<Prepared>, PackedSpan)>,
    args: &DiffArgs,
    scopes: &Scopes,
    work: &Work<'a>,
) -> anyhow::Result<()> {
    let Some(mut analyser) = analyser.take() else {
        return Ok(());
    };
    analyser.reserve_desired(desired.len());
    for (mut p, span) in desired.drain(..) {
        p.resolve_namespace(&args.namespace, scopes);
        analyser.add_desired_compact(p, span)?;
    }
    work.share(analyser, scopes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The number of objects in each batch `Work` hands out to one thread with no helper, or
    /// `None` when a `batch` call did not come back (it waited for a helper).
    fn batches_on_one_thread(desired: &str, live: &str) -> Option<Vec<usize>> {
        let dir = tempfile::tempdir().unwrap();
        let (d, l) = (
            dir.path().join("desired.yaml"),
            dir.path().join("live.yaml"),
        );
        std::fs::write(&d, desired).unwrap();
        std::fs::write(&l, live).unwrap();
        let args = crate::cli::Args::parse_from([
            "argo-drift".as_ref(),
            "diff".as_ref(),
            "--desired".as_ref(),
            d.as_os_str(),
            "--live".as_ref(),
            l.as_os_str(),
        ]);
        let crate::cli::Command::Diff(args) = args.command else {
            unreachable!("a diff command")
        };
        let (sender, receiver) = std::sync::mpsc::channel();
        // Left running if it hangs: the test fails on the timeout instead.
        std::thread::spawn(move || {
            let tracking = TrackingKeys::default();
            let work = Work::new(&args, &tracking);
            let mut sizes = Vec::new();
            let mut number = 0;
            while let Some(parsed) = work.batch(number) {
                sizes.push(match parsed.objects.unwrap() {
                    Objects::Desired { objects, .. } => objects.len(),
                    Objects::Live(objects) => objects.len(),
                });
                number += 1;
            }
            work.finish();
            let _ = sender.send(sizes);
        });
        receiver
            .recv_timeout(std::time::Duration::from_secs(20))
            .ok()
    }

    fn config_maps(count: usize) -> String {
        (0..count)
            .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n  namespace: default\n"))
            .collect()
    }

    /// The comparing thread can take the last batch itself and meet the end of the sources on
    /// the next take; it used to wait then for a helper that had already left (the diff hung
    /// in about one run in five on one CPU).
    #[test]
    fn the_comparing_thread_alone_meets_the_end_of_the_sources_and_returns() {
        // Exactly at a batch boundary, and just past one.
        for count in [BATCH, 2 * BATCH, 2 * BATCH + 1] {
            let sizes = batches_on_one_thread(&config_maps(count), &config_maps(count))
                .unwrap_or_else(|| panic!("{count} objects: Work::batch never returned"));
            let per_side: Vec<usize> = (0..count.div_ceil(BATCH))
                .map(|i| BATCH.min(count - i * BATCH))
                .collect();
            assert_eq!(
                sizes,
                [per_side.clone(), per_side].concat(),
                "{count} objects"
            );
        }
    }
}
