//! A plugin built against `godwit:migration@0.3.0` (a copy of the contract
//! with only the version changed), which this host must refuse by name.

wit_bindgen::generate!({ path: "wit", world: "godwit:migration/plugin" });

use exports::godwit::migration::migration::Guest;
use godwit::migration::types::{Action, Error, Manifest, RunContext};

struct Future;

impl Guest for Future {
    fn get_manifest() -> Manifest {
        Manifest {
            name: "future".into(),
            version: "9.0.0".into(),
            requires: None,
            description: String::new(),
            passes: vec![],
        }
    }
    fn begin(_: Vec<u8>, _: RunContext) -> Result<(), Error> {
        Ok(())
    }
    fn process(_: u32, _: Vec<Vec<u8>>) -> Result<Vec<Action>, Error> {
        Ok(vec![])
    }
    fn finish() -> Result<Vec<Action>, Error> {
        Ok(vec![])
    }
}

#[cfg(target_arch = "wasm32")]
export!(Future);
