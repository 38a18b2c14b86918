// Injected first into every godwit JavaScript component (esbuild's
// `inject`), before any module of the plugin or its libraries runs.
//
// Math.random becomes a fixed-seed xorshift generator. Two reasons: the
// component is pre-initialized at build time (componentize-js snapshots the
// engine with Wizer), where no randomness may be asked of the host - and the
// `bson` package seeds ObjectId's counter with Math.random() when it loads;
// and a migration must do the same thing every time it runs on the same
// data, so the sandbox's seeded randomness is not something to rely on.
{
  let state = 0x9e3779b9 >>> 0;
  Math.random = function random() {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 4294967296;
  };
}
