// The keys page: the list and its filters, row menus, bulk revoke and
// delete, the view as of a past time, long text at 1,280 and 360 px, and
// what a keys:read key is offered.
// Shared set-up and checks: support.mjs.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { advance, serverNow, api, watch, axeCheck, keyboardCheck, shot, signIn, keyNamed, utc, setUp, signInAsAda, seedKey, tearDown, lastChecks } from "./support.mjs";

let server, page, admin, viewer, context;

before(async () => {
  ({ server, page, admin, viewer, context } = await setUp());
  await signInAsAda();
  // As the create form would have made them, as ada@example.com.
  await seedKey({ name: "svc-7-full-access", preset: "full-access", expires_in_days: 7 });
  await seedKey({ name: "svc-90-custom", scopes: ["compute:start@workspaces/ws-1/**", "compute:list@workspaces/ws-1/**"], expires_in_days: 90 });
  await seedKey({ name: "svc-180-custom", roles: ["finance"], expires_in_days: 180 });
  await seedKey({ name: "svc-365-custom", scopes: ["billing:export"], expires_in_days: 365 });
});

after(tearDown);

test("a key named <script> renders as text", async () => {
  await page.goto(`${server.url}/console/keys`);
  await page.getByRole("link", { name: "<script>alert(1)</script>" }).waitFor();
  assert.equal(await page.locator("td.name script").count(), 0);
  assert.equal(await page.locator("img[src=x]").count(), 0);
  await page.getByText("<img src=x onerror=alert(2)>").waitFor();
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

test("bulk delete asks first, then deletes the selected keys", async () => {
  const doomed = ["bulk-gone-1", "bulk-gone-2"];
  for (const name of doomed) await seedKey({ name, scopes: ["read"] });
  await page.goto(`${server.url}/console/keys?q=bulk-gone`);
  for (const name of doomed) await page.getByRole("checkbox", { name: `Select ${name}` }).check();
  await page.getByRole("button", { name: "Delete selected" }).click();
  await page.getByRole("heading", { name: "Delete 2 keys?" }).waitFor();
  assert.deepEqual((await page.locator("form.card ul li").allTextContents()).sort(), doomed, "the confirmation names the keys");
  for (const name of doomed) assert.equal((await keyNamed(name)).status, "active", "nothing deleted before the confirmation");
  await page.getByLabel(/^Reason/).fill("replaced by the new pipeline");
  await page.getByRole("button", { name: "Delete 2 keys" }).click();
  await page.getByText("2 keys deleted.").waitFor();
  for (const name of doomed) assert.equal((await keyNamed(name)).status, "deleted");
  const events = await api(server, admin, "GET", `/v1/audit?key_id=${(await keyNamed(doomed[0])).id}&type=key.deleted`);
  assert.equal(events.body.events.length, 1);
  assert.equal(events.body.events[0].actor, "user:ada@example.com", "recorded as the person");
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

lastChecks(4);
