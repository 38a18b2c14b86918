//! Hostile: `keeps-state`, which the host calls when it loads a plugin,
//! never returns. The call must end on the plugin's fuel (or deadline) with
//! one line naming the plugin and the call - not hang the host.

use godwit_sdk::{Action, Context, Document, Error, Manifest, Migration, Params, Pass};

pub struct HostileKeepsState;

impl Migration for HostileKeepsState {
    fn manifest() -> Manifest {
        Manifest::new("hostile-keeps-state", "1.0.0").pass(Pass::new("things", "things").writes(["things"]))
    }

    fn keeps_state() -> bool {
        let mut spins = 0u64;
        loop {
            spins = std::hint::black_box(spins.wrapping_add(1));
            if std::hint::black_box(spins) == u64::MAX {
                return false;
            }
        }
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(HostileKeepsState)
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, _batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        Ok(Vec::new())
    }
}

godwit_sdk::export!(HostileKeepsState);
