// The console, driven in Debian's Chromium (headless) against the real
// `keyreg serve` on a fresh data dir: every flow a person uses, the
// refusals, the security headers, an axe-core accessibility check of every
// page, and a screenshot of each page (SCREENSHOTS, default
// target/console-screenshots; `just screenshots` writes docs/console).
//
// Run with `just test-browser` (it builds the binary first).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, openSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const root = resolve(import.meta.dirname, "../..");
const bin = process.env.KEYREG_BIN ?? join(root, "target/debug/keyreg");
const shots = resolve(root, process.env.SCREENSHOTS ?? "target/console-screenshots");
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const work = mkdtempSync(join(tmpdir(), "keyreg-console-"));

function chromiumPath() {
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
async function startServer(name, extra = [], { witness = false } = {}) {
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
async function advance(server, seconds) {
  server.offset += seconds;
  writeFileSync(server.clock, String(server.offset));
  await new Promise((r) => setTimeout(r, 30));
}

/** The server's "now". */
function serverNow(server) {
  return new Date(Date.now() + server.offset * 1000);
}

async function api(server, token, method, path, body) {
  const res = await fetch(server.url + path, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** What a service would do: verify the key with curl. */
function curlVerify(server, secret, extra = {}) {
  const out = execFileSync("curl", ["-s", "-X", "POST", `${server.url}/v1/verify`,
    "-H", `Authorization: Bearer ${secret}`, "-H", "content-type: application/json", "-d", JSON.stringify(extra)]);
  return JSON.parse(out.toString());
}

let server, browser, context, page, admin, viewer;
/** What a page did that it never should: a script dialog (an injected
 * `alert`), a CSP violation, a request off the registry. */
const misdeeds = [];

function watch(p) {
  p.on("dialog", (d) => { misdeeds.push(`a JavaScript dialog: ${d.message()}`); d.dismiss(); });
  p.on("console", (m) => { if (/Content Security Policy|Refused to/.test(m.text())) misdeeds.push(m.text()); });
  p.on("request", (r) => { if (!r.url().startsWith(server.url) && !r.url().startsWith("data:")) misdeeds.push(`request to ${r.url()}`); });
}
const secrets = [];
const pagesChecked = [];

async function axeCheck(name, on = page) {
  await on.evaluate(axeSource);
  const result = await on.evaluate(() => globalThis.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target).join(" | ")})`), [],
    `accessibility violations on ${name}`);
  pagesChecked.push(name);
}

/** Every control of the page is reached with Tab alone (a radio group
 * counts once: arrows move within it), each with a visible focus ring. */
async function keyboardCheck(name) {
  const expected = await page.evaluate(() => {
    const controls = [...document.querySelectorAll("a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), select, textarea, summary")]
      .filter((e) => e.getClientRects().length > 0 && !e.closest("dialog:not([open])"))
      .filter((e) => e.tagName === "SUMMARY" || !e.closest("details:not([open])"));
    return new Set(controls.map((e) => (e.type === "radio" ? `radio:${e.name}` : e))).size;
  });
  await page.evaluate(() => document.activeElement?.blur());
  const seen = new Set();
  const unringed = [];
  for (let i = 0; i < expected + 10; i++) {
    await page.keyboard.press("Tab");
    const [id, ringed] = await page.evaluate(() => {
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

async function shot(name, { fullPage = true } = {}) {
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage });
}

async function signIn(p, key, user = "") {
  await p.goto(`${server.url}/console/sign-in`);
  await p.getByLabel("API key").fill(key);
  if (user) await p.getByLabel("Your email").fill(user);
  await p.getByRole("button", { name: "Sign in" }).click();
}

/** The secret in the open dialog, after checking the dialog's rules. */
async function takeSecret() {
  const dialog = page.locator("#secret-dialog");
  await assert.doesNotReject(dialog.waitFor({ state: "visible" }));
  assert.equal(await page.evaluate(() => document.querySelector("#secret-dialog").matches(":modal")), true,
    "the secret dialog is modal");
  const close = page.getByRole("button", { name: "Close" });
  assert.equal(await close.isDisabled(), true, "the dialog cannot be closed before the secret is stored");
  await page.keyboard.press("Escape");
  assert.equal(await dialog.isVisible(), true, "Escape does not dismiss the secret unacknowledged");
  for (let i = 0; i < 8; i++) {
    await page.keyboard.press("Tab");
    // Past its last control, focus may go to the browser's own UI, never
    // to the page behind the dialog.
    const where = await page.evaluate(() => {
      const e = document.activeElement;
      return !e || e === document.body ? "browser" : e.closest("dialog")?.id ?? `${e.tagName} outside`;
    });
    assert.ok(where === "secret-dialog" || where === "browser", `Tab left the secret dialog for ${where}`);
  }
  const secret = (await page.locator("#secret-value").textContent()).trim();
  assert.match(secret, /^kr_/);
  await page.getByRole("button", { name: "Copy" }).click();
  await page.getByText("Copied to the clipboard.").waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), secret, "Copy puts the secret on the clipboard");
  assert.ok(!page.url().includes(secret), "the secret is never in a URL");
  await page.getByLabel("I have stored the secret somewhere safe").check();
  await close.click();
  assert.equal(await dialog.isVisible(), false);
  secrets.push(secret);
  return secret;
}

/** Fills the create form and submits it. A form that should be questioned
 * first (`warning`, a pattern) must show that warning before anything is
 * created; it is then confirmed. */
async function createKey({ name, expiry, preset, actions = [], resource = "", roles = [], cidrs = "", expiresOn = "", warning = null }) {
  await page.goto(`${server.url}/console/keys/new`);
  await page.getByLabel("Name", { exact: true }).fill(name);
  await page.getByLabel("Owner").fill("ada@example.com");
  await page.locator(`input[name=expiry][value="${expiry}"]`).check();
  if (expiresOn) await page.getByLabel(/Expiry date/).fill(expiresOn);
  await page.locator(`input[name=preset][value="${preset || "restricted"}"]`).check();
  for (const a of actions) await page.locator(`input[name=action][value="${a}"]`).check();
  if (resource) await page.getByLabel(/Only on these resources/).fill(resource);
  for (const r of roles) await page.locator(`input[name=roles][value="${r}"]`).check();
  if (cidrs) await page.getByLabel(/Allowed IP ranges/).fill(cidrs);
  await page.getByRole("button", { name: "Create key" }).click();
  if (warning) {
    await page.getByRole("alert").filter({ hasText: "Check before creating:" }).getByText(warning).waitFor();
    assert.equal(await keyNamed(name), undefined, `${name} was created before the warning was confirmed`);
    await shot("create-warning", { fullPage: false });
    await page.getByRole("button", { name: "Create anyway" }).click();
  }
}

/** A page of its own (its own cookies), signed in with `key`, on the keys list. */
async function signedInPage(key) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const p = await ctx.newPage();
  watch(p);
  await signIn(p, key);
  await p.waitForURL(/\/console\/keys$/);
  return { ctx, p };
}

async function keyNamed(name, status = "all") {
  const list = await api(server, admin, "GET", `/v1/keys?status=${status}&q=${encodeURIComponent(name)}`);
  return list.body.keys.find((k) => k.name === name);
}

const utc = (d) => d.toISOString().slice(0, 19);

before(async () => {
  server = await startServer("main", ["--access-flush-ms", "100"], { witness: true });
  const org = await api(server, server.system, "POST", "/v1/orgs", { id: "acme", name: "Acme Corp" });
  assert.equal(org.status, 201);
  admin = org.body.secret;
  const catalog = await api(server, admin, "PUT", "/v1/catalog", {
    enforce: false,
    actions: [
      { action: "billing:read_costs", description: "Read cost reports" },
      { action: "billing:export", description: "Export invoices" },
      { action: "compute:start", description: "Start machines" },
      { action: "compute:list", description: "List machines" },
    ],
  });
  assert.equal(catalog.status, 200);
  assert.equal((await api(server, admin, "POST", "/v1/roles", { name: "finance", description: "Cost reports", scopes: ["billing:read_costs"] })).status, 201);
  const v = await api(server, admin, "POST", "/v1/keys", { name: "viewer", scopes: ["keys:read"] });
  viewer = v.body.secret;
  await api(server, admin, "POST", "/v1/keys", { name: "<script>alert(1)</script>", description: "<img src=x onerror=alert(2)>", scopes: ["read"] });
  browser = await chromium.launch({ executablePath: chromiumPath(), args: ["--no-sandbox"] });
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.url });
  page = await context.newPage();
  watch(page);
});

after(async () => {
  await browser?.close();
  server?.child.kill("SIGTERM");
  server?.witness?.child.kill("SIGTERM");
});

test("a wrong key is refused at sign-in, and the page says so", async () => {
  await signIn(page, "kr_notAKeyAtAll00000000000000000000000000");
  await page.getByRole("alert").getByText("That key is not valid").waitFor();
  assert.match(page.url(), /\/console\/sign-in$/);
  await axeCheck("sign-in");
  await shot("sign-in");
  await keyboardCheck("sign-in");
});

test("pages carry the security headers, and no page is served to a stranger", async () => {
  const res = await fetch(`${server.url}/console/keys`, { redirect: "manual" });
  assert.equal(res.status, 303);
  assert.equal(res.headers.get("location"), "/console/sign-in");
  const signInPage = await fetch(`${server.url}/console/sign-in`);
  const csp = signInPage.headers.get("content-security-policy");
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(signInPage.headers.get("x-content-type-options"), "nosniff");
  assert.equal(signInPage.headers.get("cache-control"), "no-store");
  const html = await signInPage.text();
  assert.doesNotMatch(html, /<script>|<script [^>]*>[^<]/, "no inline script");
  assert.doesNotMatch(html, /style="/, "no inline style");
  assert.doesNotMatch(html, /https?:\/\//, "no reference off the registry");
});

test("the admin signs in as a person and sees the keys", async () => {
  await signIn(page, admin, "ada@example.com");
  await page.waitForURL(/\/console\/keys$/);
  await page.getByText("ada@example.com").first().waitFor();
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "keyreg_session");
  assert.ok(session.httpOnly, "the session cookie is HttpOnly");
  assert.equal(session.sameSite, "Strict");
  assert.ok(!cookies.some((c) => c.value.includes(admin)), "the key is in no cookie");
  const storage = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  assert.ok(!storage.includes("kr_"), "the key is in no browser storage");
});

test("a key named <script> renders as text", async () => {
  await page.goto(`${server.url}/console/keys`);
  await page.getByRole("link", { name: "<script>alert(1)</script>" }).waitFor();
  assert.equal(await page.locator("td.name script").count(), 0);
  assert.equal(await page.locator("img[src=x]").count(), 0);
  await page.getByText("<img src=x onerror=alert(2)>").waitFor();
});

const creations = [
  { expiry: "7", preset: "full-access", days: 7 },
  { expiry: "30", preset: "read-only", days: 30 },
  { expiry: "60", preset: "restricted", days: 60, actions: ["billing:read_costs"] },
  { expiry: "90", preset: "", days: 90, actions: ["compute:start", "compute:list"], resource: "workspaces/ws-1/**" },
  { expiry: "180", preset: "", days: 180, roles: ["finance"] },
  { expiry: "365", preset: "", days: 365, actions: ["billing:export"], cidrs: "127.0.0.0/8\n::/0" },
  { expiry: "custom", preset: "read-only", expiresOn: "2031-03-15" },
  { expiry: "never", preset: "read-only" },
];

test("keys are created with every expiry choice and preset, the secret shown once, and they verify", async () => {
  for (const [i, c] of creations.entries()) {
    const name = `svc-${c.expiry}-${c.preset || "custom"}`;
    const warning = c.cidrs ? /contain a wildcard range/ : c.expiry === "never" ? /never expires/ : null;
    await createKey({ name, ...c, warning });
    if (i === 0) {
      await axeCheck("secret dialog");
      await shot("secret-dialog");
    }
    if (c.cidrs) await page.locator("#secret-dialog").getByText(/allows a whole address family/).waitFor();
    const secret = await takeSecret();
    if (c.expiry === "never") await page.getByText(/never expires/).first().waitFor({ state: "attached" });
    const verdict = curlVerify(server, secret, c.cidrs ? { ip: "127.0.0.1" } : {});
    assert.equal(verdict.code, "VALID", `${name} verifies`);
    const key = await keyNamed(name);
    assert.equal(key.owner, "ada@example.com");
    assert.equal(key.created_by, "user:ada@example.com", "the change is recorded as the person");
    if (c.days) {
      const days = (Date.parse(key.expires_at) - Date.parse(key.created_at)) / 86_400_000;
      assert.equal(days, c.days, `${name} expires after ${c.days} days`);
    }
    if (c.expiresOn) assert.equal(key.expires_at.slice(0, 10), c.expiresOn);
    if (c.expiry === "never") assert.equal(key.expires_at, null);
    if (c.resource) assert.deepEqual(key.scopes, ["compute:start@workspaces/ws-1/**", "compute:list@workspaces/ws-1/**"]);
    if (c.roles) assert.deepEqual(key.roles, ["finance"]);
    if (c.cidrs) assert.deepEqual(key.allowed_cidrs, ["127.0.0.0/8", "::/0"]);
  }
});

test("reloading the page that shows a new secret writes nothing again", async () => {
  await createKey({ name: "reload-once", expiry: "30", preset: "read-only" });
  await page.locator("#secret-dialog").waitFor({ state: "visible" });
  const shownAt = page.url();
  assert.match(shownAt, /\/console\/keys\/key_[^/]+\/secret$/, "the secret is shown on a page of its own, after a redirect");
  await page.reload();
  assert.equal(await page.locator("#secret-dialog").count(), 0, "a reload does not show the secret again");
  const created = await api(server, admin, "GET", `/v1/keys?status=all&q=reload-once`);
  assert.equal(created.body.keys.filter((k) => k.name === "reload-once").length, 1, "a reload creates no second key");
  await page.goBack();
  await page.goForward();
  assert.equal((await api(server, admin, "GET", `/v1/keys?status=all&q=reload-once`)).body.keys.length, 1);

  const key = created.body.keys[0];
  await page.goto(`${server.url}/console/keys/${key.id}`);
  await page.getByRole("button", { name: "Rotate" }).click();
  await page.locator("#rotate-dialog").getByRole("button", { name: "Rotate" }).click();
  await page.locator("#secret-dialog").waitFor({ state: "visible" });
  await page.reload();
  assert.equal(await page.locator("#secret-dialog").count(), 0);
  const rotations = await api(server, admin, "GET", `/v1/audit?key_id=${key.id}&type=key.rotated`);
  assert.equal(rotations.body.events.length, 1, "a reload rotates the key no second time");
});

test("a typed expiry date is the expiry, whichever choice is ticked", async () => {
  await createKey({ name: "dated-by-typing", expiry: "90", preset: "read-only", expiresOn: "2031-05-17" });
  await takeSecret();
  assert.equal(Date.parse((await keyNamed("dated-by-typing")).expires_at), Date.parse("2031-05-17T00:00:00Z"));
});

test("a refused create keeps what was typed and names the field", async () => {
  await page.goto(`${server.url}/console/keys/new`);
  await axeCheck("create key");
  await shot("create-key");
  await keyboardCheck("create key");
  await page.getByLabel("Name", { exact: true }).fill("bad-ranges");
  await page.getByLabel("Description").fill("kept after the error");
  await page.locator("input[name=preset][value=read-only]").check();
  await page.getByLabel(/Allowed IP ranges/).fill("10.0.0.0/33");
  await page.getByRole("button", { name: "Create key" }).click();
  await page.locator("#allowed_cidrs-error").waitFor();
  assert.match(await page.locator("#allowed_cidrs-error").textContent(), /^Address range 1: /, "in the form's words");
  assert.equal(await page.getByLabel("Description").inputValue(), "kept after the error");
  assert.equal(await page.getByLabel("Name", { exact: true }).inputValue(), "bad-ranges");
  assert.equal(await page.getByLabel(/Allowed IP ranges/).getAttribute("aria-invalid"), "true");
  assert.equal(await keyNamed("bad-ranges"), undefined, "nothing was created");
});

test("details show usage, the timeline and the effective permissions", async () => {
  const key = await keyNamed("svc-90-custom");
  const secret = secrets[3];
  for (let i = 0; i < 3; i++) curlVerify(server, secret);
  assert.equal(curlVerify(server, secret, { action: "zzz:never" }).code, "FORBIDDEN_SCOPE");
  // Usage counts are flushed every 100 ms by this server.
  for (let tries = 0; tries < 100; tries++) {
    const u = await api(server, admin, "GET", `/v1/keys/${key.id}/usage`);
    if (u.body.total >= 5) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await page.goto(`${server.url}/console/keys/${key.id}`);
  await page.getByRole("heading", { name: "svc-90-custom" }).waitFor();
  // By outcome, over the last 30 days unless asked otherwise: a refused
  // verify is not counted as valid use.
  assert.match(await page.locator("p.usage-total").textContent(), /^5 verifications from \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d \(UTC days\)/);
  assert.deepEqual(await page.locator("ul.outcomes").first().locator("li").allTextContents(), ["4 valid", "1 refused: action"]);
  assert.equal(await page.locator("figure.chart rect.bar").count(), 2, "one day: a valid bar and a refused one on it");
  assert.equal(await page.locator("figure.chart rect.bar.refused title").textContent(), `${serverNow(server).toISOString().slice(0, 10)}: 1 other`);
  assert.equal(await page.locator("figure.chart svg").getAttribute("viewBox"), "0 0 360 82", "30 days");
  assert.match(await page.locator("figure.chart figcaption").textContent(), /the busiest day 5 verifications$/);
  await page.getByRole("link", { name: "Last 7 days" }).click();
  await page.waitForURL(/days=7/);
  assert.equal(await page.locator("figure.chart svg").getAttribute("viewBox"), "0 0 84 82", "7 days");
  assert.equal(await page.getByRole("link", { name: "Last 7 days" }).getAttribute("aria-current"), "true");
  // Any dates: none in the future, and a range the wrong way round is
  // refused in words, the rest of the page still there.
  const tomorrow = new Date(serverNow(server).getTime() + 86_400_000).toISOString().slice(0, 10);
  const today = serverNow(server).toISOString().slice(0, 10);
  await page.getByLabel("From", { exact: true }).fill(tomorrow);
  await page.getByRole("button", { name: "Show these days" }).click();
  await page.waitForURL(/from=/);
  assert.match(await page.locator("p.usage-total").textContent(), /^0 verifications since /);
  await page.getByLabel("From", { exact: true }).fill(tomorrow);
  await page.getByLabel("to", { exact: true }).fill(today);
  await page.getByRole("button", { name: "Show these days" }).click();
  await page.locator("#usage-title ~ .notice.error").getByText("from must not be after to").waitFor();
  await page.getByRole("heading", { name: "Timeline" }).waitFor();
  await page.goto(`${server.url}/console/keys/${key.id}`);
  await page.locator("table.events").getByText("Key created").waitFor();
  // Exact times beside the relative ones, without hovering.
  assert.match(await page.locator("dd#expires").textContent(), /^in 3 months \(\d{4}-\d\d-\d\d \d\d:\d\d UTC\)$/);
  assert.match(await page.locator("table.events tbody td").first().textContent(), /\(\d{4}-\d\d-\d\d \d\d:\d\d UTC\)$/);
  assert.equal(await page.locator("figure.chart .yaxis span").first().textContent(), "5", "the chart's scale");
  await page.getByText("The days with use, as a table").click();
  assert.equal(await page.locator("details.as-table tbody tr").count(), 1, "the chart as a table");
  assert.equal(await page.locator("details.as-table tbody tr td").nth(1).textContent(), "5");
  assert.deepEqual(await page.locator("details.as-table tbody tr td").nth(2).locator("li").allTextContents(), ["4 valid", "1 refused: action"]);
  await page.locator("dd").getByText("compute:start@workspaces/ws-1/**").first().waitFor();
  await axeCheck("key details");
  await shot("key-details");
  await keyboardCheck("key details");
});

test("an edit that narrows a key used today warns before saving", async () => {
  const key = await keyNamed("svc-90-custom");
  await page.goto(`${server.url}/console/keys/${key.id}/edit`);
  await axeCheck("edit key");
  await shot("edit-key");
  await page.locator("input[name=action][value='compute:list']").uncheck();
  await page.getByLabel(/Other scopes/).fill("compute:start@workspaces/ws-1/**");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("Check before saving").waitFor();
  assert.equal((await keyNamed("svc-90-custom")).version, key.version, "nothing saved yet");
  await page.getByRole("button", { name: "Save anyway" }).click();
  await page.getByText("Changes saved.").waitFor();
  assert.deepEqual((await keyNamed("svc-90-custom")).scopes, ["compute:start@workspaces/ws-1/**"]);

  // A scope that is a catalogue action as it stands is shown ticked.
  await page.goto(`${server.url}/console/keys/${(await keyNamed("svc-365-custom")).id}/edit`);
  assert.equal(await page.locator("input[name=action][value='billing:export']").isChecked(), true);
  assert.equal(await page.getByLabel(/Other scopes/).inputValue(), "");
});

test("an edit sets the expiry, and any change of what a key may do is confirmed first", async () => {
  const key = await keyNamed("dated-by-typing");
  await page.goto(`${server.url}/console/keys/${key.id}/edit`);
  await page.getByText("Keep: 2031-05-17 00:00 UTC").waitFor();
  await page.getByLabel(/Expiry date/).fill("2032-01-01");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("Changes saved.").waitFor();
  assert.equal((await keyNamed("dated-by-typing")).expires_at, "2032-01-01T00:00:00.000000Z", "no question for an expiry");

  await page.goto(`${server.url}/console/keys/${key.id}/edit`);
  await page.getByLabel(/Other scopes/).fill("billing:read_costs");
  const before = await keyNamed("dated-by-typing");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByRole("alert").getByText(/This changes what the key may do/).waitFor();
  assert.equal((await keyNamed("dated-by-typing")).version, before.version, "the key was never used, and still nothing is saved unasked");
  await page.getByRole("button", { name: "Save anyway" }).click();
  await page.getByText("Changes saved.").waitFor();

  await page.goto(`${server.url}/console/keys/${key.id}/edit`);
  await page.locator("#expiry-never").check();
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("Check before saving").waitFor();
  await page.getByRole("button", { name: "Save anyway" }).click();
  await page.getByText("Changes saved.").waitFor();
  assert.equal((await keyNamed("dated-by-typing")).expires_at, null);
});

test("disable, enable, rotate with grace, revoke and delete by name", async () => {
  const key = await keyNamed("svc-30-read-only");
  const secret = secrets[1];
  await page.goto(`${server.url}/console/keys/${key.id}`);
  await page.getByRole("button", { name: "Disable" }).click();
  await page.getByText("The key is disabled").waitFor();
  assert.equal(curlVerify(server, secret).code, "DISABLED");
  await page.getByRole("button", { name: "Enable" }).click();
  await page.getByText("The key is enabled again").waitFor();
  assert.equal(curlVerify(server, secret).code, "VALID");

  // Rotate, keyboard only: the dialog takes focus and gives it back.
  const rotate = page.getByRole("button", { name: "Rotate" });
  await rotate.focus();
  await page.keyboard.press("Enter");
  assert.equal(await page.evaluate(() => document.activeElement.closest("dialog")?.id), "rotate-dialog");
  await page.keyboard.press("Escape");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Rotate", "focus returns to the opener");
  await rotate.click();
  await page.getByLabel("The current secret keeps working for").selectOption("3600");
  await page.locator("#rotate-dialog").getByRole("button", { name: "Rotate" }).click();
  const fresh = await takeSecret();
  assert.equal(curlVerify(server, fresh).code, "VALID");
  assert.equal(curlVerify(server, secret).code, "VALID", "the old secret works during the grace");

  await page.goto(`${server.url}/console/keys/${key.id}`);
  await page.getByRole("button", { name: "Revoke" }).click();
  await page.getByLabel("Reason").first().fill("left the team");
  await page.getByRole("button", { name: "Revoke key" }).click();
  await page.getByText("revoked", { exact: true }).first().waitFor();
  assert.equal(curlVerify(server, fresh).code, "REVOKED");
  assert.equal((await page.locator("#expires").textContent()).trim(), "—", "a revoked key expires no more");
  assert.equal(await page.getByRole("button", { name: "Delete" }).count(), 1, "a revoked key can still be deleted");

  const other = await keyNamed("svc-60-restricted");
  await page.goto(`${server.url}/console/keys/${other.id}`);
  await page.getByRole("button", { name: "Delete" }).click();
  const confirm = page.getByLabel(/Type the key's name/);
  await confirm.fill("svc-60");
  assert.equal(await page.getByRole("button", { name: "Delete key" }).isDisabled(), true);
  await confirm.fill("svc-60-restricted");
  await page.getByRole("button", { name: "Delete key" }).click();
  await page.getByText("1 key deleted.").waitFor();
  assert.equal((await keyNamed("svc-60-restricted")).status, "deleted");
});

let beforeBulk;

test("bulk revoke names the count, then the as-of view shows the keys as they were", async () => {
  await advance(server, 2);
  beforeBulk = serverNow(server);
  await advance(server, 2);
  await page.goto(`${server.url}/console/keys`);
  await shot("keys");
  await axeCheck("keys list");
  await keyboardCheck("keys list");
  assert.ok(await page.getByRole("button", { name: "Revoke selected" }).isDisabled(), "nothing selected yet");
  // Who created a key, by name; what it may do, itself; a lapsing key flagged.
  const row = (name) => page.locator("table.keys tbody tr", { has: page.getByRole("link", { name, exact: true }) });
  assert.equal(await row("viewer").locator("td[data-label='Created by']").textContent(), "key admin");
  assert.equal(await row("svc-90-custom").locator("td[data-label='Created by']").textContent(), "ada@example.com");
  assert.match(await row("svc-90-custom").locator("td[data-label=Permissions]").textContent(), /compute:start@workspaces\/ws-1\/\*\*/);
  assert.match(await row("svc-7-full-access").locator("td[data-label=Expires]").textContent(), /expires soon/);
  assert.doesNotMatch(await row("svc-90-custom").locator("td[data-label=Expires]").textContent(), /expires soon/);
  for (const name of ["svc-180-custom", "svc-365-custom"]) {
    await page.getByRole("checkbox", { name: `Select ${name}` }).check();
  }
  await page.getByRole("button", { name: "Revoke selected" }).click();
  await page.getByRole("heading", { name: "Revoke 2 keys?" }).waitFor();
  await axeCheck("bulk confirmation");
  await shot("bulk-confirmation");
  await page.getByRole("button", { name: "Revoke 2 keys" }).click();
  await page.getByText("2 keys revoked.").waitFor();
  assert.equal((await keyNamed("svc-180-custom")).status, "revoked");
  assert.equal(await page.getByRole("link", { name: "svc-180-custom" }).count(), 0, "revoked keys leave the Active list");

  await page.getByLabel("As of (UTC)").fill(utc(beforeBulk));
  await page.getByRole("button", { name: "Apply" }).click();
  await page.getByText("This view is read-only").waitFor();
  await page.getByRole("link", { name: "svc-180-custom" }).waitFor();
  assert.equal(await page.getByRole("button", { name: "Revoke selected" }).count(), 0, "no bulk actions in the past");
  assert.equal(await page.getByRole("link", { name: "Create key" }).count(), 0);
  await axeCheck("keys as of");
  await shot("keys-as-of");
});

test("each row has a menu of the key's actions", async () => {
  const made = await api(server, admin, "POST", "/v1/keys", { name: "menu-target", scopes: ["read"] });
  assert.equal(made.status, 201);
  await page.goto(`${server.url}/console/keys`);
  const menu = page.getByLabel("Actions for menu-target");
  await menu.focus();
  await page.keyboard.press("Enter");
  const items = page.locator("details.menu[open] li");
  assert.deepEqual(await items.allTextContents(), ["Open", "Edit", "Disable", "Rotate…", "Revoke…", "Delete…"]);
  await axeCheck("keys list, a row's menu open");
  await shot("keys-row-menu", { fullPage: false });
  await page.locator("details.menu[open]").getByRole("button", { name: "Disable" }).click();
  await page.getByText("The key is disabled: it is refused until enabled again.").waitFor();
  assert.equal((await keyNamed("menu-target")).status, "disabled");
  await page.goto(`${server.url}/console/keys?status=disabled`);
  await page.getByLabel("Actions for menu-target").click();
  await page.locator("details.menu[open]").getByRole("link", { name: "Revoke…" }).click();
  await page.getByRole("heading", { name: "Revoke menu-target?" }).waitFor();
  await page.getByRole("button", { name: "Revoke key" }).click();
  await page.getByText("1 key revoked.").waitFor();
  assert.equal((await keyNamed("menu-target")).status, "revoked");
});

test("a key from before keyreg is imported with its secret, marked legacy, and verifies", async () => {
  const legacy = `sk_live_${randomBytes(18).toString("hex")}`;
  secrets.push(legacy);
  await page.goto(`${server.url}/console/keys`);
  await page.getByRole("link", { name: "Import a key" }).click();
  await page.getByRole("heading", { name: "Import a key" }).waitFor();
  await axeCheck("import key");
  await page.getByLabel("Name", { exact: true }).fill("old-billing-sync");
  await page.getByLabel("Secret", { exact: true }).fill(legacy);
  await page.getByLabel(/Or only its SHA-256/).fill("not hex");
  await page.locator("input[name=preset][value=read-only]").check();
  await page.getByRole("button", { name: "Import key" }).click();
  await page.getByRole("alert").first().waitFor();
  assert.equal(await page.getByLabel("Name", { exact: true }).inputValue(), "old-billing-sync", "what was typed is kept");
  assert.equal(await page.getByLabel("Secret", { exact: true }).inputValue(), "", "the secret is never put back in a page");
  assert.ok(!(await page.content()).includes(legacy), "the secret is nowhere in the page");
  assert.equal(await keyNamed("old-billing-sync"), undefined);

  await page.getByLabel("Secret", { exact: true }).fill(legacy);
  await page.getByLabel(/Or only its SHA-256/).fill("");
  await page.getByRole("button", { name: "Import key" }).click();
  await page.getByText("The key is imported: its holders keep using their secret until you rotate the key.").waitFor();
  await page.locator(".headline .badge.legacy").waitFor();
  await shot("key-imported", { fullPage: false });
  assert.equal(curlVerify(server, legacy, { action: "billing:read_costs" }).code, "VALID", "the old secret verifies");
  await page.goto(`${server.url}/console/keys`);
  const row = page.locator("table.keys tbody tr", { has: page.getByRole("link", { name: "old-billing-sync" }) });
  assert.equal(await row.locator(".badge.legacy").textContent(), "legacy");
});

test("filters: status, search, and only my keys", async () => {
  await page.goto(`${server.url}/console/keys`);
  await page.getByLabel("Status").selectOption("revoked");
  await page.getByLabel("Name contains").fill("svc-1");
  await page.getByRole("button", { name: "Apply" }).click();
  await page.getByRole("link", { name: "svc-180-custom" }).waitFor();
  assert.equal(await page.getByRole("link", { name: "svc-365-custom" }).count(), 0);
  await page.goto(`${server.url}/console/keys?status=all&by_me=1`);
  await page.getByRole("link", { name: "svc-7-full-access" }).waitFor();
  assert.equal(await page.getByRole("link", { name: "viewer" }).count(), 0, "keys made by others are left out");
});

test("the owner filter, and pages that stay stable while keys are created", async () => {
  await page.goto(`${server.url}/console/keys?owner=${encodeURIComponent("ada@example.com")}`);
  await page.getByRole("link", { name: "svc-7-full-access" }).waitFor();
  assert.equal(await page.getByRole("link", { name: "viewer" }).count(), 0);

  const make = (name) => api(server, admin, "POST", "/v1/keys", { name, scopes: ["read"], owner: "pager" });
  for (let i = 0; i < 55; i++) await make(`page-${String(i).padStart(2, "0")}`);
  await page.goto(`${server.url}/console/keys?owner=pager`);
  const names = () => page.locator("td.name > a").allTextContents();
  const first = await names();
  assert.equal(first.length, 50);
  for (let i = 55; i < 60; i++) await make(`page-${i}`);
  await page.getByRole("link", { name: "Next page" }).click();
  const second = await names();
  assert.deepEqual(second, ["page-04", "page-03", "page-02", "page-01", "page-00"], "the next page continues where the first ended");
  await page.getByRole("link", { name: "First page" }).click();
  assert.equal((await names())[0], "page-59", "the first page shows the newest keys");
});

test("the audit page filters the history and shows the chain badge and the witnessed checkpoint", async () => {
  await page.goto(`${server.url}/console/audit`);
  await page.getByText(/Chain verified: \d+ events, up to seq \d+, head hash/).waitFor();
  const badge = page.getByText(/Signed checkpoint of the whole log: /);
  const shown = await badge.textContent();
  const [, size] = /Signed checkpoint of the whole log: (\d+) events?, root .*…, cosigned by witness\.example\/w1$/.exec(shown) ?? [];
  assert.ok(size, `the checkpoint badge names its witness: ${shown}`);
  const note = await (await fetch(`${server.url}/v1/checkpoint`)).text();
  const [, , noteSize, root] = /^(.*)\n(\d+)\n(.*)\n/.exec(note);
  assert.ok(Number(noteSize) >= Number(size), `${noteSize} >= ${size}`);
  const shownRoot = await badge.locator("code").getAttribute("title");
  assert.match(shownRoot, /^[A-Za-z0-9+/]{43}=$/, "the full root is on hover");
  // Access reports may have grown the log since the page was drawn.
  if (noteSize === size) assert.equal(shownRoot, root, "the badge's root is the checkpoint's");
  await page.getByLabel("Type").selectOption("key.revoked");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.locator("table.events tbody tr").first().waitFor();
  const types = await page.locator("table.events tbody td:nth-child(2)").allTextContents();
  assert.ok(types.length >= 3 && types.every((t) => t === "Key revoked"), types.join(","));
  // People, keys by name: no raw actor on the page but on hover.
  const by = await page.locator("table.events tbody td:nth-child(3)").first().textContent();
  assert.equal(by, "ada@example.comthrough key admin");
  const text = await page.locator("table.events").innerText();
  assert.ok(!/key:key_|user:|system:/.test(text), `raw actors shown: ${text}`);
  await page.getByText("reason: left the team").waitFor();
  await axeCheck("audit");
  await shot("audit");
});

test("roles: create, edit with the keys it reaches, delete with force", async () => {
  await page.goto(`${server.url}/console/roles`);
  await page.getByRole("link", { name: "Create role" }).click();
  await page.getByLabel("Name").fill("ops");
  await page.getByLabel(/Scopes/).fill("compute:start\ncompute:list");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("Role created.").waitFor();
  await axeCheck("roles");
  await shot("roles");
  const k = await api(server, admin, "POST", "/v1/keys", { name: "ops-bot", roles: ["ops"] });
  assert.equal(k.status, 201);
  await page.getByRole("link", { name: "ops" }).click();
  await page.getByText(/Held by 1 key: they change with the role/).waitFor();
  await axeCheck("role edit");
  await shot("role-edit");
  await page.getByLabel(/Scopes/).fill("compute:list");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("Role saved").waitFor();
  assert.deepEqual((await keyNamed("ops-bot")).effective_scopes, ["compute:list"]);
  await page.getByRole("link", { name: "ops" }).click();
  await page.getByRole("button", { name: "Delete role" }).click();
  await page.getByText("The role was not deleted").waitFor();
  await page.goBack();
  await page.getByLabel(/Also when keys hold it/).check();
  await page.getByRole("button", { name: "Delete role" }).click();
  await page.getByText("Role deleted.").waitFor();
  assert.deepEqual((await keyNamed("ops-bot")).roles, []);
  await page.goto(`${server.url}/console/catalog`);
  await page.getByText("billing:read_costs").first().waitFor();
  await axeCheck("catalogue");
  await shot("catalogue");
});

test("the organization page shows counts, the limit and usage", async () => {
  await page.goto(`${server.url}/console/org`);
  await page.getByText("Acme Corp").waitFor();
  await page.getByText(/of at most/).waitFor();
  await page.locator("figure.chart svg").waitFor();
  // The busiest keys of the range, each a link to its page.
  const busiest = page.locator("table.busiest tbody tr", { hasText: "svc-90-custom" });
  await busiest.getByRole("link", { name: "svc-90-custom" }).waitFor();
  assert.equal(await busiest.locator("td").nth(1).textContent(), "5");
  assert.match(await busiest.locator("td").nth(2).textContent(), /1 refused: action/);
  await axeCheck("organization");
  await shot("organization");
});

test("long names and descriptions keep every column on screen at 1,280 and 360 px", async () => {
  const long = await api(server, admin, "POST", "/v1/keys", {
    name: "n".repeat(60) + " " + "x".repeat(39), description: "A very long description. ".repeat(40), scopes: ["billing:read_costs"],
  });
  assert.equal(long.status, 201);
  await api(server, admin, "POST", `/v1/keys/${long.body.key.id}/revoke`, { reason: "r".repeat(500) });
  const fits = async (path, width) => {
    await page.goto(server.url + path);
    const scroll = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(scroll <= width, `${path} is ${scroll} px wide at a ${width} px viewport`);
    const overflowing = await page.evaluate((w) => [...document.querySelectorAll("table")]
      .filter((t) => t.getBoundingClientRect().right > w + 1).length, width);
    assert.equal(overflowing, 0, `a table of ${path} runs past ${width} px`);
  };
  for (const path of ["/console/keys?status=all", "/console/audit", `/console/keys/${long.body.key.id}`]) {
    await fits(path, 1280);
  }
  await page.goto(`${server.url}/console/keys?status=all`);
  const expires = await page.locator("table.keys th", { hasText: "Expires" }).boundingBox();
  assert.ok(expires.x + expires.width <= 1280, "the Expires column is on screen");
  await page.setViewportSize({ width: 360, height: 800 });
  for (const path of ["/console/keys?status=all", "/console/keys/new", "/console/audit", "/console/org"]) {
    await fits(path, 360);
  }
  // On a phone each row is a card that still shows every column.
  await page.goto(`${server.url}/console/keys`);
  const card = page.locator("table.keys tbody tr").first();
  for (const label of ["Status", "Permissions", "Created by", "Last used", "Expires"]) {
    assert.ok(await card.locator(`td[data-label='${label}']`).isVisible(), `${label} shows at 360 px`);
  }
  await card.scrollIntoViewIfNeeded();
  await shot("keys-mobile", { fullPage: false });
  await page.setViewportSize({ width: 1280, height: 900 });
});

test("a form without its CSRF token changes nothing", async () => {
  const before = (await api(server, admin, "GET", "/v1/keys?status=all&limit=1000")).body.keys.length;
  const res = await page.request.post(`${server.url}/console/keys/new`, {
    form: { name: "forged", preset: "read-only", expiry: "30" },
    maxRedirects: 0,
  });
  assert.equal(res.status(), 403);
  assert.match(await res.text(), /no valid CSRF token/);
  const after = (await api(server, admin, "GET", "/v1/keys?status=all&limit=1000")).body.keys.length;
  assert.equal(after, before);
});

test("sign out ends the session", async () => {
  await page.goto(`${server.url}/console/keys`);
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(/sign-in/);
  await page.goto(`${server.url}/console/keys`);
  await page.waitForURL(/sign-in/);
});

test("a keys:read key sees no create button, and the server refuses it anyway", async () => {
  const p = await context.newPage();
  watch(p);
  await signIn(p, viewer);
  await p.waitForURL(/\/console\/keys$/);
  assert.equal(await p.getByRole("link", { name: "Create key" }).count(), 0);
  assert.equal(await p.getByRole("button", { name: "Revoke selected" }).count(), 0);
  await p.goto(`${server.url}/console/keys/new`);
  await p.getByLabel("Name", { exact: true }).fill("not-allowed");
  await p.locator("input[name=preset][value=read-only]").check();
  await p.getByRole("button", { name: "Create key" }).click();
  await p.getByText(/Your key does not allow this/).waitFor();
  assert.equal(await keyNamed("not-allowed"), undefined);
  // The history is not its to read: one sentence says so, and nothing else.
  const answer = await p.goto(`${server.url}/console/audit`);
  assert.equal(answer.status(), 403);
  assert.equal(await p.getByRole("alert").count(), 1);
  await p.getByText(/that needs audit:read/).waitFor();
  assert.equal(await p.locator("form.filters").count(), 0);
  await p.close();
});

test("a key limit reached answers 409, as the API does, and keeps the form", async () => {
  const org = await api(server, server.system, "POST", "/v1/orgs", { id: "tiny", name: "Tiny", max_keys: 1 });
  assert.equal(org.status, 201);
  const { ctx, p } = await signedInPage(org.body.secret);
  await p.goto(`${server.url}/console/keys/new`);
  await p.getByLabel("Name", { exact: true }).fill("one-too-many");
  await p.locator("input[name=preset][value=read-only]").check();
  const [answer] = await Promise.all([
    p.waitForResponse((r) => r.url().endsWith("/console/keys/new") && r.request().method() === "POST"),
    p.getByRole("button", { name: "Create key" }).click(),
  ]);
  assert.equal(answer.status(), 409);
  await p.getByText("The organization is at its limit of 1 key (revoked and deleted keys do not count).").waitFor();
  await p.getByRole("alert").first().waitFor();
  assert.equal(await p.getByLabel("Name", { exact: true }).inputValue(), "one-too-many", "what was typed is kept");
  await ctx.close();
});

test("a large catalogue: actions found by search, a service ticked whole, presets that differ", async () => {
  const org = await api(server, server.system, "POST", "/v1/orgs", { id: "big", name: "Big" });
  const services = ["billing", "compute", "storage", "network", "identity"];
  const verbs = ["read", "list", "create", "update", "delete", "export", "import", "admin"];
  const actions = services.flatMap((s) => verbs.map((v) => ({ action: `${s}:${v}`, description: `${v} ${s}` })));
  assert.equal((await api(server, org.body.secret, "PUT", "/v1/catalog", { enforce: true, actions })).status, 200);
  const { ctx, p } = await signedInPage(org.body.secret);
  await p.goto(`${server.url}/console/keys/new`);
  const presets = await p.locator("input[name=preset]").evaluateAll((r) => r.map((e) => e.value));
  assert.deepEqual(presets, ["full-access", "read-only", "restricted"], "one choice for 'nothing but what is ticked'");
  assert.ok(await p.locator("input[name=preset][value=restricted]").isChecked());
  await p.screenshot({ path: join(shots, "create-key-large-catalogue.png"), fullPage: true });
  const height = await p.evaluate(() => document.documentElement.scrollHeight);
  assert.ok(height < 2600, `the form is ${height} px tall with ${actions.length} actions (it was 4,000 with 37)`);
  await p.getByLabel("Find an action").fill("export");
  const shown = await p.locator("input[name=action]").evaluateAll((b) => b.filter((e) => e.getClientRects().length > 0).map((e) => e.value));
  assert.deepEqual(shown, services.map((s) => `${s}:export`));
  await p.getByLabel("Find an action").fill("");
  await p.locator("details.service summary", { hasText: "billing" }).click();
  await p.getByLabel("All of billing").check();
  await p.getByLabel("Name", { exact: true }).fill("billing-all");
  await p.locator("input[name=expiry][value='30']").check();
  await p.getByRole("button", { name: "Create key" }).click();
  await p.locator("#secret-dialog").waitFor({ state: "visible" });
  const made = (await api(server, org.body.secret, "GET", "/v1/keys?q=billing-all")).body.keys[0];
  assert.deepEqual([...made.scopes].sort(), verbs.map((v) => `billing:${v}`).sort());
  // A built-in preset works whatever the catalogue enforces.
  await p.goto(`${server.url}/console/keys/new`);
  await p.getByLabel("Name", { exact: true }).fill("reader");
  await p.locator("input[name=expiry][value='30']").check();
  await p.locator("input[name=preset][value=read-only]").check();
  await p.getByRole("button", { name: "Create key" }).click();
  await p.locator("#secret-dialog").waitFor({ state: "visible" });
  await p.goto(`${server.url}/console/keys/new`);
  await p.locator("details.service summary", { hasText: "compute" }).click();
  await p.locator("input[name=action][value='compute:read']").check();
  assert.ok(await p.getByLabel("All of compute").evaluate((e) => e.indeterminate), "some of compute ticked");
  await axeCheck("create key, a large catalogue", p);
  await ctx.close();
});

test("the operator creates organizations, renames them and sets their limits", async () => {
  const { ctx, p } = await signedInPage(server.system);
  await p.getByRole("link", { name: "This organization" }).click();
  await p.getByText("You set the limits on the Organizations page.").waitFor();
  await p.getByRole("navigation").getByRole("link", { name: "Organizations" }).click();
  const ids = await p.locator("table.orgs tbody td.name code").allTextContents();
  assert.deepEqual(ids, ["_system", "acme", "big", "tiny"]);
  await axeCheck("organizations", p);

  await p.getByLabel(/^Id/).fill("Not An Id");
  await p.getByLabel("Name", { exact: true }).fill("Nope");
  await p.getByRole("button", { name: "Create organization" }).click();
  await p.getByRole("alert").getByText(/^Id must match/).waitFor();
  assert.equal(await p.getByLabel("Name", { exact: true }).inputValue(), "Nope", "what was typed is kept");

  await p.getByLabel(/^Id/).fill("globex");
  await p.getByLabel("Name", { exact: true }).fill("Globex");
  await p.getByLabel(/^Key limit/).fill("5");
  await p.getByRole("button", { name: "Create organization" }).click();
  await p.getByRole("heading", { name: "Copy the secret of the admin key of globex" }).waitFor();
  const secret = await p.locator("#secret-value").textContent();
  secrets.push(secret);
  assert.equal(curlVerify(server, secret, { action: "keys:read" }).code, "VALID", "the new org's admin key works");
  await p.getByLabel("I have stored the secret somewhere safe").check();
  await p.getByRole("button", { name: "Close" }).click();
  await p.getByRole("link", { name: "Back to organizations" }).click();
  const globex = p.locator("table.orgs tbody tr", { hasText: "globex" });
  assert.match(await globex.textContent(), /Globex.*1 of 5/);

  await p.getByRole("link", { name: "Edit big" }).click();
  await p.getByLabel("Name", { exact: true }).fill("Big Industries");
  await p.getByLabel(/^Key limit/).fill("1");
  await p.getByRole("button", { name: "Save" }).click();
  await p.getByText(/holds more keys than its new limit/).waitFor();
  assert.match(await p.locator("table.orgs tbody tr", { hasText: "big" }).textContent(), /Big Industries.*3 of 1/);
  await axeCheck("organizations, after an edit", p);
  await p.screenshot({ path: join(shots, "organizations.png"), fullPage: true });
  await ctx.close();

  // A tenant's admin is told, once, that this is the operator's.
  const answer = await page.goto(`${server.url}/console/orgs`);
  assert.equal(answer.status(), 403);
  assert.equal(await page.getByRole("alert").count(), 1);
});

test("an idle session expires and says so", async () => {
  const short = await startServer("idle", ["--console-idle-secs", "3"]);
  try {
    const org = await api(short, short.system, "POST", "/v1/orgs", { id: "idle", name: "Idle" });
    const p = await context.newPage();
    await p.goto(`${short.url}/console/sign-in`);
    await p.getByLabel("API key").fill(org.body.secret);
    await p.getByRole("button", { name: "Sign in" }).click();
    await p.waitForURL(/\/console\/keys$/);
    await advance(short, 4);
    await p.reload();
    await p.getByText("Your session expired. Sign in again.").waitFor();
    await p.close();
  } finally {
    short.child.kill("SIGTERM");
  }
});

test("no secret reached a log, and axe checked every page", async () => {
  server.child.kill("SIGTERM");
  await new Promise((r) => server.child.once("exit", r));
  const logs = readdirSync(work).filter((f) => f.endsWith(".log")).map((f) => readFileSync(join(work, f), "utf8")).join("\n");
  assert.ok(logs.length > 0, "the servers logged something");
  for (const s of [...secrets, admin, viewer]) assert.ok(!logs.includes(s), "a secret is in the server's log");
  assert.ok(pagesChecked.length >= 12, pagesChecked.join(", "));
  assert.deepEqual(misdeeds, []);
});
