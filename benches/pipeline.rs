//! Benchmarks of the pipeline's stages for 1, 100 and 1,000 environments:
//! validation, render, `render --check` (render + read + compare) and publish.
//! Run with `cargo bench --bench pipeline`; run as a test (`cargo test
//! --benches`, nextest in `.ci/test`) each benchmark runs once, for 1 only.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tracker_gitops::diff;
use tracker_gitops::environment::{self, Environment};
use tracker_gitops::publish::{self, Provenance};
use tracker_gitops::render::{self, Templates};
use tracker_gitops::tree::Tree;

const COUNTS: [usize; 3] = [1, 100, 1000];

/// All of `COUNTS` when criterion measures; only the smallest when it runs
/// each benchmark once as a test, where setting up 1,000 environments would
/// cost minutes (nextest repeats the setup in one process per benchmark).
/// Criterion measures when given `--bench` (as `cargo bench` does) without
/// `--test`.
fn counts() -> &'static [usize] {
    let flag = |name: &str| std::env::args().any(|arg| arg == name);
    if flag("--bench") && !flag("--test") {
        &COUNTS
    } else {
        &COUNTS[..1]
    }
}

/// `count` environment files, copies of the shipped examples under new names.
fn environment_files(dir: &Path, count: usize) -> Vec<PathBuf> {
    let examples = ["production", "stable", "staging"].map(|name| {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("environments/{name}.json")),
        )
        .unwrap()
    });
    std::fs::create_dir_all(dir).unwrap();
    (0..count)
        .map(|i| {
            let path = dir.join(format!("env-{i}.json"));
            std::fs::write(&path, &examples[i % 3]).unwrap();
            path
        })
        .collect()
}

fn load(files: &[PathBuf]) -> Vec<Environment> {
    files
        .iter()
        .map(|path| environment::check_file(path).unwrap().environment.unwrap())
        .collect()
}

fn benches(c: &mut Criterion) {
    let root = tempfile::tempdir().unwrap();
    let templates = Templates::load(None).unwrap();
    for &count in counts() {
        let files = environment_files(&root.path().join(format!("environments-{count}")), count);
        let environments = load(&files);
        let out = root.path().join(format!("build-{count}"));
        for env in &environments {
            render::render(env, &templates)
                .unwrap()
                .tree
                .replace_dir(&out.join(&env.name))
                .unwrap();
        }

        let mut group = c.benchmark_group("pipeline");
        group.sample_size(10);
        group.throughput(Throughput::Elements(count as u64));
        group.bench_with_input(BenchmarkId::new("validate", count), &files, |b, files| {
            b.iter(|| {
                for path in files {
                    assert!(environment::check_file(path).unwrap().environment.is_some());
                }
            })
        });
        group.bench_with_input(
            BenchmarkId::new("render", count),
            &environments,
            |b, envs| {
                b.iter(|| {
                    for env in envs {
                        render::render(env, &templates).unwrap();
                    }
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("render-check", count),
            &files,
            |b, files| {
                b.iter(|| {
                    for env in load(files) {
                        let rendered = render::render(&env, &templates).unwrap();
                        let on_disk = Tree::read_dir(&out.join(&env.name)).unwrap();
                        assert!(diff::compare(&rendered.tree, &on_disk).is_empty());
                    }
                })
            },
        );
        if count <= 100 {
            let repo = git2::Repository::init(root.path().join(format!("repo-{count}"))).unwrap();
            let rendered: Vec<_> = environments
                .iter()
                .map(|env| render::render(env, &templates).unwrap())
                .collect();
            let options = publish::Options {
                remote: None,
                push: false,
                author_name: "bench".into(),
                author_email: "bench@example.org".into(),
                source_ref: None,
                reviewed: None,
            };
            let round = AtomicUsize::new(0);
            group.bench_function(BenchmarkId::new("publish", count), |b| {
                b.iter(|| {
                    // A fresh branch per round, so every round writes its commits.
                    let round = round.fetch_add(1, Ordering::Relaxed);
                    for (env, rendered) in environments.iter().zip(&rendered) {
                        let provenance = Provenance {
                            repository: "bench".into(),
                            commit: "0".repeat(40),
                            reference: "refs/heads/main".into(),
                            environment_file: format!("environments/{}.json", env.name),
                            tool_version: "bench".into(),
                            command: "bench".into(),
                        };
                        let branch = format!("deploy/{round}/{}", env.name);
                        publish::publish(&repo, env, &branch, rendered, &provenance, &options)
                            .unwrap();
                    }
                })
            });
        }
        group.finish();
    }
}

criterion_group!(pipeline, benches);
criterion_main!(pipeline);
