//! `--memory-limit` is one budget over ALL of a plugin's linear memories and
//! tables (issue 14, finding 5: with wasmtime's per-memory `StoreLimits` a
//! plugin with five memories reached 2.1 GB under `--memory-limit 100`).
//!
//! Rust cannot emit a multi-memory module, so the hostile plugin is written
//! here: a core module in WAT that implements the contract by hand (a static
//! manifest, a bump `cabi_realloc`, empty results) and grows extra memories or
//! tables in `process`; wit-component wraps it, with the contract's WIT
//! embedded, into a component that `godwit run` loads like any other.

use crate::db::{TestDb, server};
use crate::support::command;
use bson::doc;
use std::io::Read;
use std::path::{Path, PathBuf};

const MIB: u32 = 1 << 20;
const PAGE: u32 = 64 << 10;
const LIMIT_MIB: u32 = 100;
/// Each extra memory grows to just under the cap, and writes every byte (so
/// that the pages are really resident).
const MEMORY_PAGES: u32 = (LIMIT_MIB * MIB - MIB) / PAGE;
const EXTRA_MEMORIES: u32 = 5;

/// Little-endian bytes as a WAT string literal.
fn le(values: &[u32]) -> String {
    values
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .map(|b| format!("\\{b:02x}"))
        .collect()
}

/// A core module implementing `godwit:migration/migration@0.1.0` by hand
/// (canonical ABI, memory 0), whose `process` runs `body`. `extra` declares
/// the additional memories and tables `body` uses.
fn core_module(name: &str, extra: &str, body: &str) -> String {
    // Memory 0 layout: manifest at 0x100 (44 bytes), its one pass at 0x200
    // (48 bytes), the pass's `writes` list at 0x300, strings from 0x400, an
    // all-zero return area at 0x800 (ok / ok(empty list)), heap from 0x1000.
    let things = 0x400;
    let name_at = 0x410;
    let version_at = 0x480;
    let filter_at = 0x490;
    let manifest = le(&[
        name_at,
        name.len() as u32,
        version_at,
        5,
        0, // requires: none (discriminant byte, then padding and an unused payload)
        0,
        0,
        version_at, // description: reuse the version's bytes
        0,
        0x200, // passes
        1,
    ]);
    let pass = le(&[
        things, 6, // name
        things, 6, // collection
        filter_at, 5, // filter: {}
        0, 0, 0,  // projection: none
        10, // batch size
        0x300, 1, // writes
    ]);
    let writes = le(&[things, 6]);
    format!(
        r#"(module
  (memory $m0 (export "memory") 1)
  {extra}
  (global $heap (mut i32) (i32.const 0x1000))
  (data (memory $m0) (i32.const 0x100) "{manifest}")
  (data (memory $m0) (i32.const 0x200) "{pass}")
  (data (memory $m0) (i32.const 0x300) "{writes}")
  (data (memory $m0) (i32.const {things}) "things")
  (data (memory $m0) (i32.const {name_at}) "{name}")
  (data (memory $m0) (i32.const {version_at}) "0.0.1")
  (data (memory $m0) (i32.const {filter_at}) "\05\00\00\00\00")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $ptr i32)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $ptr) (local.get 3)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size $m0) (i32.const 65536)))
      (then
        (if (i32.eq
              (memory.grow $m0
                (i32.add (i32.const 1)
                  (i32.shr_u
                    (i32.sub (global.get $heap) (i32.mul (memory.size $m0) (i32.const 65536)))
                    (i32.const 16))))
              (i32.const -1))
          (then unreachable))))
    (local.get $ptr))
  (func (export "godwit:migration/migration@0.1.0#get-manifest") (result i32)
    (i32.const 0x100))
  (func (export "godwit:migration/migration@0.1.0#begin")
    (param i32 i32 i32 i32 i32 i64 i32 i32) (result i32)
    (i32.const 0x800))
  (func (export "godwit:migration/migration@0.1.0#process")
    (param i32 i32 i32) (result i32)
    {body}
    (i32.const 0x800))
  (func (export "godwit:migration/migration@0.1.0#finish") (result i32)
    (i32.const 0x800))
)"#
    )
}

/// The component of [`core_module`], written to `dir/<name>.wasm`.
fn component(dir: &Path, name: &str, extra: &str, body: &str) -> PathBuf {
    let mut module = wat::parse_str(core_module(name, extra, body)).expect("valid WAT");
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        // A hand-written contract 0.1 plugin: the host still runs those.
        .push_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("wit-0.1"))
        .expect("the contract's WIT parses");
    let world = resolve.select_world(&[package], Some("plugin")).unwrap();
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8).unwrap();
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .expect("the module componentizes");
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, component).unwrap();
    path
}

