//! Test plugin: its manifest declares no schema operations, yet `setup`
//! returns a create-index (or, with `--param from=process`, `process`
//! does). The host must refuse it before anything is sent.

use godwit_sdk::{Action, Context, Document, Error, Index, Manifest, Migration, Params, Pass, doc};

pub struct Undeclared {
    from_process: bool,
}

fn index() -> Action {
    Action::create_index("users", Index::new("sneaky", doc! {"email": 1}))
}

impl Migration for Undeclared {
    fn manifest() -> Manifest {
        Manifest::new("schema-undeclared", "1.0.0").pass(Pass::new("users", "users").writes(["users"]))
    }

    fn begin(params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(Undeclared {
            from_process: params.get("from") == Some("process"),
        })
    }

    fn setup(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        Ok(if self.from_process { vec![] } else { vec![index()] })
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, _batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        Ok(if self.from_process { vec![index()] } else { vec![] })
    }
}

godwit_sdk::export!(Undeclared);
