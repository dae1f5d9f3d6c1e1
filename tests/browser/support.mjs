// What every page test shares: the real `keyreg serve` on a fresh data
// dir, seeded with an org ("acme", its catalogue, a role, a keys:read key),
// headless Chromium on it, and the checks each page goes through: axe-core,
// Tab alone, the secret dialog's rules, no script dialog, CSP violation or
// request off the registry, and no secret in any log.
//
// Each `*.test.mjs` is one page (or one flow across pages) and runs in a
// process of its own with its own server: `setUp` in its `before`,
// `tearDown` in its `after`, `lastChecks()` as its last test. Screenshots go
// to SCREENSHOTS (default target/console-screenshots; `just screenshots`
// writes docs/console). Run with `just test-browser` (it builds first).

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createInterface } from "node:readline";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, openSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

export const root = resolve(import.meta.dirname, "../..");
const bin = process.env.KEYREG_BIN ?? join(root, "target/debug/keyreg");
export const shots = resolve(root, process.env.SCREENSHOTS ?? "target/console-screenshots");
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
export const work = mkdtempSync(join(tmpdir(), "keyreg-console-"));

export function chromiumPath() {
  for (const p of [process.env.CHROMIUM_BIN, "/usr/bin/chromium", "/usr/bin/chromium-browser"]) {
    if (p && existsSync(p)) return p;
  }
  throw new Error("Chromium is not installed: apt-get install chromium (or set CHROMIUM_BIN)");
}

/** Spawns `keyreg <args>` and waits for its "… listening on URL" line;
 * answers the child and the URL. */
async function spawnListening(args, logName) {
  const log = openSync(join(work, `${logName}.log`), "a");
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", log], env: { ...process.env, RUST_LOG: "keyreg=debug" } });
  const line = await new Promise((ok, fail) => {
    createInterface({ input: child.stdout }).once("line", ok);
    child.once("exit", (code) => fail(new Error(`keyreg ${args[0]} exited with ${code}`)));
  });
  return { child, url: line.replace(/.* listening on /, "").trim() };
}

/** Starts `keyreg serve` on a fresh data dir, with a `keyreg witness` of
 * its log when `witness` is set; answers its URL and system key. */
export async function startServer(name, extra = [], { witness = false } = {}) {
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run cargo build first (just test-browser does)`);
  const data = join(work, name);
  const system = execFileSync(bin, ["init", "--data", data], { stdio: ["ignore", "pipe", "ignore"] }).toString().trim();
  let cosigner = null;
  if (witness) {
    const logKey = execFileSync(bin, ["log-key", "--data", data]).toString().trim();
    cosigner = await spawnListening(["witness", "--data", join(work, `${name}-witness`), "--listen", "127.0.0.1:0",
      "--log-key", logKey, "--name", "witness.example/w1"], `${name}-witness`);
    extra = [...extra, "--witness", cosigner.url];
  }
  const clock = join(work, `${name}.clock`);
  const args = ["serve", "--data", data, "--listen", "127.0.0.1:0", "--nats", "none", "--clock-offset-file", clock];
  const { child, url } = await spawnListening([...args, ...extra], name);
  return { child, url, system, clock, offset: 0, witness: cosigner };
}

/** Moves the server's clock `seconds` forward instead of waiting for real
 * time to pass; the server reads the file again within 10 ms. */
export async function advance(server, seconds) {
  server.offset += seconds;
  writeFileSync(server.clock, String(server.offset));
  await new Promise((r) => setTimeout(r, 30));
}

/** The server's "now". */
export function serverNow(server) {
  return new Date(Date.now() + server.offset * 1000);
}

/** An API call; `person` (an email) records it as that person's act, as
 * the console does. */
export async function api(server, token, method, path, body, person = null) {
  const actor = person ? { "keyreg-actor": `user:${person}` } : {};
  const res = await fetch(server.url + path, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...actor },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** What a service would do: verify the key with curl. */
export function curlVerify(server, secret, extra = {}) {
  const out = execFileSync("curl", ["-s", "-X", "POST", `${server.url}/v1/verify`,
    "-H", `Authorization: Bearer ${secret}`, "-H", "content-type: application/json", "-d", JSON.stringify(extra)]);
  return JSON.parse(out.toString());
}

/** The file's server, browser and signed-out page, and the org's keys;
 * set by `setUp`. */
export const h = { server: null, browser: null, context: null, page: null, admin: null, viewer: null };
/** What a page did that it never should: a script dialog (an injected
 * `alert`), a CSP violation, a request off the registry. */
const misdeeds = [];

export function watch(p) {
  p.on("dialog", (d) => { misdeeds.push(`a JavaScript dialog: ${d.message()}`); d.dismiss(); });
  p.on("console", (m) => { if (/Content Security Policy|Refused to/.test(m.text())) misdeeds.push(m.text()); });
  p.on("request", (r) => { if (!r.url().startsWith(h.server.url) && !r.url().startsWith("data:")) misdeeds.push(`request to ${r.url()}`); });
}
/** Every secret a test saw; none may be in a log. */
export const secrets = [];
const pagesChecked = [];

export async function axeCheck(name, on = h.page) {
  await on.evaluate(axeSource);
  const result = await on.evaluate(() => globalThis.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target).join(" | ")})`), [],
    `accessibility violations on ${name}`);
  pagesChecked.push(name);
}