/// Runs `plugin` in execute mode over 25 documents under `--memory-limit
/// 100`; returns the one error line and the process's peak RSS in KiB.
fn run_capped(plugin: &Path, name: &str) -> (String, u64) {
    let db = TestDb::new(server(), "memcap");
    db.insert("things", (0..25).map(|i| doc! {"_id": i, "n": i}).collect());
    let before = db.dump();
    let journal = tempfile::tempdir().unwrap();
    #[expect(
        clippy::zombie_processes,
        reason = "reaped by wait4 below, which also reports its peak RSS"
    )]
    let mut child = command(
        &db,
        journal.path(),
        &[
            "run",
            plugin.to_str().unwrap(),
            "--execute",
            "--memory-limit",
            &LIMIT_MIB.to_string(),
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let peak = peak_rss_sampler(child.id());
    let mut err_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        err_pipe.read_to_string(&mut text).unwrap();
        text
    });
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both pointers are valid for writes.
    let waited = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(waited, child.id() as libc::pid_t);
    let err = reader.join().unwrap();
    assert!(
        libc::WIFEXITED(status),
        "godwit did not exit normally ({status}): {err}"
    );
    assert_eq!(libc::WEXITSTATUS(status), 4, "exit code; stdout: {out}\nstderr: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    let line = errors[0].to_string();
    for part in [
        &format!("plugin {name} trapped in process (pass 0 \"things\")"),
        "pass 0 (things)",
        "batch 0",
        "exceeded the memory limit of 100 MiB (--memory-limit), counted over all its memories and tables",
    ] {
        assert!(line.contains(part), "{part:?} missing from: {line}");
    }
    // Nothing written: the same dump, apart from godwit's lease lock.
    let unlocked = |dump: Vec<(String, Vec<Vec<u8>>)>| -> Vec<(String, Vec<Vec<u8>>)> {
        dump.into_iter()
            .map(|(name, docs)| {
                let docs = docs
                    .into_iter()
                    .filter(|raw| {
                        name != "godwit_metadata"
                            || bson::RawDocument::from_bytes(raw).unwrap().get_str("_id").ok() != Some("lock")
                    })
                    .collect::<Vec<_>>();
                (name, docs)
            })
            .filter(|(_, docs)| !docs.is_empty())
            .collect()
    };
    assert_eq!(unlocked(db.dump()), unlocked(before), "the database changed");
    let peak = peak.join().unwrap();
    assert!(peak > 0, "the godwit process was sampled");
    (line, peak)
}

/// Samples the peak RSS (`VmHWM`, KiB) of process `pid` once it runs
/// `godwit`, until it is reaped. Not `wait4`'s `ru_maxrss`: Rust spawns
/// children with `vfork`, and at `exec` the kernel folds the high-water mark
/// of the mm the child shared - the test process's, which grows with the
/// other tests running beside it - into the child's `maxrss`. `VmHWM` is the
/// `godwit` process's own mm. Sampled every 2 ms, it can miss the last
/// moments before exit: a lower bound, and a plugin past the cap would not
/// exit 4 anyway.
fn peak_rss_sampler(pid: u32) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
            if field("Name:") == Some("godwit")
                && let Some(kib) = field("VmHWM:").and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        peak
    })
}

/// Baseline of the `godwit` process itself (wasmtime, the driver, tokio),
/// above which the plugin's memory sits. Measured at ~60 MiB; generous, so
/// that the assertion is about the cap, not about godwit's own footprint.
const HOST_OVERHEAD_MIB: u64 = 150;

#[test]
fn memories_together_are_capped_at_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let extra: String = (1..=EXTRA_MEMORIES).map(|k| format!("(memory $m{k} 0)\n")).collect();
    // Each memory in turn: grow to just under the cap, then touch every page.
    let body: String = (1..=EXTRA_MEMORIES)
        .map(|k| {
            format!(
                "(if (i32.eq (memory.grow $m{k} (i32.const {MEMORY_PAGES})) (i32.const -1)) (then unreachable))
                 (memory.fill $m{k} (i32.const 0) (i32.const 7) (i32.const {}))\n",
                MEMORY_PAGES * PAGE
            )
        })
        .collect();
    let name = "hostile-memories";
    let plugin = component(dir.path(), name, &extra, &body);
    let (line, peak_kib) = run_capped(&plugin, name);
    assert!(
        line.contains(&format!("growing a memory from 0 to {} bytes", MEMORY_PAGES * PAGE)),
        "{line}"
    );
    let peak_mib = peak_kib >> 10;
    // Per memory, the five would have taken ~5 x 99 MiB.
    assert!(
        peak_mib < u64::from(LIMIT_MIB) + HOST_OVERHEAD_MIB,
        "peak RSS {peak_mib} MiB under --memory-limit {LIMIT_MIB}"
    );
    eprintln!(
        "hostile {name}: {EXTRA_MEMORIES} memories of {} MiB each under --memory-limit {LIMIT_MIB}: \
         trapped at the second, peak RSS {peak_mib} MiB, exit 4: {line}",
        MEMORY_PAGES * PAGE / MIB
    );
}

#[test]
fn tables_count_against_the_memory_limit() {
    // Two tables of 10M elements: 80 MB each at 8 bytes per element, under
    // the cap alone, past it together.
    let elements = 10_000_000;
    let dir = tempfile::tempdir().unwrap();
    let extra = "(table $t1 0 funcref)\n(table $t2 0 funcref)";
    let body = format!(
        "(if (i32.eq (table.grow $t1 (ref.null func) (i32.const {elements})) (i32.const -1)) (then unreachable))
         (if (i32.eq (table.grow $t2 (ref.null func) (i32.const {elements})) (i32.const -1)) (then unreachable))"
    );
    let name = "hostile-tables";
    let plugin = component(dir.path(), name, extra, &body);
    let (line, peak_kib) = run_capped(&plugin, name);
    assert!(
        line.contains(&format!("growing a table from 0 to {elements} elements (8 bytes each)")),
        "{line}"
    );
    eprintln!(
        "hostile {name}: 2 tables of {elements} elements under --memory-limit {LIMIT_MIB}: trapped at the second, \
         peak RSS {} MiB, exit 4: {line}",
        peak_kib >> 10
    );
}
