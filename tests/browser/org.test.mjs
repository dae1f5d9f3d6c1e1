// The organization page (counts, the limit, usage by outcome, the
// busiest keys) and the operator's Organizations page.
// Shared set-up and checks: support.mjs.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { shots, api, curlVerify, secrets, axeCheck, shot, signedInPage, setUp, signInAsAda, seedKey, tearDown, lastChecks } from "./support.mjs";

let server, page, admin;

before(async () => {
  ({ server, page, admin } = await setUp());
  await signInAsAda();
  const { id, secret } = await seedKey({ name: "svc-90-custom", scopes: ["compute:start@workspaces/ws-1/**"], expires_in_days: 90 });
  for (let i = 0; i < 4; i++) assert.equal(curlVerify(server, secret).code, "VALID");
  assert.equal(curlVerify(server, secret, { action: "zzz:never" }).code, "FORBIDDEN_SCOPE");
  // Usage counts are flushed every 100 ms by this server.
  for (let tries = 0; tries < 100 && (await api(server, admin, "GET", `/v1/keys/${id}/usage`)).body.total < 5; tries++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const tiny = await api(server, server.system, "POST", "/v1/orgs", { id: "tiny", name: "Tiny", max_keys: 1 });
  assert.equal(tiny.status, 201);
  const big = await api(server, server.system, "POST", "/v1/orgs", { id: "big", name: "Big" });
  assert.equal(big.status, 201);
  for (const name of ["one", "two"]) {
    assert.equal((await api(server, big.body.secret, "POST", "/v1/keys", { name, scopes: ["read"] })).status, 201);
  }
});

after(tearDown);

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

lastChecks(3);
