// The MLflow UI as a user meets it after `make run`, in Debian's headless Chromium (playwright-core
// from mobile/node_modules, no browser download). Driven by tests/test_mlflow_ui.py, which starts
// `mlflow ui` on a finished micro run and passes what the store holds in --expect (JSON):
//   { link, workflow_run, nested_runs[], models[], metrics[], view, finetune: {run_id, datasets[], model} }
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
const TIMEOUT = Number(args.timeout ?? 120000);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const failures = [];
const check = (ok, what) => { if (!ok) failures.push(what); console.log(`${ok ? "ok  " : "FAIL"} ${what}`); };
const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
page.setDefaultTimeout(TIMEOUT);
page.setDefaultNavigationTimeout(TIMEOUT);
const ML = "workflowType=machine_learning";
const experiment = expect.link.replace(/\/runs\?.*$/, "");

async function visible(text, timeout = TIMEOUT) {
  try {
    await page.getByText(text, { exact: false }).first().waitFor({ state: "visible", timeout });
    return true;
  } catch {
    return false;
  }
}

// The MLflow Assistant panel opens beside every page; close it so screenshots show the study.
async function open(url, text) {
  await page.goto(url);
  const found = await visible(text);
  const close = page.locator("button[aria-label='Close']");
  if (await close.count()) await close.first().click().catch(() => {});
  await page.waitForTimeout(1000);
  return found;
}

try {
  // 1. The printed link: the runs table in the model-training view, not the GenAI overview.
  check(await open(expect.link, expect.workflow_run), `runs table lists the workflow run '${expect.workflow_run}'`);
  check(await page.getByText("Model training").first().isVisible(), "model-training view");
  // Nested runs sit under their parent, collapsed: expand it.
  const parent = page.locator("[role=row]").filter({ hasText: expect.workflow_run }).first();
  await parent.locator("button[data-component-id$='runnamecellrenderer.tsx_46']").first().click();
  check(await visible(expect.nested_runs[0]), "the workflow run expands to its nested stage runs");
  const body = await page.locator("body").innerText();
  const missingRuns = expect.nested_runs.filter((n) => !body.includes(n));
  check(missingRuns.length === 0, `nested stage runs listed (missing: ${missingRuns.join(", ") || "none"})`);
  await page.screenshot({ path: path.join(shots, "mlflow-runs.png") });

  // 2. Models tab: every variant, with the evaluation metric columns.
  check(await open(`${experiment}/models?${ML}`, expect.models[0]), "Models tab loads");
  // The metric columns come after the model attributes, beyond the right edge: hide the attributes.
  await page.getByRole("button", { name: "Columns" }).click();
  // The column chooser is a checkable tree, not checkboxes: clicking a node's title toggles it.
  await page.getByText("Model attributes").last().click();
  await page.keyboard.press("Escape");
  await page.waitForTimeout(1500);
  // Columns are virtualised: a wide window renders every benchmark's columns (code benchmarks bring
  // pass@k, CodeT and LEVER columns before the multiple-choice ones).
  await page.setViewportSize({ width: 4000, height: 1000 });
  await page.waitForTimeout(1500);
  const models = await page.locator("body").innerText();
  await page.setViewportSize({ width: 1600, height: 1000 });
  const missingModels = expect.models.filter((m) => !models.includes(m));
  check(missingModels.length === 0, `Models tab lists every variant (missing: ${missingModels.join(", ") || "none"})`);
  const missingMetrics = expect.metrics.filter((m) => !models.includes(m));
  check(missingMetrics.length === 0, `Models tab has evaluation metric columns (missing: ${missingMetrics.join(", ") || "none"})`);
  await page.screenshot({ path: path.join(shots, "mlflow-models.png") });

  // 3. A finetune run's page: datasets, logged model, source, description, system metrics.
  const run = `${experiment}/runs/${expect.finetune.run_id}`;
  check(await open(`${run}?${ML}`, "Logged models"), "finetune run page lists logged models");
  const overview = await page.locator("body").innerText();
  check(overview.includes(expect.finetune.model), `finetune run shows its logged model '${expect.finetune.model}'`);
  const missingData = expect.finetune.datasets.filter((d) => !overview.includes(d));
  check(missingData.length === 0, `finetune run shows its datasets (missing: ${missingData.join(", ") || "none"})`);
  check(overview.includes("Training"), "its training dataset is marked as such");
  check(overview.includes("rule finetune: python -m sophia.finetune"), "finetune run shows the rule and command as its source");
  check(overview.includes("LoRA step"), "finetune run has a description");
  await page.screenshot({ path: path.join(shots, "mlflow-finetune-run.png"), fullPage: true });
  check(await open(`${run}/system-metrics?${ML}`, "cpu_utilization_percentage"), "System metrics tab has CPU utilisation");
  check(await visible("process_rss_megabytes", 10000), "System metrics tab has the job's memory");
  await page.screenshot({ path: path.join(shots, "mlflow-system-metrics.png") });

  // 4. The saved view: evaluation runs grouped by model variant.
  check(await open(`${expect.link}&viewStateShareKey=${expect.view}`, "Group by: sophia.model"), "saved view groups by sophia.model");
  check(await visible(`Group: ${expect.models[0]}`), `saved view has a group per variant ('Group: ${expect.models[0]}')`);
  await page.screenshot({ path: path.join(shots, "mlflow-by-model.png") });
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
