//! `godwit plugin build`: compiles a plugin crate to WebAssembly and wraps the
//! core module into a component.
//!
//! Two toolchains are supported. Where rustup can provide the `wasm32-wasip2`
//! target, cargo emits a component directly. On machines without it (such as
//! offline Debian hosts) Debian's `rustc-web` compiler rebuilds the standard
//! library for `wasm32-wasip1` from `rust-web-src` (`-Zbuild-std`), and the
//! resulting core module is componentized with the WASI preview1 reactor
//! adapter of the same wasmtime release the host embeds.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Wraps a core wasip1 module (with wit-bindgen's component-type section) into a component.
pub fn componentize(core_module: &[u8]) -> anyhow::Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(core_module)
        .context("reading the module's component-type section (was it built with godwit-sdk?)")?
        .validate(true)
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Toolchain {
    /// `wasm32-wasip2` if rustup has it installed, else Debian's `rustc-web`.
    Auto,
    /// rustup's `wasm32-wasip2` target: cargo emits a component.
    Wasip2,
    /// Debian's `rustc-web` + `rust-web-src` + `wasi-libc`: `-Zbuild-std` for
    /// `wasm32-wasip1`, then componentized here.
    Debian,
}

/// Release-profile settings for plugin builds (each can be overridden by
/// setting the same variable in the environment). One crate graph optimized
/// as a whole (fat LTO, one codegen unit) lets LLVM inline across the SDK,
/// `bson` and the standard library.
const SPEED_PROFILE: [(&str, &str); 4] = [
    ("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3"),
    ("CARGO_PROFILE_RELEASE_LTO", "fat"),
    ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1"),
    ("CARGO_PROFILE_RELEASE_PANIC", "abort"),
];

/// Inline far more than LLVM's default (threshold 225). In the sandbox every
/// wasm function call pays for fuel accounting (the fuel counter is stored
/// before and reloaded after each call, and checked on entry) and for an
/// epoch check, so small functions that LLVM leaves out of line - allocator
/// shims, `bson` element accessors, hashing - cost much more than natively.
/// Measured on the plugin-call benchmark (`just bench-plugin`): 0.67x ->
/// 0.80x of native, for ~15% larger components; a threshold of 3000 gained
/// little more for +50% size.
const INLINE_FLAGS: &str = "-C llvm-args=-inline-threshold=1000";

/// Where Debian's packages put what the wasip1 recipe needs.
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_RUST_SRC: &str = "/usr/lib/rustlib/src/rust/library";
const DEBIAN_WASI_LIBC: &str = "/usr/lib/wasm32-wasi";

pub struct BuildRequest {
    /// Plugin crate directories (each with a Cargo.toml).
    pub crates: Vec<PathBuf>,
    /// Where `<crate-name>.wasm` components are written.
    pub out_dir: PathBuf,
    /// Cargo target directory for the wasm builds.
    pub target_dir: PathBuf,
    pub toolchain: Toolchain,
}

pub struct Built {
    pub name: String,
    /// The crate's library source, for messages about what the component lacks.
    pub lib_source: PathBuf,
    pub component: PathBuf,
    pub size: u64,
}

