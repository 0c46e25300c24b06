//! The files every command reads and writes (issue: hostile input): no output over an input
//! or over another output, no output replacing a device, FIFO, symlink or directory, all
//! outputs or none, only regular files read (never a hang), a memory limit instead of an
//! allocation abort, and NaN in the run summary. Every command is run with a timeout, so a
//! regression fails instead of hanging.
mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `nnirc ARGS` from the crate root, killed (and the test failed) after 10 s.
fn nnirc_timed(args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nnirc"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the nnirc binary runs");
    let started = Instant::now();
    while child.try_wait().expect("waiting works").is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nnirc {args:?} hung (killed after 10 s)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("the output is read");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `nnirc ARGS` and checks its exit code and that stderr holds `needle`.
fn expect(code: i32, needle: &str, args: &[&str]) {
    let (got, _, err) = nnirc_timed(args);
    assert_eq!(got, code, "nnirc {args:?}:\n{err}");
    assert!(
        err.contains(needle),
        "nnirc {args:?}: `{needle}` not in\n{err}"
    );
}

const MODEL: &str = "model m(%x: f32[1, 2, 3, 3]) -> (%y, %z) {
  weights \"m.safetensors\"
  param @w: f32[2, 2, 1, 1]
  %y = conv2d(%x, @w) keep_in=[0]
  %z = relu(%x)
}
";

/// A folder with `m.nnir`, its weights `m.safetensors`, an input `x.npy` and `m.onnx`.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("m.nnir"), MODEL).unwrap();
        let program = program(MODEL);
        let w = nnirc::weights::random(&program, 0);
        let bytes = nnirc::weights::file::to_bytes(&w.named(&program)).unwrap();
        std::fs::write(d.join("m.safetensors"), bytes).unwrap();
        let x = nnirc::interp::random_inputs::<f32>(&program, 1);
        nnirc::tensor_io::write_npy(&d.join("x.npy"), &x[0]).unwrap();
        nnirc::tensor_io::write_safetensors(&d.join("x.safetensors"), &[("x", &x[0])]).unwrap();
        let onnx = nnirc::onnx::export_bytes(&program, &w).unwrap();
        std::fs::write(d.join("m.onnx"), onnx).unwrap();
        Fixture { dir }
    }

    /// `name` in the fixture's folder, as a string.
    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The names in the folder, sorted (to see that nothing was left behind).
    fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The bytes of every file in the folder (to see that no input changed).
    fn contents(&self) -> Vec<(String, Option<Vec<u8>>)> {
        self.listing()
            .into_iter()
            .map(|n| {
                let bytes = std::fs::read(self.path(&n)).ok();
                (n, bytes)
            })
            .collect()
    }
}

fn mkfifo(path: &Path) -> bool {
    let made = Command::new("mkfifo").arg(path).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipped: mkfifo is not available");
        return false;
    }
    true
}

// ---- 3: no output over an input, no two outputs on one file --------------------------------

