// Roles and the catalogue: create, edit with the keys a role reaches,
// delete with force; the catalogue edited, enforced and refused.
// Shared set-up and checks: support.mjs.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { api, axeCheck, shot, keyNamed, setUp, signInAsAda, tearDown, lastChecks } from "./support.mjs";

let server, page, admin;

before(async () => {
  ({ server, page, admin } = await setUp());
  await signInAsAda();
});

after(tearDown);

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

test("the catalogue is edited, enforced, and a refused edit keeps what was typed", async () => {
  await page.goto(`${server.url}/console/catalog`);
  const lines = page.getByLabel(/^Actions, one per line/);
  await lines.fill("billing:read_costs Read cost reports\nreports:download Download reports");
  await page.getByLabel(/^Enforce/).check();
  await page.getByRole("button", { name: "Save catalogue" }).click();
  await page.getByText("Catalogue saved.").waitFor();
  await page.getByText("Enforced: scopes may only name these actions.").waitFor();
  const saved = (await api(server, admin, "GET", "/v1/catalog")).body;
  assert.equal(saved.enforce, true);
  assert.deepEqual(saved.actions.map((a) => a.action), ["billing:read_costs", "reports:download"]);
  // Enforced: a key naming an action that is not listed is refused.
  assert.equal((await api(server, admin, "POST", "/v1/keys", { name: "off-list", scopes: ["compute:start"] })).status, 400);

  const before = (await api(server, admin, "GET", "/v1/catalog")).body;
  await lines.fill("reports:download Download reports\nbilling:* every billing action");
  await page.getByRole("button", { name: "Save catalogue" }).click();
  await page.getByRole("alert").first().waitFor();
  await page.getByRole("alert").getByText(/is not an exact action/).waitFor();
  assert.equal(await lines.inputValue(), "reports:download Download reports\nbilling:* every billing action", "what was typed is kept");
  assert.deepEqual((await api(server, admin, "GET", "/v1/catalog")).body, before, "nothing changed");
  await axeCheck("catalogue, a refused edit");

  await lines.fill("billing:read_costs Read cost reports\nbilling:export Export invoices\ncompute:start Start machines\ncompute:list List machines");
  await page.getByLabel(/^Enforce/).uncheck();
  await page.getByRole("button", { name: "Save catalogue" }).click();
  await page.getByText("Not enforced: scopes may name any action.").waitFor();
});

test("a role's count of keys leaves out deleted keys", async () => {
  assert.equal((await api(server, admin, "POST", "/v1/roles", { name: "temp", scopes: ["read"] })).status, 201);
  const held = [];
  for (const name of ["temp-1", "temp-2"]) held.push((await api(server, admin, "POST", "/v1/keys", { name, roles: ["temp"] })).body.key.id);
  assert.equal((await api(server, admin, "DELETE", `/v1/keys/${held[1]}?confirm=temp-2`)).status, 200);
  await page.goto(`${server.url}/console/roles/temp`);
  await page.getByText(/Held by 1 key: they change with the role/).waitFor();
});

lastChecks(4);
