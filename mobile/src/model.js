// The exported graphs behind the `model` interface of decode.js, on LiteRT.js (WASM, CPU).
import { loadAndCompile, Tensor } from "@litertjs/core";

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

// Fixed window [1, T]: prompt at the start, zero padding after; causal, so padding never matters.
export class WindowModel {
  static async load(bytes) {
    const m = await loadAndCompile(bytes, { accelerator: "wasm" });
    return new WindowModel(m);
  }
  constructor(compiled) {
    this.compiled = compiled;
    const input = compiled.getInputDetails()[0];
    this.window = input.shape[1];
    this.limit = this.window;
    this.kind = "window";
  }
  reset() {}
  async next(tokens) {
    const ids = new Int32Array(this.window);
    ids.set(tokens);
    const { logits } = await outputsOf(this.compiled, { input_ids: new Tensor(ids, [1, this.window]) });
    const vocab = logits.length / this.window;
    return logits.subarray((tokens.length - 1) * vocab, tokens.length * vocab);
  }
}

// One token per run against a static cache that the page carries between runs.
export class KVModel {
  static async load(bytes) {
    const m = await loadAndCompile(bytes, { accelerator: "wasm" });
    return new KVModel(m);
  }
  constructor(compiled) {
    this.compiled = compiled;
    const k = compiled.getInputDetails().find((d) => d.name === "k_cache");
    this.cacheShape = Array.from(k.shape);
    this.limit = this.cacheShape[3];
    this.size = this.cacheShape.reduce((a, b) => a * b, 1);
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
      logits = await this.step(tokens[this.fed], this.fed);
      this.fed += 1;
    }
    return logits;
  }
}
