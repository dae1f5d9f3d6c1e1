// Signing in and out, and what guards every page: the security headers,
// the session cookie, CSRF tokens, idle sessions.
// Shared set-up and checks: support.mjs.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, advance, api, axeCheck, keyboardCheck, shot, signIn, setUp, tearDown, lastChecks } from "./support.mjs";

let server, page, admin, context;

before(async () => {
  ({ server, page, admin, context } = await setUp());
});

after(tearDown);

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

lastChecks(1);
