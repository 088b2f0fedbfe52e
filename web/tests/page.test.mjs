// The page tests (`npm test` in web/, after `bash web/build.sh`): headless Chromium's WebGPU
// (SwiftShader where there is no GPU) runs webgrad compiled to WebAssembly.
// - every shader module through Chromium's WGSL compiler (Tint): no errors;
// - PyTorch's reference values (tests/reference/: ops, activations, losses, norms, pad, pools,
//   tensor_ops, optimizers) for every op family, RMSprop, Adagrad, Adadelta and the LeNet-5
//   step, under every kernel class the adapter can run, within the native tests' tolerances;
// - the blocking calls return the documented error;
// - the demo page trains LeNet-5 for one epoch of the bundled digits to at least 90% test
//   accuracy, classifies a drawn digit, loads a checkpoint; a screenshot is kept in
//   web/test-artifacts/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync, readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { serve, launch } from "./browser.mjs";

const ARTIFACTS = join(import.meta.dirname, "..", "test-artifacts");
let server, browser;

before(async () => {
  server = await serve();
  browser = await launch();
  mkdirSync(ARTIFACTS, { recursive: true });
});
after(async () => {
  await browser?.close();
  server?.close();
});

/** Opens `path` and waits until `ready` (a global) is set; page errors fail the test. */
async function open(path, ready) {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && !m.text().includes("404") &&
    errors.push(m.text()));
  await page.goto(`${server.url}${path}`);
  await page.waitForFunction((r) => window[r] || window.failed, ready, { timeout: 120_000 });
  assert.equal(await page.evaluate(() => window.failed), undefined);
  return { page, errors };
}

test("every shader compiles in Chromium's WGSL compiler", async () => {
  const { page } = await open("/web/www/checks.html", "checksReady");
  const report = await page.evaluate(() => window.checks.shaders());
  console.log(`adapter: ${report.adapter}`);
  for (const s of report.shaders) {
    console.log(`  ${s.name}: ${s.skipped ?? `${s.errors.length} errors, ${s.ms.toFixed(0)} ms`}`);
    assert.deepEqual(s.errors, [], `${s.name}.wgsl`);
  }
  assert.ok(report.shaders.filter((s) => !s.skipped).length >= 15);
  await page.close();
});

test("op families and the LeNet-5 step match PyTorch in the page", { timeout: 900_000 }, async () => {
  const { page, errors } = await open("/web/www/checks.html", "checksReady");
  const report = await page.evaluate(() => window.checks.references());
  assert.ok(report.classes.length >= 2, "the CPU and GPU kernel classes");
  for (const c of report.classes) {
    const failed = c.checks.filter((x) => !x.ok);
    console.log(`  ${c.class} kernels: ${c.checks.length - failed.length}/${c.checks.length} ` +
      `checks pass`);
    assert.deepEqual(failed, [], `${c.class} kernels`);
    assert.equal(c.device_error, null, `${c.class} kernels: device error`);
    // Every case of every op-case file ran (one that fails to run is a check named by the
    // case alone, failed above).
    const missing = report.cases.filter((k) => !c.checks.some((x) => x.name.startsWith(`${k}.`)));
    assert.deepEqual(missing, [], `${c.class}: cases run`);
    assert.ok(report.cases.length >= 170, `${report.cases.length} cases`);
    // Every op family and the LeNet-5 step ran.
    for (const name of ["conv2d_groups2.grad_weight", "max_pool2d_k2.grad_input",
      "batch_norm2d_train.grad_input", "cross_entropy.grad_input", "loss", "adam3.fc3.bias",
      "gelu_tanh.grad_input", "ce_smooth_weight_ignore_mean.grad_input",
      "group_norm_nchw.grad_weight", "batch_norm1d_ncl.running_var_after",
      "reflect_2d.grad_input", "conv2d_circular_p21.grad_weight", "max_ceil_dilated.indices",
      "avg_ceil_exclude_pad.grad_input", "adaptive_uneven.grad_input", "min_dim.indices",
      "cat_dim1.grad_c", "gather_smaller_index.grad_input", "one_hot.output",
      "rmsprop_all.step4.weight", "adagrad_all.step4.bias", "adadelta_all.step4.weight"]) {
      assert.ok(c.checks.some((x) => x.name === name), `${c.class}: ${name} checked`);
    }
  }
  assert.deepEqual(errors, []);
  await page.close();
});

