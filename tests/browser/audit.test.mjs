// The audit page: the chain badge, the witnessed checkpoint, people and
// keys by name, and the filters by type, key, who acted and time.
// Shared set-up and checks: support.mjs.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { advance, serverNow, api, secrets, axeCheck, shot, utc, setUp, signInAsAda, seedKey, tearDown, lastChecks } from "./support.mjs";

let server, page, admin;
let opsAdmin, opsAdminId;

before(async () => {
  ({ server, page, admin } = await setUp({ witness: true }));
  await signInAsAda();
  for (const [name, reason] of [["leaver-1", "left the team"], ["leaver-2", "rotated out"], ["leaver-3", "unused"]]) {
    const { id } = await seedKey({ name, scopes: ["read"] });
    assert.equal((await api(server, admin, "POST", `/v1/keys/${id}/revoke`, { reason }, "ada@example.com")).status, 200);
  }
  const ops = await api(server, admin, "POST", "/v1/keys", { name: "ops-admin", scopes: ["keys:admin"] });
  assert.equal(ops.status, 201);
  [opsAdmin, opsAdminId] = [ops.body.secret, ops.body.key.id];
  secrets.push(opsAdmin);
});

after(tearDown);

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

test("the audit page filters by key, by who acted and by time", async () => {
  const { id } = await seedKey({ name: "audited", scopes: ["read"] });
  await advance(server, 60);
  const between = serverNow(server);
  await advance(server, 60);
  assert.equal((await api(server, admin, "POST", `/v1/keys/${id}/disable`, {})).status, 200);
  assert.equal((await api(server, opsAdmin, "POST", `/v1/keys/${id}/enable`, {})).status, 200);
  const rows = () => page.locator("table.events tbody td:nth-child(2)").allTextContents();

  // By key: only its events, oldest last.
  await page.goto(`${server.url}/console/audit`);
  await page.getByLabel("Key id").fill(id);
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/key_id=/);
  assert.deepEqual(await rows(), ["Key enabled", "Key disabled", "Key created"]);

  // By who acted: the person, then the key that acted without one.
  await page.getByLabel("Actor").fill("user:ada@example.com");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/actor=/);
  assert.deepEqual(await rows(), ["Key created"]);
  await page.getByLabel("Actor").fill(`key:${opsAdminId}`);
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/actor=key/);
  assert.deepEqual(await rows(), ["Key enabled"]);

  // By time: what happened after a moment, and up to it.
  await page.getByLabel("Actor").fill("");
  await page.getByLabel("Since (UTC)").fill(utc(between));
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/since=/);
  assert.deepEqual(await rows(), ["Key enabled", "Key disabled"]);
  await page.getByLabel("Since (UTC)").fill("");
  await page.getByLabel("Until (UTC)").fill(utc(between));
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/until=/);
  assert.deepEqual(await rows(), ["Key created"]);
  await axeCheck("audit, filtered");
});

lastChecks(2);
