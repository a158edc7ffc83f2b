#!/usr/bin/env node
// The local Firestore emulator of edgeship's local cloud stack (started by `edgeship local up`).
//
//   node firestore.js --port 8086 [--host 127.0.0.1] [--control-file PATH]
//
// Serves the Firestore gRPC API (npm @firestore-emulator/server, pinned in package.json/lock) on
// HOST:PORT, and a small HTTP control server on 127.0.0.1 on an ephemeral port:
//   GET  /health  -> 200 {"ok": true, "port": PORT}
//   POST /clear   -> 200 after server.state.clear() (drops every project, document and listener
//                    target; the emulator does not implement ListCollectionIds, so this is the way
//                    to reset it between tests)
//   GET  /state   -> 200 server.state.toJSON() (debugging)
// The control port is written as JSON {"grpc_port", "control_port", "pid"} to --control-file once
// both servers listen: edgeship waits for that file as the readiness signal. SIGTERM/SIGINT stop it.
"use strict";

const fs = require("fs");
const http = require("http");
const { FirestoreServer } = require("@firestore-emulator/server");

function parseArgs(argv) {
  const args = { port: 8086, host: "127.0.0.1", controlFile: null };
  for (let i = 0; i < argv.length; i += 1) {
    const key = argv[i];
    const value = argv[i + 1];
    if (key === "--port") { args.port = Number(value); i += 1; }
    else if (key === "--host") { args.host = value; i += 1; }
    else if (key === "--control-file") { args.controlFile = value; i += 1; }
    else { throw new Error(`firestore.js: unknown argument ${JSON.stringify(key)}`); }
  }
  if (!Number.isInteger(args.port) || args.port <= 0 || args.port > 65535) {
    throw new Error(`firestore.js: --port must be 1..65535, got ${JSON.stringify(argv)}`);
  }
  return args;
}

function bindGrpc(server, host, port) {
  // FirestoreServer.start(port) binds 0.0.0.0; the local stack stays on loopback, so bind the
  // same grpc-js Server ourselves when it is reachable (it is a TypeScript-private field).
  const grpcServer = server.server;
  if (!grpcServer || typeof grpcServer.bindAsync !== "function") {
    return server.start(port);
  }
  const { ServerCredentials } = require("@grpc/grpc-js");
  return new Promise((resolve, reject) => {
    grpcServer.bindAsync(`${host}:${port}`, ServerCredentials.createInsecure(), (err, bound) => {
      if (err) { reject(err); return; }
      resolve(bound);
    });
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const server = new FirestoreServer();
  await bindGrpc(server, args.host, args.port);

  const control = http.createServer((req, res) => {
    const reply = (code, body) => {
      const text = JSON.stringify(body);
      res.writeHead(code, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
      res.end(text);
    };
    try {
      if (req.method === "GET" && req.url === "/health") { reply(200, { ok: true, port: args.port }); }
      else if (req.method === "POST" && req.url === "/clear") { server.state.clear(); reply(200, { cleared: true }); }
      else if (req.method === "GET" && req.url === "/state") { reply(200, server.state.toJSON()); }
      else { reply(404, { error: `no route ${req.method} ${req.url}` }); }
    } catch (err) {
      reply(500, { error: String(err && err.stack ? err.stack : err) });
    }
  });
  await new Promise((resolve, reject) => {
    control.once("error", reject);
    control.listen(0, "127.0.0.1", resolve);
  });
  const info = { grpc_port: args.port, control_port: control.address().port, pid: process.pid };
  if (args.controlFile) {
    fs.writeFileSync(`${args.controlFile}.tmp`, JSON.stringify(info));
    fs.renameSync(`${args.controlFile}.tmp`, args.controlFile);
  }
  console.log(`firestore emulator listening on ${args.host}:${args.port} (control ${info.control_port})`);

  const stop = (signal) => {
    console.log(`firestore emulator stopping (${signal})`);
    server.stop();
    control.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main().catch((err) => {
  console.error(`firestore emulator failed: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
