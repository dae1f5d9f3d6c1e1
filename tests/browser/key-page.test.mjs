// A key's own page: details, usage by outcome and range, the timeline,
// and its lifecycle (disable, enable, rotate with grace, revoke, delete);
// importing a key from before keyreg.
// Shared set-up and checks: support.mjs.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { work, advance, serverNow, api, curlVerify, secrets, axeCheck, keyboardCheck, shot, takeSecret, keyNamed, setUp, signInAsAda, seedKey, tearDown, lastChecks } from "./support.mjs";

let server, page, admin;
let svc90, svc30;
// GitHub's secret scanning, played here: a P-256 key published in a keys
// file of GitHub's shape, which the server is started with.
const scanner = generateKeyPairSync("ec", { namedCurve: "P-256" });
const leakKeys = join(work, "github-keys.json");
writeFileSync(leakKeys, JSON.stringify({ public_keys: [
  { key_identifier: "gh-1", key: scanner.publicKey.export({ type: "spki", format: "pem" }), is_current: true },
] }));

before(async () => {
  ({ server, page, admin } = await setUp({ extra: ["--leak-keys", leakKeys] }));
  await signInAsAda();
  svc90 = await seedKey({ name: "svc-90-custom", scopes: ["compute:start@workspaces/ws-1/**", "compute:list@workspaces/ws-1/**"], expires_in_days: 90 });
  assert.equal(curlVerify(server, svc90.secret).code, "VALID");
  svc30 = await seedKey({ name: "svc-30-read-only", preset: "read-only", expires_in_days: 30 });
  await seedKey({ name: "svc-60-restricted", scopes: ["billing:read_costs"], expires_in_days: 60 });
});

after(tearDown);

test("details show usage, the timeline and the effective permissions", async () => {
  const key = await keyNamed("svc-90-custom");
  const secret = svc90.secret;
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
  // People's words only: no version, sequence number, event type or raw actor.
  assert.doesNotMatch(await page.locator("main").innerText(), /\bVersion\b|\bSeq\b|key\.[a-z_]+|system:|key:key_/);
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

test("disable, enable, rotate with grace, revoke and delete by name", async () => {
  const key = await keyNamed("svc-30-read-only");
  const secret = svc30.secret;
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

test("a key found in public is revoked at once, and its page says where it was found", async () => {
  const { id, secret } = await seedKey({ name: "pushed-by-mistake", scopes: ["read"] });
  const url = "https://github.com/acme/site/blob/0a1b2c/.env";
  const body = JSON.stringify([{ token: secret, type: "keyreg_api_key", url, source: "content" }]);
  const signature = sign("sha256", Buffer.from(body), scanner.privateKey).toString("base64");
  const res = await fetch(`${server.url}/v1/leaks`, {
    method: "POST", body,
    headers: { "content-type": "application/json", "github-public-key-identifier": "gh-1", "github-public-key-signature": signature },
  });
  assert.equal(res.status, 200);
  assert.equal((await res.json())[0].label, "true_positive");
  assert.equal(curlVerify(server, secret).code, "REVOKED");
  await page.goto(`${server.url}/console/keys/${id}`);
  const notice = page.locator("p.notice.revoked");
  assert.match(await notice.textContent(), new RegExp(`^Revoked .* by keyreg, on a leak report: found in public at ${url.replace(/[.]/g, "\\.")}$`));
  await axeCheck("key details, revoked on a leak report");
});

test("an expired key is no dead end: it says so, and can be revoked or deleted", async () => {
  const { id } = await seedKey({ name: "lapsing", scopes: ["read"], expires_in_days: 1 });
  await advance(server, 86_400 + 5);
  await signInAsAda();
  await page.goto(`${server.url}/console/keys/${id}`);
  await page.locator(".badge.expired").first().waitFor();
  assert.equal(await page.getByRole("button", { name: "Revoke" }).count(), 1, "an expired key can be revoked");
  assert.equal(await page.getByRole("button", { name: "Rotate" }).count(), 0, "nor rotated back to life");
  await page.getByRole("button", { name: "Delete" }).click();
  await page.getByLabel(/Type the key's name/).fill("lapsing");
  await page.getByRole("button", { name: "Delete key" }).click();
  await page.getByText("1 key deleted.").waitFor();
  assert.equal((await keyNamed("lapsing")).status, "deleted");
});

lastChecks(2);
