// Serves the repository on 127.0.0.1 for the page: `node web/serve.mjs [port]`, then open the
// printed address (WebGPU: Chrome or Edge; Chromium on Linux may need --enable-unsafe-webgpu).
import { serve } from "./tests/browser.mjs";

const { url } = await serve(Number(process.argv[2] ?? 8000));
console.log(`webgrad page: ${url}/web/www/  (checks: ${url}/web/www/checks.html, ` +
  `benchmark: ${url}/web/www/bench.html)`);
