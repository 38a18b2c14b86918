//! Route (b) of issue 22, as measured: a godwit-owned JavaScript runner
//! component on boa_engine 0.21. The runner decodes each BSON document in
//! Rust, hands the batch to the script as relaxed Extended JSON, and encodes
//! the actions the script returns as JSON. For the measurement the script
//! (`../probe-boa.js`, the normalize-emails transform) is embedded; a real
//! runner would take it from the host, which would then have to hash it
//! into the plugin's identity. Not part of the workspace; see ../README.md.
use boa_engine::{Context, JsValue, Source, js_string, JsObject};
use std::cell::RefCell;

wit_bindgen::generate!({ path: "../../../wit", world: "plugin" });
use exports::godwit::migration::migration::Guest;
use godwit::migration::types::{Action, Error, Manifest, Pass, RunContext, Update, Report};

const SCRIPT: &str = include_str!("../../probe-boa.js");

thread_local! {
    static CX: RefCell<Option<(Context, JsObject)>> = const { RefCell::new(None) };
}

fn with<R>(f: impl FnOnce(&mut Context, &JsObject) -> R) -> R {
    CX.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            let mut cx = Context::default();
            cx.eval(Source::from_bytes(SCRIPT)).expect("script");
            let plugin = cx.global_object().get(js_string!("plugin"), &mut cx).unwrap();
            let m = plugin.as_object().unwrap().get(js_string!("migration"), &mut cx).unwrap();
            *c = Some((cx, m.as_object().unwrap().clone()));
        }
        let (cx, m) = c.as_mut().unwrap();
        f(cx, m)
    })
}

fn get(o: &JsObject, k: &str, cx: &mut Context) -> JsValue {
    o.get(boa_engine::JsString::from(k), cx).unwrap()
}

struct Runner;
impl Guest for Runner {
    fn get_manifest() -> Manifest {
        let f = bson::doc! {"email": {"$type": "string"}};
        Manifest { name: "normalize-emails-boa".into(), version: "1.1.0".into(), requires: None, description: "probe".into(),
            passes: vec![Pass { name: "users".into(), collection: "users".into(), filter: f.to_vec().unwrap(), projection: Some(bson::doc!{"email": 1}.to_vec().unwrap()), batch_size: 1000, writes: vec!["users".into()] }] }
    }
    fn begin(_params: Vec<u8>, _context: RunContext) -> Result<(), Error> {
        with(|cx, m| { let f = get(m, "begin", cx); f.as_callable().unwrap().call(&JsValue::from(m.clone()), &[], cx).unwrap(); });
        Ok(())
    }
    fn process(pass: u32, batch: Vec<Vec<u8>>) -> Result<Vec<Action>, Error> {
        let docs: Vec<serde_json::Value> = batch.iter().map(|d| bson::Bson::Document(bson::Document::from_reader(&mut &d[..]).unwrap()).into_relaxed_extjson()).collect();
        let text = serde_json::to_string(&docs).unwrap();
        let out = with(|cx, m| {
            let f = get(m, "process", cx);
            let v = f.as_callable().unwrap().call(&JsValue::from(m.clone()), &[JsValue::from(pass), JsValue::from(boa_engine::JsString::from(text.as_str()))], cx)
                .map_err(|e| Error { message: e.to_string(), document_id: None })?;
            Ok::<_, Error>(v.to_string(cx).unwrap().to_std_string_escaped())
        })?;
        let out: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        let enc = |v: &serde_json::Value| -> Vec<u8> { let b = bson::Bson::try_from(v.clone()).unwrap(); b.as_document().unwrap().to_vec().unwrap() };
        Ok(out.iter().map(|a| if a["op"] == "update" {
            Action::Update(Update { collection: a["collection"].as_str().unwrap().into(), filter: enc(&a["filter"]), update: enc(&a["update"]), upsert: false, multi: false })
        } else {
            Action::Report(Report { kind: a["kind"].as_str().unwrap().into(), key: a["key"].as_str().unwrap().into(), message: a["message"].as_str().unwrap().into() })
        }).collect())
    }
    fn finish() -> Result<Vec<Action>, Error> { Ok(Vec::new()) }
}
export!(Runner);
