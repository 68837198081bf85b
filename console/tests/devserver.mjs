// Serves console/dist under /ui/ with the production CSP and proxies the API to a
// running gateway's admin listener. For iterating on the UI without rebuilding the binary:
//   OBLETH_ADMIN=http://127.0.0.1:9090 PORT=5174 node tests/devserver.mjs
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.png': 'image/png', '.svg': 'image/svg+xml' };

/** Starts the server; resolves to { port, close }. */
export function startDevServer({ admin, port = 0, host = '127.0.0.1' }) {
  const target = new URL(admin);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/ui' || url.pathname.startsWith('/ui/')) {
      let rel = url.pathname.slice(4) || '/';
      let file = path.join(DIST, path.normalize(rel).replace(/^(\.\.[/\\])+/, ''));
      if (!file.startsWith(DIST) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) file = path.join(DIST, 'index.html');
      res.writeHead(200, {
        'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
        'content-security-policy': CSP,
        'x-content-type-options': 'nosniff',
        'cache-control': 'no-cache',
      });
      fs.createReadStream(file).pipe(res);
      return;
    }
    // Same-origin as far as the gateway can tell: it checks Origin on changes.
    const headers = { ...req.headers, host: target.host };
    if (headers.origin) headers.origin = target.origin;
    if (headers.referer) headers.referer = target.origin + new URL(headers.referer).pathname;
    const up = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end('bad gateway');
    });
    req.pipe(up);
  });
  return new Promise((resolve) => {
    server.listen(port, host, () => {
      resolve({
        port: server.address().port,
        close: () =>
          new Promise((r) => {
            server.closeAllConnections?.();
            server.close(() => r());
          }),
      });
    });
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const admin = process.env.OBLETH_ADMIN ?? 'http://127.0.0.1:9090';
  const s = await startDevServer({ admin, port: Number(process.env.PORT ?? 5174) });
  console.log(`console at http://127.0.0.1:${s.port}/ui/ (API -> ${admin})`);
}
