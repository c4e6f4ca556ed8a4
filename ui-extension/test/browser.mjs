// Drive headless Chromium over the extension as Argo CD's UI loads it: a page on one origin
// serves the harness and passes everything else (Argo CD's API, /extensions.js, the proxy
// extension /extensions/argo-drift/...) to the real argocd-server, so the browser talks to
// Argo CD exactly as its UI does (the `argocd.token` cookie).
//
//   node test/browser.mjs
// Environment:
//   ARGOCD_SERVER     https://host:port of argocd-server
//   ARGOCD_CA         its CA certificate (PEM file)
//   ARGOCD_TOKEN_FILE the user's Argo CD token
//   APP               <namespace>/<name> of the Application
//   RESOURCE          <group>/<version>/<kind>/<namespace>/<name> for the resource tab
//   OUT               directory for the screenshots
//   CHROMIUM          the browser (default /usr/bin/chromium)
// Prints one JSON object: what each view rendered.

import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {chromium} from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const need = name => {
    const v = process.env[name];
    if (!v) {
        console.error(`browser.mjs: ${name} must be set (see the head of this file)`);
        process.exit(2);
    }
    return v;
};
const argocd = new URL(need('ARGOCD_SERVER'));
const ca = fs.readFileSync(need('ARGOCD_CA'));
const token = fs.readFileSync(need('ARGOCD_TOKEN_FILE'), 'utf8').trim();
const app = need('APP');
const resource = need('RESOURCE');
const out = need('OUT');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const files = {
    '/': ['harness.html', 'text/html'],
    '/harness.js': ['../build/harness.js', 'application/javascript']
};

const server = http.createServer((req, res) => {
    const pathname = new URL(req.url, 'http://x').pathname;
    if (pathname === '/favicon.ico') {
        res.writeHead(204);
        res.end();
        return;
    }
    if (files[pathname]) {
        const [file, type] = files[pathname];
        res.writeHead(200, {'Content-Type': type});
        res.end(fs.readFileSync(path.join(here, file)));
        return;
    }
    const upstream = https.request(
        {host: argocd.hostname, port: argocd.port, path: req.url, method: req.method, headers: {...req.headers, host: argocd.host}, ca},
        r => {
            res.writeHead(r.statusCode, r.headers);
            r.pipe(res);
        }
    );
    upstream.on('error', e => {
        res.writeHead(502);
        res.end(String(e));
    });
    req.pipe(upstream);
});
await new Promise(r => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${server.address().port}/`;

const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
});
const result = {};
try {
    const context = await browser.newContext({viewport: {width: 1280, height: 800}});
    await context.addCookies([{name: 'argocd.token', value: token, url: base}]);
    const page = await context.newPage();
    const consoleErrors = [];
    page.on('console', m => m.type() === 'error' && consoleErrors.push(m.text()));
    page.on('pageerror', e => consoleErrors.push(String(e)));
    page.on('response', r => r.status() >= 400 && consoleErrors.push(`${r.status()} ${r.url()}`));

    const settle = async (what, selector) => {
        try {
            await page.waitForSelector(`${selector}, .argo-drift-error, body[data-failed]`, {timeout: 20000});
        } catch (e) {
            throw new Error(`${what}: nothing rendered in 20 s: ${await page.content()}`);
        }
        const failed = await page.evaluate(() => document.body.dataset.failed);
        if (failed) throw new Error(`${what}: the harness failed: ${failed}`);
    };
    const rows = selector =>
        page.$$eval(selector, trs =>
            trs.map(tr => ({
                path: tr.dataset.path,
                cells: [...tr.querySelectorAll('td')].map(td => td.textContent.trim())
            }))
        );
    const severities = () => page.$$eval('.argo-drift-severity', els => els.map(e => e.dataset.severity));

    // The status panel item, then its flyout.
    await page.goto(`${base}?view=status&app=${encodeURIComponent(app)}`);
    await settle('status panel', '.argo-drift-status-panel .argo-drift-severity');
    result.registered = JSON.parse(await page.evaluate(() => document.body.dataset.registered));
    result.statusPanel = {text: await page.textContent('.status-panel'), severities: await severities()};
    await page.click('.argo-drift-status-panel');
    await settle('flyout', '.argo-drift-flyout');
    result.flyout = {text: await page.textContent('.flyout'), rows: await rows('.flyout .argo-drift-change'), severities: await severities()};
    await page.screenshot({path: path.join(out, 'status-panel-flyout.png'), fullPage: true});

    // The resource tab of the drifted resource.
    await page.goto(`${base}?view=resource&app=${encodeURIComponent(app)}&resource=${encodeURIComponent(resource)}`);
    await settle('resource tab', '.argo-drift-resource');
    result.resourceTab = {
        tabs: await page.$$eval('.tab', els => els.map(e => e.dataset.title)),
        text: await page.textContent('#root'),
        rows: await rows('.argo-drift-change'),
        severities: await severities()
    };
    await page.screenshot({path: path.join(out, 'resource-tab.png'), fullPage: true});

    // The system-level page; then sorted by age.
    await page.goto(`${base}?view=system`);
    await settle('fleet page', '.argo-drift-fleet');
    result.fleet = {text: await page.textContent('#root'), rows: await page.$$eval('.argo-drift-fleet-row', els => els.map(e => e.dataset.app))};
    await page.screenshot({path: path.join(out, 'fleet.png'), fullPage: true});
    await page.click('.argo-drift-sort-age');
    await page.waitForSelector('.argo-drift-sort-age:has-text("▼")');
    result.fleetByAge = await page.$$eval('.argo-drift-fleet-row', els => els.map(e => e.dataset.app));
    result.consoleErrors = consoleErrors;
    result.html = await page.content();
} finally {
    await browser.close();
    server.close();
}
console.log(JSON.stringify(result));
