// The exported graphs behind the `model` interface of decode.js, on LiteRT.js (WASM, CPU). Each
// takes a runner: a compiled model, or one signature of it (litert_torch's file holds the prefill
// and decode graphs as two signatures over one copy of the weights).
import { Tensor } from "@litertjs/core";

async function outputsOf(model, feeds) {
  const out = await model.run(feeds);
  const data = {};
  for (const [name, tensor] of Object.entries(out)) {
    data[name] = await tensor.data();
    tensor.delete();
  }
  for (const t of Object.values(feeds)) t.delete();
  return data;
}

// The window graph [1, T]. Alone: prompt at the start, zero padding after; causal, so padding never
// matters. With `pos` and KV-cache inputs (export.kv_cache set) it is also the prefill graph:
// `run` takes up to T tokens from any position into the cache the decode graph carries on.
export class WindowModel {
  constructor(compiled) {
    this.compiled = compiled;
    const inputs = compiled.getInputDetails();
    this.window = inputs.find((d) => d.name === "input_ids").shape[1];
    const k = inputs.find((d) => d.name === "k_cache");
    this.cacheShape = k ? Array.from(k.shape) : null;
    this.limit = this.window;
    this.kind = "window";
  }
  reset() {}
  async run(tokens, pos, k, v) {
    const ids = new Int32Array(this.window);
    ids.set(tokens);
    const feeds = { input_ids: new Tensor(ids, [1, this.window]) };
    if (this.cacheShape) {
      const size = this.cacheShape.reduce((a, b) => a * b, 1);
      Object.assign(feeds, {
        pos: new Tensor(new Int32Array([pos]), [1]),
        k_cache: new Tensor(k ?? new Float32Array(size), this.cacheShape),
        v_cache: new Tensor(v ?? new Float32Array(size), this.cacheShape),
      });
    }
    const out = await outputsOf(this.compiled, feeds);
    const vocab = out.logits.length / this.window;
    return { out, last: out.logits.subarray((tokens.length - 1) * vocab, tokens.length * vocab) };
  }
  async next(tokens) {
    return (await this.run(tokens, 0)).last;
  }
}

// The decode graph: one token per run against a static cache that the page carries between runs.
// With a prefill graph, runs of two or more tokens (the prompt) go through it, T per call.
export class KVModel {
  constructor(compiled, prefill = null) {
    this.compiled = compiled;
    const k = compiled.getInputDetails().find((d) => d.name === "k_cache");
    this.cacheShape = Array.from(k.shape);
    this.limit = this.cacheShape[3];
    this.size = this.cacheShape.reduce((a, b) => a * b, 1);
    if (prefill && String(prefill.cacheShape) !== String(this.cacheShape)) {
      throw new Error(`the prefill graph's cache [${prefill.cacheShape}] is not the decode graph's [${this.cacheShape}]`);
    }
    this.prefill = prefill?.cacheShape ? prefill : null;
    this.kind = "kv";
    this.reset();
  }
  reset() {
    this.k = new Float32Array(this.size);
    this.v = new Float32Array(this.size);
    this.fed = 0;
  }
  async step(token, pos) {
    const out = await outputsOf(this.compiled, {
      input_ids: new Tensor(new Int32Array([token]), [1, 1]),
      pos: new Tensor(new Int32Array([pos]), [1]),
      k_cache: new Tensor(this.k, this.cacheShape),
      v_cache: new Tensor(this.v, this.cacheShape),
    });
    // the converter may move a size-1 axis of the cache outputs: same memory layout, so reuse as is
    this.k = out.k_cache_out;
    this.v = out.v_cache_out;
    return out.logits;
  }
  async next(tokens) {
    let logits;
    while (this.fed < tokens.length) {
      const n = this.prefill ? Math.min(tokens.length - this.fed, this.prefill.window) : 1;
      if (n === 1) {
        logits = await this.step(tokens[this.fed], this.fed);
      } else {
        const { out, last } = await this.prefill.run(tokens.slice(this.fed, this.fed + n), this.fed, this.k, this.v);
        this.k = out.k_cache_out;
        this.v = out.v_cache_out;
        logits = last;
      }
      this.fed += n;
    }
    return logits;
  }
}