test("a blocking call in the page returns the documented error", async () => {
  const { page } = await open("/web/www/checks.html", "checksReady");
  const report = await page.evaluate(() => window.checks.blocking());
  for (const [call, error] of Object.entries(report)) {
    const async = call === "Device::new" ? "Device::new_async" : `${call}_async`;
    assert.equal(error, `${call} blocks until the GPU is done, which a web page cannot do: ` +
      `await ${async} instead`);
  }
  assert.equal(Object.keys(report).length, 4);
  await page.close();
});

test("the page trains LeNet-5 to 90% in one epoch and classifies a drawn digit",
  { timeout: 900_000 }, async () => {
    const { page, errors } = await open("/web/www/index.html?autotrain=1&epochs=1", "trained");
    await page.setViewportSize({ width: 1280, height: 1100 });
    const trained = await page.evaluate(() => window.trained);
    console.log(`  one epoch: ${(trained.accuracy * 100).toFixed(2)}% in ` +
      `${trained.seconds.toFixed(1)} s (${trained.steps} steps; first ${BATCHES_PER_CALL} ` +
      `batches ${(trained.firstStepMs / 1000).toFixed(1)} s)`);
    assert.ok(trained.accuracy >= 0.9, `test accuracy ${trained.accuracy}`);
    // Draw a "1": a vertical stroke down the middle of the pad.
    const box = await page.locator("#pad").boundingBox();
    await page.mouse.move(box.x + 140, box.y + 50);
    await page.mouse.down();
    for (let y = 50; y <= 230; y += 10) await page.mouse.move(box.x + 140, box.y + y);
    await page.mouse.up();
    await page.waitForFunction(() => document.querySelectorAll("#bars .bar").length === 10);
    const p = await page.evaluate(() => window.webgrad.predict());
    assert.equal(p.indexOf(Math.max(...p)), 1, `probabilities ${p}`);
    writeFileSync(join(ARTIFACTS, "trained.png"), await page.screenshot({ fullPage: true }));
    assert.deepEqual(errors, []);
    await page.close();
  });

const BATCHES_PER_CALL = 10;

test("a checkpoint of the native lenet5 example predicts the same classes in the page",
  { skip: !existsSync(join(ARTIFACTS, "native")) && "no native checkpoint (run build.sh)" },
  async () => {
    const dir = join(ARTIFACTS, "native");
    const { page } = await open("/web/www/index.html", "ready");
    const native = JSON.parse(readFileSync(join(dir, "predictions.json"), "utf8"));
    const checkpoint = [...readFileSync(join(dir, "lenet5.safetensors"))];
    const classes = await page.evaluate(async ({ checkpoint, count }) => {
      const lab = window.webgrad.lab();
      lab.loadCheckpoint(Uint8Array.from(checkpoint), "lenet5.safetensors");
      return Array.from(await lab.testClasses(count));
    }, { checkpoint, count: native.classes.length });
    // Every digit the native model is sure of (top two probabilities 1e-3 or more apart) gets
    // the same class; a closer call may fall either way on another adapter's rounding.
    const sure = native.classes.map((_, i) => i).filter((i) => native.margins[i] >= 1e-3);
    assert.ok(sure.length >= 0.95 * native.classes.length, `${sure.length} sure digits`);
    for (const i of sure) assert.equal(classes[i], native.classes[i], `test digit ${i}`);
    console.log(`  ${sure.length}/${native.classes.length} confidently classified test digits ` +
      `agree with native webgrad (${classes.filter((c, i) => c === native.classes[i]).length} ` +
      `agree in all)`);
    await page.close();
  });
