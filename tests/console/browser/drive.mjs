// Drives Debian's chromium through the console, for tests/console/test_browser.py.
//
// Usage: node drive.mjs CONFIG.json
// CONFIG: {base, chromium, userDataDir, spki, artifacts, analyst: {username, password},
//          viewer: {username, password}, device, alertId, alertTitle, viewerAlertId, query}
// Prints one JSON line: {"ok": true, "steps": [...]} or {"ok": false, "step", "error", ...}.
// Exits 0 either way; the Python test reads the verdict.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const steps = [];
const problems = []; // CSP violations, script errors, unexpected dialogs
let step = "launch";

function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

async function text(page, selector) {
  return (await page.locator(selector).first().textContent({ timeout: 10000 })) ?? "";
}

// With config.screens set (IOTSEC_BROWSER_SCREENS), a full-page screenshot after each step.
async function done(page, name) {
  steps.push(name);
  if (config.screens) {
    await page.screenshot({ path: join(config.screens, `${steps.length}.png`), fullPage: true });
  }
}

async function signIn(page, who) {
  await page.goto(`${config.base}/`);
  check(page.url().includes("/login"), `expected the sign-in page, got ${page.url()}`);
  await page.fill("input[name=username]", who.username);
  await page.fill("input[name=password]", who.password);
  await Promise.all([page.waitForURL((url) => !url.pathname.endsWith("/login")), page.click("form button[type=submit]")]);
  check((await text(page, "#whoami")).includes(who.username), "the header does not name the user");
}

const context = await chromium.launchPersistentContext(config.userDataDir, {
  executablePath: config.chromium,
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    `--ignore-certificate-errors-spki-list=${config.spki}`,
  ],
});
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(15000);
page.on("console", (message) => {
  if (message.type() === "error") {
    problems.push(`console: ${message.text()} @ ${message.location()?.url ?? ""}`);
  }
});
page.on("pageerror", (error) => problems.push(`script: ${error.message}`));
page.on("dialog", async (dialog) => {
  if (dialog.type() === "confirm") {
    await dialog.accept();
  } else {
    problems.push(`unexpected ${dialog.type()} dialog: ${dialog.message()}`);
    await dialog.dismiss();
  }
});

try {
  step = "sign in as the analyst";
  await signIn(page, config.analyst);
  await done(page, step);

  step = "see the device in the fleet";
  const deviceLink = page.locator("table[data-table=devices] a", { hasText: config.device });
  check((await deviceLink.count()) === 1, `the fleet does not list ${config.device}`);
  check((await page.locator("svg.chart").count()) >= 1, "the fleet has no alert chart");
  await Promise.all([page.waitForURL(/\/devices\//), deviceLink.click()]);
  check((await text(page, "#device-id")) === config.device, "the device page shows another device");
  check((await text(page, "#twin")).includes("SecurityGroup"), "the device page has no twin");
  check((await text(page, "#risk-explanation")).length > 0, "the device page explains no risk");
  await done(page, step);

  step = "open the alert";
  const alertLink = page.locator("table[data-table=alerts] a", { hasText: config.alertTitle });
  await Promise.all([page.waitForURL(/\/alerts\//), alertLink.first().click()]);
  check((await text(page, "#alert-title")) === config.alertTitle, "wrong alert title");
  const description = await text(page, "#alert-description");
  check(description.includes("<script>alert(1)</script>"), "the description is not shown as text");
  check((await text(page, "table[data-table=events]")).includes("/bin/bash"), "no evidence event");
  await done(page, step);

  step = "resolve the alert";
  await page.fill("#alert-actions input[name=reason]", "reimaged in the browser test");
  await Promise.all([
    page.waitForURL(new RegExp(`/alerts/${config.alertId}$`)),
    page.click("#alert-actions button[value=resolve]"),
  ]);
  check((await text(page, "#alert-status")) === "Resolved", "the alert is not Resolved");
  check((await page.locator("#alert-actions").count()) === 0, "a resolved alert still has actions");
  await done(page, step);

  step = "run a query";
  await page.goto(`${config.base}/query`);
  await page.fill("#q", config.query);
  // Ctrl+Enter goes through our own script (console.js), which the CSP must let load.
  await Promise.all([page.waitForURL(/\/query$/), page.press("#q", "Control+Enter")]);
  await page.locator("#query-results").waitFor();
  const rows = await page.locator("#query-results tbody tr").count();
  check(rows > 0, "the query shows no rows");
  check((await page.locator("#query-chart svg").count()) === 1, "the time series has no chart");
  await done(page, step);

  step = "the session cookie is out of reach of scripts";
  check((await page.evaluate(() => document.cookie)) === "", "document.cookie shows the session");
  await done(page, step);

  step = "sign out";
  await Promise.all([page.waitForURL(/\/login$/), page.click("header form.who button")]);
  await done(page, step);

  step = "sign in as the viewer";
  await signIn(page, config.viewer);
  await done(page, step);

  step = "a viewer is refused a change";
  const alertUrl = `${config.base}/alerts/${config.viewerAlertId}`;
  await page.goto(alertUrl);
  check((await page.locator("#alert-actions").count()) === 0, "a viewer is offered alert actions");
  const statusBefore = await text(page, "#alert-status");
  // The page offers no button, so send the form the analyst would send, with the viewer's
  // own valid CSRF token: only the server-side role check stands in the way.
  const csrf = await page.locator("header form.who input[name=csrf]").inputValue();
  const [refused] = await Promise.all([
    page.waitForResponse((response) => response.url().endsWith("/status")),
    page.evaluate(
      ({ action, token }) => {
        const form = document.createElement("form");
        form.method = "post";
        form.action = action;
        for (const [name, value] of [["csrf", token], ["action", "dismiss"], ["reason", "viewer"]]) {
          const input = document.createElement("input");
          input.type = "hidden";
          input.name = name;
          input.value = value;
          form.appendChild(input);
        }
        document.body.appendChild(form);
        form.submit();
      },
      { action: `${alertUrl}/status`, token: csrf },
    ),
  ]);
  check(refused.status() === 403, `the viewer's change answered ${refused.status()}, not 403`);
  await page.locator("#error-message").waitFor();
  check((await text(page, "#error-message")).includes("viewer role cannot"), "no refusal message");
  await page.goto(alertUrl);
  check((await text(page, "#alert-status")) === statusBefore, "the viewer changed the alert");
  await page.goto(`${config.base}/query`);
  check(await page.locator("#query-form button[type=submit]").isDisabled(), "a viewer can run queries");
  await done(page, step);

  // Chromium logs the refusal the viewer was meant to get as a failed load: not a problem.
  const refusal = (p) => p.includes("status of 403") && p.endsWith(`/alerts/${config.viewerAlertId}/status`);
  problems.splice(0, problems.length, ...problems.filter((p) => !refusal(p)));
  const csp = problems.filter((p) => p.includes("Content Security Policy") || p.includes("Refused"));
  check(csp.length === 0, `CSP violations: ${csp.join(" | ")}`);
  check(problems.length === 0, `browser problems: ${problems.join(" | ")}`);
  console.log(JSON.stringify({ ok: true, steps, version: context.browser()?.version() ?? null }));
} catch (error) {
  let screenshot = null;
  try {
    screenshot = join(config.artifacts, "failure.png");
    await page.screenshot({ path: screenshot, fullPage: true });
  } catch {
    screenshot = null;
  }
  console.log(
    JSON.stringify({
      ok: false,
      step,
      steps,
      error: String(error && error.message ? error.message : error),
      url: page.url(),
      problems,
      screenshot,
    }),
  );
} finally {
  await context.close();
}
