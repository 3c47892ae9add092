// HTTP backend for scripts/fionread-apps.sh: GET /big returns BIG bytes of a
// fixed pattern; POST /echo answers "<length> <sha256>" of the request body.
'use strict';
const http = require('node:http');
const crypto = require('node:crypto');

const [port, big] = process.argv.slice(2).map(Number);
const body = Buffer.alloc(big);
for (let i = 0; i < big; i++) body[i] = (i * 31 + 7) & 0xff;

http
  .createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/big') {
      res.writeHead(200, { 'content-length': big });
      res.end(body);
      return;
    }
    const hash = crypto.createHash('sha256');
    let length = 0;
    req.on('data', (chunk) => {
      length += chunk.length;
      hash.update(chunk);
    });
    req.on('end', () => res.end(`${length} ${hash.digest('hex')}\n`));
  })
  .listen(port, '127.0.0.1', () => console.log('listening'));
