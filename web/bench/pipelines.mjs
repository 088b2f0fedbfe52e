// Which pipelines LeNet-5's first training step (batch 32) and first inference (batch 1,000)
// create in the page, and what each costs to compile: `node web/bench/pipelines.mjs`, after
// `bash web/build.sh` and `npm ci` in web/. One headless Chromium lists them (and times the
// two first passes); a second, fresh one (no compiled pipeline cached) compiles each on its
// own, awaiting the device after each. Prints a table, slowest first, as Markdown.
import { serve, openPage } from "../tests/browser.mjs";

const server = await serve();
async function inPage(f, arg) {
  const { browser, page } = await openPage(server, "/web/www/bench.html", "benchReady");
  const res = await page.evaluate(f, arg);
  await browser.close();
  return res;
}
const list = await inPage(() => window.pipelineList(32, 1000));
const specs = [...list.step.map((s) => ({ ...s, pass: "step" })),
  ...list.background.map((s) => ({ ...s, pass: "background" })),
  ...list.inference.map((s) => ({ ...s, pass: "inference" }))];
const times = await inPage((s) => window.pipelineTimes(s), specs.map(({ pass, ...s }) => s));
const rows = times.map((t, i) => ({ ...t, pass: specs[i].pass }));
const sum = (pass, key) => rows.filter((r) => r.pass === pass).reduce((a, r) => a + r[key], 0);
console.log(`${list.adapter}: first step ${list.first_ms.toFixed(0)} ms (${list.step.length} ` +
  `pipelines), ${list.background.length} more compiled in the background ${list.ready_ms.toFixed(0)} ` +
  `ms after it, first inference ${list.first_infer_ms.toFixed(0)} ms (${list.inference.length} new)`);
for (const pass of ["step", "background", "inference"]) {
  console.log(`${pass}: modules ${sum(pass, "module_ms").toFixed(0)} ms, ` +
    `pipelines ${sum(pass, "ms").toFixed(0)} ms`);
}
console.log("| pass | module | entry point | overrides | module ms | pipeline ms |");
console.log("|---|---|---|---|---|---|");
for (const r of [...rows].sort((a, b) => b.ms + b.module_ms - a.ms - a.module_ms)) {
  const consts = r.constants.map(([n, v]) => `${n}=${v}`).join(" ") || "—";
  console.log(`| ${r.pass} | ${r.shader} | ${r.entry} | ${consts} | ` +
    `${r.module_ms.toFixed(0)} | ${r.ms.toFixed(0)} |`);
}
server.close();