#[test]
fn no_command_writes_over_an_input_or_twice_to_one_file() {
    let f = Fixture::new();
    std::fs::write(f.path("lat.json"), "{}").unwrap();
    std::fs::create_dir(f.path("sub")).unwrap();
    let before = f.contents();
    let (m, w, x) = (f.p("m.nnir"), f.p("m.safetensors"), f.p("x.safetensors"));
    let alias = f.p("sub/../m.safetensors");
    let onnx = f.p("m.onnx");
    let fmt_alias = f.p("sub/../m.nnir");
    let (o, n, n_st) = (f.p("o.nnir"), f.p("n.nnir"), f.p("n.safetensors"));
    let (lat, o_st) = (f.p("lat.json"), f.p("sub/../o.safetensors"));
    let cases: Vec<Vec<&str>> = vec![
        // The weights file the model names is an input, however it is spelled.
        vec!["run", &m, "-o", &w],
        vec!["run", &m, "-o", &alias],
        vec!["run", &m, "--random-weights", "0", "-o", &w],
        vec!["prune", &m, "--amount", "0.5", "-o", &w],
        vec!["segments", &m, "--dot", &w],
        vec!["export", &m, "-o", &w],
        vec!["eval", &m, "--dataset", "fashion-mnist", "--json", &w],
        vec!["optimize", &m, "--report", &w],
        vec!["fmt", &m, "-o", &fmt_alias],
        // --inputs, --masks and --latency-table are inputs.
        vec!["run", &m, "--inputs", &x, "-o", &x],
        vec!["import", &onnx, "-o", &o, "--masks", &o],
        vec!["import", &onnx, "-o", &n, "--masks", &n_st],
        vec![
            "optimize",
            &m,
            "--cost-model",
            "latency",
            "--latency-table",
            &lat,
            "--report",
            &lat,
        ],
        // Two outputs on one file.
        vec!["optimize", &m, "-o", &o, "--report", &o],
        vec!["optimize", &m, "-o", &o, "--report", &o_st],
    ];
    for args in &cases {
        let (code, _, err) = nnirc_timed(args);
        assert_eq!(code, 2, "nnirc {args:?}:\n{err}");
        assert!(
            err.contains("over the input") || err.contains("name the same file"),
            "nnirc {args:?}:\n{err}"
        );
    }
    assert_eq!(f.contents(), before, "a refused command changed the folder");
}

#[cfg(unix)]
#[test]
fn eval_never_writes_over_its_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("t10k-labels-idx1-ubyte.gz");
    std::fs::write(&labels, b"labels").unwrap();
    let model = root().join("examples/fashion/fashion_cnn.nnir");
    expect(
        2,
        "over the input",
        &[
            "eval",
            model.to_str().unwrap(),
            "--dataset",
            "fashion-mnist",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--json",
            labels.to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(&labels).unwrap(), b"labels");
}

#[test]
fn a_symlink_or_hard_link_to_an_input_is_the_input() {
    let f = Fixture::new();
    std::os::unix::fs::symlink(f.path("m.safetensors"), f.path("link.safetensors")).unwrap();
    std::fs::hard_link(f.path("m.safetensors"), f.path("hard.safetensors")).unwrap();
    for out in ["link.safetensors", "hard.safetensors"] {
        let (code, _, err) = nnirc_timed(&["run", &f.p("m.nnir"), "-o", &f.p(out)]);
        assert_eq!(code, 2, "{out}: {err}");
        assert!(
            err.contains("over the input") || err.contains("symlink"),
            "{err}"
        );
    }
    // The model itself through a symlinked folder.
    std::os::unix::fs::symlink(f.dir.path(), f.path("up")).unwrap();
    expect(
        2,
        "over the input",
        &["fmt", &f.p("m.nnir"), "-o", &f.p("up/m.nnir")],
    );
}

