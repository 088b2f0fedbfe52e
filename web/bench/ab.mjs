// Compares builds of the page, alternating fresh page loads so that the machine's load falls on
// all of them alike: `node web/bench/ab.mjs [--kernels] ROUNDS BUILD...`, each BUILD a copy of
// web/www/pkg made after `bash web/build.sh` of one variant (e.g. `cp -r web/www/pkg /tmp/a`).
// Per round and build, one fresh Chromium page loads that build and runs the page benchmark's
// webgrad part (`window.bench(32, 10, 1000)`: first step, background compiles, training step,
// inference); with --kernels instead the kernel table of one inference pass at batch 1,000
// (`window.profile`, GPU timestamps). Prints medians and every round's figures; web/www/pkg is
// restored afterwards.
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve, openPage } from "../tests/browser.mjs";

const args = process.argv.slice(2);
const kernels = args[0] === "--kernels";
const [rounds, ...builds] = kernels ? args.slice(1) : args;
if (!(Number(rounds) > 0) || builds.length === 0) {
  console.error("usage: node web/bench/ab.mjs [--kernels] ROUNDS BUILD...");
  process.exit(2);
}
const pkg = join(import.meta.dirname, "..", "www", "pkg");
const saved = join(mkdtempSync(join(tmpdir(), "webgrad-ab-")), "pkg");
cpSync(pkg, saved, { recursive: true });

const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
const fmt = (v) => v.toFixed(1);
// One page's figures, named.
async function measure(server) {
  const { browser, page } = await openPage(server, "/web/www/bench.html", "benchReady");
  try {
    if (!kernels) {
      const b = await page.evaluate(() => window.bench(32, 10, 1000));
      return {
        first_ms: b.first_ms, ready_ms: b.ready_ms ?? 0, train_ms: median(b.train_ms),
        infer_ms: median(b.infer_ms), first_infer_ms: b.first_infer_ms,
      };
    }
    const p = await page.evaluate(() => window.profile(32, 2, 1000));
    const out = { total_ms: 0 };
    for (const line of p.inference.split("\n")) {
      const [name, , ms] = line.trim().split(/\s+/);
      if (!isNaN(Number(ms))) { out[name] = Number(ms); out.total_ms += Number(ms); }
    }
    return out;
  } finally {
    await browser.close();
  }
}

const server = await serve();
const results = Object.fromEntries(builds.map((b) => [b, []]));
try {
  for (let r = 0; r < Number(rounds); r++) {
    for (const b of builds) {
      rmSync(pkg, { recursive: true, force: true });
      cpSync(b, pkg, { recursive: true });
      const m = await measure(server);
      results[b].push(m);
      console.error(`round ${r + 1} ${b}: ${Object.entries(m).map(([k, v]) => `${k} ${fmt(v)}`).join(", ")}`);
    }
  }
} finally {
  rmSync(pkg, { recursive: true, force: true });
  cpSync(saved, pkg, { recursive: true });
  server.close();
}
for (const b of builds) {
  const keys = [...new Set(results[b].flatMap((m) => Object.keys(m)))];
  const line = keys.map((k) => {
    const all = results[b].map((m) => m[k] ?? 0);
    return `${k} ${fmt(median(all))} [${all.map((v) => v.toFixed(0)).join(", ")}]`;
  });
  console.log(`${b}: ${line.join("; ")}`);
}
