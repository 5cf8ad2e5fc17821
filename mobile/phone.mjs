// The headless phone both the e2e test and the benchmark drive, so the figures the benchmark reports
// come from the same browser set-up the tests prove: Debian's Chromium (no browser downloads) on a
// 390x844 touch screen.
export const LAUNCH = {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
};

export const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true,
  userAgent: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Mobile Safari/537.36" };

// Waits for the app to finish loading its model; an app that ends in its error state throws with its message.
export async function ready(page, timeout = 60000) {
  await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state), null, { timeout });
  const st = await page.evaluate(() => document.body.dataset.state);
  if (st !== "ready") throw new Error(`app did not load: ${await page.textContent("#status")}`);
}
