// Loading a bundle written by the workflow's export stage, and answering with it.
import { loadAndCompile, loadLiteRt } from "@litertjs/core";
import { Tokenizer } from "@huggingface/tokenizers";
import { cutAtStop, greedy } from "./decode.js";
import { KVModel, WindowModel } from "./model.js";

export class BundleError extends Error {}

let runtime = null; // the WASM runtime loads once per page, whatever number of models
const loadRuntime = (wasm) => (runtime ??= loadLiteRt(new URL(wasm, location.href).href));

async function fetchOk(url) {
  let res;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new BundleError(`Cannot load ${url.split("/").pop()}: ${e.message}`);
  }
  if (!res.ok) throw new BundleError(`Model file ${url.split("/").pop()} is missing (HTTP ${res.status}).`);
  return res;
}

async function sha256(bytes) {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

// Every file is checked against manifest.json before anything uses it.
async function verifiedBytes(base, name, manifest) {
  const entry = manifest.files[name];
  if (!entry) throw new BundleError(`${name} is not listed in the bundle's manifest.`);
  const bytes = new Uint8Array(await (await fetchOk(base + name)).arrayBuffer());
  if (bytes.length !== entry.bytes || (await sha256(bytes)) !== entry.sha256) {
    throw new BundleError(`Model file ${name} is corrupt (its sha256 does not match the manifest). ` +
      "Reinstall the app or re-export the bundle.");
  }
  return bytes;
}

const json = (bytes) => JSON.parse(new TextDecoder().decode(bytes));

export class Assistant {
  // graph kv: the prompt through the prefill (window) graph, then one decode step per token
  // (prefill false: one decode step per prompt token too); window: the window re-run per token.
  static async load(base = "./bundle/", { graph = "auto", prefill = true, wasm = "./wasm/" } = {}) {
    const start = performance.now();
    const manifest = await (await fetchOk(base + "manifest.json")).json();
    const [settings, template, tokJson, tokConfig] = await Promise.all(
      ["generation.json", "prompt.json", "tokenizer.json", "tokenizer_config.json"].map(
        async (name) => json(await verifiedBytes(base, name, manifest))));
    const chosen = graph === "auto" ? (settings.models.kv ? "kv" : "window") : graph;
    if (!settings.models[chosen]) throw new BundleError(`This bundle has no ${chosen} model.`);
    const withPrefill = Boolean(chosen === "kv" && prefill && settings.models.window);
    // each file once: both graphs may be one file's two signatures
    const names = [...new Set([settings.models[chosen], ...(withPrefill ? [settings.models.window] : [])])];
    const bytes = await Promise.all(names.map((name) => verifiedBytes(base, name, manifest)));
    await loadRuntime(wasm);
    const compiled = {};
    for (const [i, name] of names.entries()) compiled[name] = await loadAndCompile(bytes[i], { accelerator: "wasm" });
    const runner = (g) => {
      const file = compiled[settings.models[g]];
      const signature = settings.signatures?.[g];
      if (!signature) return file;
      if (!file.signatures[signature]) throw new BundleError(`${settings.models[g]} has no ${signature} signature.`);
      return file.signatures[signature];
    };
    const model = chosen === "kv"
      ? new KVModel(runner("kv"), withPrefill ? new WindowModel(runner("window")) : null)
      : new WindowModel(runner("window"));
    const tokenizer = new Tokenizer(tokJson, tokConfig);
    // The ids the model's tokenizer starts every text with (a Llama/DeepSeek-Coder BOS; none for Phi
    // and Qwen2): a tokenizer that drops them would feed the model prompts it was never trained on.
    const prefix = template.prefix_ids ?? [];
    const first = tokenizer.encode("").ids;
    if (first.length !== prefix.length || prefix.some((id, i) => first[i] !== id)) {
      throw new BundleError(`The tokenizer starts a text with [${first}], but this ` +
        `${template.family ? template.family + " " : ""}model was trained on texts starting with [${prefix}].`);
    }
    return new Assistant({ manifest, settings, template: template.template, model, tokenizer,
      loadMs: performance.now() - start });
  }

  constructor(parts) {
    Object.assign(this, parts);
  }

  encode(text) {
    return this.tokenizer.encode(text).ids; // same defaults as the Python runner
  }

  decode(ids) {
    return ids.length ? this.tokenizer.decode(ids, { skip_special_tokens: true }) : "";
  }

  prompt(request) {
    // A function replacement: a string one would expand `$$`, `$&` and `$\`` in the request (shell
    // and Perl code), so the model would see a different prompt from the one it was trained on.
    return this.template.replace("{instruction}", () => request.trim());
  }

  // Streams text through onText; resolves with ids, text, finish and the paper's timings.
  async generate(request, { maxNewTokens, onText, signal } = {}) {
    const stops = this.settings.stop_strings;
    const ids = this.encode(this.prompt(request));
    let shown = "";
    const result = await greedy(this.model, ids, {
      maxNewTokens: maxNewTokens ?? this.settings.max_new_tokens,
      eosId: this.settings.eos_token_id,
      signal,
      shouldStop: (out) => stops.some((s) => this.decode(out).includes(s)),
      onToken: (_, out) => {
        const text = cutAtStop(this.decode(out), stops);
        if (text.length > shown.length) onText?.(text.slice(shown.length), text);
        shown = text;
      },
    });
    const seconds = result.totalMs / 1000;
    return { ...result, promptIds: ids, graph: this.model.kind, prefill: Boolean(this.model.prefill),
      text: cutAtStop(this.decode(result.tokens), stops).trim(),
      tokensPerSecond: seconds > 0 ? result.tokens.length / seconds : 0 };
  }
}