pub fn build(request: &BuildRequest) -> anyhow::Result<Vec<Built>> {
    // Every crate is checked before anything is compiled: a mistake in the
    // last crate of a directory should not cost the build of all the others.
    let mut packages = Vec::new();
    for dir in &request.crates {
        packages.push((PluginCrate::read(dir)?, dir.join("Cargo.toml")));
    }
    let toolchain = match request.toolchain {
        Toolchain::Auto if rustup_has_wasip2() => Toolchain::Wasip2,
        Toolchain::Auto => Toolchain::Debian,
        other => other,
    };
    if toolchain == Toolchain::Debian {
        check_debian_toolchain()?;
    }
    std::fs::create_dir_all(&request.out_dir)
        .with_context(|| format!("creating output directory {}", request.out_dir.display()))?;

    // One cargo invocation per crate keeps crates from different workspaces
    // (or none) buildable; cargo shares the compiled dependencies through the
    // common target directory.
    let mut built = Vec::new();
    for (krate, manifest) in &packages {
        let name = &krate.name;
        let target = if toolchain == Toolchain::Wasip2 {
            "wasm32-wasip2"
        } else {
            "wasm32-wasip1"
        };
        let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cargo
            .arg("build")
            .arg("--release")
            .arg("--lib")
            .arg("--manifest-path")
            .arg(manifest)
            .arg("--target")
            .arg(target)
            .arg("--target-dir")
            .arg(&request.target_dir)
            // Small components: no debug info, symbols stripped.
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .env("CARGO_PROFILE_RELEASE_STRIP", "true");
        for (name, value) in SPEED_PROFILE {
            if std::env::var_os(name).is_none() {
                cargo.env(name, value);
            }
        }
        if toolchain == Toolchain::Debian {
            cargo
                .arg("-Zbuild-std=std,panic_abort")
                .env("RUSTC", DEBIAN_RUSTC)
                .env("RUSTC_BOOTSTRAP", "1")
                .env(
                    "RUSTFLAGS",
                    format!("-C link-self-contained=no -L native={DEBIAN_WASI_LIBC} {INLINE_FLAGS}"),
                )
                .env_remove("RUSTC_WRAPPER")
                .env_remove("CARGO_ENCODED_RUSTFLAGS");
        } else {
            // Target-scoped, so build scripts and proc macros (host code) are
            // untouched; RUSTFLAGS set by the caller still take precedence.
            // Cargo reads only one source of flags, and this one outranks
            // `build.rustflags`, so a caller's CARGO_BUILD_RUSTFLAGS is left to win.
            // (`[build] rustflags` in a config file is not seen: use RUSTFLAGS.)
            let var = "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS";
            if std::env::var_os(var).is_none() && std::env::var_os("CARGO_BUILD_RUSTFLAGS").is_none() {
                cargo.env(var, INLINE_FLAGS);
            }
        }
        tracing::info!("building {name} for {target}");
        let status = cargo
            .status()
            .with_context(|| format!("running cargo for {}", manifest.display()))?;
        if !status.success() {
            bail!("cargo build of {} for {target} failed ({status})", manifest.display());
        }
        let artifact = request
            .target_dir
            .join(target)
            .join("release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        let bytes = std::fs::read(&artifact).with_context(|| format!("reading build output {}", artifact.display()))?;
        let component = if wasmparser::Parser::is_component(&bytes) {
            bytes
        } else {
            componentize(&bytes).with_context(|| format!("componentizing {}", artifact.display()))?
        };
        let out = request.out_dir.join(format!("{name}.wasm"));
        std::fs::write(&out, &component).with_context(|| format!("writing {}", out.display()))?;
        built.push(Built {
            name: name.clone(),
            lib_source: krate.lib_source.clone(),
            component: out,
            size: component.len() as u64,
        });
    }
    Ok(built)
}

fn rustup_has_wasip2() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip2")
        })
}

fn check_debian_toolchain() -> anyhow::Result<()> {
    let missing: Vec<&str> = [
        (DEBIAN_RUSTC, "rustc-web"),
        (DEBIAN_RUST_SRC, "rust-web-src"),
        (DEBIAN_WASI_LIBC, "wasi-libc"),
        ("/usr/bin/rust-lld", "rust-web-llvm"),
        ("/usr/bin/lld-22", "lld-22"),
    ]
    .into_iter()
    .filter(|(path, _)| !Path::new(path).exists())
    .map(|(_, package)| package)
    .collect();
    if !missing.is_empty() {
        bail!(
            "no wasm toolchain: `rustup target add wasm32-wasip2` is not installed, and the Debian packages {} are missing \
             (apt-get install {}; `just plugins` installs them)",
            missing.join(", "),
            missing.join(" ")
        );
    }
    Ok(())
}

/// What `plugin build` needs to know of a plugin crate, read from its
/// `Cargo.toml` before anything is compiled.
pub struct PluginCrate {
    /// `[package] name`.
    pub name: String,
    /// The library's root source file (`[lib] path`, else `src/lib.rs`):
    /// where `godwit_sdk::export!` belongs.
    pub lib_source: PathBuf,
}

impl PluginCrate {
    /// Reads `dir/Cargo.toml` and refuses, in one line saying what to add, a
    /// crate cargo would not build into a wasm library: without `cdylib` in
    /// `[lib] crate-type` cargo compiles everything and then emits no `.wasm`.
    pub fn read(dir: &Path) -> anyhow::Result<PluginCrate> {
        let manifest = dir.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
        let table: toml::Table = text
            .parse()
            .with_context(|| format!("parsing {}", manifest.display()))?;
        let Some(name) = table
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
        else {
            bail!("{} has no [package] name", manifest.display());
        };
        let lib = table.get("lib");
        let cdylib = lib
            .and_then(|l| l.get("crate-type"))
            .and_then(|t| t.as_array())
            .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("cdylib")));
        if !cdylib {
            bail!(
                "{} is not a plugin crate: add `crate-type = [\"cdylib\", \"rlib\"]` under `[lib]` \
                 (cdylib makes the .wasm, rlib keeps native tests)",
                manifest.display()
            );
        }
        let lib_source = dir.join(
            lib.and_then(|l| l.get("path"))
                .and_then(|p| p.as_str())
                .unwrap_or("src/lib.rs"),
        );
        Ok(PluginCrate {
            name: name.to_string(),
            lib_source,
        })
    }
}
