//! On-disk cache of compiled components, keyed by the component's sha256, the
//! engine's compatibility hash and the host version, so that a plugin is
//! compiled by cranelift once per machine rather than once per run.

use crate::hash::{Sha256Hash, to_hex};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    /// Loaded a compiled artifact from the cache.
    Hit,
    /// Compiled now and stored the artifact.
    Miss,
    /// Compiled now; no cache is configured.
    Disabled,
}

pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    pub fn new(dir: PathBuf) -> Self {
        CompileCache { dir }
    }

    /// `$GODWIT_CACHE_DIR`, else the user's cache directory (`~/.cache/godwit/components`).
    pub fn default_dir() -> Option<PathBuf> {
        match std::env::var_os("GODWIT_CACHE_DIR") {
            Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
            _ => dirs::cache_dir().map(|d| d.join("godwit").join("components")),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_for(&self, engine: &Engine, sha256: &Sha256Hash) -> PathBuf {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        self.dir
            .join(format!("{}-{:016x}.cwasm", to_hex(sha256), hasher.finish()))
    }

    /// Returns the cached component, or compiles it with `compile` and stores it.
    /// A cache that cannot be read or written only costs time, never the run.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        sha256: &Sha256Hash,
        compile: impl FnOnce() -> wasmtime::Result<Component>,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.path_for(engine, sha256);
        if path.is_file() {
            // SAFETY: the file was written by `Component::serialize` of this
            // very engine configuration (the name carries the compatibility
            // hash) into the user's own cache directory.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(e) => tracing::warn!("ignoring unreadable compile cache entry {}: {e:#}", path.display()),
            }
        }
        let component = compile()?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!("cannot write compile cache entry {}: {e:#}", path.display());
        }
        Ok((component, CacheOutcome::Miss))
    }

    fn store(&self, path: &Path, component: &Component) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = component.serialize()?;
        // Write then rename, so that a concurrent reader never sees half a file.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}
