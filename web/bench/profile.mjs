// Where LeNet-5's time goes in the page: `node web/bench/profile.mjs [batch] [steps]
// [inference batch] [kernel class]`, after `bash web/build.sh` and `npm ci` in web/. One
// headless Chromium prints the kernel table (GPU timestamps) of `steps` training steps and of
// one inference pass, after a warm-up that compiles the pipelines.
import { serve, openPage } from "../tests/browser.mjs";

const [batch, steps, inferBatch] = [32, 10, 1000].map((d, i) => Number(process.argv[2 + i] ?? d));
const kernels = process.argv[5];
const server = await serve();
const { browser, page } = await openPage(server, "/web/www/bench.html", "benchReady");
const res = await page.evaluate((a) => window.profile(...a), [batch, steps, inferBatch, kernels]);
console.log(`${res.adapter}\n\n${steps} training steps at batch ${batch}:\n${res.step}`);
console.log(`one inference pass at batch ${inferBatch}:\n${res.inference}`);
await browser.close();
server.close();
