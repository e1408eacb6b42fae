// rstscope lab: the article's Node.js backend page. Node's own
// server.keepAliveTimeout stays at its default (5 s) unless --keepalive-ms
// is given.
// Usage: node backend.js HOST PORT [KEEPALIVE_MS]
'use strict';
const http = require('http');
const [host, port, ka] = process.argv.slice(2);
const server = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  res.end('hello from node\n');
});
if (ka) {
  server.keepAliveTimeout = Number(ka);
}
server.listen(Number(port), host, () => {
  console.log('ready ' + host + ':' + port + ' keepAliveTimeout ' + server.keepAliveTimeout + ' ms');
});
process.on('SIGTERM', () => process.exit(0));
