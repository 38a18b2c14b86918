"""Smallest Python plugin: tags every document of `items` with `hello: "py"`."""

import godwit_sdk as g


@g.export
class Hello:
    def manifest(self):
        return g.Manifest("hello-py", "0.1.0", description="python smoke test").pass_(
            g.Pass("items", "items", projection={"hello": 1}, writes=["items"]))

    def begin(self, params):
        g.log.info(f"hello from python, run {g.run().run_id}")

    def process(self, pass_index, docs):
        return [g.set_fields("items", d["_id"], {"hello": "py"}) for d in docs if d.get("hello") != "py"]

    def finish(self):
        return [g.report("summary", "hello", "done")]
