//! Hostile: exports `godwit:migration/traits@0.2.0` with a `keeps-state`
//! that returns `u32`, not `bool` (built from a copy of the contract with
//! only that changed). Not the contract's interface: the host must refuse
//! the plugin by name when it loads it, not take the number for an answer.

wit_bindgen::generate!({ path: "wit", world: "godwit:migration/plugin-declaring" });

use exports::godwit::migration::migration::Guest;
use godwit::migration::types::{Action, Error, Manifest, RunContext};

struct WrongKeepsState;

impl Guest for WrongKeepsState {
    fn get_manifest() -> Manifest {
        Manifest {
            name: "wrong-keeps-state".into(),
            version: "1.0.0".into(),
            requires: None,
            description: String::new(),
            passes: vec![],
            schema: vec![],
            idempotent: true,
            reads: vec![],
        }
    }
    fn begin(_: Vec<u8>, _: RunContext) -> Result<Vec<Action>, Error> {
        Ok(vec![])
    }
    fn process(_: u32, _: Vec<Vec<u8>>) -> Result<Vec<Action>, Error> {
        Ok(vec![])
    }
    fn finish() -> Result<Vec<Action>, Error> {
        Ok(vec![])
    }
}

impl exports::godwit::migration::traits::Guest for WrongKeepsState {
    fn keeps_state() -> u32 {
        0
    }
}

#[cfg(target_arch = "wasm32")]
export!(WrongKeepsState);
