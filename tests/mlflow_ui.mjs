// The MLflow UI as a user meets it after `make run`, in Debian's headless Chromium (playwright-core
// from mobile/node_modules, no browser download). Driven by tests/test_mlflow_ui.py, which starts
// `mlflow ui` on a finished micro run and passes what the store holds in --expect (JSON):
//   { link, experiment, workflow_run, nested_runs[], models[], metric, finetune: {run_id, datasets[], model} }
// Checks: the printed link opens the runs table (model-training view) with the workflow run and its
// nested runs; the Models tab lists every variant with evaluation metrics; a finetune run's page shows
// its datasets, its logged model, and its system metrics. Screenshots go to --artifacts.
import { createRequire } from "node:module";
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "mobile", "package.json"));
const { chromium } = require("playwright-core");

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) =>
  (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const expect = JSON.parse(readFileSync(args.expect, "utf8"));
const shots = args.artifacts;
mkdirSync(shots, { recursive: true });
const TIMEOUT = Number(args.timeout ?? 60000);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const failures = [];
const check = (ok, what) => { if (!ok) failures.push(what); console.log(`${ok ? "ok  " : "FAIL"} ${what}`); };
const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
page.setDefaultTimeout(TIMEOUT);

async function visible(text, timeout = TIMEOUT) {
  try {
    await page.getByText(text, { exact: false }).first().waitFor({ state: "visible", timeout });
    return true;
  } catch {
    return false;
  }
}

try {
  // 1. The printed link: the runs table, not the GenAI overview.
  await page.goto(expect.link);
  check(await visible(expect.workflow_run), `runs table lists the workflow run '${expect.workflow_run}'`);
  // Nested runs sit under their parent, collapsed: expand it.
  const expander = page.locator("[data-testid='nested-runs-expander'], button[aria-label*='xpand']").first();
  if (await expander.count()) await expander.click().catch(() => {});
  await page.waitForTimeout(1500);
  const body = await page.locator("body").innerText();
  const missingRuns = expect.nested_runs.filter((n) => !body.includes(n));
  check(missingRuns.length === 0, `nested stage runs listed (missing: ${missingRuns.join(", ") || "none"})`);
  check(!/No data available/.test(body) || body.includes(expect.workflow_run), "not the empty GenAI overview");
  await page.screenshot({ path: path.join(shots, "mlflow-runs.png") });

  // 2. Models tab: every variant, with the evaluation metric columns.
  await page.goto(expect.link.replace(/\/runs\?.*$/, "/models"));
  check(await visible(expect.models[0]), "Models tab loads");
  await page.waitForTimeout(1500);
  const models = await page.locator("body").innerText();
  const missingModels = expect.models.filter((m) => !models.includes(m));
  check(missingModels.length === 0, `Models tab lists every variant (missing: ${missingModels.join(", ") || "none"})`);
  check(models.includes(expect.metric), `Models tab shows evaluation metric '${expect.metric}'`);
  await page.screenshot({ path: path.join(shots, "mlflow-models.png"), fullPage: true });

  // 3. A finetune run's page: datasets, logged model, system metrics.
  const runUrl = expect.link.replace(/\/runs\?.*$/, `/runs/${expect.finetune.run_id}`);
  await page.goto(runUrl);
  check(await visible(expect.finetune.model), `finetune run shows its logged model '${expect.finetune.model}'`);
  const overview = await page.locator("body").innerText();
  const missingData = expect.finetune.datasets.filter((d) => !overview.includes(d));
  check(missingData.length === 0, `finetune run shows its datasets (missing: ${missingData.join(", ") || "none"})`);
  check(overview.includes("rule finetune"), "finetune run shows the rule and command as its source");
  check(overview.includes("LoRA step"), "finetune run has a description");
  await page.screenshot({ path: path.join(shots, "mlflow-finetune-run.png"), fullPage: true });
  await page.goto(`${runUrl}/system-metrics`);
  check(await visible("cpu_utilization_percentage"), "finetune run's System metrics tab has CPU utilisation");
  check(await visible("process_rss_megabytes", 5000), "finetune run's System metrics tab has the job's memory");
  await page.screenshot({ path: path.join(shots, "mlflow-system-metrics.png") });
} catch (err) {
  failures.push(String(err));
  await page.screenshot({ path: path.join(shots, "mlflow-error.png") }).catch(() => {});
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(`${failures.length} check(s) failed:\n  ${failures.join("\n  ")}`);
  process.exit(1);
}
console.log("all MLflow UI checks passed");
