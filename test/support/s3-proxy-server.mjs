// A recording HTTP proxy in front of the S3 test server, run as its own process so a
// test that blocks (spawnSync of the CLI) cannot stall the traffic it records.
// Usage: node s3-proxy-server.mjs TARGET_URL  → prints {"port": N} once listening.
// Every request is forwarded unchanged (Host included, so SigV4 signatures hold) and
// recorded as {method, url, bytes, status}. Control routes, under /__proxy/:
//   GET /__proxy/requests   the records so far     DELETE /__proxy/requests   clear them
import { createServer, request } from 'node:http';

const target = new URL(process.argv[2]);
let records = [];

const server = createServer((req, res) => {
  if (req.url.startsWith('/__proxy/requests')) {
    if (req.method === 'DELETE') records = [];
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(records));
    return;
  }
  let bytes = 0;
  const up = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
    records.push({ method: req.method, url: req.url, bytes, status: upRes.statusCode });
    res.writeHead(upRes.statusCode ?? 502, upRes.headers);
    upRes.pipe(res);
  });
  up.on('error', () => res.destroy());
  req.on('data', (c) => { bytes += c.length; });
  req.pipe(up);
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
