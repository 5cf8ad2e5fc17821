// The decoding loop with fake models of known behaviour (no browser, no LiteRT).
import assert from "node:assert/strict";
import { test } from "node:test";
import { argmax, cutAtStop, greedy } from "../../src/decode.js";

// Predicts (last token + 1) mod vocab; counts how often it ran and what it saw.
function counter({ vocab = 10, limit = 100 } = {}) {
  return {
    limit, calls: 0, resets: 0, seen: [],
    reset() { this.resets += 1; },
    async next(tokens) {
      this.calls += 1;
      this.seen.push([...tokens]);
      const logits = new Float32Array(vocab);
      logits[(tokens[tokens.length - 1] + 1) % vocab] = 1;
      return logits;
    },
  };
}

test("argmax takes the first maximum", () => {
  assert.equal(argmax(new Float32Array([0, 3, 3, 1])), 1);
  assert.equal(argmax([-5, -1, -2]), 1);
});

test("cutAtStop cuts at the earliest stop string", () => {
  assert.equal(cutAtStop("abc\nOutput: x\nInstruct: y", ["\nInstruct:", "\nOutput:"]), "abc");
  assert.equal(cutAtStop("plain", ["\nInstruct:"]), "plain");
});

test("greedy stops at the length cap and feeds back each token", async () => {
  const m = counter();
  const r = await greedy(m, [1, 2], { maxNewTokens: 3, eosId: 99 });
  assert.deepEqual(r.tokens, [3, 4, 5]);
  assert.equal(r.finish, "length");
  assert.deepEqual(m.seen, [[1, 2], [1, 2, 3], [1, 2, 3, 4]]);
  assert.equal(m.resets, 1);
  assert.ok(r.firstTokenMs >= 0 && r.totalMs >= r.firstTokenMs);
});

test("greedy stops at EOS without emitting it", async () => {
  const r = await greedy(counter(), [5], { maxNewTokens: 10, eosId: 8 });
  assert.deepEqual(r.tokens, [6, 7]);
  assert.equal(r.finish, "eos");
});

test("greedy stops when the answer reaches a stop condition", async () => {
  const r = await greedy(counter(), [0], { maxNewTokens: 10, eosId: 99, shouldStop: (out) => out.includes(3) });
  assert.deepEqual(r.tokens, [1, 2, 3]);
  assert.equal(r.finish, "stop");
});

test("greedy stops when the window or cache is full", async () => {
  const r = await greedy(counter({ limit: 4 }), [0, 1], { maxNewTokens: 10, eosId: 99 });
  assert.deepEqual(r.tokens, [2, 3, 4]); // 5 tokens in all: one past the limit is never fed
  assert.equal(r.finish, "context");
});

test("greedy can be cancelled between tokens and streams each token", async () => {
  const c = new AbortController();
  const streamed = [];
  const r = await greedy(counter(), [0], {
    maxNewTokens: 10, eosId: 99, signal: c.signal,
    onToken: (t) => { streamed.push(t); if (streamed.length === 2) c.abort(); },
  });
  assert.deepEqual(r.tokens, [1, 2]);
  assert.deepEqual(streamed, [1, 2]);
  assert.equal(r.finish, "cancelled");
});
