//! The recipes for runs beyond one machine parse and wire their shards right: the GitHub Actions
//! workflow (.github/workflows/lab.yml), the Kubernetes Indexed Jobs (deploy/k8s/) and the
//! Dockerfile they run.

use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load(path: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{path}: not YAML: {e}"))
}

fn s(y: &Yaml) -> &str {
    y.as_str().unwrap_or_else(|| panic!("not a string: {y:?}"))
}

/// The `run` scripts of a job's steps, joined.
fn scripts(job: &Yaml) -> String {
    job["steps"]
        .as_vec()
        .expect("steps")
        .iter()
        .filter_map(|st| st["run"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn workflow_builds_once_runs_every_shard_merges_and_gates() {
    let docs = load(".github/workflows/lab.yml");
    let wf = &docs[0];
    let jobs = &wf["jobs"];
    // Build once; the shards and the merge use its artifact.
    assert!(scripts(&jobs["build"]).contains("cargo build --release"));
    assert_eq!(s(&jobs["shard"]["needs"]), "build");
    assert_eq!(s(&jobs["merge"]["needs"]), "shard");
    assert!(
        !scripts(&jobs["shard"]).contains("cargo "),
        "shards do not build"
    );
    // The matrix holds shards 1..=N, and each runs `--shard K/N` with N the matrix size.
    let shards: Vec<i64> = jobs["shard"]["strategy"]["matrix"]["shard"]
        .as_vec()
        .expect("matrix.shard")
        .iter()
        .map(|v| v.as_i64().expect("shard number"))
        .collect();
    assert!(!shards.is_empty());
    assert_eq!(shards, (1..=shards.len() as i64).collect::<Vec<_>>());
    assert_eq!(
        jobs["shard"]["strategy"]["fail-fast"].as_bool(),
        Some(false),
        "one failing shard must not cancel the others"
    );
    let run = scripts(&jobs["shard"]);
    assert!(
        run.contains("--shard \"${{ matrix.shard }}/${{ strategy.job-total }}\""),
        "{run}"
    );
    assert!(run.contains("--report-dir \"reports/shard-${{ matrix.shard }}\""));
    assert!(run.contains("--durations durations/report.json"));
    let uploads: Vec<&str> = jobs["shard"]["steps"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|st| st["with"]["name"].as_str())
        .collect();
    assert!(uploads.contains(&"report-shard-${{ matrix.shard }}"));
    // The merge takes every shard's artifact, gates, and uploads the page.
    let merge = &jobs["merge"];
    let downloads: Vec<&str> = merge["steps"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|st| st["with"]["pattern"].as_str())
        .collect();
    assert_eq!(downloads, vec!["report-shard-*"]);
    let m = scripts(merge);
    assert!(m.contains("qlab report merge shards/report-shard-* --out reports/merged"));
    assert!(m.contains("qlab gate --baseline reports/baselines/sim-library.json reports/merged"));
    assert!(root().join("reports/baselines/sim-library.json").is_file());
    let html_uploaded = merge["steps"].as_vec().unwrap().iter().any(|st| {
        st["with"]["path"]
            .as_str()
            .is_some_and(|p| p.contains("reports/merged/report.html"))
    });
    assert!(html_uploaded, "report.html uploaded");
    assert_eq!(
        s(&merge["if"]),
        "always()",
        "merge even when a shard failed"
    );
}

/// The argument line of a container (`sh -c LINE`).
fn shell_line(job: &Yaml) -> String {
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(s(&c["command"][0]), "sh");
    s(&c["args"][0]).to_string()
}

/// `$((JOB_COMPLETION_INDEX + 1))` as the shell evaluates it for index `i`.
fn expand(line: &str, i: i64) -> String {
    line.replace("$((JOB_COMPLETION_INDEX + 1))", &(i + 1).to_string())
}

#[test]
fn k8s_indexed_jobs_turn_the_completion_index_into_every_shard_once() {
    let docs = load("deploy/k8s/lab-shards.yaml");
    let claim = docs
        .iter()
        .find(|d| s(&d["kind"]) == "PersistentVolumeClaim")
        .expect("a claim for the reports");
    let claim_name = s(&claim["metadata"]["name"]);
    let jobs: Vec<&Yaml> = docs.iter().filter(|d| s(&d["kind"]) == "Job").collect();
    assert_eq!(jobs.len(), 2, "the library and an exploration");
    let mut subcommands = Vec::new();
    for job in jobs {
        let spec = &job["spec"];
        assert_eq!(s(&spec["completionMode"]), "Indexed");
        let n = spec["completions"].as_i64().expect("completions");
        assert_eq!(spec["parallelism"].as_i64(), Some(n));
        let line = shell_line(job);
        assert!(line.starts_with("exec qlab "), "{line}");
        subcommands.push(line.split_whitespace().nth(2).unwrap().to_string());
        // Indices 0..n-1 give shards 1/n..n/n, each once, each to its own report folder.
        let mut shards = Vec::new();
        let mut dirs = Vec::new();
        for i in 0..n {
            let l = expand(&line, i);
            let shard = l
                .split("--shard \"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            shards.push(shard.to_string());
            dirs.push(
                l.split("--report-dir \"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .to_string(),
            );
        }
        let want: Vec<String> = (1..=n).map(|k| format!("{k}/{n}")).collect();
        assert_eq!(shards, want, "{line}");
        dirs.dedup();
        assert_eq!(dirs.len() as i64, n, "one folder per shard");
        let pod = &spec["template"]["spec"];
        assert_eq!(s(&pod["restartPolicy"]), "Never");
        assert_eq!(
            s(&pod["volumes"][0]["persistentVolumeClaim"]["claimName"]),
            claim_name
        );
        assert_eq!(
            s(&pod["containers"][0]["volumeMounts"][0]["mountPath"]),
            "/reports"
        );
    }
    assert_eq!(subcommands, vec!["run", "explore"]);

    // The merge Job reads the shards' folders from the same claim and gates.
    let merge = &load("deploy/k8s/lab-merge.yaml")[0];
    assert_eq!(s(&merge["kind"]), "Job");
    let line = shell_line(merge);
    assert!(
        line.contains("qlab report merge /reports/shard-* --out /reports/merged"),
        "{line}"
    );
    assert!(line.contains("qlab gate --baseline reports/baselines/sim-library.json"));
    assert_eq!(
        s(&merge["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]),
        claim_name
    );
}

#[test]
fn dockerfile_copies_what_exists_and_runs_qlab() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line
            .split_whitespace()
            .skip(1)
            .filter(|p| !p.starts_with("--"))
            .collect();
        for src in &parts[..parts.len() - 1] {
            assert!(root().join(src).exists(), "{line}: {src} missing");
        }
    }
    assert!(text.contains("ENTRYPOINT [\"qlab\"]"));
    assert!(text.contains("COPY --chown=lab scenarios scenarios"));
    assert!(text.contains("COPY --chown=lab reports/baselines reports/baselines"));
}
