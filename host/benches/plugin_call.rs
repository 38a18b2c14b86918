//! `just bench-plugin`: documents per second through one `process` call of
//! the example plugin (batch of 1,000 documents) compiled to wasm and run in
//! the sandbox, versus the very same plugin code compiled natively and called
//! through the SDK's glue (BSON decode, transform, BSON encode) - measured
//! side by side in one run, reported as a ratio.

use bson::doc;
use godwit::plugin::contract::{Mode, RunContext};
use godwit::plugin::{InstanceOptions, Limits, PluginHost};
use godwit_sdk::__glue;
use normalize_emails::NormalizeEmails;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const BATCH: usize = 1_000;

fn batch(round: usize) -> Vec<Vec<u8>> {
    (0..BATCH)
        .map(|i| {
            let n = round * BATCH + i;
            doc! {"_id": n as i64, "email": format!("  User.{n}@Example.COM ")}
                .to_vec()
                .unwrap()
        })
        .collect()
}

/// Runs `f` on fresh batches for about `budget`; returns documents per second.
fn measure(budget: Duration, mut f: impl FnMut(&[Vec<u8>]) -> usize) -> f64 {
    let batches: Vec<Vec<Vec<u8>>> = (0..16).map(batch).collect();
    // Warm-up.
    for b in &batches[..4] {
        assert_eq!(f(b), BATCH, "every document gets one action");
    }
    let started = Instant::now();
    let mut docs = 0usize;
    let mut i = 0;
    while started.elapsed() < budget {
        f(&batches[i % batches.len()]);
        docs += BATCH;
        i += 1;
    }
    docs as f64 / started.elapsed().as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let file = std::env::args()
        .nth(1)
        .filter(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins/normalize-emails.wasm"));
    let host = PluginHost::new(Limits::default(), None)?;
    let plugin = host.load(&file)?;
    let context = RunContext {
        run_id: "bench".into(),
        mode: Mode::DryRun,
        started_at_ms: 0,
        database: "bench".into(),
    };
    let params = doc! {};
    let mut instance = plugin.instantiate(InstanceOptions::inspect())?;

    let native_context = || __glue::WitRunContext {
        run_id: "bench".into(),
        mode: godwit_sdk::__bindings::godwit::migration::types::Mode::DryRun,
        started_at_ms: 0,
        database: "bench".into(),
    };
    let budget = Duration::from_secs(3);
    let mut rows = Vec::new();
    // Alternate the contestants so that machine noise hits both alike.
    for round in 0..3 {
        let wasm = measure(budget, |b| {
            // `begin` resets the plugin's state (its collision map), so every
            // round does the same work.
            instance.begin(&params, &context).unwrap();
            instance.process(0, b).unwrap().len()
        });
        let native = measure(budget, |b| {
            __glue::begin::<NormalizeEmails>(params.to_vec().unwrap(), native_context()).unwrap();
            __glue::process::<NormalizeEmails>(0, b.to_vec()).unwrap().len()
        });
        println!(
            "round {round}: wasm {wasm:>10.0} docs/s   native {native:>10.0} docs/s   ratio {:.2}x",
            wasm / native
        );
        rows.push((wasm, native));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let wasm = median(rows.iter().map(|r| r.0).collect());
    let native = median(rows.iter().map(|r| r.1).collect());
    println!(
        "plugin call, batch {BATCH}: wasm {wasm:.0} docs/s, native {native:.0} docs/s, ratio {:.2}x (median of 3 rounds)",
        wasm / native
    );
    Ok(())
}
