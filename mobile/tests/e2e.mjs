// End-to-end checks of a built app in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core; nothing is downloaded), on a phone viewport:
//   node tests/e2e.mjs --app DIR --ref ref.json --artifacts DIR
// ref.json holds the Python reference for the same bundle (tokenizer ids, greedy token ids).
// Prints one JSON line {passed, failed, results}; exits 1 when any check fails.
import { mkdirSync, mkdtempSync, rmSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";
import { LAUNCH, PHONE, ready } from "../phone.mjs";
import { serve } from "../serve.mjs";

const arg = (name, fallback) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : fallback; };
const app = resolve(arg("--app"));
const ref = JSON.parse(readFileSync(arg("--ref"), "utf8"));
const artifacts = resolve(arg("--artifacts", "test-artifacts"));
mkdirSync(artifacts, { recursive: true });

const results = [];
async function check(name, fn) {
  const start = Date.now();
  try {
    const detail = await fn();
    results.push({ name, ok: true, ms: Date.now() - start, detail: detail ?? null });
  } catch (e) {
    results.push({ name, ok: false, ms: Date.now() - start, detail: String(e?.stack ?? e) });
  }
}
function equal(got, want, what) {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
}

const PHONE_SW = { ...PHONE, serviceWorkers: "allow" };

const { server, stats, port } = await serve(app, 0);
const url = `http://127.0.0.1:${port}/`;
const profile = mkdtempSync(join(tmpdir(), "sophia-chromium-"));

async function answerThroughUi(page, request, maxNewTokens) {
  // the UI path: type, press Answer, wait for the stream to end; the cap comes from the reference
  await page.evaluate((n) => { window.sophia.assistant.settings.max_new_tokens = n; }, maxNewTokens);
  await page.fill("#request", request);
  await page.click("#run");
  await page.waitForFunction(() => document.body.dataset.state === "ready" && window.sophia.last, null,
    { timeout: 60000 });
  return page.evaluate(() => ({ ...window.sophia.last, shown: document.querySelector("#answer").textContent,
    stats: document.querySelector("#stats").textContent }));
}

// A persistent profile, as on a phone: Chrome reports incognito contexts as not installable.
const context = await chromium.launchPersistentContext(profile, { ...LAUNCH, ...PHONE_SW });
const page = context.pages()[0] ?? await context.newPage();
const consoleErrors = [];
page.on("pageerror", (e) => consoleErrors.push(String(e)));

await check("loads the bundle and reports the load time", async () => {
  await page.goto(url);
  await ready(page);
  const status = await page.textContent("#status");
  if (!/loaded in \d+\.\d+ s/.test(status)) throw new Error(`status: ${status}`);
  return status;
});

await check("tokenizer ids equal the Python tokenizer", async () => {
  for (const c of ref.tokenizer_cases) equal(await page.evaluate((t) => window.sophia.encode(t), c.text), c.ids, c.text);
  return `${ref.tokenizer_cases.length} strings`;
});

await check("generate mode: greedy token ids equal the Python reference (KV cache)", async () => {
  const r = await answerThroughUi(page, ref.generate.request, ref.generate.max_new_tokens);
  equal(r.promptIds, ref.generate.prompt_ids, "prompt ids");
  equal(r.tokens, ref.generate.tokens, "greedy ids");
  if (r.graph !== "kv" || !r.prefill) throw new Error(`graph ${r.graph}, prefill ${r.prefill}`);
  if (!/first token \d+ ms .* tok\/s/.test(r.stats)) throw new Error(`stats: ${r.stats}`);
  await page.screenshot({ path: join(artifacts, "mobile-390x844.png"), fullPage: true });
  return r.stats;
});

await check("summarise mode answers given code with the reference ids", async () => {
  await page.click('[data-mode="summarise"]');
  equal(await page.evaluate(() => window.sophia.mode()), "summarise", "mode");
  const r = await answerThroughUi(page, ref.summarise.request, ref.summarise.max_new_tokens);
  equal(r.tokens, ref.summarise.tokens, "greedy ids");
  return `${r.tokens.length} tokens, ${r.finish}`;
});

await check("the prompt fed one decode step per token (no prefill) gives the same ids", async () => {
  const r = await page.evaluate(async (g) => {
    const a = await window.sophia.Assistant.load("./bundle/", { graph: "kv", prefill: false });
    const out = await a.generate(g.request, { maxNewTokens: g.max_new_tokens });
    return { tokens: out.tokens, prefill: out.prefill };
  }, ref.generate);
  if (r.prefill) throw new Error("prefill: false still used the prefill graph");
  equal(r.tokens, ref.generate.tokens, "greedy ids without prefill");
});

await check("the fixed-window graph gives the same ids", async () => {
  const ids = await page.evaluate(async (g) => {
    const w = await window.sophia.Assistant.load("./bundle/", { graph: "window" });
    return (await w.generate(g.request, { maxNewTokens: g.max_new_tokens })).tokens;
  }, ref.window);
  if (!ids.length) throw new Error("the window graph answered with no token");
  equal(ids, ref.window.tokens, "window greedy ids");
});

