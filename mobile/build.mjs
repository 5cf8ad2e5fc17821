// Assemble the app with one exported bundle into an output folder that any static host can serve:
//   node build.mjs --bundle ../results/export/<model>/bundle --out ../results/mobile
// The LiteRT.js WASM runtime is copied from node_modules (never a CDN); the bundle is checked
// against its manifest first, so a corrupt export never ships.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, renameSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { deflateSync, crc32 } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const arg = (name) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const fail = (msg) => { console.error(`error: ${msg}`); process.exit(2); };
const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");

const bundleDir = arg("--bundle") ? resolve(arg("--bundle")) : fail("--bundle DIR is required");
const out = resolve(arg("--out") ?? join(here, "dist"));
if (!existsSync(join(bundleDir, "manifest.json"))) fail(`${bundleDir}: no manifest.json, not an export bundle`);
const manifest = JSON.parse(readFileSync(join(bundleDir, "manifest.json")));
for (const [name, entry] of Object.entries(manifest.files)) {
  const file = join(bundleDir, name);
  if (!existsSync(file)) fail(`${file}: listed in the manifest but missing`);
  if (sha256(readFileSync(file)) !== entry.sha256) fail(`${file}: sha256 differs from manifest.json (corrupt)`);
}

// Build next to the target and swap at the end: a failed build leaves the previous app intact.
const tmp = `${out}.tmp-${process.pid}`;
rmSync(tmp, { recursive: true, force: true });
mkdirSync(tmp, { recursive: true });
try {
  await build({ entryPoints: [join(here, "src/main.js")], bundle: true, format: "esm", minify: true,
    outfile: join(tmp, "app.js"), logLevel: "warning", target: "es2022" });
  for (const f of ["index.html", "style.css"]) cpSync(join(here, "src", f), join(tmp, f));
  // relaxed-SIMD build (default) and the compat build for older engines; no threads (needs COOP/COEP)
  const wasmSrc = join(here, "node_modules/@litertjs/core/wasm");
  mkdirSync(join(tmp, "wasm"));
  for (const f of readdirSync(wasmSrc)) {
    if (/^litert_wasm_(compat_)?internal\.(js|wasm)$/.test(f)) cpSync(join(wasmSrc, f), join(tmp, "wasm", f));
  }
  cpSync(bundleDir, join(tmp, "bundle"), { recursive: true });
  mkdirSync(join(tmp, "icons"));
  for (const size of [192, 512]) writeFileSync(join(tmp, "icons", `icon-${size}.png`), icon(size));
  writeFileSync(join(tmp, "manifest.webmanifest"), JSON.stringify({
    name: "Sophia: offline coding assistant", short_name: "Sophia", start_url: "./", scope: "./",
    display: "standalone", orientation: "any", background_color: "#ffffff", theme_color: "#1f4e79",
    description: `Generates and summarises code on the device (${manifest.model}), no network needed.`,
    icons: [192, 512].map((s) => ({ src: `icons/icon-${s}.png`, sizes: `${s}x${s}`, type: "image/png", purpose: "any" })),
  }, null, 2));
  const assets = ["./", ...walk(tmp).map((f) => `./${relative(tmp, f)}`)];
  const version = sha256(Buffer.concat(walk(tmp).map((f) => Buffer.concat([Buffer.from(f.slice(tmp.length)), readFileSync(f)])))).slice(0, 16);
  writeFileSync(join(tmp, "sw.js"), readFileSync(join(here, "src/sw.template.js"), "utf8")
    .replace("__VERSION__", version).replace("__ASSETS__", JSON.stringify(assets.filter((a) => a !== "./sw.js"))));
  rmSync(out, { recursive: true, force: true });
  renameSync(tmp, out);
  const bytes = walk(out).reduce((n, f) => n + statSync(f).size, 0);
  console.log(`built ${out} (${manifest.model}, ${(bytes / 1e6).toFixed(1)} MB, version ${version})`);
} catch (e) {
  rmSync(tmp, { recursive: true, force: true });
  fail(e.message);
}

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? walk(join(dir, d.name)) : [join(dir, d.name)]).sort();
}

// A plain PNG (filled rounded square with a lighter bar), encoded here so the build needs no image tools.
function icon(size) {
  const px = Buffer.alloc(size * (size * 4 + 1));
  const r = size * 0.18;
  for (let y = 0; y < size; y++) {
    px[y * (size * 4 + 1)] = 0;
    for (let x = 0; x < size; x++) {
      const dx = Math.max(r - x, 0, x - (size - 1 - r)), dy = Math.max(r - y, 0, y - (size - 1 - r));
      const inside = dx * dx + dy * dy <= r * r;
      const bar = y > size * 0.45 && y < size * 0.55 && x > size * 0.25 && x < size * 0.75;
      const o = y * (size * 4 + 1) + 1 + x * 4;
      const [cr, cg, cb] = bar ? [255, 255, 255] : [31, 78, 121];
      px.set([cr, cg, cb, inside ? 255 : 0], o);
    }
  }
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0); ihdr.writeUInt32BE(size, 4); ihdr.set([8, 6, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(px)), chunk("IEND", Buffer.alloc(0))]);
}
