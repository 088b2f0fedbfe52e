// Serves the repository over loopback and opens pages in the system's headless Chromium with
// WebGPU on (its SwiftShader adapter where there is no GPU).
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { chromium } from "playwright-core";

const ROOT = normalize(join(import.meta.dirname, "..", ".."));
const TYPES = {
  ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript",
  ".wasm": "application/wasm", ".json": "application/json", ".css": "text/css",
};

/** A static file server for the repository on 127.0.0.1 (a free port unless `port` is
 * given); resolves to { url, close }. */
export async function serve(port = 0) {
  const server = createServer(async (req, res) => {
    const path = normalize(join(ROOT, decodeURIComponent(new URL(req.url, "http://x").pathname)));
    if (!path.startsWith(ROOT)) { res.writeHead(403).end(); return; }
    try {
      const body = await readFile(path);
      res.writeHead(200, { "content-type": TYPES[extname(path)] ?? "application/octet-stream" });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((ok) => server.listen(port, "127.0.0.1", ok));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

/** Headless Chromium with WebGPU, without the network chatter a closed machine refuses (each
 * launch gets a fresh profile of Playwright's). */
export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox", "--enable-unsafe-webgpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    ],
  });
}

/** A fresh headless Chromium on `path` of `server`, once the page sets `window[flag]`
 * (`bench.html` sets benchReady); resolves to { browser, page }. */
export async function openPage(server, path, flag) {
  const browser = await launch();
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.error("page error:", e));
  await page.goto(`${server.url}${path}`);
  await page.waitForFunction((f) => window[f], flag, { timeout: 120_000 });
  return { browser, page };
}