await check("Stop cancels a running answer", async () => {
  const r = await page.evaluate(async (request) => {
    const c = new AbortController();
    return window.sophia.generate(request, { maxNewTokens: 1000, signal: c.signal, onText: () => c.abort() });
  }, ref.generate.request);
  // cancelled after the first streamed text, or finished before any text was shown (eos first)
  if (!(r.finish === "cancelled" || (r.finish === "eos" && r.tokens.length === 0))) {
    throw new Error(`finish ${r.finish} after ${r.tokens.length} tokens`);
  }
  return r.finish;
});

await check("a failed generation shows the error and leaves the page usable", async () => {
  await page.evaluate(() => {
    const a = window.sophia.assistant;
    a.generateOk = a.generate;
    a.generate = async () => { throw new Error("simulated runtime failure"); };
  });
  await page.fill("#request", "anything");
  await page.click("#run");
  await page.waitForFunction(() => window.sophia.lastError, null, { timeout: 10000 });
  const s = await page.evaluate(() => ({ state: document.body.dataset.state, run: document.querySelector("#run").disabled,
    stop: document.querySelector("#stop").disabled, status: document.querySelector("#status").textContent }));
  await page.evaluate(() => { const a = window.sophia.assistant; a.generate = a.generateOk; });
  equal([s.state, s.run, s.stop], ["ready", false, true], "state, Answer disabled, Stop disabled");
  if (!s.status.includes("simulated runtime failure")) throw new Error(`status: ${s.status}`);
  return s.status;
});

await check("prompts with $$ and $& are filled literally, as in Python", async () => {
  for (const c of ref.prompt_cases) {
    equal(await page.evaluate((r) => window.sophia.encode(window.sophia.assistant.prompt(r)), c.request), c.ids, c.request);
  }
  return `${ref.prompt_cases.length} requests`;
});

await check("fits the phone screen in portrait and landscape", async () => {
  for (const [w, h] of [[390, 844], [844, 390]]) {
    await page.setViewportSize({ width: w, height: h });
    const m = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: innerWidth,
      run: document.querySelector("#run").getBoundingClientRect().right }));
    if (m.scroll > m.width || m.run > m.width) throw new Error(`${w}x${h}: content ${m.scroll}px wide in ${m.width}px`);
  }
  await page.screenshot({ path: join(artifacts, "mobile-844x390.png") });
  await page.setViewportSize(PHONE.viewport);
});

await check("installable: manifest and service worker without errors", async () => {
  await page.evaluate(() => navigator.serviceWorker.ready);
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 30000 })
    .catch(async () => { await page.reload(); await ready(page); });
  const cdp = await context.newCDPSession(page);
  const { installabilityErrors } = await cdp.send("Page.getInstallabilityErrors");
  const manifest = await cdp.send("Page.getAppManifest");
  if (installabilityErrors.length || manifest.errors.length) {
    throw new Error(JSON.stringify({ installabilityErrors, manifest: manifest.errors }));
  }
});

await check("a second start works offline, with no request reaching the server", async () => {
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 30000 });
  await context.setOffline(true);
  const before = stats.requests;
  await page.reload();
  await ready(page);
  const r = await answerThroughUi(page, ref.generate.request, ref.generate.max_new_tokens);
  equal(r.tokens, ref.generate.tokens, "offline greedy ids");
  equal(stats.requests - before, 0, "requests to the server while offline");
  await context.setOffline(false);
});

await check("no uncaught page errors", async () => equal(consoleErrors, [], "page errors"));
await context.close();

// Fresh contexts with no service worker, so the damaged responses reach the page.
const browser = await chromium.launch(LAUNCH);
for (const [what, route] of [
  ["corrupt", (bytes) => { const b = Buffer.from(bytes); b[b.length >> 1] ^= 0xff; return b; }],
  ["missing", null],
]) {
  await check(`a ${what} model is refused with a clear message`, async () => {
    const ctx = await browser.newContext({ ...PHONE, serviceWorkers: "block" });
    const p = await ctx.newPage();
    await p.route("**/bundle/kv_*.tflite", async (r) => {
      if (!route) return r.fulfill({ status: 404, body: "not found" });
      const res = await r.fetch();
      return r.fulfill({ response: res, body: route(await res.body()) });
    });
    await p.goto(`${url}?nosw`);
    await p.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state), null, { timeout: 60000 });
    const st = await p.evaluate(() => document.body.dataset.state);
    const msg = await p.textContent("#status");
    await ctx.close();
    if (st !== "error" || !msg.includes(what === "corrupt" ? "is corrupt" : "is missing")) {
      throw new Error(`state ${st}: ${msg}`);
    }
    return msg;
  });
}

await browser.close();
server.close();
rmSync(profile, { recursive: true, force: true });
const failed = results.filter((r) => !r.ok).length;
console.log(JSON.stringify({ passed: results.length - failed, failed, results }));
process.exit(failed ? 1 : 0);
