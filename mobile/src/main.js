// The page: two modes (generate code, summarise code), streamed answers, Stop, and the paper's
// figures (load time, time to first token, tokens/s). `window.sophia` is the handle tests use.
import { Assistant } from "./assistant.js";

const $ = (id) => document.getElementById(id);
const state = (s) => { document.body.dataset.state = s; };
const PLACEHOLDER = {
  generate: "Describe the code you want, e.g. Write a function that reverses a string.",
  summarise: "Paste code to summarise.",
};
let mode = "generate";
let controller = null;

function setMode(next) {
  mode = next;
  for (const b of document.querySelectorAll("[data-mode]")) b.setAttribute("aria-pressed", String(b.dataset.mode === mode));
  $("request").placeholder = PLACEHOLDER[mode];
}

async function run(assistant) {
  const request = $("request").value;
  if (!request.trim()) return;
  controller = new AbortController();
  state("running");
  $("run").disabled = true;
  $("stop").disabled = false;
  $("answer").textContent = "";
  try {
    const result = await assistant.generate(request, {
      signal: controller.signal,
      onText: (piece) => { $("answer").textContent += piece; },
    });
    window.sophia.last = result;
    $("answer").textContent = result.text || "(no answer)";
    $("stats").textContent = `load ${(assistant.loadMs / 1000).toFixed(2)} s · first token ` +
      `${result.firstTokenMs.toFixed(0)} ms · ${result.tokens.length} tokens at ${result.tokensPerSecond.toFixed(1)} tok/s` +
      ` · ${result.finish} · ${result.graph}`;
  } catch (e) {
    // A failed generation (a runtime error in the model, an out-of-memory tab) must not leave
    // the page stuck in "running": show it, and let the user try again.
    window.sophia.lastError = String(e?.message ?? e);
    $("status").textContent = `Generation failed: ${window.sophia.lastError}`;
    $("status").setAttribute("role", "alert");
  } finally {
    $("run").disabled = false;
    $("stop").disabled = true;
    state("ready");
  }
}

async function main() {
  window.sophia = { mode: () => mode, Assistant };
  setMode("generate");
  for (const b of document.querySelectorAll("[data-mode]")) b.addEventListener("click", () => setMode(b.dataset.mode));
  if ("serviceWorker" in navigator && !new URLSearchParams(location.search).has("nosw")) {
    navigator.serviceWorker.register("./sw.js").catch((e) => console.warn("service worker:", e));
  }
  state("loading");
  $("status").textContent = "Loading the model…";
  // ?graph=window forces the fixed-window model (comparing graphs, or a KV graph a device mishandles);
  // ?prefill=0 feeds the prompt to the KV graph one token per step (what prefill saves, measured)
  const query = new URLSearchParams(location.search);
  const graph = query.get("graph") ?? "auto";
  const prefill = query.get("prefill") !== "0";
  let assistant;
  try {
    assistant = await Assistant.load("./bundle/", { graph, prefill });
  } catch (e) {
    $("status").textContent = e.message;
    $("status").setAttribute("role", "alert");
    state("error");
    return;
  }
  Object.assign(window.sophia, {
    assistant,
    encode: (text) => assistant.encode(text),
    generate: (request, opts) => assistant.generate(request, opts),
  });
  $("status").textContent = `Ready: ${assistant.manifest.model}, ${assistant.model.kind} graph${assistant.model.prefill ? " + prefill" : ""}, ` +
    `loaded in ${(assistant.loadMs / 1000).toFixed(2)} s, offline-capable.`;
  $("run").disabled = false;
  $("run").addEventListener("click", () => run(assistant));
  $("stop").addEventListener("click", () => controller?.abort());
  state("ready");
}

main();
