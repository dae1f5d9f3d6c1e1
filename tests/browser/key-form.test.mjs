// Creating and editing keys: every expiry choice and preset, the secret
// shown once, reloads that write nothing again, refusals in the form's
// words, confirmations before an edit, the key limit, a large catalogue.
// Shared set-up and checks: support.mjs.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { shots, api, curlVerify, axeCheck, keyboardCheck, shot, takeSecret, createKey, signedInPage, keyNamed, setUp, signInAsAda, tearDown, lastChecks } from "./support.mjs";

let server, page, admin;

before(async () => {
  ({ server, page, admin } = await setUp());
  await signInAsAda();
});

after(tearDown);

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

test("a bad expiry is refused in the form's words, never taken for 90 days", async () => {
  // (Chromium's date field takes no impossible date such as 2031-02-30.)
  for (const date of ["2020-01-01", "2026-01-01"]) {
    await page.goto(`${server.url}/console/keys/new`);
    await page.getByLabel("Name", { exact: true }).fill("badly-dated");
    await page.locator("input[name=preset][value=read-only]").check();
    await page.getByLabel(/Expiry date/).fill(date);
    await page.getByRole("button", { name: "Create key" }).click();
    await page.locator("#expires_at-error").waitFor();
    assert.match(await page.locator("#expires_at-error").textContent(), /^The expiry: /, `${date}: in the form's words`);
    assert.equal(await keyNamed("badly-dated"), undefined, `${date}: nothing was created`);
  }
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

test("metadata typed on the form is kept, shown on the key's page, edited, and a bad one refused in the form's words", async () => {
  await page.goto(`${server.url}/console/keys/new`);
  await page.getByLabel("Name", { exact: true }).fill("with-meta");
  await page.locator("input[name=preset][value=read-only]").check();
  await page.getByLabel(/^Metadata/).fill("plan: pro");
  await page.getByRole("button", { name: "Create key" }).click();
  await page.locator("#meta-error").getByText(/^The metadata must be a JSON object/).waitFor();
  assert.equal(await page.getByLabel(/^Metadata/).inputValue(), "plan: pro", "what was typed is kept");
  assert.equal(await keyNamed("with-meta"), undefined);
  await page.getByLabel(/^Metadata/).fill('{"plan": "pro", "customer": "c_42"}');
  await page.getByRole("button", { name: "Create key" }).click();
  await takeSecret();
  const key = await keyNamed("with-meta");
  assert.deepEqual(key.meta, { plan: "pro", customer: "c_42" });
  await page.goto(`${server.url}/console/keys/${key.id}`);
  assert.deepEqual(JSON.parse(await page.locator("pre.meta").textContent()), { customer: "c_42", plan: "pro" });
  await page.goto(`${server.url}/console/keys/${key.id}/edit`);
  assert.deepEqual(JSON.parse(await page.getByLabel(/^Metadata/).inputValue()), { customer: "c_42", plan: "pro" });
  await page.getByLabel(/^Metadata/).fill('{"plan": "enterprise"}');
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("Changes saved.").waitFor();
  assert.deepEqual((await keyNamed("with-meta")).meta, { plan: "enterprise" });
  await axeCheck("key page with metadata");
});

lastChecks(4);