#[test]
fn run_npy_outputs_may_not_collide_with_inputs_or_each_other() {
    let f = Fixture::new();
    // With two outputs, `-o out.npy` writes out.y.npy and out.z.npy: name --inputs out.y.npy.
    std::fs::copy(f.path("x.npy"), f.path("out.y.npy")).unwrap();
    let before = f.contents();
    let m = f.p("m.nnir");
    expect(
        2,
        "over the input",
        &[
            "run",
            &m,
            "--inputs",
            &f.p("out.y.npy"),
            "-o",
            &f.p("out.npy"),
        ],
    );
    assert_eq!(f.contents(), before);
    // Output names `a/b` and `a_b` sanitize to the same file.
    let src = "model m(%x: f32[1, 2]) -> (%a/b, %a_b) {\n  %a/b = relu(%x)\n  %a_b = relu(%x)\n}\n";
    std::fs::write(f.path("two.nnir"), src).unwrap();
    let (code, _, err) = nnirc_timed(&["run", &f.p("two.nnir"), "-o", &f.p("t.npy")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("%a/b") && err.contains("%a_b"), "{err}");
    assert!(!f.path("t.a_b.npy").exists());
    // Fine without the clash: one file per output.
    expect(0, "", &["run", &m, "-o", &f.p("ok.npy")]);
    assert!(f.path("ok.y.npy").exists() && f.path("ok.z.npy").exists());
}

// ---- 4: never replace a device, FIFO, symlink or directory -----------------------------------

#[cfg(unix)]
#[test]
fn outputs_never_replace_special_files() {
    use std::os::unix::fs::FileTypeExt;
    let f = Fixture::new();
    let m = f.p("m.nnir");
    // As root, a rename over /dev/null would replace the device with a regular file.
    expect(2, "not a regular file", &["export", &m, "-o", "/dev/null"]);
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    std::fs::write(f.path("target.onnx"), b"keep").unwrap();
    std::os::unix::fs::symlink(f.path("target.onnx"), f.path("link.onnx")).unwrap();
    expect(2, "symlink", &["export", &m, "-o", &f.p("link.onnx")]);
    assert!(std::fs::symlink_metadata(f.path("link.onnx"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(f.path("target.onnx")).unwrap(), b"keep");
    std::fs::create_dir(f.path("d.onnx")).unwrap();
    expect(2, "directory", &["export", &m, "-o", &f.p("d.onnx")]);
    if mkfifo(&f.path("fifo.onnx")) {
        expect(
            2,
            "not a regular file",
            &["export", &m, "-o", &f.p("fifo.onnx")],
        );
        expect(
            2,
            "not a regular file",
            &["fmt", &m, "-o", &f.p("fifo.onnx")],
        );
        expect(
            2,
            "not a regular file",
            &["segments", &m, "--dot", &f.p("fifo.onnx")],
        );
        let ft = std::fs::symlink_metadata(f.path("fifo.onnx"))
            .unwrap()
            .file_type();
        assert!(ft.is_fifo());
    }
}

// ---- 5: all outputs or none ------------------------------------------------------------------

#[test]
fn failed_commands_leave_no_output() {
    let f = Fixture::new();
    let (m, onnx) = (f.p("m.nnir"), f.p("m.onnx"));
    std::fs::create_dir(f.path("dir")).unwrap();
    let before = f.listing();
    // import -o a directory (or a path ending in /) is a usage error; nothing is written.
    expect(
        2,
        "names a directory",
        &["import", &onnx, "-o", &format!("{}/", f.p("dir"))],
    );
    expect(2, "is a directory", &["import", &onnx, "-o", &f.p("dir")]);
    expect(
        2,
        "must be a .nnir file",
        &["import", &onnx, "-o", &f.p("x.txt")],
    );
    // optimize: an unwritable --report leaves neither the model nor its weights.
    let (code, _, err) = nnirc_timed(&[
        "optimize",
        &m,
        "-o",
        &f.p("o.nnir"),
        "--report",
        &f.p("missing/r.json"),
    ]);
    assert_eq!(code, 1, "{err}");
    // -o naming a directory: refused before any work.
    expect(2, "directory", &["optimize", &m, "-o", &f.p("dir/")]);
    // run: the second of two .npy outputs cannot be written (a directory is in the way).
    std::fs::create_dir(f.path("r.z.npy")).unwrap();
    expect(2, "directory", &["run", &m, "-o", &f.p("r.npy")]);
    std::fs::remove_dir(f.path("r.z.npy")).unwrap();
    assert_eq!(f.listing(), before, "a failed command left files behind");
    assert!(f.path("dir").read_dir().unwrap().next().is_none());
}

// ---- 7: a memory limit instead of an allocation abort -----------------------------------------

#[test]
fn commands_over_the_memory_limit_stop_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    // 2^40 parameters: `check` accepts the model, nothing may allocate it.
    let big = dir.path().join("big.nnir");
    std::fs::write(
        &big,
        "model big(%x: f32[1, 1048576]) -> (%y) {\n  param @w: f32[1048576, 1048576]\n  %y = linear(%x, @w)\n}\n",
    )
    .unwrap();
    let big = big.to_str().unwrap();
    expect(0, "", &["check", big]);
    let onnx = dir.path().join("b.onnx");
    let onnx = onnx.to_str().unwrap();
    for args in [
        vec!["run", big, "--random-weights", "0"],
        vec!["export", big, "--random-weights", "0", "-o", onnx],
        vec!["optimize", big, "--random-weights", "0"],
        vec!["prune", big, "--random-weights", "0", "--amount", "0.5"],
        vec![
            "eval",
            big,
            "--random-weights",
            "0",
            "--dataset",
            "fashion-mnist",
        ],
    ] {
        let (code, _, err) = nnirc_timed(&args);
        assert_eq!(code, 1, "nnirc {args:?}:\n{err}");
        assert!(
            err.contains("of memory") && err.contains("--max-memory") && err.contains("TiB"),
            "nnirc {args:?}:\n{err}"
        );
    }
    assert!(!Path::new(onnx).exists());
    // Activations alone (no params): 2^40 elements.
    let wide = dir.path().join("wide.nnir");
    std::fs::write(
        &wide,
        "model w(%x: f32[1024, 1024, 1024, 1024]) -> (%y) {\n  %y = relu(%x)\n}\n",
    )
    .unwrap();
    expect(1, "activations", &["run", wide.to_str().unwrap()]);
    // The limit can be lowered and raised.
    let fire = "examples/squeezenet_fire.nnir";
    expect(
        1,
        "over the limit of 1024 bytes",
        &["--max-memory", "1K", "run", fire, "--random-weights", "0"],
    );
    expect(
        0,
        "",
        &["run", fire, "--random-weights", "0", "--max-memory", "1G"],
    );
    expect(2, "suffix", &["--max-memory", "12Q", "run", fire]);
}

#[test]
fn memory_estimates_cover_huge_models_without_allocating() {
    let p = program("model big(%x: f32[1, 1048576]) -> (%y) {\n  param @w: f32[1048576, 1048576]\n  %y = linear(%x, @w)\n}\n");
    let need = nnirc::interp::memory_estimate(&p);
    assert_eq!(need.params, 1 << 40);
    assert_eq!(need.seeded_bytes, 1 << 42);
    // The weights converted for the node, plus the input and output.
    assert!(need.run_elements >= (1 << 40) + 2 * (1 << 20));
    // Activations alone: the input, the output and its copy, 2^40 elements each.
    let p = program("model w(%x: f32[1024, 1024, 1024, 1024]) -> (%y) {\n  %y = relu(%x)\n}\n");
    let need = nnirc::interp::memory_estimate(&p);
    assert_eq!(need.run_elements, 3 << 40);
    assert_eq!(need.run_bytes(8), 3 << 43);
}

// ---- 8: only regular files are read, never a hang --------------------------------------------

#[cfg(unix)]
#[test]
fn special_files_are_refused_without_hanging() {
    let f = Fixture::new();
    let m = f.p("m.nnir");
    let fifo = f.path("fifo");
    let have_fifo = mkfifo(&fifo);
    let mut specials = vec!["/dev/zero".to_string(), "/dev/urandom".to_string()];
    if have_fifo {
        specials.push(f.p("fifo"));
    }
    for s in &specials {
        let s = s.as_str();
        for args in [
            vec!["check", s],
            vec!["fmt", s],
            vec!["run", s],
            vec!["run", &m, "--inputs", s],
            vec!["import", s, "-o", &f.p("i.nnir")],
            vec!["import", &f.p("m.onnx"), "-o", &f.p("i.nnir"), "--masks", s],
            vec![
                "optimize",
                &m,
                "--cost-model",
                "latency",
                "--latency-table",
                s,
            ],
        ] {
            let (code, _, err) = nnirc_timed(&args);
            assert_eq!(code, 1, "nnirc {args:?}:\n{err}");
            assert!(err.contains("not a regular file"), "nnirc {args:?}:\n{err}");
        }
    }
    // The weights file a model names.
    if have_fifo {
        let src = MODEL.replace("m.safetensors", "fifo");
        std::fs::write(f.path("w.nnir"), src).unwrap();
        for cmd in ["check", "run"] {
            expect(1, "not a regular file", &[cmd, &f.p("w.nnir")]);
        }
    }
    let src = MODEL.replace("m.safetensors", "/dev/zero");
    std::fs::write(f.path("z.nnir"), src).unwrap();
    expect(1, "not a regular file", &["run", &f.p("z.nnir")]);
    assert!(!f.path("i.nnir").exists());
}

// ---- 6: NaN in the run summary ---------------------------------------------------------------

#[test]
fn run_summary_counts_nans() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.nnir");
    std::fs::write(
        &model,
        "model m(%x: f32[1, 3]) -> (%y) {\n  %y = add(%x, %x)\n}\n",
    )
    .unwrap();
    let x = dir.path().join("x.npy");
    let summary = |data: Vec<f32>| {
        let t = nnirc::tensor::Tensor {
            shape: vec![1, 3],
            data,
        };
        nnirc::tensor_io::write_npy(&x, &t).unwrap();
        let (code, out, err) = nnirc_timed(&[
            "run",
            model.to_str().unwrap(),
            "--inputs",
            x.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        out
    };
    let all = summary(vec![f32::NAN; 3]);
    assert!(
        all.contains("min nan  max nan  mean nan") && all.contains("nan 3"),
        "{all}"
    );
    assert!(!all.contains("inf"), "{all}");
    let some = summary(vec![1.0, f32::NAN, 2.0]);
    assert!(
        some.contains("min 2.000000e0  max 4.000000e0  mean 3.000000e0")
            && some.ends_with("nan 1\n"),
        "{some}"
    );
    assert!(!summary(vec![1.0, 2.0, 3.0]).contains("nan"));
}

// ---- the refusal logic as a property ---------------------------------------------------------

/// Random sets of inputs and outputs drawn from a pool of spellings of a few files: the check
/// refuses exactly when an output names an input or an earlier output (whatever the spelling:
/// `./a`, `sub/../a`, a symlink, a hard link) or is not a regular file or a new one.
#[cfg(unix)]
#[test]
fn path_clashes_are_refused_exactly() {
    use proptest::collection::vec;
    use proptest::test_runner::{Config, TestRunner};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("a"), b"a").unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::os::unix::fs::symlink(d.join("a"), d.join("link_a")).unwrap();
    std::fs::hard_link(d.join("a"), d.join("hard_a")).unwrap();
    // (spelling, which file, whether it may be an output)
    let pool: &[(&str, char, bool)] = &[
        ("a", 'a', true),
        ("./a", 'a', true),
        ("sub/../a", 'a', true),
        ("hard_a", 'a', true),
        ("link_a", 'a', false),
        ("sub", 's', false),
        ("sub/.", 's', false),
        ("b", 'b', true),
        ("./b", 'b', true),
        ("sub/../b", 'b', true),
        ("nope/../b", 'b', true),
        ("sub/c", 'c', true),
        ("sub/./c", 'c', true),
        ("c", 'C', true),
        ("new/", 'n', false),
    ];
    let mut runner = TestRunner::new(Config::with_cases(256));
    let strategy = (vec(0..pool.len(), 0..4), vec(0..pool.len(), 0..4));
    runner
        .run(&strategy, |(ins, outs)| {
            let paths =
                |ix: &[usize]| -> Vec<PathBuf> { ix.iter().map(|&i| d.join(pool[i].0)).collect() };
            let (in_paths, out_paths) = (paths(&ins), paths(&outs));
            let in_refs: Vec<&Path> = in_paths.iter().map(PathBuf::as_path).collect();
            let out_refs: Vec<&Path> = out_paths.iter().map(PathBuf::as_path).collect();
            let got = nnirc::paths::check_paths(&in_refs, &out_refs);
            let clash = outs.iter().enumerate().any(|(k, &o)| {
                let file = pool[o].1;
                !pool[o].2
                    || ins.iter().any(|&i| pool[i].1 == file)
                    || outs[..k].iter().any(|&e| pool[e].1 == file)
            });
            proptest::prop_assert_eq!(got.is_err(), clash, "{:?} -> {:?}: {:?}", ins, outs, got);
            Ok(())
        })
        .unwrap();
}
