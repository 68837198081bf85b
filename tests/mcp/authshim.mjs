// Test-only: forwards every request to TARGET unchanged (Host included) but adds
// `Authorization: Bearer $KEY`, so the conformance CLI (which sends no credentials)
// can test an authenticated endpoint. Streams both ways (SSE-safe).
// Usage: KEY=... node authshim.mjs LISTEN_PORT http://127.0.0.1:8080
import http from "node:http";
const [port, target] = process.argv.slice(2);
const t = new URL(target);
http.createServer((req, res) => {
  const headers = { ...req.headers, authorization: `Bearer ${process.env.KEY}` };
  const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers }, (r) => {
    res.writeHead(r.statusCode, r.headers);
    r.pipe(res);
  });
  up.on("error", () => { res.writeHead(502); res.end(); });
  req.pipe(up);
  res.on("close", () => up.destroy());
}).listen(Number(port), "127.0.0.1");
