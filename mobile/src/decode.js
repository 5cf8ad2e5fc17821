// Greedy decoding, independent of the runtime: a model is anything with `limit` (tokens that fit),
// `reset()` and `async next(tokens)` returning the logits that follow `tokens`. The same loop drives
// the KV-cache graph and the fixed window, and the unit tests drive it with fakes.

export function argmax(logits) {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

export function cutAtStop(text, stops) {
  let end = text.length;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && i < end) end = i;
  }
  return text.slice(0, end);
}

// Returns {tokens, finish, firstTokenMs, totalMs}; finish is eos, stop, length, context or cancelled.
export async function greedy(model, promptIds, opts) {
  const { maxNewTokens, eosId, shouldStop, onToken, signal, now = () => performance.now() } = opts;
  const start = now();
  const tokens = [...promptIds];
  const out = [];
  let firstTokenMs = 0;
  let finish = "length";
  model.reset();
  while (out.length < maxNewTokens) {
    if (signal?.aborted) { finish = "cancelled"; break; }
    if (tokens.length > model.limit) { finish = "context"; break; }
    const token = argmax(await model.next(tokens));
    if (out.length === 0) firstTokenMs = now() - start;
    if (token === eosId) { finish = "eos"; break; }
    tokens.push(token);
    out.push(token);
    onToken?.(token, out);
    if (shouldStop?.(out)) { finish = "stop"; break; }
    // give the page a turn between tokens: the Stop button and streaming stay responsive
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  return { tokens: out, finish, firstTokenMs, totalMs: now() - start };
}
