/**
 * Swagger UI's "Authorize" in a real browser (headless system Chromium, driven by playwright-core):
 * the app builds its document as the README's `main.ts` does (before `init()`), the UI calls a
 * protected route (401 + challenge), signs in with authorization code + PKCE against a real local
 * zone (TestZone) in a popup, and calls the route again (200). A screenshot of the signed-in call
 * is written to `test-artifacts/` (git-ignored).
 */
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { Controller, Get, Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import playwright, { type Browser, type Page, type Response } from 'playwright-core';
import { Agent, KeycardModule, RequireScopes, type AgentContext } from '../lib/index.js';
import { withKeycardSecurity } from '../lib/swagger/index.js';
import { TestZone } from '../lib/testing/index.js';
import { findChromium } from './support/chromium.js';
import { freePort } from './support/free-port.js';
import { CapturingLogger } from './support/keycard-app.js';
import { describeUnless } from './support/skip.js';

const chromium = findChromium();
const ARTIFACTS = join(import.meta.dirname, '..', 'test-artifacts');

@Controller('orders')
class OrdersController {
  @Get()
  @RequireScopes('orders:read')
  list(@Agent() agent: AgentContext) {
    return { orders: [], agent: agent.clientId, user: agent.subject };
  }
}

/** The app as the README's `main.ts` builds it: document first, then `listen()` (which inits). */
async function startApp(zone: TestZone, port: number, logger: CapturingLogger): Promise<INestApplication> {
  const resource = `http://127.0.0.1:${port}`;
  @Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource, logger })], controllers: [OrdersController] })
  class AppModule {}
  const app = await NestFactory.create(AppModule, { logger: false });
  const config = new DocumentBuilder().setTitle('Orders API').build();
  const document = SwaggerModule.createDocument(app, await withKeycardSecurity(app, config));
  SwaggerModule.setup('docs', app, document, {
    swaggerOptions: {
      // Swagger UI opened at /docs (no trailing slash) would send <origin>/oauth2-redirect.html, which is not served.
      oauth2RedirectUrl: `${resource}/docs/oauth2-redirect.html`,
      initOAuth: { clientId: 'docs', usePkceWithAuthorizationCodeGrant: true, additionalQueryStringParams: { resource } },
    },
  });
  await app.listen(port, '127.0.0.1');
  return app;
}

/**
 * Opens `GET /orders`, presses "Try it out" once and "Execute", and returns the API's answer. Swagger
 * UI renders as it goes (the operation after the spec loads, its body after the click): each step
 * waits for what it reads, since `isVisible()` answers at once (a body not rendered yet had the test
 * skip "Try it out" and wait 30 s for an Execute button that never came).
 */
async function execute(page: Page): Promise<Response> {
  const operation = page.locator('.opblock-get', { has: page.locator('[data-path="/orders"]') });
  const summary = operation.locator('.opblock-summary');
  await summary.waitFor({ state: 'visible' });
  if (!(await operation.locator('.opblock-body').isVisible())) await summary.click();
  const tryOut = operation.locator('button.try-out__btn', { hasText: 'Try it out' });
  const executeButton = operation.locator('button.execute');
  await tryOut.or(executeButton).first().waitFor({ state: 'visible' });
  if (await tryOut.isVisible()) await tryOut.click();
  const answered = page.waitForResponse((response) => new URL(response.url()).pathname === '/orders');
  await executeButton.click();
  return answered;
}

/** Swagger UI's Authorize dialog: the authorization-code flow's button opens the zone's sign-in in a popup. */
async function signIn(page: Page): Promise<void> {
  await page.locator('button.authorize').first().click();
  const flow = page.locator('.auth-container', { hasText: 'authorizationCode' });
  await flow.locator('label[for="orders:read-authorizationCode-checkbox-keycard"]').click(); // the box itself is styled away
  const popup = page.waitForEvent('popup');
  const token = page.waitForResponse((response) => new URL(response.url()).pathname === '/token' && response.request().method() === 'POST');
  await flow.locator('button.authorize').click();
  await popup; // the zone's sign-in: it redirects back to oauth2-redirect.html, which hands the code over and closes
  expect((await token).status()).toBe(200);
  // Swagger UI reads the token answer and re-renders after the response event: wait for that render.
  await flow.locator('button', { hasText: 'Logout' }).waitFor({ state: 'visible', timeout: 15_000 });
  await page.locator('.modal-ux button.close-modal').click();
}

describeUnless('reason' in chromium ? chromium.reason : undefined, 'Swagger UI signs in against the zone in a real browser (headless Chromium)', () => {
  const logger = new CapturingLogger();
  let zone: TestZone;
  let app: INestApplication;
  let browser: Browser;
  let page: Page;
  let origin: string;

  beforeAll(async () => {
    const port = await freePort();
    origin = `http://127.0.0.1:${port}`;
    zone = await TestZone.start({
      clients: [{ clientId: 'docs', public: true, redirectUris: [`${origin}/docs/oauth2-redirect.html`] }],
      resources: { [origin]: ['orders:read', 'orders:write'] },
    });
    app = await startApp(zone, port, logger);
    browser = await playwright.chromium.launch({ executablePath: (chromium as { path: string }).path, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    await page.goto(`${origin}/docs`);
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await zone?.stop();
  });

  it('before signing in, "Execute" on a protected route gets 401 with the Bearer challenge naming the resource metadata', async () => {
    const answer = await execute(page);
    expect(answer.status()).toBe(401);
    expect(await answer.headerValue('www-authenticate')).toBe(
      `Bearer scope="orders:read", resource_metadata="${origin}/.well-known/oauth-protected-resource"`,
    );
  }, 30_000);

  it('"Authorize" signs in with authorization code + PKCE against the zone; "Execute" then gets 200 as the signed-in user', async () => {
    await signIn(page);
    const answer = await execute(page);
    const sent = (await answer.request().headerValue('authorization')) ?? '';
    expect(answer.status()).toBe(200);
    expect(await answer.json()).toEqual({ orders: [], agent: 'docs', user: 'dev-user' });
    expect(sent).toMatch(/^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);
    const authorize = zone.tokenRequests.at(-1)?.form;
    expect(authorize).toMatchObject({ grant_type: 'authorization_code', client_id: 'docs' });
    expect(authorize?.code_verifier).toMatch(/^[\w.~-]{43,128}$/);
    expect(logger.lines.some((line) => line.includes(sent.slice(7)))).toBe(false);
    await page.locator('.live-responses-table tbody .response-col_status', { hasText: '200' }).waitFor(); // what the user sees
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'swagger-authorize.png'), fullPage: true });
  }, 60_000);
});
