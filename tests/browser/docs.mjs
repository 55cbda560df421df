// GET /docs in a real headless Chromium: the page loads with no console
// error and no failed request, makes no request outside the app, and shows
// every route of the OpenAPI document. Keeps a screenshot.
//
//   node tests/browser/docs.mjs http://127.0.0.1:3000 docs/api-reference.png
import { chromium } from "playwright-core";

const [base, screenshot] = process.argv.slice(2);
if (!base || !screenshot) {
  console.error("usage: node docs.mjs BASE_URL SCREENSHOT.png");
  process.exit(2);
}
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";

const problems = [];
const browser = await chromium.launch({
  executablePath: chromiumPath,
  headless: true,
  // Root in a container has no sandbox; the rest keeps Chromium from
  // calling home on this closed network.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1600 } });
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on("request", (r) => {
    if (!r.url().startsWith(base) && !r.url().startsWith("data:")) problems.push(`request outside the app: ${r.url()}`);
  });
  const response = await page.goto(`${base}/docs`, { waitUntil: "networkidle" });
  if (response.status() !== 200) problems.push(`GET /docs answered ${response.status()}`);
  await page.waitForSelector(".opblock", { timeout: 30000 });
  const spec = await (await fetch(`${base}/openapi.json`)).json();
  const shown = await page.locator(".opblock-summary-path").allInnerTexts();
  const normalise = (p) => p.replace(/\u200b/g, "").trim();
  for (const [path, operations] of Object.entries(spec.paths)) {
    for (const method of Object.keys(operations)) {
      const block = page.locator(`.opblock-${method} .opblock-summary-path`, { hasText: path });
      if ((await block.count()) === 0 && !shown.map(normalise).includes(path)) {
        problems.push(`route not shown: ${method.toUpperCase()} ${path}`);
      }
    }
  }
  // Swagger UI shows what it could not read of the document in a box.
  for (const text of await page.locator(".errors-wrapper").allInnerTexts()) {
    problems.push(`Swagger UI reports: ${text.replace(/\s+/g, " ").trim()}`);
  }
  await page.screenshot({ path: screenshot, fullPage: false });
  console.log(`docs page: ${shown.length} operations shown, screenshot ${screenshot}`);
} finally {
  await browser.close();
}
if (problems.length) {
  console.error("FAILED:\n  " + problems.join("\n  "));
  process.exit(1);
}
console.log("docs page: OK (no console errors, no failed or outside requests, every route shown)");