/** Every control of the page is reached with Tab alone (a radio group
 * counts once: arrows move within it), each with a visible focus ring. */
export async function keyboardCheck(name) {
  const expected = await h.page.evaluate(() => {
    const controls = [...document.querySelectorAll("a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), select, textarea, summary")]
      .filter((e) => e.getClientRects().length > 0 && !e.closest("dialog:not([open])"))
      .filter((e) => e.tagName === "SUMMARY" || !e.closest("details:not([open])"));
    return new Set(controls.map((e) => (e.type === "radio" ? `radio:${e.name}` : e))).size;
  });
  await h.page.evaluate(() => document.activeElement?.blur());
  const seen = new Set();
  const unringed = [];
  for (let i = 0; i < expected + 10; i++) {
    await h.page.keyboard.press("Tab");
    const [id, ringed] = await h.page.evaluate(() => {
      const e = document.activeElement;
      if (!e || e === document.body) return [null, true];
      e.dataset.tabSeen ??= e.type === "radio" ? `radio:${e.name}` : String(Math.random());
      return [e.dataset.tabSeen, getComputedStyle(e).outlineStyle !== "none" || `${e.tagName} ${e.id} ${e.name}`];
    });
    if (id) seen.add(id);
    if (id && ringed !== true) unringed.push(ringed);
  }
  assert.ok(seen.size >= expected, `${name}: Tab reached ${seen.size} of ${expected} controls`);
  assert.deepEqual(unringed, [], `${name}: every focused control shows a focus ring`);
}

export async function shot(name, { fullPage = true } = {}) {
  mkdirSync(shots, { recursive: true });
  await h.page.screenshot({ path: join(shots, `${name}.png`), fullPage });
}

export async function signIn(p, key, user = "") {
  await p.goto(`${h.server.url}/console/sign-in`);
  await p.getByLabel("API key").fill(key);
  if (user) await p.getByLabel("Your email").fill(user);
  await p.getByRole("button", { name: "Sign in" }).click();
}

/** The secret in the open dialog, after checking the dialog's rules. */
export async function takeSecret() {
  const dialog = h.page.locator("#secret-dialog");
  await assert.doesNotReject(dialog.waitFor({ state: "visible" }));
  assert.equal(await h.page.evaluate(() => document.querySelector("#secret-dialog").matches(":modal")), true,
    "the secret dialog is modal");
  const close = h.page.getByRole("button", { name: "Close" });
  assert.equal(await close.isDisabled(), true, "the dialog cannot be closed before the secret is stored");
  await h.page.keyboard.press("Escape");
  assert.equal(await dialog.isVisible(), true, "Escape does not dismiss the secret unacknowledged");
  for (let i = 0; i < 8; i++) {
    await h.page.keyboard.press("Tab");
    // Past its last control, focus may go to the browser's own UI, never
    // to the page behind the dialog.
    const where = await h.page.evaluate(() => {
      const e = document.activeElement;
      return !e || e === document.body ? "browser" : e.closest("dialog")?.id ?? `${e.tagName} outside`;
    });
    assert.ok(where === "secret-dialog" || where === "browser", `Tab left the secret dialog for ${where}`);
  }
  const secret = (await h.page.locator("#secret-value").textContent()).trim();
  assert.match(secret, /^kr_/);
  await h.page.getByRole("button", { name: "Copy" }).click();
  await h.page.getByText("Copied to the clipboard.").waitFor();
  assert.equal(await h.page.evaluate(() => navigator.clipboard.readText()), secret, "Copy puts the secret on the clipboard");
  assert.ok(!h.page.url().includes(secret), "the secret is never in a URL");
  await h.page.getByLabel("I have stored the secret somewhere safe").check();
  await close.click();
  assert.equal(await dialog.isVisible(), false);
  secrets.push(secret);
  return secret;
}

/** Fills the create form and submits it. A form that should be questioned
 * first (`warning`, a pattern) must show that warning before anything is
 * created; it is then confirmed. */
