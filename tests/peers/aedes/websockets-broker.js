// Aedes serving MQTT over WebSockets on 127.0.0.1:<port> at <path>, over TLS (wss) when a
// certificate and key are given, as Node-RED's broker nodes do. Debian's Mosquitto is built
// without WebSockets, so this is the tests' WebSockets broker. Prints "listening <port>"
// when ready; exits when its parent closes stdin, so a killed test run leaves nothing behind.
const fs = require('fs');
const http = require('http');
const https = require('https');
const { Aedes } = require('aedes');
const { WebSocketServer, createWebSocketStream } = require('ws');

const [portText, path, certFile, keyFile] = process.argv.slice(2);
const port = parseInt(portText, 10);
(async () => {
  const broker = await Aedes.createBroker();
  const server = certFile
    ? https.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) })
    : http.createServer();
  const sockets = new WebSocketServer({ server, path });
  sockets.on('connection', (socket, request) => {
    broker.handle(createWebSocketStream(socket), request);
  });
  server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`));
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
})();
