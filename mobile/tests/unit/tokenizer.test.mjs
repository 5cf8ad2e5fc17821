// Tokenizer parity: the browser tokenizer on a bundle's tokenizer.json gives the Python ids.
// SOPHIA_TOKENIZER_REF names a JSON file {bundle, cases: [{text, ids}]} (written by the Python tests).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { Tokenizer } from "@huggingface/tokenizers";

const refPath = process.env.SOPHIA_TOKENIZER_REF;

test("browser tokenizer ids equal the Python tokenizer's", { skip: !refPath && "SOPHIA_TOKENIZER_REF not set" }, () => {
  const ref = JSON.parse(readFileSync(refPath, "utf8"));
  const read = (name) => JSON.parse(readFileSync(join(ref.bundle, name), "utf8"));
  const tok = new Tokenizer(read("tokenizer.json"), read("tokenizer_config.json"));
  assert.ok(ref.cases.length > 0);
  for (const c of ref.cases) {
    assert.deepEqual(tok.encode(c.text).ids, c.ids, JSON.stringify(c.text));
    assert.equal(tok.decode(c.ids, { skip_special_tokens: false }), c.decoded, JSON.stringify(c.text));
  }
});