export async function createKey({ name, expiry, preset, actions = [], resource = "", roles = [], cidrs = "", expiresOn = "", warning = null }) {
  await h.page.goto(`${h.server.url}/console/keys/new`);
  await h.page.getByLabel("Name", { exact: true }).fill(name);
  await h.page.getByLabel("Owner").fill("ada@example.com");
  await h.page.locator(`input[name=expiry][value="${expiry}"]`).check();
  if (expiresOn) await h.page.getByLabel(/Expiry date/).fill(expiresOn);
  await h.page.locator(`input[name=preset][value="${preset || "restricted"}"]`).check();
  for (const a of actions) await h.page.locator(`input[name=action][value="${a}"]`).check();
  if (resource) await h.page.getByLabel(/Only on these resources/).fill(resource);
  for (const r of roles) await h.page.locator(`input[name=roles][value="${r}"]`).check();
  if (cidrs) await h.page.getByLabel(/Allowed IP ranges/).fill(cidrs);
  await h.page.getByRole("button", { name: "Create key" }).click();
  if (warning) {
    await h.page.getByRole("alert").filter({ hasText: "Check before creating:" }).getByText(warning).waitFor();
    assert.equal(await keyNamed(name), undefined, `${name} was created before the warning was confirmed`);
    await shot("create-warning", { fullPage: false });
    await h.page.getByRole("button", { name: "Create anyway" }).click();
  }
}

/** A page of its own (its own cookies), signed in with `key`, on the keys list. */
export async function signedInPage(key) {
  const ctx = await h.browser.newContext({ viewport: { width: 1280, height: 900 } });
  const p = await ctx.newPage();
  watch(p);
  await signIn(p, key);
  await p.waitForURL(/\/console\/keys$/);
  return { ctx, p };
}

export async function keyNamed(name, status = "all") {
  const list = await api(h.server, h.admin, "GET", `/v1/keys?status=${status}&q=${encodeURIComponent(name)}`);
  return list.body.keys.find((k) => k.name === name);
}

export const utc = (d) => d.toISOString().slice(0, 19);


/** Starts the file's server (with a witness if asked), seeds the org
 * "acme" (a small catalogue, the role "finance", the keys:read key
 * "viewer", a key whose name is markup) and opens Chromium on it. */
export async function setUp({ witness = false, extra = [] } = {}) {
  h.server = await startServer("main", ["--access-flush-ms", "100", ...extra], { witness });
  const org = await api(h.server, h.server.system, "POST", "/v1/orgs", { id: "acme", name: "Acme Corp" });
  assert.equal(org.status, 201);
  h.admin = org.body.secret;
  const catalog = await api(h.server, h.admin, "PUT", "/v1/catalog", {
    enforce: false,
    actions: [
      { action: "billing:read_costs", description: "Read cost reports" },
      { action: "billing:export", description: "Export invoices" },
      { action: "compute:start", description: "Start machines" },
      { action: "compute:list", description: "List machines" },
    ],
  });
  assert.equal(catalog.status, 200);
  assert.equal((await api(h.server, h.admin, "POST", "/v1/roles", { name: "finance", description: "Cost reports", scopes: ["billing:read_costs"] })).status, 201);
  const v = await api(h.server, h.admin, "POST", "/v1/keys", { name: "viewer", scopes: ["keys:read"] });
  h.viewer = v.body.secret;
  await api(h.server, h.admin, "POST", "/v1/keys", { name: "<script>alert(1)</script>", description: "<img src=x onerror=alert(2)>", scopes: ["read"] });
  h.browser = await chromium.launch({ executablePath: chromiumPath(), args: ["--no-sandbox"] });
  h.context = await h.browser.newContext({ viewport: { width: 1280, height: 900 } });
  await h.context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: h.server.url });
  h.page = await h.context.newPage();
  watch(h.page);
  return h;
}

/** Signs the file's page in as the org's admin, acting as ada@example.com. */
export async function signInAsAda() {
  await signIn(h.page, h.admin, "ada@example.com");
  await h.page.waitForURL(/\/console\/keys$/);
}

/** A key made through the API as ada@example.com: answers its id and secret. */
export async function seedKey(fields) {
  const made = await api(h.server, h.admin, "POST", "/v1/keys", { owner: "ada@example.com", ...fields }, "ada@example.com");
  assert.equal(made.status, 201, JSON.stringify(made.body));
  secrets.push(made.body.secret);
  return { id: made.body.key.id, secret: made.body.secret };
}

export async function tearDown() {
  await h.browser?.close();
  h.server?.child.kill("SIGTERM");
  h.server?.witness?.child.kill("SIGTERM");
}

/** The file's last test: its server is stopped (flushing its logs), then
 * no secret it saw may be in any log, axe must have checked at least
 * `pages` page states, and no page may have misbehaved. */
export function lastChecks(pages) {
  test("no secret reached a log, axe checked every page, and no page misbehaved", async () => {
    h.server.child.kill("SIGTERM");
    await new Promise((r) => h.server.child.once("exit", r));
    const logs = readdirSync(work).filter((f) => f.endsWith(".log")).map((f) => readFileSync(join(work, f), "utf8")).join("\n");
    assert.ok(logs.length > 0, "the servers logged something");
    for (const s of [...secrets, h.admin, h.viewer]) assert.ok(!logs.includes(s), "a secret is in the server's log");
    assert.ok(pagesChecked.length >= pages, pagesChecked.join(", "));
    assert.deepEqual(misdeeds, []);
  });
}
