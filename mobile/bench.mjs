// Benchmark: the app's own figures (load time, time to first token, tokens/s, decode ms/token) in
// headless Chromium on a phone viewport, for each way of running the same bundle: kv (the prompt
// through the prefill graph, then decode steps), kv-steps (the prompt one decode step per token, as
// before prefill existed) and window (the fixed window re-run per token). Each gets a fresh browser
// context with no cache and no service worker, so its load is a first start. Answers run to a fixed
// length (EOS and stop strings off) so tokens/s compares like with like.
//   node bench.mjs --app DIR [--new-tokens N] [--repeats N] [--prompt-tokens N] [--graphs kv,kv-steps,window]
// --prompt-tokens N times one request padded to N prompt tokens instead of the three short ones.
// Prints one JSON line; benchmarks/mobile_app.py runs it, writes the file and logs to MLflow.
import { resolve } from "node:path";
import { chromium } from "playwright-core";
import { LAUNCH, PHONE, ready } from "./phone.mjs";
import { serve } from "./serve.mjs";

const arg = (name, fallback) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : fallback; };
const app = resolve(arg("--app", "../results/mobile"));
const newTokens = Number(arg("--new-tokens", 32));
const repeats = Number(arg("--repeats", 3));
const promptTokens = Number(arg("--prompt-tokens", 0));
const GRAPHS = { kv: "graph=kv", "kv-steps": "graph=kv&prefill=0", window: "graph=window" };
const graphs = arg("--graphs", Object.keys(GRAPHS).join(",")).split(",");
for (const g of graphs) if (!GRAPHS[g]) throw new Error(`--graphs: unknown ${g} (known: ${Object.keys(GRAPHS)})`);
const PROMPTS = ["Give me a program that checks if a number is prime.", "Write a function that reverses a string.",
  "def area(r):\n    return 3.14159 * r * r"];
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

const { server, port } = await serve(app, 0);
const browser = await chromium.launch(LAUNCH);
const result = { app, new_tokens: newTokens, repeats, prompt_tokens: promptTokens || null, graphs: {} };
try {
  for (const graph of graphs) {
    const loads = [];
    const runs = [];
    for (let r = 0; r < repeats; r++) {
      const ctx = await browser.newContext({ ...PHONE, serviceWorkers: "block" });
      const page = await ctx.newPage();
      await page.goto(`http://127.0.0.1:${port}/?nosw&${GRAPHS[graph]}`);
      await ready(page, 120000).catch((e) => { throw new Error(`${graph}: ${e.message}`); });
      loads.push(await page.evaluate(() => window.sophia.assistant.loadMs));
      const requests = promptTokens ? [await page.evaluate((n) => {
        // words repeated until the templated prompt has n tokens, then characters dropped from the end
        // until it has no more than n (a word may add several tokens; runs report the count they had)
        const a = window.sophia.assistant;
        const words = "Give me a program that checks if a number is prime and explain each step".split(" ");
        const count = (r) => a.encode(a.prompt(r)).length;
        let request = "";
        for (let i = 0; count(request) < n; i++) request += `${i ? " " : ""}${words[i % words.length]}`;
        while (count(request) > n) request = request.slice(0, -1);
        return request;
      }, promptTokens)] : PROMPTS;
      for (const request of requests) {
        runs.push(await page.evaluate(async ({ request, n }) => {
          const a = window.sophia.assistant;
          const settings = { ...a.settings };
          Object.assign(a.settings, { eos_token_id: -1, stop_strings: [] });
          try {
            const out = await a.generate(request, { maxNewTokens: n });
            const decodeMs = out.tokens.length > 1 ? (out.totalMs - out.firstTokenMs) / (out.tokens.length - 1) : null;
            return { graph: out.prefill ? "kv" : out.graph === "kv" ? "kv-steps" : out.graph,
              prompt_tokens: out.promptIds.length, tokens: out.tokens.length, ids: out.tokens, first_token_ms: out.firstTokenMs,
              decode_ms_per_token: decodeMs, tokens_per_s: out.tokensPerSecond, finish: out.finish };
          } finally {
            Object.assign(a.settings, settings);
          }
        }, { request, n: newTokens }));
      }
      await ctx.close();
    }
    if (runs.some((r) => r.graph !== graph)) throw new Error(`asked for ${graph}, ran ${runs[0].graph}`);
    // A prompt longer than the fixed window yields no token (finish "context"): it has no speed to report
    const timed = runs.filter((r) => r.tokens > 0);
    result.graphs[graph] = {
      load_ms: median(loads),
      first_token_ms: timed.length ? median(timed.map((r) => r.first_token_ms)) : null,
      tokens_per_s: timed.length ? median(timed.map((r) => r.tokens_per_s)) : null,
      decode_ms_per_token: timed.length > 0 && timed.every((r) => r.decode_ms_per_token !== null)
        ? median(timed.map((r) => r.decode_ms_per_token)) : null,
      timed_runs: timed.length, loads_ms: loads, runs,
    };
  }
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(result));
