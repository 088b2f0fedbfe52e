// The page benchmark: `node web/bench/bench.mjs [rounds]`, after `bash web/build.sh` and
// `npm ci` in web/ and in web/bench/. In one headless Chromium page load, alternating rounds
// of webgrad (the page's WebGPU) and TensorFlow.js 4.22's cpu, wasm and webgl backends on the
// same LeNet-5: training steps at batch 32 and 64 (forward, loss, backward, Adam, loss readback), inference at batch 1,000, and
// the first step (pipelines or programs compiled on the way). Prints medians and ratios.
import { serve, openPage } from "../tests/browser.mjs";

const rounds = Number(process.argv[2] ?? 2);
const STEPS = 10;
const server = await serve();
const { browser, page } = await openPage(server, "/web/www/bench.html", "benchReady");

const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
const runs = {}; // name -> { train32: [], train64: [], infer: [], first: [] }
const record = (name, key, values) => {
  runs[name] ??= {};
  (runs[name][key] ??= []).push(...values);
};
for (let r = 0; r < rounds; r++) {
  for (const fw of ["webgrad", "tfjs-cpu", "tfjs-wasm", "tfjs-webgl"]) {
    for (const batch of [32, 64]) {
      // tfjs-wasm has no convolution filter gradient: inference only.
      const steps = fw === "tfjs-wasm" ? 0 : STEPS;
      const infer = batch === 32 ? 1000 : 0;
      const res = await page.evaluate(async ([fw, batch, steps, infer]) => fw === "webgrad"
        ? window.bench(batch, steps, infer)
        : window.tfjsBench(fw.slice(5), batch, steps, infer), [fw, batch, steps, infer]);
      if (res.train_ms) record(fw, `train${batch}`, res.train_ms);
      if (res.first_ms !== undefined && batch === 32) record(fw, "first", [res.first_ms]);
      if (res.ready_ms !== undefined && batch === 32) record(fw, "ready", [res.ready_ms]);
      if (res.infer_ms) record(fw, "infer", res.infer_ms);
      if (res.first_infer_ms !== undefined) record(fw, "first_infer", [res.first_infer_ms]);
    }
    console.error(`round ${r + 1}: ${fw} done`);
  }
}
const cell = (name, key) => (runs[name]?.[key] ? median(runs[name][key]) : undefined);
const fmt = (v) => (v === undefined ? "—" : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(1)} ms`);
console.log(`Chromium ${browser.version()}, ${rounds} alternating rounds, medians`);
// ready: after webgrad's first step, the wait for the pipelines it left compiling in the
// background (the steps timed above run after it).
console.log("| | train step b32 | train step b64 | inference b1000 | first step b32 | first inference | background compile after the first step |");
console.log("|---|---|---|---|---|---|---|");
for (const name of Object.keys(runs)) {
  console.log(`| ${name} | ${["train32", "train64", "infer", "first", "first_infer", "ready"]
    .map((k) => fmt(cell(name, k))).join(" | ")} |`);
}
for (const key of ["train32", "train64", "infer", "first"]) {
  const w = cell("webgrad", key);
  const ratios = Object.keys(runs).filter((n) => n !== "webgrad" && cell(n, key))
    .map((n) => `${n} ${(w / cell(n, key)).toFixed(2)}x`);
  console.log(`webgrad ${key} / anchor: ${ratios.join(", ")}`);
}
await browser.close();
server.close();
