// Used by the example's test: opens the page (argv[3]) in headless
// Chromium (argv[2]), publishes one event over Herald's REST API (argv[4],
// the body argv[5]) once the page is subscribed, and prints what the page
// shows, as JSON. Every wait is for a condition on the page.
import { chromium } from "playwright-core";

const [chrome, url, publishURL, body] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: chrome,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const text = (id) => document.getElementById(id).textContent;
try {
  const page = await browser.newPage();
  const logs = [];
  page.on("console", (m) => logs.push(m.text()));
  await page.goto(url);
  try {
    await page.waitForFunction(() => document.getElementById("state").textContent.startsWith("subscribed"), null, { timeout: 20000 });
  } catch (err) {
    throw new Error(`the page did not subscribe: it says "${await page.evaluate(text, "state")}"; console: ${JSON.stringify(logs)}`, { cause: err });
  }
  const res = await fetch(publishURL, { method: "POST", headers: { "Content-Type": "application/json" }, body });
  if (!res.ok) throw new Error(`publish: ${res.status} ${await res.text()}`);
  await page.waitForFunction(() => !document.getElementById("cart").textContent.startsWith("waiting"), null, { timeout: 20000 });
  console.log(JSON.stringify({ cart: await page.evaluate(text, "cart"), state: await page.evaluate(text, "state") }));
} finally {
  await browser.close();
}
