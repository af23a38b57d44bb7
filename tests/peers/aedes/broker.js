// Aedes on 127.0.0.1:<port>, as Node-RED embeds it. Prints "listening <port>" when ready;
// exits when its parent closes stdin, so a killed test run leaves no broker behind.
const net = require('net');
const { Aedes } = require('aedes');

const port = parseInt(process.argv[2], 10);
(async () => {
  const broker = await Aedes.createBroker();
  const server = net.createServer(broker.handle);
  server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`));
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
})();
